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

MODE_URLS = {
    "prod": "https://api.cmdop.com",
    "dev": "https://dev.cmdop.com",
}
MODES = tuple(MODE_URLS)

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


def server_for_new_entry(mode: str) -> str:
    """The ``server`` value of an entry this collection adds: empty for prod (as cmdop writes it), the URL for dev."""
    return "" if mode == "prod" else MODE_URLS[mode]


def entry_scope(server: str, mode: str) -> str:
    """Which mode an entry belongs to, from its ``server``.

    Empty or the prod URL: prod. The dev URL: dev. Anything else is a local
    server override, which belongs to no mode in particular.
    """
    server = normalize_url(server)
    if server in ("", MODE_URLS["prod"]):
        owner = "prod"
    elif server == MODE_URLS["dev"]:
        owner = "dev"
    else:
        return SCOPE_OVERRIDE
    return SCOPE_MODE if owner == mode else SCOPE_OTHER
