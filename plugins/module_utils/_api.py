# -*- coding: utf-8 -*-
# Copyright (c) cmdop.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What the CMDOP client's callers use without the HTTP libraries: credentials, the client's errors, scrubbing.

``_client`` imports requests, urllib3 and requests-oauthlib; this module imports
none of them, so the inventory plugin can plan, read its cache and report errors
without loading them (a cache hit never sends a request). ``_client`` re-exports
these names. Private to the collection.
"""

from __future__ import annotations

import math
import threading
import typing as t

from ansible_collections.cmdop.fleet.plugins.module_utils import _token

OAUTH = "oauth"
API_KEY = "api_key"


class CmdopError(Exception):
    """A failure talking to CMDOP. The message is fit for a user and holds no secret."""


class UnauthorizedError(CmdopError):
    """401: the credential is missing, wrong or expired, and could not be refreshed."""


class ForbiddenError(CmdopError):
    """403: the credential is valid but may not do this (an API key listing fleets)."""


class NotFoundError(CmdopError):
    """404."""


class ResponseError(CmdopError):
    """The server answered something that is not the documented shape."""


class Credential:
    """A bearer credential: an OAuth token or a fleet API key.

    An OAuth credential read from a token file (``from_store``) can be refreshed
    when its token holds a refresh token: the store serializes refreshes across
    processes and writes the new pair back.
    """

    def __init__(self, secret: str, kind: str, store: t.Optional[_token.TokenStore] = None, token: t.Optional[dict] = None) -> None:
        self.secret = secret
        self.kind = kind
        self.store = store
        self.token = token
        self.refreshed = False
        self.hidden: t.List[str] = []  # other secrets no message may show (a fleet file's API keys)
        self.lock = threading.Lock()  # one refresh at a time
        self._swap = threading.Lock()  # the secret and its token change together

    @classmethod
    def from_store(cls, store: _token.TokenStore) -> t.Optional["Credential"]:
        """The OAuth credential in a token file, or None when there is no such file."""
        token = store.load()
        if token is None:
            return None
        return cls(token["access_token"], OAUTH, store=store, token=token)

    @property
    def can_refresh(self) -> bool:
        return bool(self.store is not None and self.token and self.token.get("refresh_token"))

    @property
    def secrets(self) -> t.List[str]:
        """What no message may show: the credential's own secrets, and ``hidden``."""
        return (_token.secrets(self.token) if self.token else [self.secret]) + self.hidden

    def use(self, token: dict) -> None:
        with self._swap:
            self.token = token
            self.secret = token["access_token"]

    def snapshot(self) -> t.Tuple[str, t.Optional[dict]]:
        """The secret and the token it belongs to, read together (another thread may be refreshing)."""
        with self._swap:
            return self.secret, self.token


SCRUBBED = "<secret>"  # not Ansible's "********", so a test can tell this masking from no_log's


def scrub(text: t.Any, secrets: t.Iterable[str], limit: int = 300) -> str:
    """Text from elsewhere (a server, an exception), safe to show: secrets masked, control characters dropped, cut short."""
    text = str(text)
    for secret in sorted((secret for secret in secrets if secret), key=len, reverse=True):
        text = text.replace(secret, SCRUBBED)
    text = "".join(char if char.isprintable() else " " for char in text)
    return text if len(text) <= limit else text[:limit] + "..."


# The numeric options every module and the inventory read, and their bounds: name -> (lowest, highest, whether the lowest
# is allowed itself). Checked where they are read (``check_number``), so a value out of range is the collection's own
# one-line message, not a library's error or a traceback.
API_NUMBERS: t.Dict[str, t.Tuple[float, float, bool]] = {
    "timeout": (0, 3600, False),  # seconds for each HTTP answer
    "retries": (0, 100, True),
}


def check_number(name: str, value: t.Any, low: float, high: float, low_included: bool = True) -> None:
    """Raise ``CmdopError`` unless ``value`` is a finite number from ``low`` (or more than it) to ``high``."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not (number and (value >= low if low_included else value > low) and value <= high):
        raise CmdopError("%s must be %s %s and at most %s, not %r" % (name, "at least" if low_included else "more than", low, high, value))


def check_api_numbers(value_of: t.Callable[[str], t.Any]) -> None:
    """``check_number`` for each of ``API_NUMBERS``; ``value_of`` reads an option."""
    for name, (low, high, low_included) in API_NUMBERS.items():
        check_number(name, value_of(name), low, high, low_included)


def check_no_user_info(api_url: str) -> str:
    """``api_url`` as it is, unless it holds user info (``https://user:password@host``), which is refused.

    A credential belongs in ``token``, ``token_file`` or ``api_key``, never in a URL that error messages, logs and
    Ansible's ``invocation`` show. The message does not show the URL. Any ``@`` counts: a base URL has no need of one,
    and a password with a ``/`` in it would otherwise end up in the URL's path.
    """
    if "@" in api_url:
        raise CmdopError("api_url must not hold a user name or password (user:password@ before the host); give the credential as "
                         "token, token_file or api_key (the URL is not shown here)")
    return api_url
