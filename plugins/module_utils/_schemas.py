# -*- coding: utf-8 -*-
# Copyright (c) cmdop.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""JSON schemas of everything the collection reads, and one way to check them.

Error messages name the place and the rule that failed, never the value: a
value may be an API key or a token. Private to the collection.
"""

from __future__ import annotations

import functools
import hashlib
import json
import traceback
import typing as t

from ansible_collections.cmdop.fleet.plugins.module_utils._reconcile import fleet_key


@functools.lru_cache(maxsize=None)
def _library() -> t.Tuple[t.Any, t.Optional[str]]:
    """jsonschema and None, or None and the traceback of its import: imported on the first check, not before."""
    try:
        import jsonschema  # pylint: disable=import-outside-toplevel
    except ImportError:
        return None, traceback.format_exc()
    return jsonschema, None


def import_error() -> t.Optional[str]:
    """The traceback of importing jsonschema, or None when it is there (for ``missing_required_lib``)."""
    return _library()[1]


_SHORT_TEXT = {"type": "string", "maxLength": 1024}
_OPTIONAL_TEXT = {"type": ["string", "null"], "maxLength": 1024}
# Server ids are UUIDs. A fleet id must be one: a sync marks every known fleet missing from the list inactive, so a
# list whose ids are not fleet ids must fail, not deactivate them all. A machine id only names a host: any short id
# of safe characters. ((?![\s\S]) and not $: Python's $ also matches before a final newline.)
_ID = {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}(?![\\s\\S])"}
_FLEET_ID = {
    "type": "string",
    "description": "a fleet id (a UUID)",
    "pattern": "^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}(?![\\s\\S])",
}

FLEET_FILE = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "title": "ssh_workspaces.json",
    "type": "object",
    "properties": {
        "active": {"type": ["string", "null"]},
        "workspaces": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": {"type": "string", "minLength": 1},
                    "api_key": {"type": ["string", "null"]},
                    "server": {"type": ["string", "null"]},
                    "remote_id": {"type": ["string", "null"]},
                    "remote_name": {"type": ["string", "null"]},
                    "last_synced_at": {"type": ["string", "null"]},
                    "inactive": {"type": "boolean"},
                },
            },
        },
    },
}

SERVER_FLEETS = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "title": "GET /api/workspaces/workspaces/",
    "type": "array",
    "maxItems": 100000,
    "items": {
        "type": "object",
        "required": ["id", "name"],
        "properties": {
            "id": _FLEET_ID,
            "name": _SHORT_TEXT,
            "slug": _OPTIONAL_TEXT,
            "type": _OPTIONAL_TEXT,
            "plan": _OPTIONAL_TEXT,
            "created_at": _OPTIONAL_TEXT,
            "member_count": {"type": ["integer", "null"], "minimum": 0},
            "machine_count": {"type": ["integer", "null"], "minimum": 0},
        },
    },
}

MACHINE = {
    "type": "object",
    "required": ["id", "workspace"],
    "properties": {
        "id": _ID,
        "workspace": _FLEET_ID,
        "workspace_name": _OPTIONAL_TEXT,
        "name": _OPTIONAL_TEXT,
        "hostname": _OPTIONAL_TEXT,
        "status": _OPTIONAL_TEXT,
        "is_online": {"type": ["boolean", "null"]},
        "public_ip": _OPTIONAL_TEXT,
        "local_ips": {"type": ["array", "null"], "items": {"type": "string", "maxLength": 64}},
    },
}

MACHINES_PAGE = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "title": "GET /api/machines/machines/",
    "type": "object",
    "required": ["count", "page", "pages", "results"],
    "properties": {
        "count": {"type": "integer", "minimum": 0},
        "page": {"type": "integer", "minimum": 1},
        "pages": {"type": "integer", "minimum": 0},
        "page_size": {"type": "integer", "minimum": 1},
        "has_next": {"type": "boolean"},
        "results": {"type": "array", "items": MACHINE},
    },
}

TOKEN_FILE = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "title": "token file",
    "type": "object",
    "required": ["access_token"],
    "properties": {
        "access_token": {"type": "string", "minLength": 1},
        "refresh_token": {"type": ["string", "null"]},
        "expires_at": {"type": ["number", "string", "null"]},
        "expires_in": {"type": ["number", "null"]},
    },
}


class SchemaError(ValueError):
    """A document is not of the shape it must have. The message holds no value of the document."""


def _where(path: t.Iterable[t.Any]) -> str:
    text = ""
    for part in path:
        text += "[%d]" % part if isinstance(part, int) else (".%s" % part if text else str(part))
    return text or "(top level)"


def _rule(error: t.Any) -> str:
    validator = error.validator
    if validator == "type":
        types = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
        return "must be of type %s" % " or ".join(types)
    if validator == "required":
        missing = [name for name in error.validator_value if isinstance(error.instance, dict) and name not in error.instance]
        return "lacks required key %s" % ", ".join(repr(name) for name in missing)
    if validator == "pattern" and error.schema.get("description"):
        return "is not %s" % error.schema["description"]
    if validator in ("maxLength", "minLength", "maxItems", "minItems", "minimum", "maximum"):
        return "breaks %s %s" % (validator, error.validator_value)
    return "does not match the expected %s" % validator


_VALIDATORS: t.Dict[int, t.Tuple[dict, t.Any]] = {}  # id(schema) -> (schema, its validator): each schema is compiled once


def _validator(jsonschema: t.Any, schema: dict) -> t.Any:
    known = _VALIDATORS.get(id(schema))
    if known is None or known[0] is not schema:
        known = _VALIDATORS[id(schema)] = (schema, jsonschema.Draft7Validator(schema))
    return known[1]


class _Proven:
    """Documents of some schemas known valid (by digest), so that a process reading the same bytes again need not check them.

    Off unless a caller turns it on with ``remember_valid`` (the inventory plugin does, with digests it kept in its cache).
    A digest covers the schema and the whole document, so any change to either is checked again.
    """

    def __init__(self) -> None:
        self.schemas: t.Tuple[dict, ...] = ()
        self.known: t.FrozenSet[str] = frozenset()
        self.seen: t.Set[str] = set()

    def digest(self, instance: t.Any, schema: dict) -> t.Optional[str]:
        if not any(schema is one for one in self.schemas):
            return None
        try:
            text = json.dumps([schema, instance], sort_keys=True)
        except (TypeError, ValueError):
            return None
        return hashlib.sha256(("cmdop.fleet valid\0" + text).encode("utf-8")).hexdigest()[:32]


_PROVEN = _Proven()


def remember_valid(schemas: t.Sequence[dict], known: t.Iterable[str]) -> None:
    """From now on, a document of ``schemas`` whose digest is in ``known`` is valid without a check; start a new ``valid_digests``."""
    _PROVEN.schemas = tuple(schemas)
    _PROVEN.known = frozenset(item for item in known if isinstance(item, str))
    _PROVEN.seen = set()


def valid_digests() -> t.List[str]:
    """The digests of the documents of the remembered schemas found valid since ``remember_valid`` (one-way: no content)."""
    return sorted(_PROVEN.seen)


def validate(instance: t.Any, schema: dict, what: str) -> None:
    """Raise SchemaError naming ``what`` and the first broken rule."""
    digest = _PROVEN.digest(instance, schema)
    if digest is not None and digest in _PROVEN.known:
        _PROVEN.seen.add(digest)
        return
    jsonschema = _library()[0]
    if jsonschema is None:
        raise SchemaError("the jsonschema Python library is required to check %s" % what)
    error = jsonschema.exceptions.best_match(_validator(jsonschema, schema).iter_errors(instance))
    if error is not None:
        raise SchemaError("%s is not valid: %s %s" % (what, _where(error.absolute_path), _rule(error)))
    if digest is not None:
        _PROVEN.seen.add(digest)


def validate_server_fleets(fleets: t.Any, what: str = "the server's fleet list") -> t.List[dict]:
    """Check a fleet list as ``GET /api/workspaces/workspaces/`` returns it; ids must be unique (without case)."""
    validate(fleets, SERVER_FLEETS, what)
    seen: t.Set[str] = set()
    for index, fleet in enumerate(fleets):
        if fleet_key(fleet["id"]) in seen:
            raise SchemaError("%s is not valid: [%d].id repeats the id of another fleet" % (what, index))
        seen.add(fleet_key(fleet["id"]))
    return fleets
