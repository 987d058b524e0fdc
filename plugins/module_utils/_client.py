# -*- coding: utf-8 -*-
# Copyright (c) cmdop.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The one CMDOP HTTP client, shared by the modules and the inventory plugin.

- Every call sends ``Authorization: Bearer <credential>``.
- GETs are retried with back-off on connection errors, 429 and 5xx by urllib3's
  ``Retry``, honouring ``Retry-After`` up to a bound.
- An OAuth access token that has expired, or that the server answers 401 to, is
  refreshed once through requests-oauthlib when a refresh token is at hand,
  under the token store's lock (``_token.TokenStore``), which writes the new pair
  back at once (refresh tokens rotate: the old one may already be dead).
- Every answer is checked against its schema before anyone uses it.
- No message carries a secret: server texts are cut short and scrubbed.

Credentials, the errors and scrubbing live in ``_api``, which imports no HTTP
library (the inventory plugin loads this module only when it sends a request).

Private to the collection.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import posixpath
import time
import traceback
import typing as t
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qsl, urljoin, urlsplit

from ansible_collections.cmdop.fleet.plugins.module_utils._schemas import (
    MACHINES_PAGE,
    SchemaError,
    validate,
    validate_server_fleets,
)
from ansible_collections.cmdop.fleet.plugins.module_utils import _token
from ansible_collections.cmdop.fleet.plugins.module_utils._api import (
    CmdopError,
    Credential,
    ForbiddenError,
    NotFoundError,
    ResponseError,
    UnauthorizedError,
    scrub,
)

try:
    import requests
    from requests.adapters import HTTPAdapter
    from urllib3.exceptions import InvalidHeader, NewConnectionError, TimeoutError as Urllib3Timeout
    from urllib3.util.retry import Retry
except ImportError:
    requests = None
    HTTPAdapter = object
    Retry = object
    Urllib3Timeout = OSError
    NewConnectionError = OSError
    InvalidHeader = ValueError
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

DEFAULT_PAGE_SIZE = 200
MAX_PAGES = 10000
MAX_FLEET_PAGES = 1000
MACHINE_ORDERING = "created_at,id"  # oldest first: a machine added while the pages are read lands after them
MAX_RETRY_AFTER = 60.0  # seconds: one Retry-After is honoured up to this
RETRY_AFTER_BUDGET = 60.0  # seconds: all the Retry-After waits of one request together, however many retries
RETRY_STATUSES = (429, 500, 502, 503, 504)
# A refresh is retried only where the server cannot have used (and so rotated) the refresh token: a gateway's
# 502 or 504 may come after the origin rotated it, so only 429 and 503 (refused before any work) are retried.
REFRESH_RETRY_STATUSES = (429, 503)
USER_AGENT = "cmdop.fleet (Ansible collection)"
# Every wait between retries (a Retry-After honoured, or the back-off) is this call. A private seam: the tests give
# a function that records the waits, to prove their bounds without waiting them.
_sleep = time.sleep


class _BoundedRetry(Retry):  # type: ignore[misc,valid-type]
    """urllib3's Retry, bounded so that a server cannot stall a run for hours: one ``Retry-After`` is honoured up to
    MAX_RETRY_AFTER seconds and all of one request's together up to RETRY_AFTER_BUDGET (later ones back off as usual).
    A ``Retry-After`` that is neither seconds nor an HTTP date, or one past the budget, is ignored: the back-off is
    used, as with none.

    urllib3 makes a new Retry for each attempt (``new``) and sleeps on it, so the time waited is carried along.
    Every wait goes through ``_sleep``.
    """

    retry_after_waited = 0.0

    def new(self, **kw: t.Any) -> t.Any:
        retry = super().new(**kw)
        retry.retry_after_waited = self.retry_after_waited
        return retry

    def parse_retry_after(self, retry_after: str) -> float:
        return min(float(super().parse_retry_after(retry_after)), MAX_RETRY_AFTER)

    def get_retry_after(self, response: t.Any) -> t.Optional[float]:
        try:
            return super().get_retry_after(response)
        except InvalidHeader:
            return None

    def sleep_for_retry(self, response: t.Any = None) -> bool:
        retry_after = self.get_retry_after(response)
        if not retry_after:
            return False
        wait = min(retry_after, RETRY_AFTER_BUDGET - self.retry_after_waited)
        if wait <= 0:
            return False  # the budget is spent: the back-off, as for an answer without Retry-After
        self.retry_after_waited += wait
        _sleep(wait)
        return True

    def sleep(self, response: t.Any = None) -> None:
        """urllib3's: the Retry-After when it is honoured, else the back-off (here through ``_sleep`` as well)."""
        if self.respect_retry_after_header and response and self.sleep_for_retry(response):
            return
        backoff = self.get_backoff_time()
        if backoff > 0:
            _sleep(backoff)


def _retry(retries: int, backoff_factor: float, methods: t.Iterable[str], statuses: t.Iterable[int], read: bool = True) -> t.Any:
    """A Retry for one kind of request. ``read=False``: never resend a request the server may have acted on
    (no retry after a read error, nor after any other error, such as TLS, that may come once the body was sent)."""
    return _BoundedRetry(
        total=retries,
        read=retries if read else 0,
        other=None if read else 0,
        backoff_factor=backoff_factor,
        status_forcelist=tuple(statuses),
        allowed_methods=frozenset(methods),
        respect_retry_after_header=True,
        raise_on_status=False,
    )


def _transport_error(url: str, exc: Exception, timeout: float, secrets: t.Iterable[str]) -> CmdopError:
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
        return CmdopError("cannot reach %s: %s" % (url, scrub(reason, secrets)))
    if isinstance(exc, requests.exceptions.Timeout) or isinstance(reason, Urllib3Timeout):
        return CmdopError("%s timed out after %s seconds (and on every retry)" % (url, timeout))
    if isinstance(exc, (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError)):
        return CmdopError("the connection to %s broke while its answer was read: %s" % (url, scrub(exc, secrets)))
    if isinstance(exc, requests.exceptions.SSLError):
        return CmdopError("TLS error talking to %s: %s (see validate_certs)" % (url, scrub(exc, secrets)))
    return CmdopError("cannot reach %s: %s" % (url, scrub(exc, secrets)))


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


def error_detail(body: t.Any) -> str:
    """What an error body says, in one line: DRF's ``detail`` (a string, a list, or a map of field errors),
    a map of field errors without ``detail``, or RFC 6749's ``error`` and ``error_description``.
    Not scrubbed: callers scrub it."""
    if isinstance(body, dict) and "error" in body and isinstance(body.get("error"), str):
        description = body.get("error_description")
        return "%s: %s" % (body["error"], _flatten(description)) if description else body["error"]
    if isinstance(body, dict) and "detail" in body:
        return _flatten(body["detail"])
    return _flatten(body) if isinstance(body, (dict, list)) else ""


def _flatten(value: t.Any, depth: int = 0) -> str:
    if depth > 4:
        return "..."
    if isinstance(value, dict):
        return "; ".join("%s: %s" % (key, _flatten(item, depth + 1)) for key, item in list(value.items())[:20])
    if isinstance(value, list):
        return "; ".join(_flatten(item, depth + 1) for item in value[:20])
    return "" if value is None else str(value)


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
        self.retries = retries
        self.backoff_factor = backoff_factor
        self.max_workers = max(1, max_workers)
        self.session = self._session(_retry(retries, backoff_factor, ["GET"], RETRY_STATUSES), self.max_workers)
        self.session.headers.update({"Accept": "application/json"})

    def _session(self, retry: t.Any, pool_size: int = 1, session: t.Any = None) -> t.Any:
        session = session if session is not None else requests.Session()
        for prefix in ("https://", "http://"):
            session.mount(prefix, HTTPAdapter(max_retries=retry, pool_maxsize=pool_size))
        session.verify = self.validate_certs
        session.headers["User-Agent"] = USER_AGENT
        return session

    # ---- the API ---------------------------------------------------------

    def list_fleets(self, credential: Credential) -> t.List[dict]:
        """The user's fleets (OAuth only): a plain array, or DRF pages ``{"results": [...], "next": url}``, every page read."""
        try:
            answer = self.get_json(FLEETS_PATH, credential)
            fleets = answer
            if isinstance(answer, dict) and "results" in answer:
                fleets = self._fleet_pages(answer, credential)
        except ForbiddenError as exc:
            raise ForbiddenError(
                "%s: listing fleets requires an OAuth token, and this credential is not one (an API key?): "
                "an API key only reaches its own fleet's machines; log in with cmdop login or give an OAuth token" % exc
            ) from None
        try:
            return validate_server_fleets(fleets)
        except SchemaError as exc:
            raise ResponseError(str(exc)) from None

    def _fleet_pages(self, first: dict, credential: Credential) -> t.Any:
        results, page, seen = [], first, set()
        for number in range(1, MAX_FLEET_PAGES + 1):
            if not isinstance(page, dict) or not isinstance(page.get("results"), list):
                raise ResponseError("the server's fleet list (page %d) is not valid: it has no list of results" % number)
            results.extend(page["results"])
            link = page.get("next")
            if not link:
                return results
            path, params = self._same_api(link, "the server's fleet list (page %d)" % number)
            if (path, tuple(sorted(params.items()))) in seen:
                raise ResponseError("the server's fleet list (page %d) links to a page already read" % number)
            seen.add((path, tuple(sorted(params.items()))))
            page = self.get_json(path, credential, params=params)
        raise ResponseError("the server's fleet list has more than %d pages; this client reads no more" % MAX_FLEET_PAGES)

    def _same_api(self, link: t.Any, what: str) -> t.Tuple[str, dict]:
        """Path and query of a ``next`` link, which must point into this API. Only the path and query are used:
        the request goes to ``api_url`` whatever the link's host, so the bearer token goes nowhere else.

        The host is compared without case and with default ports filled in; a link that says ``http`` for an
        ``https`` API (Django behind a TLS proxy writes them) is read over ``https``.
        """
        if not isinstance(link, str):
            raise ResponseError("%s is not valid: next must be a URL" % what)
        base, target = urlsplit(self.api_url), urlsplit(urljoin(self.api_url + "/", link))
        try:
            same_host = (target.hostname or "") == (base.hostname or "") and _port(target) == _port(base)
        except ValueError:
            same_host = False
        downgrade = (target.scheme, base.scheme) == ("http", "https") and (target.port in (None, 80)) and base.port in (None, 443)
        same_host = same_host or (downgrade and (target.hostname or "") == (base.hostname or ""))
        path = posixpath.normpath(target.path or "/")  # no "..": it would leave the API's prefix
        if target.path.endswith("/") and not path.endswith("/"):
            path += "/"
        if not same_host or target.scheme not in ("http", "https") or not path.startswith(base.path + "/"):
            raise ResponseError("%s links its next page outside %s; not followed" % (what, self.api_url))
        return path[len(base.path):], dict(parse_qsl(target.query))

    def list_machines(self, credential: Credential, page_size: int = DEFAULT_PAGE_SIZE, max_workers: t.Optional[int] = None) -> t.List[dict]:
        """Every machine the credential can see, all pages, in an explicit order (``ordering``).

        Pages after the first are fetched concurrently; ``max_workers`` bounds this
        listing's concurrent requests (default: the client's bound). When the pages
        hold fewer distinct machines than the server counted (the fleet changed while
        it was read, and a page shifted), the listing is read once more before failing.
        """
        try:
            return self._machines(credential, page_size, max_workers)
        except _CountMismatch:
            pass
        try:
            return self._machines(credential, page_size, max_workers)
        except _CountMismatch as exc:
            raise ResponseError(
                "the machine list changed while it was read, twice (the server counted %d, its pages held %d distinct machines); run again"
                % exc.args
            ) from None

    def _machines(self, credential: Credential, page_size: int, max_workers: t.Optional[int]) -> t.List[dict]:
        first = self._machines_page(credential, 1, page_size)
        pages, count, size = first["pages"], first["count"], first.get("page_size", page_size)
        if pages > MAX_PAGES:
            raise ResponseError("the server's machine list claims %d pages, more than the %d this client reads" % (pages, MAX_PAGES))
        if pages != max(1, -(-count // size)) and not (count == 0 and pages == 0):
            raise ResponseError("the server's machine list claims %d pages for %d machines in pages of %d; not read" % (pages, count, size))
        results = list(first["results"])
        if pages > 1:
            workers = max(1, min(max_workers or self.max_workers, pages - 1))
            numbers = list(range(2, pages + 1))
            with ThreadPoolExecutor(max_workers=workers) as pool:
                # A few pages per worker at a time: a listing that goes wrong stops there, not after every page is asked for.
                for start in range(0, len(numbers), workers * 4):
                    for number, page in zip(numbers[start:start + workers * 4],
                                            pool.map(lambda number: self._machines_page(credential, number, page_size),
                                                     numbers[start:start + workers * 4])):
                        if number < pages and len(page["results"]) < size:
                            raise _CountMismatch(count, len(results) + len(page["results"]))  # a page short of the last
                        results.extend(page["results"])
        machines = list({machine["id"]: machine for machine in results}.values())
        if len(machines) < first["count"]:
            # A machine removed while the pages were read shifts the later pages back: one was skipped.
            # (One registered meanwhile lands after them, oldest first, and is simply taken.)
            raise _CountMismatch(first["count"], len(machines))
        return machines

    def _machines_page(self, credential: Credential, number: int, page_size: int) -> dict:
        page = self.get_json(MACHINES_PATH, credential, params={"page": number, "page_size": page_size, "ordering": MACHINE_ORDERING})
        what = "the server's machine list (page %d)" % number
        try:
            validate(page, MACHINES_PAGE, what)
        except SchemaError as exc:
            raise ResponseError(str(exc)) from None
        if page["page"] != number:
            raise ResponseError("%s is not valid: the server answered page %d when asked for page %d" % (what, page["page"], number))
        size = page.get("page_size", page_size)
        if len(page["results"]) > size:
            raise ResponseError("%s is not valid: it holds %d machines, more than its page size of %d" % (what, len(page["results"]), size))
        return page

    # ---- transport ---------------------------------------------------------

    def get_json(self, path: str, credential: Credential, params: t.Optional[dict] = None) -> t.Any:
        secret, token = credential.snapshot()
        if credential.can_refresh and _token.is_expired(token or {}, time.time()):
            self.refresh(credential, secret)
        sent_with = credential.secret
        response = self._get(path, credential, params)
        if response.status_code == 401 and credential.can_refresh:
            self.refresh(credential, sent_with)
            response = self._get(path, credential, params)
        return self._decode(path, response, credential)

    def _get(self, path: str, credential: Credential, params: t.Optional[dict]) -> t.Any:
        url = self.api_url + path
        try:
            return self.session.get(url, params=params, timeout=self.timeout, allow_redirects=False,
                                    headers={"Authorization": "Bearer %s" % credential.secret})
        except requests.exceptions.RequestException as exc:
            raise _transport_error(url, exc, self.timeout, credential.secrets) from None

    def _decode(self, path: str, response: t.Any, credential: Credential) -> t.Any:
        status = response.status_code
        where = "%s%s" % (self.api_url, path)
        if 200 <= status < 300:
            try:
                return response.json()
            except ValueError:
                raise ResponseError("%s answered %d with a body that is not JSON" % (where, status)) from None
            except RecursionError:
                raise ResponseError("%s answered %d with JSON nested too deeply to read" % (where, status)) from None
        if 300 <= status < 400:
            location = scrub(response.headers.get("Location", ""), credential.secrets, limit=200)
            raise CmdopError("%s answered %d, a redirect%s; redirects are not followed (the token would go along): "
                             "set api_url to the address the API answers on" % (where, status, " to %s" % location if location else ""))
        detail = self._detail(response, credential)
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
        except (ValueError, RecursionError):
            return ""
        detail = error_detail(body)
        return ": %s" % scrub(detail, credential.secrets) if detail else ""

    # ---- OAuth refresh -----------------------------------------------------

    def refresh(self, credential: Credential, stale_secret: str) -> None:
        """Trade the refresh token for a new token pair: once however many threads ask, and once however many processes
        (the token store locks the token file, and uses a token another process refreshed meanwhile)."""
        with credential.lock:
            if credential.secret != stale_secret:
                return  # another thread has refreshed it already
            if not credential.can_refresh or credential.store is None:
                raise UnauthorizedError("the access token was refused and there is no refresh token")
            token, refreshed_here = credential.store.refresh(stale_secret, lambda token: self._refresh_grant(token, credential.hidden))
            credential.use(token)
            credential.refreshed = credential.refreshed or refreshed_here

    def _refresh_grant(self, token: dict, hidden: t.Sequence[str] = ()) -> t.Mapping[str, t.Any]:
        """POST the refresh grant to the token endpoint (requests-oauthlib); the new token as the server answered it.
        ``hidden``: more secrets its messages may not show."""
        if OAuth2Session is None:
            raise CmdopError("the requests-oauthlib Python library is required to refresh the token")
        secrets = _token.secrets(token) + list(hidden)
        url = self.api_url + TOKEN_PATH
        session = self._session(_retry(self.retries, self.backoff_factor, ["POST"], REFRESH_RETRY_STATUSES, read=False),
                                session=OAuth2Session(token={key: value for key, value in token.items() if key != "expires_at"}))
        session.max_redirects = 0  # the refresh token is in the body: a redirect would carry it elsewhere
        session.register_compliance_hook("refresh_token_response", lambda response: self._refusal_or_answer(response, url, secrets))
        try:
            with self._oauthlib_transport():
                return session.refresh_token(url, refresh_token=token["refresh_token"], timeout=self.timeout, verify=self.validate_certs)
        except OAuth2Error as exc:
            reason = "%s: %s" % (exc.error, exc.description) if getattr(exc, "description", None) else exc.error
            raise UnauthorizedError("the server refused to refresh the token (%s)" % scrub(reason, secrets)) from None
        except requests.exceptions.RequestException as exc:
            raise _transport_error(url, exc, self.timeout, secrets) from None
        except (ValueError, KeyError, TypeError, RecursionError) as exc:
            raise ResponseError("the token endpoint answered something that is not a token (%s)" % type(exc).__name__) from None
        finally:
            session.close()

    @staticmethod
    def _refusal_or_answer(response: t.Any, url: str, secrets: t.List[str]) -> t.Any:
        """Before oauthlib reads a token answer: a server error is not a refusal (no new login is needed), so say so."""
        status = response.status_code
        if status >= 500 or status == 429:
            try:
                detail = error_detail(response.json())
            except (ValueError, RecursionError):
                detail = ""
            raise CmdopError("%s answered %d while refreshing the token%s, after retrying; the token was kept, try again later"
                             % (url, status, " (%s)" % scrub(detail, secrets) if detail else ""))
        return response

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


def _port(parts: t.Any) -> int:
    return parts.port or (443 if parts.scheme == "https" else 80)


class _CountMismatch(Exception):
    """The pages of a listing held another number of distinct machines than the server counted."""
