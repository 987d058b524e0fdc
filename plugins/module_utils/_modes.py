# -*- coding: utf-8 -*-
# Copyright (c) cmdop.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""CMDOP's two modes (prod, dev): their API URLs, token files, login hint and fleet-file scope.

This is the one place that knows a mode's defaults and which server an entry of
``ssh_workspaces.json`` belongs to; the modules and the inventory plugin both ask
it. Private to the collection: not a public API.
"""

from __future__ import annotations

import os
import typing as t
from urllib.parse import urlsplit

MODE_URLS = {
    "prod": "https://api.cmdop.com",
    "dev": "https://dev.cmdop.com",
}
MODES = tuple(MODE_URLS)

# The hosts CMDOP's published pages name for each mode: its API hosts and its gRPC relay hosts. An entry of
# ssh_workspaces.json whose ``server`` names one of these hosts (in any spelling: a URL with or without a scheme or
# path, a gRPC ``host:port``) belongs to that mode; any other host is a local server override.
# - prod: api.cmdop.com (the REST API), grpc.cmdop.com (the SDKs' default relay, ``grpc.cmdop.com:443``).
# - dev: dev.cmdop.com (a CMDOP skills config), api-dev.cmdop.com (the CLI "Authentication" page). No page names a
#   dev relay host; ``dev_server`` adds the host a user's CLI writes.
MODE_HOSTS: t.Dict[str, t.Tuple[str, ...]] = {
    "prod": ("api.cmdop.com", "grpc.cmdop.com"),
    "dev": ("dev.cmdop.com", "api-dev.cmdop.com"),
}
# What a dev entry this collection adds holds in ``server`` (CMDOP has not published what its CLI writes there): a
# gRPC ``host:port`` the CLI could dial, never a URL with a scheme. Older releases wrote https://dev.cmdop.com, which
# still counts as dev's.
DEFAULT_DEV_SERVER = "dev.cmdop.com:443"

DEFAULT_FLEET_FILE = "~/.cmdop/ssh_workspaces.json"
# Where the base URL may come from when it is not given, first found wins. CMDOP_API_URL is
# this collection's; CMDOP_API_BASE_URL is the one every CMDOP SDK reads.
API_URL_ENV = ("CMDOP_API_URL", "CMDOP_API_BASE_URL")

# How an entry relates to the mode a sync runs in.
SCOPE_MODE = "mode"  # the entry belongs to this mode: added, updated, deactivated
SCOPE_OVERRIDE = "override"  # a server override: updated when the server knows it, never deactivated
SCOPE_OTHER = "other"  # the entry belongs to the other mode: never touched


def normalize_url(url: str) -> str:
    """Compare URLs the way users write them: trimmed, no trailing slash, case-insensitive scheme and host."""
    url = (url or "").strip().rstrip("/")
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url.lower()
    host, slash, path = rest.partition("/")
    return "%s://%s%s%s" % (scheme.lower(), host.lower(), slash, path)


def default_token_file(mode: str) -> str:
    return "~/.cmdop/token_%s.json" % mode


def api_url(mode: str, given: t.Optional[str] = None) -> str:
    """The base URL to use: the one given, else the mode's server."""
    return given or MODE_URLS[mode]


def token_file(mode: str, given: t.Optional[str] = None) -> str:
    """The token file to read: the one given, else the mode's default (``~`` expanded where this runs)."""
    return os.path.expanduser(given or default_token_file(mode))


def login_hint(mode: str) -> str:
    """What a user whose OAuth token is gone does."""
    return "log in again with cmdop login%s (or give a fresh token)" % (" --dev" if mode == "dev" else "")


def server_host(server: t.Optional[str]) -> t.Optional[str]:
    """The host a ``server`` value names, lower-cased, or None when it names none (empty or absent).

    Takes every form the field is written in: ``https://api.cmdop.com/``, ``api.cmdop.com``,
    ``grpc.cmdop.com:443``, ``dns:///grpc.cmdop.com:443`` (a gRPC target), ``[::1]:8443``, with or without
    a path, a user or a trailing dot. Text that holds no host at all is returned as it is, trimmed and
    lower-cased, so that it can only equal itself.
    """
    text = (server or "").strip()
    if not text:
        return None
    scheme, sep, rest = text.partition("://")
    if not sep or not scheme:
        rest = text
    try:
        host = urlsplit("//" + rest.lstrip("/")).hostname or ""
    except ValueError:  # an unbalanced [ of an IPv6 address
        host = ""
    return host.rstrip(".") or text.lower()


def has_scheme(server: t.Optional[str]) -> bool:
    """Whether a ``server`` value is a URL with a scheme (``https://...``), which the CLI may not dial as a gRPC address."""
    return "://" in (server or "")


def server_mode(server: t.Optional[str], dev_server: str = DEFAULT_DEV_SERVER) -> t.Optional[str]:
    """The mode an entry's ``server`` names: ``prod`` for an empty or absent one, the mode whose known host it
    names (``MODE_HOSTS``, and the host of ``dev_server`` for dev), else None (a local server override)."""
    host = server_host(server)
    if host is None:
        return "prod"
    for mode, hosts in MODE_HOSTS.items():
        if host in hosts:
            return mode
    if host == server_host(dev_server):
        return "dev"
    return None


def check_dev_server(dev_server: str) -> str:
    """``dev_server`` as given, if an entry may hold it: a host (and port), no scheme, not one of prod's hosts.
    Raises ValueError saying what is wrong."""
    if has_scheme(dev_server):
        raise ValueError("dev_server %r is a URL with a scheme; the CMDOP client may dial server as a gRPC address: "
                         "give a host:port such as %s" % (dev_server, DEFAULT_DEV_SERVER))
    if server_mode(dev_server, dev_server) != "dev":
        raise ValueError("dev_server %r does not name a dev host (an empty server, and prod's hosts %s, are prod's)"
                         % (dev_server, ", ".join(MODE_HOSTS["prod"])))
    return dev_server.strip()


def server_for_new_entry(mode: str, dev_server: str = DEFAULT_DEV_SERVER) -> str:
    """The ``server`` value of an entry this collection adds: empty for prod (as cmdop writes it), ``dev_server`` for dev."""
    return "" if mode == "prod" else dev_server


def entry_scope(server: t.Optional[str], mode: str, dev_server: str = DEFAULT_DEV_SERVER) -> str:
    """How an entry relates to ``mode``, from the host its ``server`` names (see ``server_mode``).

    An entry of this mode: SCOPE_MODE; of the other mode: SCOPE_OTHER; any other
    host is a local server override, which belongs to no mode in particular.
    """
    owner = server_mode(server, dev_server)
    if owner is None:
        return SCOPE_OVERRIDE
    return SCOPE_MODE if owner == mode else SCOPE_OTHER
