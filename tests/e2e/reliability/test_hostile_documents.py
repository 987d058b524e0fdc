"""Hostile fleet files and server answers, generated (hypothesis), against the pure core the module runs:
``_fleet_file.parse`` -> ``_reconcile.reconcile`` -> ``_fleet_file.serialize``.

Either every rule holds (API keys, API-key-only entries, the other mode's entries, ``active`` and unknown data
unchanged; a second run changes nothing and gives identical bytes), or reading fails with ``FleetFileError`` (a clean
failure: the module then writes nothing). No other exception, ever. The named hostile files of the issue run through
ansible-playbook in test_hostile_files.py.
"""

from __future__ import annotations

import json
import typing as t
import uuid

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from ansible_collections.cmdop.fleet.plugins.module_utils import _fleet_file
from ansible_collections.cmdop.fleet.plugins.module_utils._reconcile import reconcile
from ansible_collections.cmdop.fleet.plugins.module_utils._schemas import SchemaError, validate_server_fleets

AREA = "Hostile fleet files"
NOW, LATER = "2026-12-01T10:00:00Z", "2026-12-01T10:05:00Z"
KNOWN_KEYS = ("name", "api_key", "server", "remote_id", "remote_name", "last_synced_at", "inactive")
SETTINGS = settings(deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

fleet_ids = st.uuids(version=4).map(str)
text = st.text(min_size=0, max_size=40)  # any unicode, surrogates excluded (JSON text is UTF-8)
long_names = st.text(min_size=1000, max_size=3000)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(text, children, max_size=4),
    max_leaves=20,
)
unknown = st.dictionaries(text.filter(lambda key: key not in KNOWN_KEYS), json_values, max_size=3)


@st.composite
def entries(draw: t.Callable, ids: t.List[str]) -> dict:
    entry = draw(unknown)
    entry["name"] = draw(st.one_of(text.filter(bool), long_names, st.sampled_from(["team-a", "team-a", "lab"])))  # duplicates too
    for key, values in (("api_key", st.none() | st.just("") | st.text(min_size=8, max_size=60)),
                        ("server", st.sampled_from([None, "", "https://api.cmdop.com", "https://dev.cmdop.com", "https://other.example"])),
                        ("remote_id", st.none() | st.just("") | st.sampled_from(ids) | fleet_ids | text),  # repeated ids too
                        ("remote_name", st.none() | text), ("inactive", st.booleans()),
                        ("last_synced_at", st.none() | st.just(NOW) | st.just("2020-01-01T00:00:00Z") | text)):
        if draw(st.booleans()):
            entry[key] = draw(values)
    return entry


@st.composite
def scenarios(draw: t.Callable) -> t.Tuple[dict, t.List[dict], str]:
    ids = draw(st.lists(fleet_ids, min_size=1, max_size=5, unique=True))
    document = draw(unknown.filter(lambda keys: "active" not in keys and "workspaces" not in keys))
    document["active"] = draw(st.none() | text)
    document["workspaces"] = draw(st.lists(entries(ids), max_size=8))
    listed = draw(st.lists(st.sampled_from(ids), unique=True)) + draw(st.lists(fleet_ids, max_size=2, unique=True))
    fleets = [dict({"id": fleet_id, "name": draw(st.one_of(text, long_names.map(lambda name: name[:1024])))},
                   **({"slug": draw(st.none() | text)} if draw(st.booleans()) else {})) for fleet_id in dict.fromkeys(listed)]
    return document, fleets, draw(st.sampled_from(["prod", "dev"]))


def out_of_scope(entry: dict, mode: str, listed: t.Set[str]) -> bool:
    """Entries a sync in this mode never changes: API-key-only ones, the other mode's, and another server's (a local
    override) unless the server lists its fleet (then it is refreshed, but never deactivated)."""
    server = entry.get("server") or ""
    other = {"prod": ("https://dev.cmdop.com",), "dev": ("", "https://api.cmdop.com")}[mode]
    if not entry.get("remote_id") or server in other:
        return True
    return server == "https://other.example" and entry["remote_id"] not in listed


@pytest.mark.case(AREA, "generated documents (unicode, very long and duplicate names, duplicate remote ids, unknown keys at any "
                        "place) against generated server answers", "API keys, API-key-only and other-mode entries, active and unknown "
                        "data unchanged; a second run changed=false with identical bytes")
@SETTINGS
@given(scenarios())
def test_every_rule_holds_for_generated_documents(scenario: t.Tuple[dict, t.List[dict], str]) -> None:
    document, fleets, mode = scenario
    fleets = validate_server_fleets(fleets)
    text_before = _fleet_file.serialize(document)
    before = _fleet_file.parse(text_before, "f")
    first = reconcile(before, fleets, mode, NOW)
    after = first.document

    assert {key: value for key, value in after.items() if key != "workspaces"} == {key: value for key, value in before.items() if key != "workspaces"}
    assert len(after["workspaces"]) >= len(before["workspaces"])  # nothing removed
    for old, new in zip(before["workspaces"], after["workspaces"]):
        assert new.get("api_key") == old.get("api_key") and new["name"] == old["name"] and new.get("server") == old.get("server")
        assert {key: value for key, value in new.items() if key not in KNOWN_KEYS} == {key: value for key, value in old.items() if key not in KNOWN_KEYS}
        if out_of_scope(old, mode, {fleet["id"] for fleet in fleets}):
            assert new == old
        if old.get("server") == "https://other.example" and not old.get("inactive"):
            assert not new.get("inactive")  # an override is never deactivated
    added = after["workspaces"][len(before["workspaces"]):]
    assert all(entry["api_key"] == "" and entry["remote_id"] in {fleet["id"] for fleet in fleets} for entry in added)

    text_after = _fleet_file.serialize(after)
    again = reconcile(_fleet_file.parse(text_after, "f"), fleets, mode, LATER)
    assert not again.changed, again.changes
    assert _fleet_file.serialize(again.document) == text_after


@st.composite
def hostile_texts(draw: t.Callable) -> str:
    document, _fleets, _mode = draw(scenarios())
    good = _fleet_file.serialize(document)
    how = draw(st.sampled_from(["bom", "crlf", "nul", "trailing", "truncate", "control", "nest", "duplicate", "byte"]))
    if how == "bom":
        return "\ufeff" + good
    if how == "crlf":
        return good.replace("\n", "\r\n")
    if how == "nul":
        at = draw(st.integers(0, len(good)))
        return good[:at] + "\x00" + good[at:]
    if how == "trailing":
        return good + draw(st.sampled_from(["x", "}", "]", "{}", "\x00", "garbage"]))
    if how == "truncate":
        return good[:draw(st.integers(0, len(good) - 1))]
    if how == "control":
        at = draw(st.integers(0, len(good)))
        return good[:at] + draw(st.sampled_from(["\x01", "\x1b", "\u2028", "\ud7ff"])) + good[at:]
    if how == "nest":
        depth = draw(st.sampled_from([63, 64, 65, 1000, 20000]))
        return '{"active": "", "workspaces": [], "deep": %s%s}' % ("[" * depth, "]" * depth)
    if how == "duplicate":
        return good.replace('"workspaces":', '"workspaces": [], "workspaces":', 1)
    at = draw(st.integers(0, len(good) - 1))
    return good[:at] + chr(draw(st.integers(0x20, 0x7e))) + good[at + 1:]


@pytest.mark.case(AREA, "generated hostile texts: a BOM, CRLF, NUL bytes, control characters, trailing garbage, truncation, "
                        "duplicate keys, nesting from 63 to 20,000 deep, a changed byte",
                  "read as a valid document where every rule then holds, or refused with a clear error naming no content; "
                  "never another exception")
@SETTINGS
@given(hostile_texts(), st.lists(fleet_ids, max_size=3, unique=True))
def test_hostile_text_is_read_cleanly_or_refused(text_in: str, ids: t.List[str]) -> None:
    try:
        document = _fleet_file.parse(text_in, "/home/u/.cmdop/ssh_workspaces.json")
    except _fleet_file.FleetFileError as exc:
        assert str(exc).startswith("/home/u/.cmdop/ssh_workspaces.json")
        assert len(str(exc)) < 300
        return
    fleets = [{"id": fleet_id, "name": "F %d" % number} for number, fleet_id in enumerate(ids)]
    first = reconcile(document, fleets, "prod", NOW)
    written = _fleet_file.serialize(first.document)
    again = reconcile(_fleet_file.parse(written, "f"), fleets, "prod", LATER)
    assert not again.changed and _fleet_file.serialize(again.document) == written


@pytest.mark.case(AREA, "generated server answers: wrong types, missing keys, ids that are not UUIDs, repeated ids",
                  "refused with a schema error before any reconciliation; never another exception")
@SETTINGS
@given(st.one_of(json_values, st.lists(st.dictionaries(st.sampled_from(["id", "name", "slug", "x"]),
                                                       st.one_of(json_values, fleet_ids), max_size=4), max_size=4)))
def test_a_hostile_server_answer_is_valid_or_refused(answer: t.Any) -> None:
    try:
        fleets = validate_server_fleets(answer)
    except SchemaError as exc:
        assert "is not valid" in str(exc)
        return
    for fleet in fleets:
        assert uuid.UUID(fleet["id"]) and isinstance(fleet["name"], str)
    assert len({fleet["id"] for fleet in fleets}) == len(fleets)
    reconcile({"active": "", "workspaces": []}, fleets, "prod", NOW)
    json.dumps(fleets)
