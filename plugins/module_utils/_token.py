# -*- coding: utf-8 -*-
# Copyright (c) cmdop.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The OAuth token file (``~/.cmdop/token_<mode>.json``) and the one store that reads and rewrites it.

Layout (CMDOP publishes none): the token endpoint's JSON answer plus
``expires_at``, written as an RFC 3339 UTC string (CMDOP's Go client decodes it as
a ``time.Time``, which rejects a number) and read as that or as Unix seconds.
Every other field of the file is kept as it is, in its order. Mode 0600.

Refresh tokens rotate: the old one may stop working once a new one is issued. So
a refresh happens under an exclusive lock on the token file (``.<name>.lock``
beside it), after reading the file again: if another process refreshed the token
meanwhile, its token is used and no second refresh is made. The modules and the
inventory plugin use this same store. CMDOP's own daemon does not know that lock:
it refreshes about 5 minutes before expiry and rewrites the file. When it rotates
the pair between our read and our refresh, our refresh is refused; so after a
failed refresh the file is read once more, and a new access token found there is
used. Private to the collection.
"""

from __future__ import annotations

import json
import math
import time
import typing as t

from ansible_collections.cmdop.fleet.plugins.module_utils import _timestamps
from ansible_collections.cmdop.fleet.plugins.module_utils._files import Place, locked, read_text, resolve, write_atomically
from ansible_collections.cmdop.fleet.plugins.module_utils._json import JsonTextError, load
from ansible_collections.cmdop.fleet.plugins.module_utils._schemas import TOKEN_FILE, SchemaError, validate

# A token this close to its end counts as expired: it could lapse in flight. Well below the 5 minutes before expiry at
# which CMDOP's daemon refreshes (DAEMON_REFRESH_LEAD), so that on a host where the daemon runs, the daemon refreshes
# first and this collection finds its new token rather than spending the same refresh token.
EXPIRY_LEEWAY = 30.0
DAEMON_REFRESH_LEAD = 300.0  # CMDOP's CLI "Authentication" page: "about 5 minutes before expiry"
# How long a run waits for another one's refresh: longer than a refresh can take with the
# default timeout (30 s) and retries (4), Retry-After waits (at most 60 s each) included.
REFRESH_LOCK_TIMEOUT = 600.0
TOKEN_FILE_MODE = 0o600


class TokenFileError(ValueError):
    """The token file cannot be used. The message holds no secret."""


def parse(text: str, path: str) -> dict:
    """The token in a token file's text, checked. The message of an error holds none of the text."""
    try:
        token = load(text, "token file %s" % path)
    except JsonTextError as exc:
        raise TokenFileError("%s; log in again (cmdop login)" % exc) from None
    try:
        validate(token, TOKEN_FILE, "token file %s" % path)
    except SchemaError as exc:
        raise TokenFileError("%s; log in again (cmdop login)" % exc) from None
    return token


def expires_at(token: t.Mapping[str, t.Any]) -> t.Optional[float]:
    """When the access token ends, in Unix seconds, or None when unknown."""
    value = token.get("expires_at")
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return _timestamps.parse(str(value))
    except ValueError:
        raise TokenFileError("the token's expires_at is neither Unix seconds nor an RFC 3339 time") from None


def is_expired(token: t.Mapping[str, t.Any], now: float) -> bool:
    """Past (or within EXPIRY_LEEWAY of) ``expires_at``. A token without a known end is used until the server refuses it."""
    end = expires_at(token)
    return end is not None and now >= end - EXPIRY_LEEWAY


def secrets(token: t.Optional[t.Mapping[str, t.Any]]) -> t.List[str]:
    """The token's secret values: the access token and the refresh token."""
    if not token:
        return []
    return [value for value in (token.get("access_token"), token.get("refresh_token")) if isinstance(value, str) and value]


def refreshed(previous: t.Mapping[str, t.Any], answer: t.Mapping[str, t.Any], now: float) -> dict:
    """The token file after a refresh: the previous file's fields, each in its place, updated from the token endpoint's answer.

    - ``expires_at`` is ``now + expires_in`` as RFC 3339 UTC; an answer without
      ``expires_in`` has no known expiry, so the file then has no ``expires_at``.
    - An answer without a ``refresh_token`` keeps the previous one (the server did not rotate it).
    - ``scope`` is kept as one space-separated string; ``None`` values are dropped.
    """
    result = dict(previous)  # every field keeps its place; new ones come last
    for key, value in answer.items():
        if key == "expires_at" or value is None:
            continue  # oauthlib adds its own float expires_at; ours is computed below
        if key == "scope" and isinstance(value, (list, tuple, set, frozenset)):
            value = " ".join(sorted(value) if isinstance(value, (set, frozenset)) else value)
        result[key] = value
    expires_in = _seconds(answer.get("expires_in"))
    if expires_in is not None:
        result["expires_in"] = expires_in
        result["expires_at"] = _timestamps.format_utc(now + expires_in)
    else:
        result.pop("expires_in", None)
        result.pop("expires_at", None)
    return result


def _seconds(value: t.Any) -> t.Optional[float]:
    """``expires_in`` as a number of seconds: a JSON number, or a string of one (as some servers send it)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if isinstance(value, (int, float)) and not math.isnan(value) and abs(value) < 10 ** 10:  # not absurd
        return int(value) if float(value).is_integer() else float(value)
    return None


def serialize(token: t.Mapping[str, t.Any]) -> str:
    return json.dumps(dict(token), indent=2) + "\n"


class TokenStore:
    """One token file: load it, and refresh its token once across threads and processes.

    The file is found, locked, read and replaced as ``_files.resolve`` and
    ``_files.write_atomically`` do it (a root run never follows a user's link
    out of their files); ``unsafe_writes`` (the modules' option) lets it be
    written in place where a rename is impossible. ``on_secrets`` receives the
    secret values of every token the store reads or writes (modules register
    them with Ansible's ``no_log`` masking). A symlinked token file is rewritten
    where it really is, and the link kept.
    """

    def __init__(
        self,
        path: str,
        unsafe_writes: bool = False,
        on_secrets: t.Callable[[t.List[str]], t.Any] = lambda values: None,
        lock_timeout: float = REFRESH_LOCK_TIMEOUT,
    ) -> None:
        self.path = path
        self.unsafe_writes = unsafe_writes
        self.on_secrets = on_secrets
        self.lock_timeout = lock_timeout

    def load(self, place: t.Optional[Place] = None) -> t.Optional[dict]:
        """The token in the file (at ``place``, a ``_files.Place``, when given), or None when there is no such file."""
        text = read_text(self.path if place is None else place)
        if text is None:
            return None
        token = parse(text, self.path)
        self.on_secrets(secrets(token))
        return token

    def refresh(self, stale_access_token: str, grant: t.Callable[[dict], t.Mapping[str, t.Any]]) -> t.Tuple[dict, bool]:
        """A live token for one that was refused or has expired: ``(token, refreshed_here)``.

        Under the file's lock, the file is read again. If its access token is no
        longer ``stale_access_token``, another process has refreshed it: that token
        is returned, and ``grant`` is not called. Otherwise ``grant(token)`` trades
        the refresh token for a new pair, which is written back (0600, atomically)
        before the lock is released.

        A writer that does not take the lock (CMDOP's daemon) may rotate the pair
        while ``grant`` runs, and the server then refuses ours (``invalid_grant``).
        So when ``grant`` fails, the file is read again: if its access token changed
        since the refresh began, that token is returned and the failure is not
        reported; otherwise the failure is raised as it was.
        """
        with resolve(self.path) as place, locked(place, self.lock_timeout):
            current = self.load(place)
            if current is None:
                raise TokenFileError("token file %s disappeared while the token was being refreshed; log in again (cmdop login)" % self.path)
            if current["access_token"] != stale_access_token:
                return current, False
            try:
                answer = grant(current)
            except Exception:
                rotated = self._rotated_since(place, current["access_token"])
                if rotated is not None:
                    return rotated, False
                raise
            self.on_secrets(secrets(answer))
            token = refreshed(current, answer, time.time())
            write_atomically(place, serialize(token).encode("utf-8"), mode=TOKEN_FILE_MODE, unsafe_writes=self.unsafe_writes)
        return token, True

    def _rotated_since(self, place: Place, access_token: str) -> t.Optional[dict]:
        """The token in the file if another writer replaced ``access_token`` there, else None (also when the file
        is gone or cannot be read: then the refresh's own failure is the one to report)."""
        try:
            token = self.load(place)  # the same folder, read again by name: the daemon replaces the file by a rename
        except (TokenFileError, OSError):
            return None
        if token is None or token["access_token"] == access_token:
            return None
        return token
