"""CMDOP API emulator: a real HTTP server on localhost for integration tests and demos.

It serves the subset of the CMDOP REST API described in the project's contract
(fleets, machines, the OAuth device flow and refresh) from an in-memory state
seeded from a JSON file, plus an unauthenticated ``/_admin/`` API that tests use
to change the state, mint and expire tokens, approve device codes, inject faults
and read the request log.

OAuth is served by oauthlib's server side (``DeviceAuthorizationEndpoint``,
``TokenEndpoint`` with ``DeviceCodeGrant`` and ``RefreshTokenGrant``,
``BearerToken``); this module only implements the ``RequestValidator``.

Settings (seed ``"settings": {...}`` and ``POST /_admin/settings``; see ``DEFAULT_SETTINGS``):

- ``device_interval``, ``device_expires_in``, ``token_expires_in``: numbers of seconds.
- ``fleets_page_size`` (int, default 0): 0 answers ``GET /api/workspaces/workspaces/`` with a plain
  JSON array (the published schema); N > 0 answers Django REST framework ``PageNumberPagination``
  pages ``{"count": C, "next": URL|null, "previous": URL|null, "results": [...]}`` of N fleets,
  selected with ``?page=K`` (default 1; out of range: 404 ``{"detail": "Invalid page."}``). The
  URLs are absolute, on the base URL the emulator printed, and keep the other query parameters.
- ``token_expires_in_omitted`` (bool, default false): when true, the token endpoint's answers (device
  code and refresh grants) and ``POST /_admin/tokens`` leave out ``expires_in``; the token still
  expires ``token_expires_in`` seconds after it was issued. ``POST /_admin/tokens`` also takes
  ``"omit_expires_in": true|false`` for one token, whatever the setting.

Faults (``POST /_admin/faults``, one JSON object; ``GET`` lists them, ``DELETE`` drops them all). Each
public API request takes the first queued fault whose ``path`` is a prefix of the request path:

- ``path`` (default ``/``), ``count`` (default 1): the next ``count`` matching requests take the fault.
- ``skip`` (default 0): the first ``skip`` matching requests pass the fault by untouched (and may take
  a later fault); ``"skip": 1`` means "on the 2nd matching request".
- ``status``, ``body`` (a string sent as is), ``content_type`` (of ``body``; default
  ``application/json``), ``headers`` (an object of extra response headers, e.g. a non-numeric
  ``Retry-After`` or a ``Location``; they win over the others), ``retry_after`` (int seconds; a 429
  without one gets ``Retry-After: 1``): with a status or a body the fault replaces the answer
  (status alone: ``{"detail": "Injected fault (HTTP N)."}``; body alone: status 200). ``headers``
  without a status or body are added to the real answer.
- ``delay`` (seconds): wait before answering.
- ``cut_after`` (bytes): the answer (the fault's or the real one) is sent with the headers of its whole
  body, then only its first ``cut_after`` bytes, and the connection is reset (a connection lost mid-body).
- ``add_machine`` (a machine object as ``POST /_admin/machines`` takes; checked and given an ``id``
  when queued) and ``delete_machine`` (a machine id): change the fleet when the fault is taken,
  before that request is answered; with no status or body the request then gets its real answer,
  which already shows the change. Such a fault needs ``count`` 1. If the change is no longer possible
  when taken, that request is answered 500 with a detail saying why.

The CLI's daemon (``POST /_admin/daemon`` {token_file, write?}; ``GET`` says whether it is armed and what it did):
CMDOP's daemon refreshes the token "about 5 minutes before expiry" and rewrites the token file, without any lock a
client could share. Armed, the emulator plays that daemon once, deterministically between a run's read of the token
file and its refresh: when the next refresh grant reaches the token endpoint, the daemon first spends the refresh
token in ``token_file`` through the same endpoint (so that refresh token is rotated away), writes the new pair there
as the CLI would (the answer plus an RFC 3339 ``expires_at``; atomically, 0600, the file's owner kept), and only then
is the incoming request answered: refused with ``invalid_grant``, as the real server refuses a rotated refresh token.
``"write": false`` is a daemon that rotates the pair and dies before writing it: the file keeps the spent pair.

Run as a script::

    python tests/emulator/cmdop_emulator.py --seed SEED.json [--host 127.0.0.1] [--port 0]

It prints ``CMDOP emulator listening on http://HOST:PORT`` once bound and serves
until SIGTERM or SIGINT. From Python, ``start_in_thread(seed)`` returns
``(server, base_url)``; ``server.shutdown()`` stops it.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import signal
import socket
import ssl
import struct
import sys
import threading
import time
import traceback
import typing as t
import uuid
from collections import deque
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import chain
from types import SimpleNamespace
from urllib.parse import parse_qsl, urlencode, urlsplit

from oauthlib.common import Request as OAuthRequest, generate_token
from oauthlib.oauth2 import (
    BearerToken,
    DeviceAuthorizationEndpoint,
    DeviceCodeGrant,
    InvalidRequestError,
    OAuth2Error,
    RefreshTokenGrant,
    TokenEndpoint,
)
from oauthlib.oauth2.rfc8628.request_validator import RequestValidator

Json = dict[str, t.Any]

SCOPE = "workspace:access"
DEVICE_GRANT_TYPE = "urn:ietf:params:oauth:grant-type:device_code"
REFRESH_GRANT_TYPE = "refresh_token"
PUBLIC_CLIENT_ID = "cmdop-cli"
ACCESS_TOKEN_PREFIX = "cmdop_"
REFRESH_TOKEN_PREFIX = "clitr_"
USER_CODE_CHARS = "BCDFGHJKLMNPQRSTVWXZ"
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
DEFAULT_TIMESTAMP = "2026-01-01T00:00:00Z"
DEFAULT_SETTINGS: dict[str, float | bool] = {
    "device_interval": 5,  # seconds a device must wait between polls (else slow_down)
    "device_expires_in": 600,  # lifetime of a device_code / user_code
    "token_expires_in": 3600,  # lifetime of access tokens issued by the token endpoint
    "fleets_page_size": 0,  # 0: the fleet list is a plain array; N > 0: DRF pages of N fleets
    "token_expires_in_omitted": False,  # token answers leave out expires_in (tokens still expire)
}
SETTING_KINDS: dict[str, type | tuple[type, ...]] = {
    "device_interval": (int, float),
    "device_expires_in": (int, float),
    "token_expires_in": (int, float),
    "fleets_page_size": int,
    "token_expires_in_omitted": bool,
}
PUBLIC_FLEET_FIELDS = ("id", "name", "slug", "type", "plan", "created_at")
UPDATABLE_FLEET_FIELDS = ("name", "slug", "type", "plan", "created_at", "members", "api_keys")
MACHINE_DEFAULTS: Json = {
    "os": "linux",
    "os_version": "",
    "kernel_version": "",
    "architecture": "x86_64",
    "device_type": "server",
    "heartbeat_age_seconds": 0,
    "last_seen": DEFAULT_TIMESTAMP,
    "created_at": DEFAULT_TIMESTAMP,
    "agent_version": "1.0.0",
    "has_shell": True,
    "public_ip": None,
    "username": "root",
    "is_root": True,
    "home_dir": "/root",
    "cpu_count": 2,
    "total_ram_bytes": 4294967296,
}
MACHINE_ORDERING_FIELDS = frozenset((
    "id", "workspace", "workspace_name", "name", "hostname", "os", "os_version", "kernel_version", "architecture",
    "device_type", "status", "is_online", "heartbeat_age_seconds", "last_seen", "created_at", "agent_version",
    "has_shell", "public_ip", "username", "is_root", "home_dir", "cpu_count", "total_ram_bytes",
))  # ours: which fields CMDOP accepts in ?ordering= is unpublished
DETAIL_NO_CREDENTIALS = "Authentication credentials were not provided."
DETAIL_INVALID_TOKEN = "Invalid token."
DETAIL_EXPIRED_TOKEN = "Token has expired."

T = t.TypeVar("T")


class ApiError(Exception):
    """An error answered as ``{"detail": ...}`` with an HTTP status."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}

    def response(self) -> Response:
        """The HTTP response for this error."""
        return json_response(self.status, {"detail": self.detail}, self.headers)


@dataclass
class Response:
    """An HTTP response: status, raw body and extra headers."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    cut_after: int | None = None  # send only this many bytes of the body, then reset the connection


def json_response(status: int, payload: t.Any, headers: dict[str, str] | None = None) -> Response:
    """A JSON response."""
    all_headers = {"Content-Type": "application/json"}
    all_headers.update(headers or {})
    return Response(status, json.dumps(payload).encode("utf-8"), all_headers)


@dataclass
class HttpRequest:
    """An incoming HTTP request, independent of http.server."""

    method: str
    target: str
    headers: t.Mapping[str, str]
    body: bytes = b""
    base_url: str = ""
    credential: Credential | None = None

    @property
    def path(self) -> str:
        """The path without the query string."""
        return urlsplit(self.target).path

    @property
    def query(self) -> dict[str, str]:
        """The query string as a dict (the first value of repeated keys wins)."""
        pairs = parse_qsl(urlsplit(self.target).query, keep_blank_values=True)
        return dict(reversed(pairs))

    @property
    def url(self) -> str:
        """The absolute URL of the request."""
        return self.base_url + self.target

    @property
    def content_type(self) -> str:
        """The media type of the body, lower case, without parameters."""
        return (self.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()

    def json(self) -> Json:
        """The body as a JSON object (an empty body is ``{}``)."""
        if not self.body.strip():
            return {}
        try:
            data = json.loads(self.body)
        except ValueError:
            raise ApiError(400, "Malformed JSON body.") from None
        if not isinstance(data, dict):
            raise ApiError(400, "Expected a JSON object.")
        return data


@dataclass(frozen=True)
class Credential:
    """Who is calling: the kind of credential and what it grants."""

    kind: str  # "oauth", "api_key", "none" or "invalid"
    user: str | None = None
    fleet: str | None = None
    expired: bool = False


HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
FRAMING_HEADERS = frozenset(("content-length", "transfer-encoding", "connection"))  # the server writes these


def set_headers(response: Response, headers: t.Mapping[str, str]) -> None:
    """Set headers on a response, replacing any of the same name in another letter case."""
    for name, value in headers.items():
        for existing in [key for key in response.headers if key.lower() == name.lower()]:
            del response.headers[existing]
        response.headers[name] = value


def header_map(data: Json, key: str) -> dict[str, str]:
    """``data[key]`` as extra response headers: an object of header names to strings (or integers)."""
    headers = optional(data, key, dict, {})
    checked = {}
    for name, value in headers.items():
        if not HEADER_NAME.fullmatch(name) or name.lower() in FRAMING_HEADERS:
            raise ApiError(400, "%r: %r is not a header a fault can set." % (key, name))
        if isinstance(value, bool) or not isinstance(value, (str, int)) or "\r" in str(value) or "\n" in str(value):
            raise ApiError(400, "%r: the value of %r must be a one-line string." % (key, name))
        checked[name] = str(value)
    return checked


@dataclass
class Fault:  # pylint: disable=too-many-instance-attributes
    """An injected fault for the next ``count`` requests whose path starts with ``path``, after ``skip`` of them.

    It may replace the answer (``status``, ``body`` with ``content_type``, ``headers``, ``retry_after``),
    delay it (``delay``), add headers to the real answer (``headers`` alone), and change the fleet
    before the request is answered (``add_machine``, ``delete_machine``).
    """

    path: str
    count: int = 1
    skip: int = 0
    status: int | None = None
    body: str | None = None
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    retry_after: int | None = None
    delay: float = 0.0
    add_machine: Json | None = None
    delete_machine: str | None = None
    cut_after: int | None = None

    FIELDS: t.ClassVar[tuple[str, ...]] = (
        "path", "count", "skip", "status", "body", "content_type", "headers", "retry_after", "delay",
        "add_machine", "delete_machine", "cut_after",
    )

    @classmethod
    def from_json(cls, data: Json) -> Fault:
        """A fault from its admin API form, checked (400 with a detail saying what is wrong)."""
        unknown = sorted(set(data) - set(cls.FIELDS))
        if unknown:
            raise ApiError(400, "Unknown fault field(s): %s (known: %s)." % (", ".join(unknown), ", ".join(cls.FIELDS)))
        fault = cls(
            path=optional(data, "path", str, "/"),
            count=optional(data, "count", int, 1),
            skip=optional(data, "skip", int, 0),
            status=optional(data, "status", int),
            body=optional(data, "body", str),
            content_type=optional(data, "content_type", str),
            headers=header_map(data, "headers"),
            retry_after=optional(data, "retry_after", int),
            delay=float(optional(data, "delay", (int, float), 0.0)),
            add_machine=optional(data, "add_machine", dict),
            delete_machine=optional(data, "delete_machine", str),
            cut_after=optional(data, "cut_after", int),
        )
        fault.check()
        if fault.status == 429 and fault.retry_after is None and not any(
                name.lower() == "retry-after" for name in fault.headers):
            fault.retry_after = 1
        return fault

    def check(self) -> None:
        """Refuse a fault that is inconsistent or would do nothing."""
        problems = [
            (not self.path.startswith("/") or self.path.startswith("/_admin"),
             "'path' must start with '/' and name the public API (the admin API is never faulted)."),
            (self.count < 1, "'count' must be >= 1."),
            (self.skip < 0, "'skip' must be >= 0."),
            (self.status is not None and not 100 <= self.status <= 599, "'status' must be an HTTP status (100-599)."),
            (self.delay < 0, "'delay' must be >= 0."),
            (self.retry_after is not None and self.retry_after < 0, "'retry_after' must be >= 0."),
            (self.cut_after is not None and self.cut_after < 0, "'cut_after' must be >= 0."),
            (self.content_type is not None and (self.body is None or not self.content_type.strip()
                                                or "\r" in self.content_type or "\n" in self.content_type),
             "'content_type' is the media type of 'body': give a 'body' and a one-line 'content_type'."),
            (self.churns and self.count != 1,
             "'add_machine' and 'delete_machine' change the fleet once: use count 1 (one fault per change)."),
            (not (self.responds or self.delay > 0 or self.headers or self.churns or self.cut_after is not None),
             "A fault needs a status, a body, a delay, headers, cut_after, add_machine or delete_machine."),
        ]
        for failed, detail in problems:
            if failed:
                raise ApiError(400, detail)

    @property
    def responds(self) -> bool:
        """True when the fault replaces the answer (not only delays it or changes the fleet)."""
        return self.status is not None or self.body is not None

    @property
    def churns(self) -> bool:
        """True when the fault adds or deletes a machine."""
        return self.add_machine is not None or self.delete_machine is not None

    def response(self) -> Response:
        """The answer that replaces the normal one."""
        status = self.status if self.status is not None else 200
        if self.body is not None:
            response = Response(status, self.body.encode("utf-8"), {"Content-Type": self.content_type or "application/json"})
        else:
            response = json_response(status, {"detail": "Injected fault (HTTP %d)." % status})
        self.add_headers(response)
        return response

    def add_headers(self, response: Response) -> None:
        """Set ``Retry-After`` (from ``retry_after``) and ``headers`` on a response (``headers`` win), and ``cut_after``."""
        response.cut_after = self.cut_after
        if self.retry_after is not None:
            set_headers(response, {"Retry-After": str(self.retry_after)})
        set_headers(response, self.headers)

    def as_dict(self) -> Json:
        """JSON form, for the admin API."""
        return asdict(self)


def locked(method: t.Callable[..., T]) -> t.Callable[..., T]:
    """Run a ``Store`` method while holding the store's lock."""

    @functools.wraps(method)
    def wrapper(self: Store, *args: t.Any, **kwargs: t.Any) -> T:
        with self.lock:
            return method(self, *args, **kwargs)

    return wrapper


JSON_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "a boolean", dict: "an object", list: "an array"}


def require(data: Json, key: str, kind: type | tuple[type, ...] = str) -> t.Any:
    """``data[key]``, which must be present and of the given type (else 400 naming the expected JSON type)."""
    value = data.get(key)
    if value is None or not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        kinds = kind if isinstance(kind, tuple) else (kind,)
        expected = " or ".join(JSON_TYPE_NAMES.get(each, each.__name__) for each in kinds)
        raise ApiError(400, "Missing or invalid %r (expected %s)." % (key, expected))
    return value


def optional(data: Json, key: str, kind: type | tuple[type, ...], default: t.Any = None) -> t.Any:
    """``data[key]`` if present (it must then be of the given type), else ``default``."""
    if data.get(key) is None:
        return default
    return require(data, key, kind)


def objects(data: Json, key: str) -> list[Json]:
    """``data[key]``, which must be a list of JSON objects if present."""
    items = optional(data, key, list, [])
    if not all(isinstance(item, dict) for item in items):
        raise ApiError(400, "%r must be a list of objects." % key)
    return items


def slugify(name: str) -> str:
    """A URL slug for a fleet name."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "fleet"


class Store:  # pylint: disable=too-many-public-methods
    """The emulator's mutable state. Every public method holds ``lock``."""

    def __init__(self, seed: Json) -> None:
        self.lock = threading.RLock()
        self.initial_seed: Json = json.loads(json.dumps(seed))
        self.settings: dict[str, float | bool] = dict(DEFAULT_SETTINGS)
        self.users: dict[str, Json] = {}
        self.fleets: dict[str, Json] = {}
        self.api_keys: dict[str, str] = {}  # key -> fleet id
        self.machines: dict[str, dict[str, Json]] = {}  # fleet id -> machine id -> machine
        self.machine_fleet: dict[str, str] = {}  # machine id -> fleet id
        self.access_tokens: dict[str, Json] = {}
        self.refresh_tokens: dict[str, Json] = {}
        self.devices: dict[str, Json] = {}  # device_code -> device authorization
        self.faults: list[Fault] = []
        self.latency = 0.0
        self.request_log: deque[Json] = deque(maxlen=100000)
        self.reset(seed)

    # -- loading ---------------------------------------------------------

    @locked
    def reset(self, seed: Json) -> None:
        """Replace the whole state with the one described by ``seed``."""
        if not isinstance(seed, dict):
            raise ApiError(400, "The seed must be a JSON object.")
        self.settings = dict(DEFAULT_SETTINGS)
        for collection in (self.users, self.fleets, self.api_keys, self.machines, self.machine_fleet,
                           self.access_tokens, self.refresh_tokens, self.devices):
            collection.clear()
        self.faults.clear()
        self.latency = 0.0
        self.update_settings(optional(seed, "settings", dict, {}))
        for user in objects(seed, "users"):
            self.add_user(user)
        for fleet in objects(seed, "fleets"):
            self.add_fleet(fleet)
        for machine in objects(seed, "machines"):
            self.add_machine(machine)
        for token in objects(seed, "tokens"):
            self.add_seed_token(token)

    @locked
    def update_settings(self, settings: Json) -> None:
        """Change settings (see ``DEFAULT_SETTINGS``; each must be of its ``SETTING_KINDS`` type); all or none."""
        unknown = sorted(set(settings) - set(DEFAULT_SETTINGS))
        if unknown:
            raise ApiError(400, "Unknown setting(s): %s." % ", ".join(unknown))
        changes = {key: require(settings, key, SETTING_KINDS[key]) for key in settings}
        if changes.get("fleets_page_size", 0) < 0:
            raise ApiError(400, "'fleets_page_size' must be 0 (a plain array) or a page size > 0.")
        self.settings.update(changes)

    @locked
    def add_user(self, user: Json) -> Json:
        """Add a user ``{id, email}``."""
        user_id = require(user, "id")
        if user_id in self.users:
            raise ApiError(409, "User %s exists." % user_id)
        self.users[user_id] = {"id": user_id, "email": optional(user, "email", str, "%s@example.com" % user_id)}
        return dict(self.users[user_id])

    @locked
    def add_fleet(self, fleet: Json) -> Json:
        """Add a fleet (with ``members`` and ``api_keys``); returns the stored fleet."""
        fleet_id = optional(fleet, "id", str) or str(uuid.uuid4())
        if fleet_id in self.fleets:
            raise ApiError(409, "Fleet %s exists." % fleet_id)
        name = require(fleet, "name")
        stored = self._with_fleet_fields({
            "id": fleet_id, "name": name, "slug": slugify(name), "type": "team", "plan": "free",
            "created_at": DEFAULT_TIMESTAMP, "members": [], "api_keys": [],
        }, fleet)
        self.fleets[fleet_id] = stored
        self.machines[fleet_id] = {}
        self._index_api_keys()
        return self._fleet_copy(stored)

    @locked
    def update_fleet(self, fleet_id: str, changes: Json) -> Json:
        """Rename a fleet or change other fields; returns the stored fleet."""
        if changes.get("id", fleet_id) != fleet_id:
            raise ApiError(400, "A fleet's id cannot change.")
        stored = self.fleets[fleet_id] = self._with_fleet_fields(self._fleet(fleet_id), changes)
        self._index_api_keys()
        return self._fleet_copy(stored)

    @locked
    def delete_fleet(self, fleet_id: str) -> None:
        """Remove a fleet with its machines and API keys."""
        self._fleet(fleet_id)
        del self.fleets[fleet_id]
        for machine_id in self.machines.pop(fleet_id):
            del self.machine_fleet[machine_id]
        self._index_api_keys()

    @locked
    def set_member(self, fleet_id: str, user_id: str, member: bool) -> Json:
        """Add ``user_id`` to a fleet's members, or remove it."""
        members = self._fleet(fleet_id)["members"]
        self._user(user_id)
        if member and user_id not in members:
            members.append(user_id)
        elif not member and user_id in members:
            members.remove(user_id)
        return {"fleet": fleet_id, "members": list(members)}

    @locked
    def add_machine(self, machine: Json) -> Json:
        """Add a machine to the fleet named by its ``workspace`` field; returns it as the API shows it."""
        stored = self._new_machine(machine)
        self.machines[stored["workspace"]][stored["id"]] = stored
        self.machine_fleet[stored["id"]] = stored["workspace"]
        return self._machine_view(stored)

    def _new_machine(self, machine: Json) -> Json:
        """The record ``add_machine`` would store (with an ``id``, generated if absent), checked against the state."""
        self._fleet(require(machine, "workspace"))
        require(machine, "name")
        machine_id = optional(machine, "id", str) or str(uuid.uuid4())
        if machine_id in self.machine_fleet:
            raise ApiError(409, "Machine %s exists." % machine_id)
        return dict(machine, id=machine_id)

    @locked
    def delete_machine(self, machine_id: str) -> None:
        """Remove a machine."""
        fleet_id = self.machine_fleet.pop(machine_id, None)
        if fleet_id is None:
            raise ApiError(404, "Machine %s not found." % machine_id)
        del self.machines[fleet_id][machine_id]

    @locked
    def update_machine(self, machine_id: str, changes: Json) -> Json:
        """Change a machine's fields (an event source sees it online, offline, readdressed...); returns it as the API shows it."""
        fleet_id = self.machine_fleet.get(machine_id)
        if fleet_id is None:
            raise ApiError(404, "Machine %s not found." % machine_id)
        if {"id", "workspace"} & set(changes):
            raise ApiError(400, "A machine's id and fleet cannot be changed.")
        machine = self.machines[fleet_id][machine_id]
        machine.update(changes)
        if "is_online" in changes and "status" not in changes:
            machine["status"] = "online" if changes["is_online"] else "offline"
        return self._machine_view(machine)

    def _with_fleet_fields(self, fleet: Json, fields: Json) -> Json:
        """A copy of ``fleet`` with the given fields changed, validated."""
        stored = self._fleet_copy(fleet)
        for key in UPDATABLE_FLEET_FIELDS:
            if fields.get(key) is None:
                continue
            if key in ("members", "api_keys"):
                stored[key] = [require({key: item}, key) for item in require(fields, key, list)]
            else:
                stored[key] = require(fields, key)
        for user_id in stored["members"]:
            self._user(user_id)
        for key in stored["api_keys"]:
            if self.api_keys.get(key, stored["id"]) != stored["id"]:
                raise ApiError(409, "API key already belongs to another fleet.")
        return stored

    def _index_api_keys(self) -> None:
        self.api_keys = {key: fleet_id for fleet_id, fleet in self.fleets.items() for key in fleet["api_keys"]}

    def _fleet(self, fleet_id: str) -> Json:
        fleet = self.fleets.get(fleet_id)
        if fleet is None:
            raise ApiError(404, "Fleet %s not found." % fleet_id)
        return fleet

    def _user(self, user_id: str) -> Json:
        user = self.users.get(user_id)
        if user is None:
            raise ApiError(404, "User %s not found." % user_id)
        return user

    @staticmethod
    def _fleet_copy(fleet: Json) -> Json:
        return dict(fleet, members=list(fleet["members"]), api_keys=list(fleet["api_keys"]))

    # -- tokens and device codes -----------------------------------------

    @locked
    def add_seed_token(self, token: Json) -> None:
        """Register a token pair given in a seed (``expires_in`` counts from now)."""
        user_id = require(token, "user")
        self.save_token({
            "access_token": require(token, "access_token"),
            "refresh_token": optional(token, "refresh_token", str),
            "user": user_id,
            "workspace": self.token_workspace(user_id, token),
            "scopes": [SCOPE],
            "expires_at": time.time() + optional(token, "expires_in", (int, float), self.settings["token_expires_in"]),
        })

    @locked
    def token_workspace(self, user_id: str, data: Json) -> str | None:
        """The fleet a new token is issued for: ``data["workspace"]`` if the key is given, else the user's first fleet."""
        self._user(user_id)
        if "workspace" not in data:
            return next((fleet["id"] for fleet in self.fleets.values() if user_id in fleet["members"]), None)
        workspace = data["workspace"]
        if workspace is not None:
            self._fleet(require(data, "workspace"))
        return workspace

    @locked
    def save_token(self, record: Json) -> None:
        """Store an issued token pair."""
        self.access_tokens[record["access_token"]] = record
        if record["refresh_token"]:
            self.refresh_tokens[record["refresh_token"]] = record

    @locked
    def refresh_record(self, refresh_token: str) -> Json | None:
        """The token record a refresh token belongs to, if it is still usable."""
        return self.refresh_tokens.get(refresh_token)

    @locked
    def revoke_refresh_token(self, refresh_token: str) -> None:
        """Make a refresh token unusable (on rotation or by the admin API)."""
        record = self.refresh_tokens.pop(refresh_token, None)
        if record is None:
            raise ApiError(404, "Unknown refresh token.")
        record["refresh_token"] = None

    @locked
    def expire_access_token(self, access_token: str) -> None:
        """Make an access token expire now."""
        record = self.access_tokens.get(access_token)
        if record is None:
            raise ApiError(404, "Unknown access token.")
        record["expires_at"] = time.time() - 1

    @locked
    def identity(self, user_id: str, workspace: str | None) -> Json:
        """The user and fleet fields of a token response."""
        fleet = self.fleets.get(workspace) if workspace else None
        return {
            "workspace_id": workspace,
            "workspace_name": fleet["name"] if fleet else None,
            "user_id": user_id,
            "user_email": self._user(user_id)["email"],
        }

    @locked
    def add_device(self, authorization: Json, client: Json) -> None:
        """Remember a device authorization issued by the device endpoint."""
        self.devices[authorization["device_code"]] = {
            "device_code": authorization["device_code"],
            "user_code": authorization["user_code"],
            "client": client,
            "status": "pending",  # pending | authorized | denied | used
            "user": None,
            "workspace": None,
            "interval": authorization.get("interval") or 0,
            "expires_at": time.time() + authorization["expires_in"],
            "last_poll": None,
        }

    @locked
    def device(self, device_code: str) -> Json | None:
        """A device authorization by device code."""
        return self.devices.get(device_code)

    @locked
    def device_by_user_code(self, user_code: str) -> Json:
        """A device authorization by user code (404 if unknown)."""
        wanted = user_code.strip().upper()
        for device in self.devices.values():
            if device["user_code"] == wanted:
                return device
        raise ApiError(404, "Unknown user_code.")

    @locked
    def decide_device(self, user_code: str, status: str, user_id: str | None = None, data: Json | None = None) -> Json:
        """Approve (``authorized``), deny (``denied``) or expire (``expired``) a pending device authorization."""
        device = self.device_by_user_code(user_code)
        if device["status"] != "pending":
            raise ApiError(409, "This device authorization is %s." % device["status"])
        if user_id is not None:
            device["workspace"] = self.token_workspace(user_id, data or {})
            device["user"] = user_id
        if status == "expired":
            device["expires_at"] = time.time() - 1
        else:
            device["status"] = status
        return self._device_view(device)

    @staticmethod
    def _device_view(device: Json) -> Json:
        return {key: value for key, value in device.items() if key != "last_poll"}

    # -- the public API ----------------------------------------------------

    @locked
    def resolve_credential(self, authorization: str | None) -> Credential:
        """Classify the ``Authorization`` header."""
        if not authorization:
            return Credential("none")
        scheme, _sep, secret = authorization.strip().partition(" ")
        secret = secret.strip()
        if scheme.lower() != "bearer" or not secret:
            return Credential("invalid")
        if secret in self.api_keys:
            return Credential("api_key", fleet=self.api_keys[secret])
        record = self.access_tokens.get(secret)
        if record is None:
            return Credential("invalid")
        return Credential("oauth", user=record["user"], expired=record["expires_at"] <= time.time())

    @locked
    def fleets_of(self, user_id: str) -> list[Json]:
        """The user's fleets as the API shows them."""
        return [self._fleet_view(fleet) for fleet in self.fleets.values() if user_id in fleet["members"]]

    @locked
    def visible_fleets(self, credential: Credential) -> list[str]:
        """Ids of the fleets whose machines a credential can see."""
        if credential.kind == "api_key":
            return [credential.fleet] if credential.fleet in self.fleets else []
        return [fleet["id"] for fleet in self.fleets.values() if credential.user in fleet["members"]]

    @locked
    def machine_page(self, fleet_ids: list[str], page: int, page_size: int,
                     ordering: t.Sequence[tuple[str, bool]] = ()) -> Json:
        """One page of the machines of the given fleets, sorted by ``ordering`` (``(field, descending)`` pairs).

        Without an ordering the machines come in the order of their ``id`` across all the fleets, like rows
        of a table with a UUID primary key read without ORDER BY: a machine added later can land on any page.
        """
        count = sum(len(self.machines[fleet_id]) for fleet_id in fleet_ids)
        pages = page_count(count, page, page_size)
        start = (page - 1) * page_size
        machines = sorted(chain.from_iterable(self.machines[fleet_id].values() for fleet_id in fleet_ids),
                          key=lambda machine: machine["id"])
        if ordering:
            results = sort_by_fields([self._machine_view(machine) for machine in machines], ordering)[start:start + page_size]
        else:
            results = [self._machine_view(machine) for machine in machines[start:start + page_size]]
        return {
            "count": count,
            "page": page,
            "pages": pages,
            "page_size": page_size,
            "has_next": page < pages,
            "has_previous": page > 1,
            "next_page": page + 1 if page < pages else None,
            "previous_page": page - 1 if page > 1 else None,
            "results": results,
        }

    @locked
    def machine(self, fleet_ids: list[str], machine_id: str) -> Json:
        """One machine, if it belongs to one of the given fleets (else 404)."""
        fleet_id = self.machine_fleet.get(machine_id)
        if fleet_id is None or fleet_id not in fleet_ids:
            raise ApiError(404, "Not found.")
        return self._machine_view(self.machines[fleet_id][machine_id])

    def _fleet_view(self, fleet: Json) -> Json:
        view = {key: fleet[key] for key in PUBLIC_FLEET_FIELDS}
        view["member_count"] = len(fleet["members"])
        view["machine_count"] = len(self.machines[fleet["id"]])
        return view

    def _machine_view(self, machine: Json) -> Json:
        fleet_name = self.fleets[machine["workspace"]]["name"]
        view = {"id": machine["id"], "workspace": machine["workspace"], "workspace_name": fleet_name,
                "name": machine["name"], "hostname": machine["name"], **MACHINE_DEFAULTS, "local_ips": []}
        if "is_online" in machine and "status" not in machine:
            view["status"] = "online" if machine["is_online"] else "offline"
        view.update(machine)
        view.setdefault("status", "online")
        view.setdefault("is_online", view["status"] == "online")
        view["workspace_name"] = fleet_name
        return view

    # -- faults, latency, request log ---------------------------------------

    @locked
    def add_fault(self, data: Json) -> list[Json]:
        """Queue a fault (see ``Fault``); returns all queued faults.

        An ``add_machine`` must be addable now (its fleet exists, its id is free and no queued fault adds
        it); it gets a generated ``id`` if it has none. A ``delete_machine`` must name a machine that
        exists or that a queued fault adds.
        """
        fault = Fault.from_json(data)
        queued_adds = {queued.add_machine["id"] for queued in self.faults if queued.add_machine is not None}
        if fault.add_machine is not None:
            fault.add_machine = self._new_machine(fault.add_machine)
            if fault.add_machine["id"] in queued_adds:
                raise ApiError(409, "A queued fault already adds machine %s." % fault.add_machine["id"])
        if fault.delete_machine is not None and fault.delete_machine not in set(self.machine_fleet) | queued_adds:
            raise ApiError(404, "Machine %s not found (and no queued fault adds it)." % fault.delete_machine)
        self.faults.append(fault)
        return self.fault_list()

    @locked
    def clear_faults(self) -> None:
        """Drop all queued faults."""
        self.faults.clear()

    @locked
    def set_latency(self, seconds: float) -> float:
        """Set the latency added to every public API request."""
        self.latency = max(0.0, float(seconds))
        return self.latency

    @locked
    def fault_list(self) -> list[Json]:
        """The queued faults."""
        return [fault.as_dict() for fault in self.faults]

    @locked
    def take_fault(self, path: str) -> Fault | None:
        """Consume the first queued fault that matches ``path`` and apply its fleet change, if any.

        A matching fault with ``skip`` > 0 lets this request pass it by (``skip`` goes down by one) and
        the next queued faults are looked at. A fleet change that is no longer possible (say, the machine
        to delete is gone) is a 500 whose detail says why, and the fault is used up.
        """
        for fault in self.faults:
            if not path.startswith(fault.path):
                continue
            if fault.skip > 0:
                fault.skip -= 1
                continue
            fault.count -= 1
            if fault.count <= 0:
                self.faults.remove(fault)
            try:
                if fault.add_machine is not None:
                    self.add_machine(fault.add_machine)
                if fault.delete_machine is not None:
                    self.delete_machine(fault.delete_machine)
            except ApiError as exc:
                raise ApiError(500, "Injected fault could not change the fleet: %s" % exc.detail) from None
            return fault
        return None

    @locked
    def log_request(self, entry: Json) -> None:
        """Append to the request log."""
        self.request_log.append(entry)

    @locked
    def requests(self) -> list[Json]:
        """The request log."""
        return list(self.request_log)

    @locked
    def clear_requests(self) -> None:
        """Empty the request log."""
        self.request_log.clear()

    # -- debugging and reset -------------------------------------------------

    @locked
    def replace(self, seed: Json) -> None:
        """Reset to ``seed`` and empty the request log; on a bad seed, keep the current state."""
        previous = self.dump()
        try:
            self.reset(seed)
        except ApiError:
            self.reset(previous)
            raise
        self.request_log.clear()

    @locked
    def dump(self) -> Json:
        """The whole state as JSON (a valid seed, plus runtime details)."""
        now = time.time()
        tokens = [
            dict(record, expires_in=max(0, int(record["expires_at"] - now)), expired=record["expires_at"] <= now)
            for record in self.access_tokens.values()
        ]
        return {
            "settings": dict(self.settings),
            "users": [dict(user) for user in self.users.values()],
            "fleets": [self._fleet_copy(fleet) for fleet in self.fleets.values()],
            "machines": [dict(machine) for machine in chain.from_iterable(m.values() for m in self.machines.values())],
            "tokens": tokens,
            "devices": [self._device_view(device) for device in self.devices.values()],
            "faults": self.fault_list(),
            "latency": self.latency,
        }


def access_token_generator(request: OAuthRequest) -> str:
    """oauthlib token generator for access tokens (``cmdop_`` prefix)."""
    return ACCESS_TOKEN_PREFIX + generate_token(40)


def refresh_token_generator(request: OAuthRequest) -> str:
    """oauthlib token generator for refresh tokens (``clitr_`` prefix)."""
    return REFRESH_TOKEN_PREFIX + generate_token(40)


def user_code_generator() -> str:
    """A user code such as ``BCDF-GHJK``."""
    code = generate_token(8, USER_CODE_CHARS)
    return "%s-%s" % (code[:4], code[4:])


def grant_to(request: OAuthRequest, user_id: str, workspace: str | None) -> None:
    """Record on an oauthlib request whom the token being issued is for."""
    request.user = user_id
    request.workspace = workspace
    request.scopes = [SCOPE]


class CmdopRequestValidator(RequestValidator):
    """oauthlib validator over the emulator's ``Store``: a public client, one scope, the device and refresh grants."""

    def __init__(self, store: Store) -> None:
        super().__init__()
        self.store = store

    def client_authentication_required(self, request, *args, **kwargs):
        return False

    def authenticate_client_id(self, client_id, request, *args, **kwargs):
        request.client = SimpleNamespace(client_id=client_id or PUBLIC_CLIENT_ID)
        return True

    def validate_client_id(self, client_id, request, *args, **kwargs):
        return True

    def validate_grant_type(self, client_id, grant_type, client, request, *args, **kwargs):
        return grant_type in (DEVICE_GRANT_TYPE, REFRESH_GRANT_TYPE)

    def get_default_scopes(self, client_id, request, *args, **kwargs):
        return [SCOPE]

    def validate_scopes(self, client_id, scopes, client, request, *args, **kwargs):
        return set(scopes) <= {SCOPE}

    def validate_device_code(self, client_id, code, request, *args, **kwargs):
        device = self.store.device(code)
        if device is None or device["status"] == "used":
            return None
        now = time.time()
        if now >= device["expires_at"]:
            return DeviceCodeGrant.DEVICE_CODE_EXPIRED
        if device["status"] == "denied":
            return DeviceCodeGrant.DEVICE_CODE_DENIED
        if device["status"] == "authorized":
            grant_to(request, device["user"], device["workspace"])
            return DeviceCodeGrant.DEVICE_CODE_AUTHORIZED
        last_poll, device["last_poll"] = device["last_poll"], now
        if last_poll is not None and now - last_poll < device["interval"]:
            return DeviceCodeGrant.DEVICE_CODE_SLOW_DOWN
        return DeviceCodeGrant.DEVICE_CODE_PENDING

    def validate_refresh_token(self, refresh_token, client, request, *args, **kwargs):
        record = self.store.refresh_record(refresh_token)
        if record is None:
            return False
        grant_to(request, record["user"], record["workspace"])
        return True

    def get_original_scopes(self, refresh_token, request, *args, **kwargs):
        record = self.store.refresh_record(refresh_token)
        return list(record["scopes"]) if record else []

    def save_bearer_token(self, token, request, *args, **kwargs):
        """Store the token pair, retire what it replaces, and add the CMDOP identity fields to the response.

        ``expires_in`` leaves the response (not the stored expiry) when ``request.omit_expires_in`` says so,
        or, when that is unset, when the ``token_expires_in_omitted`` setting is true.
        """
        if request.grant_type == DEVICE_GRANT_TYPE:
            self.store.device(request.device_code)["status"] = "used"
        elif request.grant_type == REFRESH_GRANT_TYPE and token.get("refresh_token") != request.refresh_token:
            self.store.revoke_refresh_token(request.refresh_token)
        self.store.save_token({
            "access_token": token["access_token"],
            "refresh_token": token.get("refresh_token"),
            "user": request.user,
            "workspace": request.workspace,
            "scopes": list(request.scopes or [SCOPE]),
            "expires_at": time.time() + token["expires_in"],
        })
        token.update(self.store.identity(request.user, request.workspace))
        omit_expires_in = vars(request).get("omit_expires_in")  # set by mint(); never a request parameter
        if self.store.settings["token_expires_in_omitted"] if omit_expires_in is None else omit_expires_in:
            del token["expires_in"]


class OAuthService:
    """The OAuth endpoints, served by oauthlib."""

    def __init__(self, store: Store, base_url: str) -> None:
        self.store = store
        self.verification_uri = base_url + "/device"
        self.validator = CmdopRequestValidator(store)
        self.bearer = BearerToken(
            self.validator,
            token_generator=access_token_generator,
            refresh_token_generator=refresh_token_generator,
            expires_in=self._expires_in,
        )
        self.token_endpoint = TokenEndpoint(
            DEVICE_GRANT_TYPE,
            self.bearer,
            {DEVICE_GRANT_TYPE: DeviceCodeGrant(self.validator), REFRESH_GRANT_TYPE: RefreshTokenGrant(self.validator)},
        )
        self.token_endpoint.catch_errors = True

    def _expires_in(self, request: OAuthRequest) -> int:
        expires_in = vars(request).get("token_expires_in")  # set by mint(); getattr would read request parameters
        return int(self.store.settings["token_expires_in"] if expires_in is None else expires_in)

    def _device_endpoint(self) -> DeviceAuthorizationEndpoint:
        endpoint = DeviceAuthorizationEndpoint(
            self.validator,
            verification_uri=self.verification_uri,
            expires_in=int(self.store.settings["device_expires_in"]),
            interval=int(self.store.settings["device_interval"]),
            verification_uri_complete=self.verification_uri + "?user_code={user_code}",
            user_code_generator=user_code_generator,
        )
        endpoint.catch_errors = True
        return endpoint

    def device_authorization(self, req: HttpRequest) -> Response:
        """``POST /api/system/oauth/device/``."""
        try:
            form = oauth_form(req)
            with self.store.lock:
                headers, body, status = self._device_endpoint().create_device_authorization_response(
                    req.url, "POST", form, {"Content-Type": FORM_CONTENT_TYPE})
                if status == 200:
                    client = {key: value for key, value in parse_qsl(form) if key.startswith("client_")}
                    self.store.add_device(body, client)
        except OAuth2Error as exc:
            return oauth_error(exc)
        return oauth_response(status, body, headers)

    def token(self, req: HttpRequest) -> Response:
        """``POST /api/system/oauth/token/``: the device code and refresh token grants."""
        try:
            form = oauth_form(req)
            with self.store.lock:
                headers, body, status = self.token_endpoint.create_token_response(
                    req.url, "POST", form, {"Content-Type": FORM_CONTENT_TYPE})
        except OAuth2Error as exc:
            return oauth_error(exc)
        return oauth_response(status, body, headers)

    def mint(self, user_id: str, workspace: str | None, expires_in: int | None, omit_expires_in: bool | None = None) -> Json:
        """Issue a token pair directly (admin API), through the same token handler and validator.

        ``omit_expires_in`` None follows the ``token_expires_in_omitted`` setting.
        """
        request = OAuthRequest(self.verification_uri)
        grant_to(request, user_id, workspace)
        request.token_expires_in = expires_in
        request.omit_expires_in = omit_expires_in
        with self.store.lock:
            token = self.bearer.create_token(request, refresh_token=True)
            self.validator.save_token(token, request)
        return dict(token)


def form_value(value: t.Any) -> str:
    """A JSON value as a form field."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    return json.dumps(value)


def oauth_form(req: HttpRequest) -> str:
    """The request body as form data for oauthlib (JSON bodies are converted), with the public client id."""
    try:
        if req.content_type == "application/json":
            data = json.loads(req.body or b"{}")
            if not isinstance(data, dict):
                raise ValueError("not an object")
            pairs = [(key, form_value(value)) for key, value in data.items() if value is not None]
        else:
            pairs = parse_qsl(req.body.decode("utf-8"), keep_blank_values=True)
    except ValueError:
        raise InvalidRequestError(description="Malformed request body.") from None
    pairs = [(key, value) for key, value in pairs if key != "client_id" or value]
    if not any(key == "client_id" for key, _value in pairs):
        pairs.append(("client_id", PUBLIC_CLIENT_ID))
    return urlencode(pairs)


def oauth_response(status: int, body: str | Json, headers: dict[str, str]) -> Response:
    """An oauthlib endpoint's answer as a Response."""
    all_headers = {"Content-Type": "application/json", "Cache-Control": "no-store"}
    all_headers.update(headers or {})
    raw = body if isinstance(body, str) else json.dumps(body)
    return Response(status, raw.encode("utf-8"), all_headers)


def oauth_error(exc: OAuth2Error) -> Response:
    """An RFC 6749 error body."""
    return oauth_response(exc.status_code, exc.json, dict(exc.headers))


def page_number(query: dict[str, str]) -> int:
    """``page`` from a query (default 1; not a number: 404 ``Invalid page.``)."""
    try:
        return int(query.get("page") or 1)
    except ValueError:
        raise ApiError(404, "Invalid page.") from None


def page_count(count: int, page: int, page_size: int) -> int:
    """How many pages ``count`` items make (at least one); 404 ``Invalid page.`` when ``page`` is not one of them."""
    pages = max(1, -(-count // page_size))
    if not 1 <= page <= pages:
        raise ApiError(404, "Invalid page.")
    return pages


def page_link(req: HttpRequest, page: int) -> str:
    """The absolute URL of another page of the list ``req`` asked for, as DRF builds it.

    The other query parameters are kept (sorted by name); page 1 has no ``page`` parameter.
    """
    pairs = sorted((key, value) for key, value in parse_qsl(urlsplit(req.target).query, keep_blank_values=True)
                   if key != "page")
    if page > 1:
        pairs = sorted(pairs + [("page", str(page))])
    query = urlencode(pairs)
    return req.base_url + req.path + ("?" + query if query else "")


def drf_page(req: HttpRequest, items: list[Json], page: int, page_size: int) -> Json:
    """Page ``page`` of ``items`` in Django REST framework ``PageNumberPagination`` form."""
    pages = page_count(len(items), page, page_size)
    start = (page - 1) * page_size
    return {
        "count": len(items),
        "next": page_link(req, page + 1) if page < pages else None,
        "previous": page_link(req, page - 1) if page > 1 else None,
        "results": items[start:start + page_size],
    }


def ordering_terms(ordering: str, fields: t.Collection[str]) -> list[tuple[str, bool]]:
    """``(field, descending)`` pairs from an ``ordering`` parameter such as ``created_at,-id``.

    As DRF's ``OrderingFilter``: terms are comma-separated and stripped, ``-`` means descending, and
    terms whose field is not in ``fields`` are dropped.
    """
    terms = [term.strip() for term in ordering.split(",")]
    return [(term.lstrip("-"), term.startswith("-")) for term in terms if term.lstrip("-") in fields]


def sort_by_fields(items: list[Json], ordering: t.Sequence[tuple[str, bool]]) -> list[Json]:
    """``items`` sorted by several fields (stable; nulls last ascending, first descending, as PostgreSQL)."""
    result = list(items)
    for name, descending in reversed(ordering):
        result.sort(key=lambda item, name=name: (item.get(name) is None, item.get(name)), reverse=descending)
    return result


def page_params(query: dict[str, str]) -> tuple[int, int]:
    """``page`` and ``page_size`` from a query (page_size defaults to 50 and is clamped to 200)."""
    page = page_number(query)
    try:
        page_size = int(query.get("page_size") or DEFAULT_PAGE_SIZE)
    except ValueError:
        page_size = DEFAULT_PAGE_SIZE
    if page_size < 1:
        page_size = DEFAULT_PAGE_SIZE
    return page, min(page_size, MAX_PAGE_SIZE)


class Daemon:
    """CMDOP's daemon, played once per arming: it refreshes the token in a token file through the token endpoint and
    rewrites the file, knowing no client's lock."""

    def __init__(self, oauth: OAuthService) -> None:
        self.oauth = oauth
        self.lock = threading.Lock()
        self.armed: Json | None = None
        self.rotations: list[Json] = []

    def arm(self, token_file: str, write: bool) -> Json:
        with self.lock:
            self.armed = {"token_file": token_file, "write": write}
        return self.status()

    def status(self) -> Json:
        with self.lock:
            return {"armed": self.armed, "rotations": list(self.rotations)}

    def before_token_request(self, req: HttpRequest) -> None:
        """If armed and ``req`` is a refresh grant, refresh the file's token first (and disarm)."""
        try:
            grant_type = dict(parse_qsl(oauth_form(req))).get("grant_type")
        except OAuth2Error:
            return
        with self.lock:
            if self.armed is None or grant_type != REFRESH_GRANT_TYPE:
                return
            armed, self.armed = self.armed, None
        rotation = self.rotate(req, armed["token_file"], armed["write"])
        with self.lock:
            self.rotations.append(rotation)

    def rotate(self, req: HttpRequest, token_file: str, write: bool) -> Json:
        """Spend the file's refresh token at the token endpoint and, with ``write``, put the new pair in the file."""
        with open(token_file, encoding="utf-8") as handle:
            old = json.load(handle)
        grant = HttpRequest("POST", urlsplit(req.target).path, {"Content-Type": FORM_CONTENT_TYPE},
                            urlencode({"grant_type": REFRESH_GRANT_TYPE, "refresh_token": old["refresh_token"]}).encode("utf-8"),
                            req.base_url)
        answer = self.oauth.token(grant)
        if answer.status != 200:
            return {"status": answer.status, "written": False}
        token = json.loads(answer.body)
        if "expires_in" in token:
            token["expires_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + token["expires_in"]))
        if write:
            write_like(token_file, json.dumps(token, indent=2) + "\n")
        return {"status": 200, "written": write}


def write_like(path: str, text: str) -> None:
    """Replace ``path`` atomically with ``text``, mode 0600, keeping its owner (as the CLI, running as that user, would)."""
    owner = os.stat(path)
    tmp = os.path.join(os.path.dirname(path), ".%s.daemon-%d" % (os.path.basename(path), os.getpid()))
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chown(tmp, owner.st_uid, owner.st_gid)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


Handler = t.Callable[..., Response]
Route = tuple[str, "re.Pattern[str]", Handler]


class Emulator:
    """Routes requests to the public API, the OAuth endpoints and the admin API."""

    def __init__(self, seed: Json, base_url: str) -> None:
        self.store = Store(seed)
        self.oauth = OAuthService(self.store, base_url)
        self.daemon = Daemon(self.oauth)
        self.api_routes = self._routes([
            ("GET", "/api/workspaces/workspaces/", self.list_fleets),
            ("GET", "/api/machines/machines/", self.list_machines),
            ("GET", "/api/machines/machines/(?P<machine_id>[^/]+)/", self.get_machine),
            ("POST", "/api/system/oauth/device/", self.oauth.device_authorization),
            ("POST", "/api/system/oauth/token/", self.token),
        ])
        self.admin_routes = self._routes([
            ("POST", "/_admin/users", self.admin_add_user),
            ("POST", "/_admin/fleets", self.admin_add_fleet),
            ("PATCH", "/_admin/fleets/(?P<fleet_id>[^/]+)", self.admin_update_fleet),
            ("DELETE", "/_admin/fleets/(?P<fleet_id>[^/]+)", self.admin_delete_fleet),
            ("POST", "/_admin/members", self.admin_add_member),
            ("DELETE", "/_admin/members", self.admin_remove_member),
            ("POST", "/_admin/machines", self.admin_add_machine),
            ("DELETE", "/_admin/machines/(?P<machine_id>[^/]+)", self.admin_delete_machine),
            ("PATCH", "/_admin/machines/(?P<machine_id>[^/]+)", self.admin_update_machine),
            ("POST", "/_admin/tokens", self.admin_mint_token),
            ("POST", "/_admin/tokens/expire", self.admin_expire_token),
            ("POST", "/_admin/tokens/revoke", self.admin_revoke_token),
            ("POST", "/_admin/device/(?P<decision>approve|deny|expire)", self.admin_decide_device),
            ("POST", "/_admin/faults", self.admin_add_fault),
            ("GET", "/_admin/faults", self.admin_faults),
            ("DELETE", "/_admin/faults", self.admin_clear_faults),
            ("POST", "/_admin/latency", self.admin_latency),
            ("POST", "/_admin/settings", self.admin_settings),
            ("POST", "/_admin/daemon", self.admin_arm_daemon),
            ("GET", "/_admin/daemon", self.admin_daemon),
            ("GET", "/_admin/requests", self.admin_requests),
            ("DELETE", "/_admin/requests", self.admin_clear_requests),
            ("GET", "/_admin/state", self.admin_state),
            ("POST", "/_admin/reset", self.admin_reset),
        ])

    @staticmethod
    def _routes(table: list[tuple[str, str, Handler]]) -> list[Route]:
        return [(method, re.compile(pattern + "/?" if pattern.startswith("/_admin") else pattern), handler)
                for method, pattern, handler in table]

    def handle(self, req: HttpRequest) -> Response:
        """Answer one request."""
        if req.path.startswith("/_admin/"):
            return self._dispatch(self.admin_routes, req)
        req.credential = self.store.resolve_credential(req.headers.get("Authorization"))
        try:
            fault = self.store.take_fault(req.path)
        except ApiError as exc:
            fault, response = None, exc.response()
        else:
            response = self._answer(req, fault)
        self.store.log_request({
            "method": req.method, "path": req.path, "query": req.query,
            "credential_kind": req.credential.kind, "status": response.status,
        })
        return response

    def _answer(self, req: HttpRequest, fault: Fault | None) -> Response:
        """The answer to a public API request, after the latency and the fault's delay, shaped by the fault."""
        delay = self.store.latency + (fault.delay if fault else 0.0)
        if delay > 0:
            time.sleep(delay)
        if fault is None:
            return self._dispatch(self.api_routes, req)
        if fault.responds:
            return fault.response()
        response = self._dispatch(self.api_routes, req)
        fault.add_headers(response)
        return response

    @staticmethod
    def _dispatch(routes: list[Route], req: HttpRequest) -> Response:
        path_known = False
        for method, pattern, handler in routes:
            match = pattern.fullmatch(req.path)
            if match is None:
                continue
            if method != req.method:
                path_known = True
                continue
            try:
                return handler(req, **match.groupdict())
            except ApiError as exc:
                return exc.response()
        if path_known:
            return ApiError(405, 'Method "%s" not allowed.' % req.method).response()
        return ApiError(404, "Not found.").response()

    # -- public API ------------------------------------------------------------

    @staticmethod
    def _authenticated(req: HttpRequest) -> Credential:
        credential = req.credential or Credential("none")
        if credential.kind == "none":
            raise ApiError(401, DETAIL_NO_CREDENTIALS, {"WWW-Authenticate": 'Bearer realm="api"'})
        if credential.kind == "invalid" or credential.expired:
            detail = DETAIL_EXPIRED_TOKEN if credential.expired else DETAIL_INVALID_TOKEN
            raise ApiError(401, detail, {"WWW-Authenticate": 'Bearer realm="api"'})
        return credential

    def list_fleets(self, req: HttpRequest) -> Response:
        """``GET /api/workspaces/workspaces/`` (OAuth only): the user's fleets in the order they were added.

        With the ``fleets_page_size`` setting 0 (the default) a plain JSON array, as the published schema
        says. With N > 0, Django REST framework ``PageNumberPagination`` pages of N fleets:
        ``{"count", "next", "previous", "results"}``, ``?page=K`` (default 1, out of range or not a
        number: 404 ``{"detail": "Invalid page."}``); ``next``/``previous`` are absolute URLs on the
        emulator's base URL, or null.
        """
        credential = self._authenticated(req)
        if credential.kind == "api_key":
            raise ApiError(403, "API keys cannot list workspaces; use OAuth")
        with self.store.lock:
            fleets = self.store.fleets_of(credential.user)
            page_size = int(self.store.settings["fleets_page_size"])
        if page_size <= 0:
            return json_response(200, fleets)
        return json_response(200, drf_page(req, fleets, page_number(req.query), page_size))

    def list_machines(self, req: HttpRequest) -> Response:
        """``GET /api/machines/machines/`` (paginated ``?page=N&page_size=M``, ``?ordering=f1,-f2``).

        ``ordering`` works as DRF's ``OrderingFilter``: comma-separated fields of ``MACHINE_ORDERING_FIELDS``,
        ``-`` for descending, unknown names ignored. Without one, machines come in ``id`` order.
        """
        fleet_ids = self.store.visible_fleets(self._authenticated(req))
        page, page_size = page_params(req.query)
        ordering = ordering_terms(req.query.get("ordering", ""), MACHINE_ORDERING_FIELDS)
        return json_response(200, self.store.machine_page(fleet_ids, page, page_size, ordering))

    def get_machine(self, req: HttpRequest, machine_id: str) -> Response:
        """``GET /api/machines/machines/{id}/``."""
        fleet_ids = self.store.visible_fleets(self._authenticated(req))
        return json_response(200, self.store.machine(fleet_ids, machine_id))

    # -- admin API ---------------------------------------------------------------

    def admin_add_user(self, req: HttpRequest) -> Response:
        """``POST /_admin/users`` {id, email}."""
        return json_response(201, self.store.add_user(req.json()))

    def admin_add_fleet(self, req: HttpRequest) -> Response:
        """``POST /_admin/fleets`` {fleet incl. members, api_keys}."""
        return json_response(201, self.store.add_fleet(req.json()))

    def admin_update_fleet(self, req: HttpRequest, fleet_id: str) -> Response:
        """``PATCH /_admin/fleets/<id>`` {name?, slug?, ...}."""
        return json_response(200, self.store.update_fleet(fleet_id, req.json()))

    def admin_delete_fleet(self, req: HttpRequest, fleet_id: str) -> Response:
        """``DELETE /_admin/fleets/<id>``."""
        self.store.delete_fleet(fleet_id)
        return json_response(200, {"deleted": fleet_id})

    def _member_change(self, req: HttpRequest, member: bool) -> Response:
        body = req.json()
        return json_response(200, self.store.set_member(require(body, "fleet"), require(body, "user"), member))

    def admin_add_member(self, req: HttpRequest) -> Response:
        """``POST /_admin/members`` {fleet, user}."""
        return self._member_change(req, True)

    def admin_remove_member(self, req: HttpRequest) -> Response:
        """``DELETE /_admin/members`` {fleet, user}."""
        return self._member_change(req, False)

    def admin_add_machine(self, req: HttpRequest) -> Response:
        """``POST /_admin/machines`` {machine} (or the machine object itself)."""
        body = req.json()
        machine = body["machine"] if isinstance(body.get("machine"), dict) else body
        return json_response(201, self.store.add_machine(machine))

    def admin_delete_machine(self, req: HttpRequest, machine_id: str) -> Response:
        """``DELETE /_admin/machines/<id>``."""
        self.store.delete_machine(machine_id)
        return json_response(200, {"deleted": machine_id})

    def admin_update_machine(self, req: HttpRequest, machine_id: str) -> Response:
        """``PATCH /_admin/machines/<id>`` {field: value, ...}: change a machine's fields (not its ``id`` nor its fleet)."""
        return json_response(200, self.store.update_machine(machine_id, req.json()))

    def token(self, req: HttpRequest) -> Response:
        """``POST /api/system/oauth/token/``, after the armed daemon's refresh when this is a refresh grant."""
        self.daemon.before_token_request(req)
        return self.oauth.token(req)

    def admin_arm_daemon(self, req: HttpRequest) -> Response:
        """``POST /_admin/daemon`` {token_file, write?}: play CMDOP's daemon at the next refresh grant (see the module docstring)."""
        body = req.json()
        return json_response(201, self.daemon.arm(require(body, "token_file"), optional(body, "write", bool, True)))

    def admin_daemon(self, req: HttpRequest) -> Response:
        """``GET /_admin/daemon``: whether the daemon is armed, and its rotations so far."""
        return json_response(200, self.daemon.status())

    def admin_mint_token(self, req: HttpRequest) -> Response:
        """``POST /_admin/tokens`` {user, expires_in?, workspace?, omit_expires_in?}: a full token response.

        ``omit_expires_in`` (bool) leaves ``expires_in`` out of this answer (the token still expires after
        ``expires_in`` seconds); absent or null, the ``token_expires_in_omitted`` setting decides.
        """
        body = req.json()
        user_id = require(body, "user")
        workspace = self.store.token_workspace(user_id, body)
        omit_expires_in = optional(body, "omit_expires_in", bool)
        return json_response(201, self.oauth.mint(user_id, workspace, optional(body, "expires_in", int), omit_expires_in))

    def admin_expire_token(self, req: HttpRequest) -> Response:
        """``POST /_admin/tokens/expire`` {access_token}."""
        self.store.expire_access_token(require(req.json(), "access_token"))
        return json_response(200, {"expired": True})

    def admin_revoke_token(self, req: HttpRequest) -> Response:
        """``POST /_admin/tokens/revoke`` {refresh_token}."""
        self.store.revoke_refresh_token(require(req.json(), "refresh_token"))
        return json_response(200, {"revoked": True})

    def admin_decide_device(self, req: HttpRequest, decision: str) -> Response:
        """``POST /_admin/device/approve`` {user_code, user, workspace?}, ``.../deny`` and ``.../expire`` {user_code}."""
        body = req.json()
        user_code = require(body, "user_code")
        if decision == "approve":
            device = self.store.decide_device(user_code, "authorized", require(body, "user"), body)
        else:
            device = self.store.decide_device(user_code, "denied" if decision == "deny" else "expired")
        return json_response(200, device)

    def admin_add_fault(self, req: HttpRequest) -> Response:
        """``POST /_admin/faults`` {path?, count?, skip?, status?, body?, content_type?, headers?, retry_after?,
        delay?, add_machine?, delete_machine?}: queue a fault; answers 201 with all queued faults.

        See the module docstring for what each field does. An unknown field, a value of the wrong type or
        an inconsistent fault is a 400 with a ``detail`` that says which; an ``add_machine`` that cannot be
        added (unknown fleet: 404, id in use: 409) or a ``delete_machine`` of an unknown machine (404) is
        refused when queued. Nothing is queued on an error.
        """
        return json_response(201, self.store.add_fault(req.json()))

    def admin_faults(self, req: HttpRequest) -> Response:
        """``GET /_admin/faults``."""
        return json_response(200, self.store.fault_list())

    def admin_clear_faults(self, req: HttpRequest) -> Response:
        """``DELETE /_admin/faults``."""
        self.store.clear_faults()
        return json_response(200, [])

    def admin_latency(self, req: HttpRequest) -> Response:
        """``POST /_admin/latency`` {seconds}."""
        return json_response(200, {"seconds": self.store.set_latency(require(req.json(), "seconds", (int, float)))})

    def admin_settings(self, req: HttpRequest) -> Response:
        """``POST /_admin/settings`` {device_interval?, device_expires_in?, token_expires_in?, fleets_page_size?,
        token_expires_in_omitted?}.

        Answers all settings. An unknown name or a value of the wrong type is a 400 and changes nothing.
        """
        self.store.update_settings(req.json())
        return json_response(200, dict(self.store.settings))

    def admin_requests(self, req: HttpRequest) -> Response:
        """``GET /_admin/requests``."""
        return json_response(200, self.store.requests())

    def admin_clear_requests(self, req: HttpRequest) -> Response:
        """``DELETE /_admin/requests``."""
        self.store.clear_requests()
        return json_response(200, [])

    def admin_state(self, req: HttpRequest) -> Response:
        """``GET /_admin/state``."""
        return json_response(200, self.store.dump())

    def admin_reset(self, req: HttpRequest) -> Response:
        """``POST /_admin/reset`` {seed?}: back to the given seed, or to the seed the server started with."""
        self.store.replace(optional(req.json(), "seed", dict, self.store.initial_seed))
        return json_response(200, {"reset": True})


class EmulatorRequestHandler(BaseHTTPRequestHandler):
    """Adapts http.server to ``Emulator.handle``."""

    protocol_version = "HTTP/1.1"
    server_version = "CMDOPEmulator/1.0"
    disable_nagle_algorithm = True  # headers and body are written separately: avoid 40 ms delayed-ACK stalls
    timeout = 120

    def _handle(self) -> None:
        server = t.cast(EmulatorServer, self.server)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        req = HttpRequest(self.command, self.path, self.headers, body, server.base_url)
        try:
            response = server.app.handle(req)
        except Exception:  # pylint: disable=broad-exception-caught
            traceback.print_exc()
            response = json_response(500, {"detail": "Internal emulator error."})
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if response.cut_after is None:
            self.wfile.write(response.body)
            return
        self.wfile.write(response.body[:response.cut_after])
        self.wfile.flush()
        # SO_LINGER 0: closing sends a reset, not an orderly end.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

    def log_message(self, format, *args):  # pylint: disable=redefined-builtin
        if t.cast(EmulatorServer, self.server).verbose:
            super().log_message(format, *args)


class EmulatorServer(ThreadingHTTPServer):
    """The HTTP server; ``shutdown()`` stops serving and closes the socket."""

    daemon_threads = True
    poll_interval = 0.05  # how quickly serve_forever notices shutdown()

    def __init__(self, host: str, port: int, seed: Json, verbose: bool = False, tls: tuple[str, str] | None = None) -> None:
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        super().__init__((host, port), EmulatorRequestHandler)
        self.verbose = verbose
        self.scheme = "http"
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.socket = context.wrap_socket(self.socket, server_side=True)
            self.scheme = "https"
        self.app = Emulator(seed, self.base_url)

    @property
    def base_url(self) -> str:
        """``http(s)://host:port`` of the bound socket."""
        host, port = self.server_address[:2]
        return "%s://%s:%d" % (self.scheme, "[%s]" % host if ":" in host else host, port)

    def serve_forever(self, poll_interval: float | None = None) -> None:
        super().serve_forever(self.poll_interval if poll_interval is None else poll_interval)

    def shutdown(self) -> None:
        super().shutdown()
        self.server_close()


def start_in_thread(seed: Json, host: str = "127.0.0.1", port: int = 0) -> tuple[EmulatorServer, str]:
    """Start an emulator serving in a daemon thread; returns ``(server, base_url)``."""
    server = EmulatorServer(host, port, seed)
    threading.Thread(target=server.serve_forever, name="cmdop-emulator", daemon=True).start()
    return server, server.base_url


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command line options."""
    parser = argparse.ArgumentParser(description="CMDOP API emulator for tests and demos.")
    parser.add_argument("--seed", required=True, help="JSON file with the initial state")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to bind; 0 picks a free port (default)")
    parser.add_argument("--verbose", action="store_true", help="log each request on stderr")
    parser.add_argument("--tls-cert", help="serve HTTPS with this certificate (PEM); needs --tls-key")
    parser.add_argument("--tls-key", help="the certificate's private key (PEM)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM or SIGINT."""
    args = parse_args(argv)
    try:
        with open(args.seed, encoding="utf-8") as seed_file:
            seed = json.load(seed_file)
        server = EmulatorServer(args.host, args.port, seed, args.verbose, (args.tls_cert, args.tls_key) if args.tls_cert else None)
    except (OSError, ValueError, ApiError) as exc:
        sys.stderr.write("cmdop_emulator: %s\n" % exc)
        return 2
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_args: stop.set())
    threading.Thread(target=server.serve_forever, name="cmdop-emulator", daemon=True).start()
    sys.stdout.write("CMDOP emulator listening on %s\n" % server.base_url)
    sys.stdout.flush()
    while not stop.wait(0.5):
        pass
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
