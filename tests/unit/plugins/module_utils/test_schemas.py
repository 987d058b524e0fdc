# -*- coding: utf-8 -*-
# Copyright (c) cmdop.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Unit tests of the server fleet list check."""

from __future__ import annotations

import copy

import pytest

from ansible_collections.cmdop.fleet.plugins.module_utils._schemas import MACHINES_PAGE, SchemaError, validate, validate_server_fleets

pytestmark = pytest.mark.core_independent  # pure code, the emulator or a static check: run once (tests/conftest.py)

WHAT = "the fleets option"


def _contract_fleet(fleet_id="7f0c8f5e-0c7a-4a3e-8d7e-8b1a4c2d9e01", name="Team A", **extra):
    fleet = {
        "id": fleet_id,
        "name": name,
        "slug": "team-a",
        "type": "team",
        "plan": "pro",
        "created_at": "2026-01-01T00:00:00Z",
        "member_count": 3,
        "machine_count": 12,
    }
    fleet.update(extra)
    return fleet


def _message(fleets):
    with pytest.raises(SchemaError) as info:
        validate_server_fleets(fleets, WHAT)
    message = str(info.value)
    assert WHAT in message
    return message


def test_contract_shape_with_extra_fields_is_accepted():
    fleets = [
        _contract_fleet(owner={"email": "a@example.com"}, features=["shell"], is_default=True),
        _contract_fleet("2b7e6a4c-1d1f-4c51-9b55-2f0a8a2b9c10", "Personal", slug=None, type="personal", plan="free", member_count=None),
        {"id": "C0FFEE00-0000-4000-8000-00000000C0DE", "name": ""},
    ]
    snapshot = copy.deepcopy(fleets)
    assert validate_server_fleets(fleets) == snapshot
    assert fleets == snapshot


def test_empty_list_is_accepted():
    assert validate_server_fleets([]) == []


def test_default_what_is_used_in_messages():
    with pytest.raises(SchemaError) as info:
        validate_server_fleets({})
    assert "the server's fleet list" in str(info.value)


def test_schema_error_is_a_value_error():
    assert issubclass(SchemaError, ValueError)


@pytest.mark.parametrize(
    "fleets",
    [{"results": []}, "cmdop_live_notalist", None, 42, True],
    ids=["dict", "string", "none", "int", "bool"],
)
def test_non_list_is_rejected(fleets):
    message = _message(fleets)
    assert "array" in message
    assert "cmdop_live_notalist" not in message
    assert "results" not in message


@pytest.mark.parametrize("missing", ["id", "name"])
def test_missing_required_key_is_rejected(missing):
    broken = _contract_fleet("2b7e6a4c-1d1f-4c51-9b55-2f0a8a2b9c10", "Hidden Name Value")
    del broken[missing]
    message = _message([_contract_fleet(), broken])
    assert "[1]" in message
    assert repr(missing) in message or missing in message
    assert "Hidden Name Value" not in message and "2b7e6a4c" not in message


def test_entry_not_an_object_is_rejected():
    message = _message([_contract_fleet(), "cmdop_live_someone_pasted_a_key"])
    assert "[1]" in message
    assert "cmdop_live" not in message


@pytest.mark.parametrize(
    "bad_id",
    [
        "cmdop/live/secret",
        "../../etc/passwd",
        "cmdop live secret",
        "cmdop_live_secret\n",
        "cmdop_live_" + "s" * 989,
        "",
        "-cmdop_live_secret",
        "cmdop_live_sécret",
        12345678,
        None,
    ],
    ids=["slashes", "traversal", "spaces", "newline", "1000-chars", "empty", "leading-dash", "non-ascii", "int", "none"],
)
def test_bad_id_is_rejected_without_showing_it(bad_id):
    message = _message([_contract_fleet(), _contract_fleet(fleet_id=bad_id)])
    assert "[1].id" in message
    assert "cmdop_live" not in message and "secret" not in message and "etc/passwd" not in message
    assert "12345678" not in message


@pytest.mark.parametrize("fleet_id", ["a" * 32, "team-a", "6bf6a91b-8ab8-46b1-8c48-3eda706c288", "6bf6a91b-8ab8-46b1-8c48-3eda706c2881\n",
                                      "{6bf6a91b-8ab8-46b1-8c48-3eda706c2881}", "6bf6a91b8ab846b18c483eda706c2881"])
def test_a_fleet_id_that_is_not_a_uuid_is_rejected(fleet_id):
    """A list whose ids are not fleet ids would deactivate every known fleet and add junk: it fails instead."""
    assert "[0].id is not a fleet id (a UUID)" in _message([_contract_fleet(fleet_id=fleet_id)])


def test_a_machine_id_of_128_characters_is_accepted_and_129_rejected():
    machine = {"id": "a" * 128, "workspace": "6bf6a91b-8ab8-46b1-8c48-3eda706c2881"}
    page = {"count": 1, "page": 1, "pages": 1, "results": [machine]}
    validate(page, MACHINES_PAGE, "page")
    with pytest.raises(SchemaError, match=r"results\[0\]\.id does not match"):
        validate(dict(page, results=[dict(machine, id="a" * 129)]), MACHINES_PAGE, "page")


def test_name_of_5000_characters_is_rejected():
    message = _message([_contract_fleet(name="cmdop_live_" + "n" * 4989)])
    assert "[0].name" in message
    assert "maxLength" in message
    assert "cmdop_live" not in message
    assert len(message) < 300


@pytest.mark.parametrize(
    "field, value",
    [("name", None), ("name", 7), ("slug", 7), ("member_count", -1), ("machine_count", "12"), ("type", ["team"])],
)
def test_wrong_field_types_are_rejected(field, value):
    message = _message([_contract_fleet(**{field: value})])
    assert "[0].%s" % field in message


def test_duplicate_ids_are_rejected_without_showing_the_id():
    dup = "cmdop_live_dupsecret"
    message = _message([_contract_fleet(dup, "A"), _contract_fleet("other", "B"), _contract_fleet(dup, "C")])
    assert "[2].id" in message
    assert dup not in message
