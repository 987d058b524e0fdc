# -*- coding: utf-8 -*-
# Copyright (c) cmdop.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Unit tests of the pure reconciliation (what ``cmdop login`` does to ssh_workspaces.json)."""

from __future__ import annotations

import copy
import itertools
import json
import random
import re

import pytest

from ansible_collections.cmdop.fleet.plugins.module_utils._reconcile import (
    ACTIONS,
    ADDED,
    DEACTIVATED,
    REACTIVATED,
    UNCHANGED,
    UPDATED,
    reconcile,
)

pytestmark = pytest.mark.core_independent  # pure code, the emulator or a static check: run once (tests/conftest.py)

NOW = "2026-11-23T10:00:00Z"
EARLIER = "2026-11-20T10:00:00Z"

ID_A = "7f0c8f5e-0c7a-4a3e-8d7e-8b1a4c2d9e01"
ID_B = "2b7e6a4c-1d1f-4c51-9b55-2f0a8a2b9c10"
ID_C = "c0ffee00-1111-4222-8333-444455556666"
ID_D = "deadbeef-aaaa-4bbb-8ccc-dddddddddddd"

PROD_SERVERS = ["", None, "https://api.cmdop.com", "https://api.cmdop.com/", "HTTPS://API.CMDOP.COM", " https://Api.Cmdop.com/ "]
DEV_SERVERS = ["https://dev.cmdop.com", "https://dev.cmdop.com/", "HTTPS://DEV.CMDOP.COM/", " https://Dev.cmdop.com "]
OVERRIDE = "https://relay.example.net"

# What a local name may look like: typeable, no path separators, not hidden, at most 63 characters before a suffix.
NAME_RE = re.compile(r"^[a-z0-9_][a-z0-9._-]*$")


def server_fleet(fleet_id, name, slug=None, **extra):
    """A fleet as GET /api/workspaces/workspaces/ returns it."""
    fleet = {"id": fleet_id, "name": name}
    if slug is not None:
        fleet["slug"] = slug
    fleet.update({"type": "team", "plan": "pro", "created_at": "2026-01-01T00:00:00Z", "member_count": 3, "machine_count": 7})
    fleet.update(extra)
    return fleet


def synced_entry(name, remote_id, remote_name, server="", api_key="cmdop_live_secret", **extra):
    entry = {
        "name": name,
        "api_key": api_key,
        "server": server,
        "remote_id": remote_id,
        "remote_name": remote_name,
        "last_synced_at": EARLIER,
    }
    entry.update(extra)
    return entry


def doc(*entries, active="", **extra):
    document = {"active": active, "workspaces": list(entries)}
    document.update(extra)
    return document


def by_id(document, remote_id):
    return [entry for entry in document["workspaces"] if entry.get("remote_id") == remote_id]


def added_names(outcome):
    return {change.remote_id: change.name for change in outcome.changes if change.action == ADDED}


def actions(outcome):
    return [(change.action, change.name) for change in outcome.changes]


# ---------------------------------------------------------------- adding fleets


def test_new_fleet_is_added_under_its_slug_with_an_empty_key():
    outcome = reconcile(doc(), [server_fleet(ID_A, "Team A", slug="team-a")], "prod", NOW)

    assert outcome.document["workspaces"] == [
        {"name": "team-a", "api_key": "", "server": "", "remote_id": ID_A, "remote_name": "Team A", "last_synced_at": NOW},
    ]
    assert outcome.changed is True
    assert outcome.by_action()[ADDED] == [{"name": "team-a", "remote_id": ID_A}]
    # The active pointer is never chosen by a sync.
    assert outcome.document["active"] == ""


def test_slug_wins_over_name():
    outcome = reconcile(doc(), [server_fleet(ID_A, "Completely Different", slug="ops")], "prod", NOW)
    assert outcome.document["workspaces"][0]["name"] == "ops"
    assert outcome.document["workspaces"][0]["remote_name"] == "Completely Different"


@pytest.mark.parametrize("slug", ["<absent>", None, "", "   ", "!!!", "..", "---"], ids=["absent", "none", "empty", "blank", "punctuation", "dots", "dashes"])
def test_name_is_used_when_slug_is_missing_or_empty(slug):
    fleet = {"id": ID_A, "name": "Team A"}
    if slug != "<absent>":
        fleet["slug"] = slug
    outcome = reconcile(doc(), [fleet], "prod", NOW)
    assert [entry["name"] for entry in outcome.document["workspaces"]] == ["team-a"]


@pytest.mark.parametrize(
    "hostile, expected",
    [
        ("../../etc", "etc"),
        ("../../../root/.ssh/authorized_keys", "root-.ssh-authorized_keys"),
        ("Team A!!", "team-a"),
        ("  Team   A  ", "team-a"),
        ("UPPER_case.v2", "upper_case.v2"),
        ("a/b\\c", "a-b-c"),
        ("con\x00trol\n", "con-trol"),
        (".hidden", "hidden"),
        ("-rf", "rf"),
        ("$(rm -rf ~)", "rm-rf"),
        ("Équipe Ünïcode", "equipe-unicode"),
        ("Équipe Paris", "equipe-paris"),
        ("Züri Ops", "zuri-ops"),
        ("Øresund Łódź Straße Æsir", "oresund-lodz-strasse-aesir"),
        ("ﬁnance", "finance"),
        ("日本チーム", "fleet-7f0c8f5e"),
        ("Команда", "fleet-7f0c8f5e"),
        ("Команда 42", "fleet-7f0c8f5e"),
        ("", "fleet-7f0c8f5e"),
        ("   ", "fleet-7f0c8f5e"),
        ("a" * 200, "a" * 63),
        ("a" * 62 + "-" + "b" * 137, "a" * 62),
        ("a" * 62 + "." + "b" * 137, "a" * 62),
    ],
)
def test_hostile_names_become_safe_typeable_names(hostile, expected):
    outcome = reconcile(doc(), [{"id": ID_A, "name": hostile}], "prod", NOW)
    entry = outcome.document["workspaces"][0]
    assert entry["name"] == expected
    assert NAME_RE.match(entry["name"])
    assert len(entry["name"]) <= 63
    assert "/" not in entry["name"] and entry["name"] not in (".", "..")
    # The server's name is kept as it is, for display.
    assert entry["remote_name"] == hostile


def test_hostile_slug_is_slugified_too():
    outcome = reconcile(doc(), [server_fleet(ID_A, "Team A", slug="../../etc/passwd")], "prod", NOW)
    assert outcome.document["workspaces"][0]["name"] == "etc-passwd"


def test_random_names_always_give_safe_names():
    rng = random.Random(20261123)
    alphabet = "abcXYZ019 ._-/\\!@#$%^&*()[]{}<>|;:'\"`~?\t\n\x00\x7féüßØ日本🚀"
    fleets = []
    for index in range(300):
        name = "".join(rng.choice(alphabet) for _unused in range(rng.randint(0, 250)))
        fleets.append({"id": "id%04d" % index, "name": name, "slug": rng.choice([None, "", name])})
    outcome = reconcile(doc(), fleets, "prod", NOW)
    names = [entry["name"] for entry in outcome.document["workspaces"]]
    assert len(names) == 300
    assert len(set(names)) == 300, "local names must be unique"
    for name in names:
        assert NAME_RE.match(name), name
        assert not name.endswith(("-", "."))


# ---------------------------------------------------------------- name collisions


def test_collision_with_api_key_only_entry_appends_the_first_8_of_the_id():
    local = {"name": "team-a", "api_key": "cmdop_live_local"}
    document = doc(local, active="team-a")
    outcome = reconcile(document, [server_fleet(ID_A, "Team A", slug="team-a")], "prod", NOW)

    assert outcome.document["workspaces"][0] == local
    assert outcome.document["workspaces"][1]["name"] == "team-a-7f0c8f5e"
    assert outcome.document["active"] == "team-a"
    assert outcome.by_action()[ADDED] == [{"name": "team-a-7f0c8f5e", "remote_id": ID_A}]


def test_collision_then_counter():
    document = doc({"name": "team-a", "api_key": "k1"}, {"name": "team-a-7f0c8f5e", "api_key": "k2"})
    outcome = reconcile(document, [server_fleet(ID_A, "Team A", slug="team-a")], "prod", NOW)
    assert outcome.document["workspaces"][2]["name"] == "team-a-7f0c8f5e-2"

    document = doc({"name": "team-a"}, {"name": "team-a-7f0c8f5e"}, {"name": "team-a-7f0c8f5e-2"})
    outcome = reconcile(document, [server_fleet(ID_A, "Team A", slug="team-a")], "prod", NOW)
    assert outcome.document["workspaces"][3]["name"] == "team-a-7f0c8f5e-3"


def test_collision_with_an_entry_of_the_other_mode():
    dev_entry = synced_entry("team-a", ID_B, "Team A", server="https://dev.cmdop.com")
    outcome = reconcile(doc(dev_entry), [server_fleet(ID_A, "Team A", slug="team-a")], "prod", NOW)
    assert outcome.document["workspaces"][0] == dev_entry
    assert outcome.document["workspaces"][1]["name"] == "team-a-7f0c8f5e"


def test_two_new_fleets_with_the_same_slug_get_distinct_names():
    fleets = [server_fleet(ID_A, "Default", slug="default"), server_fleet(ID_B, "Default", slug="default")]
    outcome = reconcile(doc(), fleets, "prod", NOW)
    names = [entry["name"] for entry in outcome.document["workspaces"]]
    assert len(set(names)) == 2
    assert set(names) <= {"default", "default-7f0c8f5e", "default-2b7e6a4c"}


def test_long_name_collision_keeps_the_63_character_base():
    base = "a" * 63
    outcome = reconcile(doc({"name": base}), [{"id": ID_A, "name": "A" * 200}], "prod", NOW)
    assert outcome.document["workspaces"][1]["name"] == base + "-7f0c8f5e"


def test_empty_names_fall_back_to_fleet_and_stay_unique():
    outcome = reconcile(doc({"name": "fleet"}), [{"id": ID_A, "name": ""}, {"id": ID_B, "name": "!!!"}], "prod", NOW)
    names = [entry["name"] for entry in outcome.document["workspaces"][1:]]
    assert names == ["fleet-7f0c8f5e", "fleet-2b7e6a4c"]


# ---------------------------------------------------------------- determinism


def test_same_input_gives_the_same_output():
    document = doc(synced_entry("x", ID_C, "X"), {"name": "team-a"})
    fleets = [server_fleet(ID_A, "Team A", slug="team-a"), server_fleet(ID_B, "Lab")]
    first = reconcile(document, fleets, "prod", NOW)
    second = reconcile(copy.deepcopy(document), copy.deepcopy(fleets), "prod", NOW)
    assert json.dumps(first.document) == json.dumps(second.document)
    assert first.changes == second.changes


def test_names_do_not_depend_on_the_order_of_other_fleets():
    document = doc({"name": "lab"}, synced_entry("ops", ID_D, "Ops"))
    fleets = [
        server_fleet(ID_A, "Team A", slug="team-a"),
        server_fleet(ID_B, "Lab", slug="lab"),
        server_fleet(ID_C, "Staging"),
        server_fleet(ID_D, "Ops", slug="ops"),
    ]
    expected = {ID_A: "team-a", ID_B: "lab-2b7e6a4c", ID_C: "staging"}
    for order in itertools.permutations(fleets):
        outcome = reconcile(document, list(order), "prod", NOW)
        assert added_names(outcome) == expected, [fleet["id"] for fleet in order]


def test_colliding_new_fleets_get_the_same_names_in_any_order():
    """Two new fleets that want the same local name: which one gets the plain name must not depend on
    the order the server (or the ``fleets`` option) lists them in, or the same fleet gets different
    names on different hosts."""
    fleet_a = {"id": ID_A, "name": "Default"}
    fleet_b = {"id": ID_B, "name": "Default"}
    forward = reconcile(doc(), [fleet_a, fleet_b], "prod", NOW)
    backward = reconcile(doc(), [fleet_b, fleet_a], "prod", NOW)
    assert added_names(forward) == added_names(backward)


# ---------------------------------------------------------------- updates


def test_rename_on_the_server_updates_remote_name_only():
    entry = synced_entry("team-a", ID_A, "Team A", api_key="cmdop_live_k", color="blue")
    outcome = reconcile(doc(entry, active="team-a"), [server_fleet(ID_A, "Team Alpha", slug="team-alpha")], "prod", NOW)

    new = outcome.document["workspaces"][0]
    assert new == dict(entry, remote_name="Team Alpha", last_synced_at=NOW)
    assert list(new) == list(entry), "key order is kept"
    assert new["name"] == "team-a", "local names are never renamed"
    assert outcome.changed is True
    assert outcome.by_action()[UPDATED] == [{"name": "team-a", "remote_id": ID_A, "fields": ["remote_name"]}]
    assert outcome.by_action()[ADDED] == []


def test_missing_remote_name_is_filled_in():
    entry = {"name": "team-a", "api_key": "k", "remote_id": ID_A}
    outcome = reconcile(doc(entry), [server_fleet(ID_A, "Team A")], "prod", NOW)
    assert outcome.document["workspaces"][0] == {"name": "team-a", "api_key": "k", "remote_id": ID_A, "remote_name": "Team A", "last_synced_at": NOW}
    assert outcome.by_action()[UPDATED] == [{"name": "team-a", "remote_id": ID_A, "fields": ["remote_name"]}]


def test_unchanged_entry_is_reported_and_not_touched():
    entry = synced_entry("team-a", ID_A, "Team A")
    document = doc(entry)
    outcome = reconcile(document, [server_fleet(ID_A, "Team A")], "prod", NOW, "changed")
    assert outcome.changed is False
    assert outcome.document == document
    assert outcome.document["workspaces"][0]["last_synced_at"] == EARLIER
    assert outcome.by_action()[UNCHANGED] == [{"name": "team-a", "remote_id": ID_A}]


# ---------------------------------------------------------------- last_synced_at


def _mixed_document():
    return doc(
        synced_entry("same", ID_A, "Same"),  # listed, unchanged
        synced_entry("renamed", ID_B, "Old"),  # listed, renamed
        synced_entry("left", ID_C, "Left"),  # not listed: deactivated
        synced_entry("gone", ID_D, "Gone", inactive=True),  # not listed, already inactive
        {"name": "local", "api_key": "k", "last_synced_at": EARLIER},  # API-key-only
        synced_entry("dev", ID_A, "Same", server="https://dev.cmdop.com"),  # other mode, id listed
        synced_entry("relay", ID_A, "Same", server=OVERRIDE),  # override, listed, unchanged
    )


def _stamps(outcome):
    return {entry["name"]: entry.get("last_synced_at") for entry in outcome.document["workspaces"]}


def test_last_synced_changed_moves_only_on_changed_entries():
    fleets = [server_fleet(ID_A, "Same"), server_fleet(ID_B, "New name")]
    outcome = reconcile(_mixed_document(), fleets, "prod", NOW, "changed")
    assert _stamps(outcome) == {
        "same": EARLIER,
        "renamed": NOW,
        "left": NOW,
        "gone": EARLIER,
        "local": EARLIER,
        "dev": EARLIER,
        "relay": EARLIER,
    }


def test_last_synced_max_age_of_one_day_is_the_default():
    fleets = [server_fleet(ID_A, "Same"), server_fleet(ID_B, "New name")]
    default = reconcile(_mixed_document(), fleets, "prod", NOW).document
    assert default == reconcile(_mixed_document(), fleets, "prod", NOW, "max_age", 86400).document
    assert default != reconcile(_mixed_document(), fleets, "prod", NOW, "changed").document


def test_last_synced_max_age_renews_stale_stamps_of_listed_entries_only():
    """EARLIER is three days before NOW: with a one-day age every listed entry is stamped, others are not."""
    fleets = [server_fleet(ID_A, "Same"), server_fleet(ID_B, "New name")]
    outcome = reconcile(_mixed_document(), fleets, "prod", NOW, "max_age", 86400)
    assert _stamps(outcome) == {
        "same": NOW,  # listed, stamp older than a day
        "renamed": NOW,
        "left": NOW,
        "gone": EARLIER,  # not listed and nothing changed
        "local": EARLIER,  # never touched
        "dev": EARLIER,  # other mode: never touched
        "relay": NOW,  # listed override
    }
    assert ("unchanged", "same") in actions(outcome)


@pytest.mark.parametrize(
    "stamp, renewed",
    [
        ("2026-11-22T10:00:01Z", False),  # a second younger than a day
        ("2026-11-22T10:00:00Z", True),  # exactly a day
        ("2026-11-22T10:00:00.5+00:00", False),  # fractions and offsets are read
        ("2026-11-22T11:00:00+02:00", True),  # 09:00Z: older than a day
        (None, True),
        ("yesterday", True),  # unreadable: renewed, never an error
        (12345, True),
    ],
)
def test_last_synced_max_age_boundary(stamp, renewed):
    entry = synced_entry("team-a", ID_A, "Team A")
    if stamp is None:
        del entry["last_synced_at"]
    else:
        entry["last_synced_at"] = stamp
    outcome = reconcile(doc(entry), [server_fleet(ID_A, "Team A")], "prod", NOW, "max_age", 86400)
    assert outcome.changed is renewed
    assert (outcome.document["workspaces"][0]["last_synced_at"] == NOW) is renewed


def test_last_synced_max_age_converges_and_a_second_run_within_the_age_is_a_no_op():
    fleets = [server_fleet(ID_A, "Same"), server_fleet(ID_B, "New name")]
    first = reconcile(_mixed_document(), fleets, "prod", NOW, "max_age", 86400)
    an_hour_later = reconcile(first.document, fleets, "prod", "2026-11-23T11:00:00Z", "max_age", 86400)
    assert an_hour_later.changed is False
    a_day_later = reconcile(first.document, fleets, "prod", "2026-11-24T10:00:00Z", "max_age", 86400)
    assert a_day_later.changed is True


def test_an_unknown_last_synced_policy_is_an_error():
    with pytest.raises(ValueError):
        reconcile(_mixed_document(), [], "prod", NOW, "sometimes")


def test_last_synced_always_stamps_every_listed_entry():
    fleets = [server_fleet(ID_A, "Same"), server_fleet(ID_B, "New name")]
    outcome = reconcile(_mixed_document(), fleets, "prod", NOW, "always")
    assert _stamps(outcome) == {
        "same": NOW,
        "renamed": NOW,
        "left": NOW,
        "gone": EARLIER,  # not listed and nothing changed
        "local": EARLIER,  # never touched
        "dev": EARLIER,  # other mode: never touched
        "relay": NOW,  # listed override
    }
    assert outcome.changed is True
    # Stamping alone is not a change of the entry's data.
    assert ("unchanged", "same") in actions(outcome) and ("unchanged", "relay") in actions(outcome)


def test_last_synced_always_adds_the_stamp_where_missing():
    entry = {"name": "team-a", "remote_id": ID_A, "remote_name": "Team A"}
    changed_mode = reconcile(doc(entry), [server_fleet(ID_A, "Team A")], "prod", NOW, "changed")
    always_mode = reconcile(doc(entry), [server_fleet(ID_A, "Team A")], "prod", NOW, "always")
    assert "last_synced_at" not in changed_mode.document["workspaces"][0]
    assert always_mode.document["workspaces"][0]["last_synced_at"] == NOW


# ---------------------------------------------------------------- idempotence


@pytest.mark.parametrize("last_synced", ["changed", "always", "max_age"])
def test_second_run_is_a_no_op(last_synced):
    fleets = [server_fleet(ID_A, "Same"), server_fleet(ID_B, "New name"), server_fleet(ID_C + "0", "Brand new", slug="same")]
    first = reconcile(_mixed_document(), fleets, "prod", NOW, last_synced)
    second = reconcile(first.document, fleets, "prod", NOW, last_synced)
    assert first.changed is True
    assert second.changed is False
    assert second.document == first.document
    assert json.dumps(second.document) == json.dumps(first.document)
    assert {change.action for change in second.changes} == {UNCHANGED}


def test_second_run_with_a_later_time_changes_nothing_in_changed_mode():
    fleets = [server_fleet(ID_A, "Same"), server_fleet(ID_B, "New name")]
    first = reconcile(_mixed_document(), fleets, "prod", EARLIER, "changed")
    second = reconcile(first.document, fleets, "prod", NOW, "changed")
    assert second.changed is False


def _owner(server):
    """Which mode an entry belongs to, computed here independently of _modes."""
    text = (server or "").strip().rstrip("/").lower()
    if text in ("", "https://api.cmdop.com"):
        return "prod"
    if text == "https://dev.cmdop.com":
        return "dev"
    return "override"


def _random_case(rng):
    ids = ["%08x-%04x-4000-8000-%012x" % (rng.getrandbits(32), index, rng.getrandbits(48)) for index in range(8)]
    names = ["Team A", "team-a", "Lab", "Prod", "../../etc", "Équipe", "", "Default", "x" * 100, "Team A!!"]
    servers = PROD_SERVERS + DEV_SERVERS + [OVERRIDE, "http://localhost:8000"]
    entries = []
    for index in range(rng.randint(0, 9)):
        entry = {"name": rng.choice(["team-a", "lab", "fleet", "default", "etc", "e%d" % index, "team-a-" + ids[0][:8], "Prod"])}
        if rng.random() < 0.8:
            entry["api_key"] = rng.choice(["", "cmdop_live_%d" % index])
        if rng.random() < 0.8:
            entry["server"] = rng.choice(servers)
        kind = rng.random()
        if kind < 0.7:
            entry["remote_id"] = rng.choice(ids)
        elif kind < 0.8:
            entry["remote_id"] = rng.choice(["", None])
        if rng.random() < 0.6:
            entry["remote_name"] = rng.choice(names)
        if rng.random() < 0.5:
            entry["last_synced_at"] = EARLIER
        if rng.random() < 0.3:
            entry["inactive"] = True
        if rng.random() < 0.3:
            entry["x_custom"] = {"index": index, "list": [1, 2]}
        entries.append(entry)
    document = {"active": rng.choice(["", "team-a", "lab", "nonexistent"]), "workspaces": entries}
    if rng.random() < 0.5:
        document["x_top"] = {"kept": True}
    fleets = []
    for fleet_id in rng.sample(ids, rng.randint(0, len(ids))):
        fleet = {"id": fleet_id, "name": rng.choice(names), "machine_count": rng.randint(0, 5)}
        if rng.random() < 0.5:
            fleet["slug"] = rng.choice(["team-a", "lab", "", None, "Team A!!", "prod"])
        fleets.append(fleet)
    return document, fleets, rng.choice(["prod", "dev"]), rng.choice(["changed", "always"])


def _check_invariants(document, fleets, mode, last_synced, outcome):
    listed = {fleet["id"]: fleet for fleet in fleets}
    old_entries = document["workspaces"]
    new_entries = outcome.document["workspaces"]
    assert {k: v for k, v in outcome.document.items() if k != "workspaces"} == {k: v for k, v in document.items() if k != "workspaces"}
    assert list(outcome.document) == list(document)
    assert len(new_entries) >= len(old_entries)

    for old, new in zip(old_entries, new_entries):
        owner = _owner(old.get("server", ""))
        in_scope = bool(old.get("remote_id")) and owner in (mode, "override")
        if not in_scope:
            assert new == old, "API-key-only and other-mode entries are never touched"
            continue
        # Local config and unknown keys never change; only remote_name, inactive and last_synced_at may.
        for key, value in old.items():
            if key not in ("remote_name", "inactive", "last_synced_at"):
                assert new[key] == value
        assert set(new) - set(old) <= {"remote_name", "last_synced_at", "inactive"}
        fleet = listed.get(old["remote_id"])
        if fleet is not None:
            assert new["remote_name"] == fleet["name"]
            assert "inactive" not in new
            if last_synced == "always" or old.get("remote_name") != fleet["name"] or "inactive" in old:
                assert new["last_synced_at"] == NOW
            else:
                assert new.get("last_synced_at") == old.get("last_synced_at")
        elif owner == mode:
            assert new["inactive"] is True
            assert new.get("api_key") == old.get("api_key")
        else:
            assert new == old, "a server override the server does not list is left alone"

    added = new_entries[len(old_entries):]
    old_names = {entry["name"] for entry in old_entries}
    known = {entry["remote_id"] for entry in old_entries if entry.get("remote_id") and _owner(entry.get("server", "")) in (mode, "override")}
    assert [entry["remote_id"] for entry in added] == [fleet["id"] for fleet in fleets if fleet["id"] not in known]
    new_names = [entry["name"] for entry in added]
    assert len(set(new_names)) == len(new_names)
    assert not set(new_names) & old_names
    for entry in added:
        assert NAME_RE.match(entry["name"])
        assert entry == {
            "name": entry["name"],
            "api_key": "",
            "server": "" if mode == "prod" else "dev.cmdop.com:443",
            "remote_id": entry["remote_id"],
            "remote_name": listed[entry["remote_id"]]["name"],
            "last_synced_at": NOW,
        }
    if last_synced == "changed":
        assert outcome.changed == any(change.action != UNCHANGED for change in outcome.changes)


def test_random_documents_keep_the_rules_and_converge_in_one_run():
    rng = random.Random(4242)
    for _round in range(400):
        document, fleets, mode, last_synced = _random_case(rng)
        snapshot = copy.deepcopy(document), copy.deepcopy(fleets)
        first = reconcile(document, fleets, mode, NOW, last_synced)
        assert (document, fleets) == snapshot, "the input must not be mutated"
        _check_invariants(document, fleets, mode, last_synced, first)

        second = reconcile(first.document, fleets, mode, NOW, last_synced)
        assert second.changed is False, (document, fleets, mode, last_synced)
        assert second.document == first.document
        assert {change.action for change in second.changes} <= {UNCHANGED}


# ---------------------------------------------------------------- deactivation and reactivation


def test_left_fleet_is_deactivated_and_keeps_its_key():
    entry = synced_entry("team-a", ID_A, "Team A", api_key="cmdop_live_keep_me", notes="mine")
    outcome = reconcile(doc(entry, active="team-a"), [], "prod", NOW)
    new = outcome.document["workspaces"][0]
    assert new == dict(entry, inactive=True, last_synced_at=NOW)
    assert new["api_key"] == "cmdop_live_keep_me"
    assert outcome.document["active"] == "team-a", "the active pointer is never moved"
    assert outcome.by_action()[DEACTIVATED] == [{"name": "team-a", "remote_id": ID_A, "fields": ["inactive"]}]


def test_already_inactive_entry_stays_unchanged():
    entry = synced_entry("team-a", ID_A, "Team A", inactive=True)
    document = doc(entry)
    for last_synced in ("changed", "always"):
        outcome = reconcile(document, [server_fleet(ID_B, "Other")], "prod", NOW, last_synced)
        assert outcome.document["workspaces"][0] == entry
        assert outcome.by_action()[UNCHANGED] == [{"name": "team-a", "remote_id": ID_A}]
        assert outcome.by_action()[DEACTIVATED] == []


def test_rejoined_fleet_is_reactivated():
    entry = synced_entry("team-a", ID_A, "Team A", api_key="cmdop_live_k", inactive=True)
    outcome = reconcile(doc(entry), [server_fleet(ID_A, "Team A")], "prod", NOW)
    new = outcome.document["workspaces"][0]
    assert "inactive" not in new
    assert new == {k: v for k, v in dict(entry, last_synced_at=NOW).items() if k != "inactive"}
    assert outcome.by_action()[REACTIVATED] == [{"name": "team-a", "remote_id": ID_A, "fields": ["inactive"]}]
    assert outcome.by_action()[UPDATED] == []


def test_reactivated_and_renamed_reports_both_fields():
    entry = synced_entry("team-a", ID_A, "Team A", inactive=True)
    outcome = reconcile(doc(entry), [server_fleet(ID_A, "Team Alpha")], "prod", NOW)
    assert outcome.by_action()[REACTIVATED] == [{"name": "team-a", "remote_id": ID_A, "fields": ["remote_name", "inactive"]}]
    assert outcome.document["workspaces"][0]["remote_name"] == "Team Alpha"


@pytest.mark.parametrize("server", PROD_SERVERS)
def test_prod_entries_in_every_spelling_are_deactivated_by_a_prod_sync(server):
    entry = synced_entry("team-a", ID_A, "Team A", server=server)
    outcome = reconcile(doc(entry), [], "prod", NOW)
    assert outcome.document["workspaces"][0] == dict(entry, inactive=True, last_synced_at=NOW)
    assert outcome.document["workspaces"][0]["server"] == server, "server is kept exactly as written"


def test_listed_entry_with_inactive_false_is_not_changed_silently():
    """``"inactive": false`` means active. A sync must not rewrite the file without reporting a change."""
    entry = synced_entry("team-a", ID_A, "Team A", inactive=False)
    outcome = reconcile(doc(entry), [server_fleet(ID_A, "Team A")], "prod", NOW, "changed")
    reported = [change for change in outcome.changes if change.action != UNCHANGED]
    assert outcome.changed == bool(reported)


def test_document_without_workspaces_and_nothing_to_add_is_not_changed_silently():
    document = {"active": "", "x_top": 1}
    outcome = reconcile(document, [], "prod", NOW)
    reported = [change for change in outcome.changes if change.action != UNCHANGED]
    assert outcome.changed == bool(reported)


def test_document_without_workspaces_gets_new_fleets():
    outcome = reconcile({"x_top": 1}, [server_fleet(ID_A, "Team A", slug="team-a")], "prod", NOW)
    assert outcome.document["x_top"] == 1
    assert [entry["name"] for entry in outcome.document["workspaces"]] == ["team-a"]


# ---------------------------------------------------------------- never touched


@pytest.mark.parametrize("remote_id", ["<absent>", "", None], ids=["absent", "empty", "none"])
@pytest.mark.parametrize("mode", ["prod", "dev"])
def test_api_key_only_entries_are_never_touched(remote_id, mode):
    entry = {"name": "team-a", "api_key": "cmdop_live_local", "server": "", "inactive": True, "x": [1]}
    if remote_id != "<absent>":
        entry["remote_id"] = remote_id
    document = doc(entry, active="team-a")
    for fleets in ([], [server_fleet(ID_A, "team-a", slug="team-a")]):
        outcome = reconcile(document, fleets, mode, NOW, "always")
        assert outcome.document["workspaces"][0] == entry
        assert all(change.name != "team-a" for change in outcome.changes)


def test_unknown_keys_are_kept_at_top_level_and_in_every_entry():
    document = {
        "version": 2,
        "active": "lab",
        "workspaces": [
            synced_entry("renamed", ID_A, "Old", x_color="red", x_nested={"a": [1, {"b": None}]}),
            synced_entry("left", ID_B, "Left", x_color="green"),
            synced_entry("back", ID_C, "Back", inactive=True, x_color="blue"),
            {"name": "lab", "api_key": "k", "x_color": "white"},
        ],
        "x_settings": {"theme": "dark"},
    }
    fleets = [server_fleet(ID_A, "New"), server_fleet(ID_C, "Back"), server_fleet(ID_D, "Fresh")]
    outcome = reconcile(document, fleets, "prod", NOW)
    new = outcome.document
    assert list(new) == ["version", "active", "workspaces", "x_settings"]
    assert new["version"] == 2 and new["x_settings"] == {"theme": "dark"} and new["active"] == "lab"
    entries = new["workspaces"]
    assert entries[0]["x_color"] == "red" and entries[0]["x_nested"] == {"a": [1, {"b": None}]}
    assert entries[1]["x_color"] == "green" and entries[1]["inactive"] is True
    assert entries[2]["x_color"] == "blue" and "inactive" not in entries[2]
    assert entries[3] == {"name": "lab", "api_key": "k", "x_color": "white"}
    assert [change.action for change in outcome.changes] == [UPDATED, DEACTIVATED, REACTIVATED, ADDED]
    for old, after in zip(document["workspaces"], entries):
        assert after["api_key"] == old["api_key"]
        assert after.get("server") == old.get("server")
        assert after["name"] == old["name"]


def test_active_pointer_is_never_changed():
    for active in ("", "team-a", "missing", None):
        document = doc(synced_entry("team-a", ID_A, "Team A"), active=active)
        outcome = reconcile(document, [server_fleet(ID_B, "New", slug="new")], "prod", NOW)
        assert outcome.document["active"] == active
    outcome = reconcile({"workspaces": []}, [server_fleet(ID_B, "New")], "prod", NOW)
    assert "active" not in outcome.document


@pytest.mark.parametrize("server", DEV_SERVERS)
def test_prod_sync_never_touches_dev_entries(server):
    listed = synced_entry("dev-a", ID_A, "Old name", server=server, inactive=True)
    unlisted = synced_entry("dev-b", ID_B, "B", server=server)
    outcome = reconcile(doc(listed, unlisted), [server_fleet(ID_A, "New name", slug="dev-a")], "prod", NOW, "always")
    assert outcome.document["workspaces"][:2] == [listed, unlisted]
    # The prod fleet set is separate: the fleet gets its own prod entry.
    prod_entries = outcome.document["workspaces"][2:]
    assert prod_entries == [
        {"name": "dev-a-7f0c8f5e", "api_key": "", "server": "", "remote_id": ID_A, "remote_name": "New name", "last_synced_at": NOW},
    ]
    assert [change.action for change in outcome.changes] == [ADDED]


@pytest.mark.parametrize("server", PROD_SERVERS)
def test_dev_sync_never_touches_prod_entries(server):
    listed = synced_entry("prod-a", ID_A, "Old name", server=server, inactive=True)
    unlisted = synced_entry("prod-b", ID_B, "B", server=server)
    outcome = reconcile(doc(listed, unlisted), [server_fleet(ID_A, "New name", slug="prod-a")], "dev", NOW, "always")
    assert outcome.document["workspaces"][:2] == [listed, unlisted]
    assert outcome.document["workspaces"][2]["server"] == "dev.cmdop.com:443"
    assert [change.action for change in outcome.changes] == [ADDED]


@pytest.mark.parametrize("server", DEV_SERVERS)
def test_dev_sync_updates_and_deactivates_dev_entries(server):
    listed = synced_entry("dev-a", ID_A, "Old name", server=server)
    unlisted = synced_entry("dev-b", ID_B, "B", server=server)
    outcome = reconcile(doc(listed, unlisted), [server_fleet(ID_A, "New name")], "dev", NOW)
    assert outcome.document["workspaces"] == [
        dict(listed, remote_name="New name", last_synced_at=NOW),
        dict(unlisted, inactive=True, last_synced_at=NOW),
    ]


@pytest.mark.parametrize("mode, server", [("prod", ""), ("dev", "dev.cmdop.com:443")])
def test_new_entries_get_the_mode_server(mode, server):
    outcome = reconcile(doc(), [server_fleet(ID_A, "A"), server_fleet(ID_B, "B")], mode, NOW)
    assert [entry["server"] for entry in outcome.document["workspaces"]] == [server, server]


# ---------------------------------------------------------------- server overrides


@pytest.mark.parametrize("mode", ["prod", "dev"])
def test_override_entry_is_updated_and_reactivated_when_listed(mode):
    entry = synced_entry("lab", ID_A, "Lab", server=OVERRIDE, api_key="cmdop_live_lab", inactive=True)
    outcome = reconcile(doc(entry), [server_fleet(ID_A, "Lab 2", slug="lab")], mode, NOW)
    new = outcome.document["workspaces"]
    assert len(new) == 1, "a fleet an override entry knows is not added again"
    assert new[0]["server"] == OVERRIDE
    assert new[0]["api_key"] == "cmdop_live_lab"
    assert new[0]["remote_name"] == "Lab 2"
    assert "inactive" not in new[0]
    assert outcome.by_action()[REACTIVATED] == [{"name": "lab", "remote_id": ID_A, "fields": ["remote_name", "inactive"]}]


@pytest.mark.parametrize("mode", ["prod", "dev"])
@pytest.mark.parametrize("server", [OVERRIDE, "https://relay.example.net/", "http://localhost:8000", "grpc.internal:443",
                                    "https://api.cmdop.com.evil.example", "cmdop.com"])
def test_override_entry_is_never_deactivated(mode, server):
    entry = synced_entry("lab", ID_A, "Lab", server=server)
    document = doc(entry)
    outcome = reconcile(document, [server_fleet(ID_B, "Other")], mode, NOW, "always")
    assert outcome.document["workspaces"][0] == entry
    assert all(change.remote_id != ID_A for change in outcome.changes)


# ---------------------------------------------------------------- purity and the result shape


def test_input_is_not_mutated_and_output_shares_nothing_with_it():
    document = _mixed_document()
    fleets = [server_fleet(ID_A, "Same"), server_fleet(ID_B, "New name"), server_fleet("e" * 8, "Fresh", x={"deep": [1]})]
    snapshot = copy.deepcopy((document, fleets))
    outcome = reconcile(document, fleets, "prod", NOW, "always")
    assert (document, fleets) == snapshot
    assert outcome.before == snapshot[0]
    for entry in outcome.document["workspaces"]:
        entry["mutated"] = True
    outcome.document["workspaces"].append({"name": "extra"})
    assert (document, fleets) == snapshot


def test_by_action_shape():
    document = doc(
        synced_entry("same", ID_A, "Same"),
        synced_entry("renamed", ID_B, "Old"),
        synced_entry("left", ID_C, "Left"),
        synced_entry("back", ID_D, "Back", inactive=True),
    )
    fleets = [server_fleet(ID_A, "Same"), server_fleet(ID_B, "New"), server_fleet(ID_D, "Back"), server_fleet("f" * 8, "Fresh", slug="fresh")]
    grouped = reconcile(document, fleets, "prod", NOW).by_action()
    assert set(ACTIONS) == {"added", "updated", "deactivated", "reactivated", "unchanged"}
    assert grouped == {
        "added": [{"name": "fresh", "remote_id": "f" * 8}],
        "updated": [{"name": "renamed", "remote_id": ID_B, "fields": ["remote_name"]}],
        "deactivated": [{"name": "left", "remote_id": ID_C, "fields": ["inactive"]}],
        "reactivated": [{"name": "back", "remote_id": ID_D, "fields": ["inactive"]}],
        "unchanged": [{"name": "same", "remote_id": ID_A}],
    }
    json.dumps(grouped)  # plain JSON types, fit for a module result


def test_by_action_has_every_action_when_nothing_happens():
    assert reconcile(doc(), [], "prod", NOW).by_action() == {action: [] for action in ACTIONS}


def test_duplicate_remote_id_in_two_entries_updates_both():
    first = synced_entry("team-a", ID_A, "Team A")
    second = synced_entry("team-a-old", ID_A, "Team A", inactive=True)
    outcome = reconcile(doc(first, second), [server_fleet(ID_A, "Team Alpha", slug="team-a")], "prod", NOW)
    entries = outcome.document["workspaces"]
    assert len(entries) == 2, "no new entry for a fleet that is already known"
    assert [entry["remote_name"] for entry in entries] == ["Team Alpha", "Team Alpha"]
    assert "inactive" not in entries[1]
    assert outcome.by_action()[UPDATED] == [{"name": "team-a", "remote_id": ID_A, "fields": ["remote_name"]}]
    assert outcome.by_action()[REACTIVATED] == [{"name": "team-a-old", "remote_id": ID_A, "fields": ["remote_name", "inactive"]}]


def test_duplicate_remote_id_in_two_entries_both_deactivated():
    first = synced_entry("team-a", ID_A, "Team A")
    second = synced_entry("team-a-old", ID_A, "Team A")
    outcome = reconcile(doc(first, second), [], "prod", NOW)
    assert [entry.get("inactive") for entry in outcome.document["workspaces"]] == [True, True]
    assert [change["name"] for change in outcome.by_action()[DEACTIVATED]] == ["team-a", "team-a-old"]


def test_last_synced_max_age_renews_a_stamp_from_the_future():
    """A clock that was once wrong must not leave a stamp that looks fresh forever; a few minutes ahead is fine."""
    for stamp, renewed in (("2099-01-01T00:00:00Z", True), ("2026-11-23T10:04:00Z", False)):
        entry = synced_entry("team-a", ID_A, "Team A", last_synced_at=stamp)
        outcome = reconcile(doc(entry), [server_fleet(ID_A, "Team A")], "prod", NOW, "max_age", 86400)
        assert outcome.changed is renewed, stamp


# ---------------------------------------------------------------- letters kept, ids without case


def test_a_name_without_latin_letters_is_named_from_its_id_the_same_on_every_host_and_never_renamed():
    fleet = {"id": ID_A, "name": "Команда", "slug": "команда"}
    first = reconcile(doc(), [fleet], "prod", NOW)
    assert [entry["name"] for entry in first.document["workspaces"]] == ["fleet-7f0c8f5e"]
    taken = reconcile(doc({"name": "fleet-7f0c8f5e", "api_key": "k"}), [fleet], "prod", NOW)
    assert taken.document["workspaces"][1]["name"] == "fleet-7f0c8f5e-2"
    # An entry made by an older version keeps its name: local names are never renamed.
    old = synced_entry("quipe-paris", ID_B, "Équipe Paris")
    outcome = reconcile(doc(old), [server_fleet(ID_B, "Équipe Paris")], "prod", NOW)
    assert [entry["name"] for entry in outcome.document["workspaces"]] == ["quipe-paris"]


def test_fleet_ids_are_compared_without_case_and_written_as_given():
    upper = ID_A.upper()
    # A hand-edited upper-case remote_id is the server's fleet: refreshed, not deactivated, no duplicate; it stays as written.
    outcome = reconcile(doc(synced_entry("team-a", upper, "Team A")), [server_fleet(ID_A, "Team A 2", slug="team-a")], "prod", NOW)
    assert [(entry["name"], entry["remote_id"], entry.get("inactive")) for entry in outcome.document["workspaces"]] == [("team-a", upper, None)]
    assert outcome.by_action()[UPDATED] == [{"name": "team-a", "remote_id": upper, "fields": ["remote_name"]}]
    # An upper-case id from the server (or from fleets:) matches a lower-case entry the same way.
    outcome = reconcile(doc(synced_entry("team-a", ID_A, "Team A")), [server_fleet(upper, "Team A", slug="team-a")], "prod", NOW)
    assert [(entry["name"], entry["remote_id"], entry.get("inactive")) for entry in outcome.document["workspaces"]] == [("team-a", ID_A, None)]
    assert outcome.by_action()[ADDED] == [] and outcome.by_action()[DEACTIVATED] == []
    # A new fleet is written as the server gave its id.
    outcome = reconcile(doc(), [server_fleet(upper, "Team A", slug="team-a")], "prod", NOW)
    assert outcome.document["workspaces"][0]["remote_id"] == upper
