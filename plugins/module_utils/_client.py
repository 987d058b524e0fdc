# -*- coding: utf-8 -*-
# Copyright (c) cmdop.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The one CMDOP HTTP client, shared by the modules and the inventory plugin.

- Every call sends ``Authorization: Bearer <credential>``.
- GETs are retried with back-off on connection errors, 429 and 5xx by urllib3's
  ``Retry``, honouring ``Retry-After`` up to a bound.
- An OAuth access token that has expired, or that the server answers 401 to, is
  refreshed once through requests-oauthlib when a refresh token is at hand; the
  new token is handed to the credential's ``save`` at once (refresh tokens
  rotate: the old one may already be dead).
- Every answer is checked against its schema before anyone uses it.
- No message carries a secret: server texts are cut short and scrubbed.

Private to the collection.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import threading
import time
import traceback
import typing as t
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

from ansible_collections.cmdop.fleet.plugins.module_utils._schemas import (
    MACHINES_PAGE,
    SchemaError,
    validate,
    validate_server_fleets,
)
from ansible_collections.cmdop.fleet.plugins.module_utils import _token

try:
    import requests
    from requests.adapters import HTTPAdapter
    from urllib3.exceptions import NewConnectionError, TimeoutError as Urllib3Timeout
    from urllib3.util.retry import Retry
except ImportError:
    requests = None
    HTTPAdapter = object
    Retry = object
    Urllib3Timeout = OSError
    NewConnectionError = OSError
    REQUESTS_IMPORT_ERROR: t.Optional[str] = traceback.format_exc()
else:
    REQUESTS_IMPORT_ERROR = None

try:
    from oauthlib.oauth2 import OAuth2Error
    from requests_oauthlib import OAuth2Session
except ImportError:
    OAuth2Session = None

    class OAuth2Error(Exception):  # type: ignore[no-redef]
        """Stands in for oauthlib's error class when oauthlib is missing."""

        error = ""

    REQUESTS_OAUTHLIB_IMPORT_ERROR: t.Optional[str] = traceback.format_exc()
else:
    REQUESTS_OAUTHLIB_IMPORT_ERROR = None

FLEETS_PATH = "/api/workspaces/workspaces/"
MACHINES_PATH = "/api/machines/machines/"
TOKEN_PATH = "/api/system/oauth/token/"

OAUTH = "oauth"
API_KEY = "api_key"

DEFAULT_PAGE_SIZE = 200
MAX_PAGES = 10000
MAX_RETRY_AFTER = 60.0
RETRY_STATUSES = (429, 500, 502, 503, 504)
USER_AGENT = "cmdop.fleet (Ansible collection)"


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

    An OAuth credential built from a token dict with a ``refresh_token`` and a
    ``save`` callback can be refreshed; ``save`` receives the new token dict.
    """

    def __init__(self, secret: str, kind: str, token: t.Optional[dict] = None, save: t.Optional[t.Callable[[dict], None]] = None) -> None:
        self.secret = secret
        self.kind = kind
        self.token = token
        self.save = save
        self.refreshed = False
        self.lock = threading.Lock()

    @classmethod
    def from_token(cls, token: dict, save: t.Optional[t.Callable[[dict], None]] = None) -> "Credential":
        return cls(token["access_token"], OAUTH, token=dict(token), save=save)

    @property
    def can_refresh(self) -> bool:
        return bool(self.token and self.token.get("refresh_token") and self.save)

    @property
    def secrets(self) -> t.List[str]:
        values = [self.secret]
        if self.token and self.token.get("refresh_token"):
            values.append(self.token["refresh_token"])
        return [value for value in values if value]


def credential_from_token_file(
    path: str, move: t.Callable[[str, str], t.Any], register_secrets: t.Callable[[t.Iterable[str]], t.Any]
) -> t.Optional[Credential]:
    """The OAuth credential in a token file, or None when there is no such file.

    ``register_secrets`` receives its secrets now and a refreshed token's when it
    comes; a refreshed token is written back to ``path`` atomically (0600) with ``move``.
    """
    token = _token.load(path)
    if token is None:
        return None

    def save(new_token: dict) -> None:
        register_secrets(Credential.from_token(new_token).secrets)
        _token.save(path, new_token, move=move)

    credential = Credential.from_token(token, save=save)
    register_secrets(credential.secrets)
    return credential


class _BoundedRetry(Retry):  # type: ignore[misc,valid-type]
    """urllib3's Retry, with ``Retry-After`` capped so a server cannot stall a run for hours."""

    def parse_retry_after(self, retry_after: str) -> float:
        return min(float(super().parse_retry_after(retry_after)), MAX_RETRY_AFTER)


def scrub(text: t.Any, secrets: t.Iterable[str], limit: int = 300) -> str:
    """Text from elsewhere (a server, an exception), safe to show: secrets masked, control characters dropped, cut short."""
    text = str(text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "********")
    text = "".join(char if char.isprintable() else " " for char in text)
    return text if len(text) <= limit else text[:limit] + "..."


def _transport_error(url: str, exc: Exception, timeout: float, credential: Credential) -> CmdopError:
    """A user's message for a request that got no answer. With retries, urllib3 wraps the cause in MaxRetryError.

    urllib3's NewConnectionError (no connection made: refused, no route, unknown host) is a subclass of its
    timeout error, so it is told apart first; the socket's own error is in its exception chain.
    """
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    if isinstance(reason, NewConnectionError):
        cause: t.Optional[BaseException] = reason
        while cause is not None and not isinstance(cause, ConnectionRefusedError):
            cause = cause.__cause__ or cause.__context__
        if cause is not None:
            return CmdopError("%s: connection refused (and on every retry)" % url)
        return CmdopError("cannot reach %s: %s" % (url, scrub(reason, credential.secrets)))
    if isinstance(exc, requests.exceptions.Timeout) or isinstance(reason, Urllib3Timeout):
        return CmdopError("%s timed out after %s seconds (and on every retry)" % (url, timeout))
    if isinstance(exc, requests.exceptions.SSLError):
        return CmdopError("TLS error talking to %s: %s (see validate_certs)" % (url, scrub(exc, credential.secrets)))
    return CmdopError("cannot reach %s: %s" % (url, scrub(exc, credential.secrets)))


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_api_url(api_url: str) -> str:
    """The base URL without a trailing slash; plain HTTP is accepted for loopback hosts only."""
    parts = urlsplit(api_url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise CmdopError("api_url %r is not an http(s) URL" % api_url)
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise CmdopError("api_url %s: credentials are only sent over HTTPS (plain HTTP is accepted for localhost only)" % api_url)
    return api_url.rstrip("/")


class CmdopClient:
    """A small JSON client for the CMDOP API."""

    def __init__(
        self,
        api_url: str,
        timeout: float = 30.0,
        validate_certs: bool = True,
        retries: int = 4,
        backoff_factor: float = 0.5,
        max_workers: int = 4,
    ) -> None:
        if requests is None:
            raise CmdopError("the requests Python library is required")
        self.api_url = check_api_url(api_url)
        self.timeout = timeout
        self.validate_certs = validate_certs
        self.max_workers = max(1, max_workers)
        retry = _BoundedRetry(
            total=retries,
            backoff_factor=backoff_factor,
            status_forcelist=RETRY_STATUSES,
            allowed_methods=frozenset(["GET"]),
            respect_retry_after_header=True,
            raise_on_status=False,
        )
        self.session = requests.Session()
        self.session.mount("https://", HTTPAdapter(max_retries=retry, pool_maxsize=self.max_workers))
        self.session.mount("http://", HTTPAdapter(max_retries=retry, pool_maxsize=self.max_workers))
        self.session.verify = validate_certs
        self.session.headers.update({"Accept": "application/json", "User-Agent": USER_AGENT})

    # ---- the API ---------------------------------------------------------

    def list_fleets(self, credential: Credential) -> t.List[dict]:
        """The user's fleets (OAuth only)."""
        try:
            fleets = self.get_json(FLEETS_PATH, credential)
        except ForbiddenError as exc:
            raise ForbiddenError(
                "%s: listing fleets requires an OAuth token, and this credential is not one (an API key?): "
                "an API key only reaches its own fleet's machines; log in with cmdop login or give an OAuth token" % exc
            ) from None
        try:
            return validate_server_fleets(fleets)
        except SchemaError as exc:
            raise ResponseError(str(exc)) from None

    def list_machines(self, credential: Credential, page_size: int = DEFAULT_PAGE_SIZE, max_workers: t.Optional[int] = None) -> t.List[dict]:
        """Every machine the credential can see, all pages; pages after the first are fetched concurrently.

        ``max_workers`` bounds this listing's concurrent requests (default: the client's bound); a caller that runs
        several listings at once divides the client's bound between them.
        """
        first = self._machines_page(credential, 1, page_size)
        pages = first["pages"]
        if pages > MAX_PAGES:
            raise ResponseError("the server's machine list claims %d pages, more than the %d this client reads" % (pages, MAX_PAGES))
        results = list(first["results"])
        if pages > 1:
            with ThreadPoolExecutor(max_workers=max(1, min(max_workers or self.max_workers, pages - 1))) as pool:
                for page in pool.map(lambda number: self._machines_page(credential, number, page_size), range(2, pages + 1)):
                    results.extend(page["results"])
        machines = list({machine["id"]: machine for machine in results}.values())
        if len(machines) != first["count"]:
            raise ResponseError(
                "the machine list changed while it was read (the server counted %d, its pages held %d distinct machines); run again"
                % (first["count"], len(machines))
            )
        return machines

    def _machines_page(self, credential: Credential, number: int, page_size: int) -> dict:
        page = self.get_json(MACHINES_PATH, credential, params={"page": number, "page_size": page_size})
        try:
            validate(page, MACHINES_PAGE, "the server's machine list (page %d)" % number)
        except SchemaError as exc:
            raise ResponseError(str(exc)) from None
        return page

    # ---- transport ---------------------------------------------------------

    def get_json(self, path: str, credential: Credential, params: t.Optional[dict] = None) -> t.Any:
        if credential.can_refresh and _token.is_expired(credential.token or {}, time.time()):
            self.refresh(credential, credential.secret)
        sent_with = credential.secret
        response = self._get(path, credential, params)
        if response.status_code == 401 and credential.can_refresh:
            self.refresh(credential, sent_with)
            response = self._get(path, credential, params)
        return self._decode(path, response, credential)

    def _get(self, path: str, credential: Credential, params: t.Optional[dict]) -> t.Any:
        url = self.api_url + path
        try:
            return self.session.get(url, params=params, timeout=self.timeout, headers={"Authorization": "Bearer %s" % credential.secret})
        except requests.exceptions.RequestException as exc:
            raise _transport_error(url, exc, self.timeout, credential) from None

    def _decode(self, path: str, response: t.Any, credential: Credential) -> t.Any:
        status = response.status_code
        if 200 <= status < 300:
            try:
                return response.json()
            except ValueError:
                raise ResponseError("%s%s answered %d with a body that is not JSON" % (self.api_url, path, status)) from None
        detail = self._detail(response, credential)
        where = "%s%s" % (self.api_url, path)
        if status == 401:
            raise UnauthorizedError("%s answered 401 Unauthorized%s" % (where, detail))
        if status == 403:
            raise ForbiddenError("%s answered 403 Forbidden%s" % (where, detail))
        if status == 404:
            raise NotFoundError("%s answered 404 Not Found%s" % (where, detail))
        if status in RETRY_STATUSES:
            raise CmdopError("%s answered %d%s, and still did after retrying with back-off" % (where, status, detail))
        raise CmdopError("%s answered %d%s" % (where, status, detail))

    @staticmethod
    def _detail(response: t.Any, credential: Credential) -> str:
        try:
            body = response.json()
        except ValueError:
            return ""
        detail = body.get("detail") if isinstance(body, dict) else None
        return ": %s" % scrub(detail, credential.secrets) if detail else ""

    # ---- OAuth refresh -----------------------------------------------------

    def refresh(self, credential: Credential, stale_secret: str) -> None:
        """Trade the refresh token for a new token pair, once, however many threads ask."""
        with credential.lock:
            if credential.secret != stale_secret:
                return  # another thread has refreshed it already
            if not credential.can_refresh:
                raise UnauthorizedError("the access token was refused and there is no refresh token")
            if OAuth2Session is None:
                raise CmdopError("the requests-oauthlib Python library is required to refresh the token")
            token = credential.token or {}
            session = OAuth2Session(token=token)
            session.headers["User-Agent"] = USER_AGENT
            try:
                with self._oauthlib_transport():
                    new_token = session.refresh_token(
                        self.api_url + TOKEN_PATH,
                        refresh_token=token["refresh_token"],
                        timeout=self.timeout,
                        verify=self.validate_certs,
                    )
            except OAuth2Error as exc:
                raise UnauthorizedError("the server refused to refresh the token (%s)" % scrub(exc.error, credential.secrets)) from None
            except requests.exceptions.RequestException as exc:
                raise CmdopError("cannot refresh the token: %s" % scrub(exc, credential.secrets)) from None
            except (ValueError, KeyError, TypeError) as exc:
                raise ResponseError("the token endpoint answered something that is not a token (%s)" % type(exc).__name__) from None
            finally:
                session.close()
            merged = dict(token)
            merged.update(dict(new_token))
            credential.token = merged
            credential.secret = merged["access_token"]
            credential.refreshed = True
            credential.save(merged)

    @contextlib.contextmanager
    def _oauthlib_transport(self) -> t.Iterator[None]:
        """oauthlib refuses plain HTTP; check_api_url already limited that to loopback, so allow it there."""
        if not self.api_url.startswith("http://"):
            yield
            return
        previous = os.environ.get("OAUTHLIB_INSECURE_TRANSPORT")
        os.environ["OAUTHLIB_INSECURE_TRANSPORT"] = "1"
        try:
            yield
        finally:
            if previous is None:
                del os.environ["OAUTHLIB_INSECURE_TRANSPORT"]
            else:
                os.environ["OAUTHLIB_INSECURE_TRANSPORT"] = previous
