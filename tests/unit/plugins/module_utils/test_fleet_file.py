# -*- coding: utf-8 -*-
# Copyright (c) cmdop.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Unit tests of the ssh_workspaces.json document: parse, serialize, redact, secrets."""

from __future__ import annotations

import copy
import json

import pytest

from ansible_collections.cmdop.fleet.plugins.module_utils._fleet_file import (
    REDACTED,
    FleetFileError,
    parse,
    redact,
    secrets,
    serialize,
)

pytestmark = pytest.mark.core_independent  # pure code, the emulator or a static check: run once (tests/conftest.py)

PATH = "/home/alice/.cmdop/ssh_workspaces.json"
SECRET = "cmdop_live_Zq8xV3pL0mN7rT2yK5wB"


def _full_document():
    return {
        "active": "team-a",
        "workspaces": [
            {"name": "team-a", "api_key": SECRET, "server": "", "remote_id": "7f0c8f5e-0c7a-4a3e-8d7e-8b1a4c2d9e01",
             "remote_name": "Équipe A — 東京", "last_synced_at": "2026-11-20T10:00:00Z"},
            {"name": "lab", "api_key": "", "server": "https://relay.example.net", "x_color": "red"},
            {"name": "old", "api_key": None, "remote_id": None, "inactive": True},
            {"name": "bare"},
        ],
        "x_top": {"z": 1, "a": [1, 2, None]},
    }


# ---------------------------------------------------------------- parse


def test_missing_file_is_an_empty_document():
    document = parse(None, PATH)
    assert document == {"active": "", "workspaces": []}
    document["workspaces"].append({"name": "x"})
    assert parse(None, PATH) == {"active": "", "workspaces": []}, "each call returns a fresh document"


@pytest.mark.parametrize("text", ["", " ", "\n", " \t\r\n  \n"])
def test_empty_file_is_an_error(text):
    with pytest.raises(FleetFileError) as info:
        parse(text, PATH)
    assert PATH in str(info.value)
    assert "empty" in str(info.value), "an empty file is told apart from a corrupt one"


@pytest.mark.parametrize(
    "text",
    [
        '{"active": "lab", "workspaces": [{"name": "lab", "api_key": "%s"' % SECRET,
        '{"workspaces": [{"name": "lab", "api_key": %s}]}' % SECRET,
        "{'workspaces': [{'name': 'lab', 'api_key': '%s'}]}" % SECRET,
        '{"workspaces": [{"name": "lab", "api_key": "%s",}]}' % SECRET,
        '{"workspaces": []} %s' % SECRET,
        '{\n  "workspaces": [\n    {"name": "lab",\n     "api_key": "%s"\n    ]\n}\n' % SECRET,
        SECRET,
    ],
    ids=["truncated", "unquoted-key", "single-quotes", "trailing-comma", "trailing-garbage", "multi-line", "bare"],
)
def test_invalid_json_error_holds_no_text_of_the_file(text):
    with pytest.raises(FleetFileError) as info:
        parse(text, PATH)
    error = info.value
    for shown in (str(error), repr(error)):
        assert SECRET not in shown
        assert "cmdop_live" not in shown
        assert "Zq8x" not in shown
    assert PATH in str(error)
    assert "line" in str(error) and "column" in str(error), "the position helps users find the fault"
    # The JSON parser's exception (which keeps the whole text in .doc) is not chained for display.
    assert error.__cause__ is None
    assert error.__suppress_context__ is True


def test_invalid_json_reports_the_position():
    with pytest.raises(FleetFileError) as info:
        parse('{\n  "active": "x",\n  "workspaces": [,]\n}\n', PATH)
    assert "line 3" in str(info.value)


@pytest.mark.parametrize(
    "document, place",
    [
        ({"workspaces": {"name": "lab", "api_key": SECRET}}, "workspaces"),
        ({"workspaces": [{"name": "a", "api_key": "x"}, {"api_key": SECRET}]}, "workspaces[1]"),
        ({"workspaces": [{"name": "a", "api_key": "x"}, {"name": "b", "api_key": 987654321}]}, "workspaces[1].api_key"),
        ({"workspaces": [{"name": "a"}, {"name": "b"}, {"name": 424242, "api_key": SECRET}]}, "workspaces[2].name"),
        ({"workspaces": [{"name": "", "api_key": SECRET}]}, "workspaces[0].name"),
        ({"workspaces": [{"name": "a", "api_key": SECRET, "inactive": "yes"}]}, "workspaces[0].inactive"),
        ({"workspaces": [{"name": "a", "api_key": SECRET, "remote_id": 31337}]}, "workspaces[0].remote_id"),
        ({"workspaces": [{"name": "a", "api_key": SECRET, "server": ["https://x"]}]}, "workspaces[0].server"),
        ({"workspaces": [SECRET]}, "workspaces[0]"),
        ({"active": 777777, "workspaces": []}, "active"),
        ([{"name": "a", "api_key": SECRET}], "top level"),
        (SECRET, "top level"),
    ],
)
def test_schema_invalid_names_the_place_not_the_value(document, place):
    with pytest.raises(FleetFileError) as info:
        parse(json.dumps(document), PATH)
    message = str(info.value)
    assert place in message
    assert PATH in message
    for value in (SECRET, "987654321", "424242", "31337", "777777", "https://x"):
        assert value not in message
    assert info.value.__cause__ is None


def test_missing_name_says_which_key():
    with pytest.raises(FleetFileError) as info:
        parse('{"workspaces": [{"name": "a"}, {"api_key": "k"}]}', PATH)
    assert "workspaces[1]" in str(info.value)
    assert "name" in str(info.value)


def test_valid_document_with_nulls_and_unknown_keys_is_accepted():
    document = _full_document()
    assert parse(json.dumps(document), PATH) == document
    assert parse("{}", PATH) == {}


# ---------------------------------------------------------------- serialize


def test_serialize_exact_text():
    document = {"active": "é", "workspaces": [{"name": "lab", "api_key": "", "x": [1, None, True]}], "z": {}}
    assert serialize(document) == (
        "{\n"
        '  "active": "é",\n'
        '  "workspaces": [\n'
        "    {\n"
        '      "name": "lab",\n'
        '      "api_key": "",\n'
        '      "x": [\n'
        "        1,\n"
        "        null,\n"
        "        true\n"
        "      ]\n"
        "    }\n"
        "  ],\n"
        '  "z": {}\n'
        "}\n"
    )


def test_serialize_is_deterministic_and_keeps_key_order():
    document = _full_document()
    text = serialize(document)
    assert serialize(copy.deepcopy(document)) == text
    assert text.endswith("}\n") and not text.endswith("\n\n")
    # Keys in the document's order, not sorted.
    assert text.index('"active"') < text.index('"workspaces"') < text.index('"x_top"')
    assert text.index('"z"') < text.index('"a"')
    reordered = dict(reversed(list(document.items())))
    assert serialize(reordered) != text


def test_serialize_keeps_non_ascii_as_is():
    text = serialize(_full_document())
    assert "Équipe A — 東京" in text
    assert "\\u" not in text
    text.encode("utf-8")


def test_serialize_uses_two_space_indent():
    lines = serialize(_full_document()).splitlines()
    assert lines[1].startswith('  "') and not lines[1].startswith('   ')
    for line in lines:
        indent = len(line) - len(line.lstrip(" "))
        assert indent % 2 == 0
        assert "\t" not in line


@pytest.mark.parametrize("document", [_full_document(), {"active": "", "workspaces": []}, {}, {"workspaces": [{"name": "ü" * 300}]}])
def test_parse_serialize_round_trip(document):
    parsed = parse(serialize(document), PATH)
    assert parsed == document
    assert json.dumps(parsed) == json.dumps(document), "key order survives the round trip"
    assert serialize(parsed) == serialize(document)


# ---------------------------------------------------------------- redact and secrets


def test_redact_hides_non_empty_keys_only():
    document = _full_document()
    snapshot = copy.deepcopy(document)
    redacted = redact(document)
    assert document == snapshot, "redact must not mutate its input"
    entries = redacted["workspaces"]
    assert entries[0]["api_key"] == REDACTED == "********"
    assert entries[1]["api_key"] == ""
    assert entries[2]["api_key"] is None
    assert "api_key" not in entries[3]
    # Everything else is as it was.
    for before, after in zip(snapshot["workspaces"], entries):
        assert {k: v for k, v in before.items() if k != "api_key"} == {k: v for k, v in after.items() if k != "api_key"}
    assert redacted["x_top"] == snapshot["x_top"] and redacted["active"] == snapshot["active"]
    assert SECRET not in serialize(redacted)


def test_redact_result_shares_nothing_with_input():
    document = _full_document()
    redacted = redact(document)
    redacted["workspaces"][1]["x_color"] = "blue"
    redacted["x_top"]["a"].append(3)
    assert document == _full_document()


def test_redact_document_without_workspaces():
    assert redact({"active": "x"}) == {"active": "x"}


def test_secrets_lists_non_empty_keys():
    document = _full_document()
    document["workspaces"].append({"name": "second", "api_key": "cmdop_live_second"})
    assert secrets(document) == [SECRET, "cmdop_live_second"]
    assert secrets({"active": "", "workspaces": []}) == []
    assert secrets({}) == []
    assert secrets({"workspaces": [{"name": "a", "api_key": ""}, {"name": "b", "api_key": None}, {"name": "c"}]}) == []
