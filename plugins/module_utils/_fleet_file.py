# -*- coding: utf-8 -*-
# Copyright (c) cmdop.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The ``ssh_workspaces.json`` document: parse, check, serialize, redact.

Pure functions over text and dicts. Private to the collection.
"""

from __future__ import annotations

import copy
import json
import typing as t

from ansible_collections.cmdop.fleet.plugins.module_utils._json import JsonTextError, load
from ansible_collections.cmdop.fleet.plugins.module_utils._schemas import FLEET_FILE, SchemaError, validate

REDACTED = "********"
SECRET_KEYS = ("api_key",)


class FleetFileError(ValueError):
    """The fleet file cannot be used as it is. The message holds no secret."""


def empty_document() -> dict:
    """What a missing file starts as. ``active`` is empty: a sync never picks the active fleet."""
    return {"active": "", "workspaces": []}


def parse(text: t.Optional[str], path: str) -> dict:
    """The document in ``text`` (None: the file does not exist), checked against the schema."""
    if text is None:
        return empty_document()
    if not text.strip():
        raise FleetFileError("%s is empty; restore it or remove it to start afresh" % path)
    try:
        document = load(text, path)
    except JsonTextError as exc:
        raise FleetFileError("%s; fix or remove it" % exc) from None
    try:
        validate(document, FLEET_FILE, path)
    except SchemaError as exc:
        raise FleetFileError(str(exc)) from None
    return document


def serialize(document: dict) -> str:
    """The file's text: two-space indent, keys in their order, UTF-8 as is, a final newline.

    Deterministic, so the same document always gives the same bytes.
    """
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def secrets(document: dict) -> t.List[str]:
    """Every secret value the document holds (non-empty API keys)."""
    return [entry[key] for entry in document.get("workspaces", []) for key in SECRET_KEYS if isinstance(entry.get(key), str) and entry[key]]


def redact(document: dict) -> dict:
    """A copy with every non-empty API key replaced by ``********``."""
    document = copy.deepcopy(document)
    for entry in document.get("workspaces", []):
        for key in SECRET_KEYS:
            if entry.get(key):
                entry[key] = REDACTED
    return document
