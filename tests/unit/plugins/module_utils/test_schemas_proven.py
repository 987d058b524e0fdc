# -*- coding: utf-8 -*-
# Copyright (c) cmdop.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Unit tests of the schema check's memo: a document found valid before (by digest) is not checked again; anything else is."""

from __future__ import annotations

import typing as t

import pytest

from ansible_collections.cmdop.fleet.plugins.module_utils import _schemas
from ansible_collections.cmdop.fleet.plugins.module_utils._schemas import FLEET_FILE, TOKEN_FILE, SchemaError, remember_valid, valid_digests, validate

pytestmark = pytest.mark.core_independent  # pure code, the emulator or a static check: run once (tests/conftest.py)

GOOD = {"active": "", "workspaces": [{"name": "team-a", "api_key": "cmdop_live_secret_key_0123456789"}]}


@pytest.fixture(autouse=True)
def forget() -> t.Iterator[None]:
    yield
    remember_valid((), ())


def test_off_by_default_nothing_is_remembered() -> None:
    remember_valid((), ())
    validate(GOOD, FLEET_FILE, "f")
    assert valid_digests() == []


def test_a_document_found_valid_gives_a_digest_and_the_digest_skips_the_check(monkeypatch: pytest.MonkeyPatch) -> None:
    remember_valid((FLEET_FILE, TOKEN_FILE), ())
    validate(GOOD, FLEET_FILE, "f")
    digests = valid_digests()
    assert len(digests) == 1 and "secret" not in digests[0] and len(digests[0]) == 32
    remember_valid((FLEET_FILE, TOKEN_FILE), digests)
    monkeypatch.setattr(_schemas, "_library", lambda: (None, "jsonschema is not there"))  # a check would now fail
    validate(GOOD, FLEET_FILE, "f")  # known: not checked
    assert valid_digests() == digests
    with pytest.raises(SchemaError, match="jsonschema Python library is required"):
        validate(dict(GOOD, active="x"), FLEET_FILE, "f")  # one change: checked again


def test_a_digest_is_of_one_schema_and_an_invalid_document_is_never_remembered() -> None:
    remember_valid((FLEET_FILE, TOKEN_FILE), ())
    token = {"access_token": "a"}
    validate(token, TOKEN_FILE, "t")
    with pytest.raises(SchemaError, match="workspaces must be of type array"):
        validate({"workspaces": 1}, FLEET_FILE, "f")
    remember_valid((FLEET_FILE,), valid_digests())
    with pytest.raises(SchemaError, match=r"workspaces\[0\] lacks required key 'name'"):
        validate({"workspaces": [{}]}, FLEET_FILE, "f")
    assert len(valid_digests()) == 0
    with pytest.raises(SchemaError):
        validate({"access_token": ""}, TOKEN_FILE, "t")
