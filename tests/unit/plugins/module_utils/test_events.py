# -*- coding: utf-8 -*-
# Copyright (c) cmdop.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Unit tests of the event source's pure change detection: case by case, then properties over generated fleets."""

from __future__ import annotations

import copy
import json
import typing as t

import pytest
from hypothesis import given, settings, strategies as st

from ansible_collections.cmdop.fleet.plugins.module_utils._events import (
    VOLATILE,
    Fleet,
    Listing,
    Machine,
    detect,
    empty_state,
    first_state,
    is_state,
    snapshot,
    stable,
)

pytestmark = pytest.mark.core_independent  # pure code, the emulator or a static check: run once (tests/conftest.py)

NOW = 1_800_000_000.0


def fleet(key: str, name: str = "", local_name: str = "") -> Fleet:
    return Fleet(key=key, id=key, name=name or key.upper(), local_name=local_name or key)


def machine(machine_id: str, fleets: t.Sequence[str] = ("fa",), online: bool = True, **fields: t.Any) -> Machine:
    variables = {"cmdop_id": machine_id, "cmdop_name": machine_id, "cmdop_public_ip": None, "cmdop_is_online": online,
                 "cmdop_heartbeat_age_seconds": 3, "cmdop_fleet": fleets[0], "cmdop_fleets": list(fleets)}
    variables.update(("cmdop_" + name, value) for name, value in fields.items())
    return Machine(id=machine_id, host=str(variables["cmdop_name"]), fleet=fleets[0], fleets=tuple(fleets), fields=variables, online=online)


def listing(fleets: t.Sequence[Fleet], machines: t.Sequence[Machine], incomplete: t.Collection[str] = ()) -> Listing:
    return Listing(fleets={item.key: item for item in fleets}, machines={item.id: item for item in machines},
                   complete=frozenset(item.key for item in fleets if item.key not in incomplete))


def kinds(events: t.Sequence[dict]) -> t.List[t.Tuple[str, str]]:
    return [(event["cmdop"]["type"], event["cmdop"].get("host") or event["cmdop"]["fleet"]["id"]) for event in events]


BASE = listing([fleet("fa"), fleet("fb")], [machine("m1"), machine("m2", ("fb",))])
STATE = first_state(BASE, NOW)


def test_a_first_start_settles_everything_without_events() -> None:
    assert is_state(STATE)
    assert sorted(STATE["machines"]) == ["m1", "m2"]
    assert detect(STATE, BASE, settle=2, now=NOW + 60)[0] == []


def test_initial_events_reports_everything_from_an_empty_state() -> None:
    events, _state = detect(empty_state(), BASE, now=NOW)
    assert kinds(events) == [("fleet_added", "fa"), ("fleet_added", "fb"), ("machine_joined", "m1"), ("machine_joined", "m2")]


def test_a_new_fleet_and_a_renamed_one() -> None:
    events, state = detect(STATE, listing([fleet("fa", name="Team A2"), fleet("fb"), fleet("fc")], [machine("m1"), machine("m2", ("fb",))]),
                           now=NOW)
    assert kinds(events) == [("fleet_added", "fc"), ("fleet_renamed", "fa")]
    renamed = events[1]["cmdop"]
    assert renamed["previous"]["name"] == "FA" and renamed["fleet"]["name"] == "Team A2"
    assert "hosts" not in events[0]["meta"]  # a fleet event concerns no one host
    assert state["fleets"]["fa"]["name"] == "Team A2"


def test_a_local_rename_is_a_rename_too() -> None:
    events, _state = detect(STATE, listing([fleet("fa", local_name="team-a"), fleet("fb")], [machine("m1"), machine("m2", ("fb",))]), now=NOW)
    assert kinds(events) == [("fleet_renamed", "fa")]
    assert events[0]["cmdop"]["previous"]["local_name"] == "fa"


def test_a_fleet_left_takes_its_machines_along() -> None:
    events, state = detect(STATE, listing([fleet("fa")], [machine("m1")]), now=NOW)
    assert kinds(events) == [("machine_left", "m2"), ("fleet_left", "fb")]
    assert events[0]["meta"]["hosts"] == "m2" and events[0]["cmdop"]["fleet"]["id"] == "fb"
    assert "fb" not in state["fleets"] and "m2" not in state["machines"]


def test_a_machine_joins_and_another_leaves() -> None:
    events, state = detect(STATE, listing([fleet("fa"), fleet("fb")], [machine("m1"), machine("m3", ("fb",), public_ip="192.0.2.7")]), now=NOW)
    assert kinds(events) == [("machine_joined", "m3"), ("machine_left", "m2")]
    joined = events[0]
    assert joined["meta"]["hosts"] == "m3" and joined["cmdop"]["host"] == "m3"
    assert joined["cmdop"]["machine"]["cmdop_public_ip"] == "192.0.2.7"
    assert joined["cmdop"]["fleet"] == {"id": "fb", "name": "FB", "local_name": "fb"}
    assert sorted(state["machines"]) == ["m1", "m3"]


def test_a_changed_field_says_which_with_old_and_new() -> None:
    events, _state = detect(STATE, listing([fleet("fa"), fleet("fb")], [machine("m1", public_ip="192.0.2.9"), machine("m2", ("fb",))]), now=NOW)
    assert kinds(events) == [("machine_changed", "m1")]
    assert events[0]["cmdop"]["changed"] == {"cmdop_public_ip": {"old": None, "new": "192.0.2.9"}}


def test_volatile_fields_never_make_a_change() -> None:
    busy = machine("m1", heartbeat_age_seconds=999, last_seen="2027-01-01T00:00:00Z", status_emoji="x")
    assert detect(STATE, listing([fleet("fa"), fleet("fb")], [busy, machine("m2", ("fb",))]), now=NOW)[0] == []
    assert "cmdop_heartbeat_age_seconds" in VOLATILE and "cmdop_heartbeat_age_seconds" not in STATE["machines"]["m1"]["fields"]


def test_online_changes_only_after_settle_polls() -> None:
    offline = listing([fleet("fa"), fleet("fb")], [machine("m1", online=False), machine("m2", ("fb",))])
    events, state = detect(STATE, offline, settle=2, now=NOW + 60)
    assert events == [] and state["machines"]["m1"]["pending"] == {"online": False, "polls": 1}
    events, state = detect(state, offline, settle=2, now=NOW + 120)
    assert kinds(events) == [("machine_offline", "m1")]
    assert events[0]["cmdop"]["previous"] == {"online": True, "since": NOW}
    assert state["machines"]["m1"]["online"] is False and state["machines"]["m1"]["pending"] is None
    assert detect(state, offline, settle=2, now=NOW + 180)[0] == []
    back = listing([fleet("fa"), fleet("fb")], [machine("m1"), machine("m2", ("fb",))])
    events, state = detect(state, back, settle=1, now=NOW + 3720)
    assert kinds(events) == [("machine_online", "m1")]
    assert events[0]["cmdop"]["seconds_in_previous"] == 3600


def test_a_flapping_heartbeat_says_nothing() -> None:
    state = STATE
    for number in range(6):
        current = listing([fleet("fa"), fleet("fb")], [machine("m1", online=number % 2 == 1), machine("m2", ("fb",))])
        events, state = detect(state, current, settle=2, now=NOW + number)
        assert events == []


def test_a_pending_change_survives_a_restart() -> None:
    offline = listing([fleet("fa"), fleet("fb")], [machine("m1", online=False), machine("m2", ("fb",))])
    _events, state = detect(STATE, offline, settle=3, now=NOW)
    saved = json.loads(json.dumps(state))  # through the state file
    assert is_state(saved)
    _events, saved = detect(saved, offline, settle=3, now=NOW + 1)
    events, _state = detect(saved, offline, settle=3, now=NOW + 2)
    assert kinds(events) == [("machine_offline", "m1")]


def test_an_incomplete_fleet_loses_no_machine_and_says_nothing_of_them() -> None:
    events, state = detect(STATE, listing([fleet("fa"), fleet("fb")], [machine("m1")], incomplete=["fb"]), now=NOW)
    assert events == []
    assert state["machines"]["m2"] == STATE["machines"]["m2"]
    # once it is read again, the machine that really left is said to have left: once
    events, _state = detect(state, listing([fleet("fa"), fleet("fb")], [machine("m1")]), now=NOW)
    assert kinds(events) == [("machine_left", "m2")]


def test_a_machine_in_an_unread_fleet_keeps_that_fleet() -> None:
    both = listing([fleet("fa"), fleet("fb")], [machine("m1", ("fa", "fb"))])
    state = first_state(both, NOW)
    _events, state = detect(state, listing([fleet("fa"), fleet("fb")], [machine("m1", ("fa",))], incomplete=["fb"]), now=NOW)
    assert state["machines"]["m1"]["fleets"] == ["fa", "fb"]


def test_the_same_change_from_the_same_state_has_the_same_uuid_and_another_change_another() -> None:
    current = listing([fleet("fa"), fleet("fb")], [machine("m1"), machine("m3", ("fb",))])
    first, state = detect(STATE, current, now=NOW)
    again, _state = detect(copy.deepcopy(STATE), current, now=NOW + 99)
    assert [event["meta"]["uuid"] for event in first] == [event["meta"]["uuid"] for event in again]
    assert len({event["meta"]["uuid"] for event in first}) == len(first)
    # the same machine leaving and joining again later is a new change: a new uuid
    _left, state = detect(state, listing([fleet("fa"), fleet("fb")], [machine("m1")]), now=NOW)
    rejoined, _state = detect(state, current, now=NOW)
    assert rejoined[0]["meta"]["uuid"] != first[0]["meta"]["uuid"]


def test_the_snapshot_holds_every_host_and_fleet() -> None:
    event = snapshot(STATE, BASE)
    assert event["cmdop"]["type"] == "snapshot"
    assert event["meta"]["hosts"] == ["m1", "m2"]
    assert [item["host"] for item in event["cmdop"]["machines"]] == ["m1", "m2"]
    assert [item["id"] for item in event["cmdop"]["fleets"]] == ["fa", "fb"]
    assert snapshot(STATE, BASE)["meta"]["uuid"] == event["meta"]["uuid"]


def test_a_state_of_another_shape_is_no_state() -> None:
    assert not is_state(None) and not is_state([]) and not is_state({"version": 99})
    broken = copy.deepcopy(STATE)
    broken["machines"]["m1"]["online"] = "yes"
    assert not is_state(broken)


def test_the_caller_s_keys_stay_in_the_state() -> None:
    state = dict(STATE, account="abc")
    assert detect(state, BASE, now=NOW)[1]["account"] == "abc"


# ---- properties ---------------------------------------------------------------------------------------------

FLEET_KEYS = ["fa", "fb", "fc"]
MACHINE_IDS = ["m%d" % number for number in range(6)]


@st.composite
def listings(draw: t.Any) -> Listing:
    keys = draw(st.lists(st.sampled_from(FLEET_KEYS), unique=True))
    fleets = [fleet(key, name=draw(st.sampled_from(["", "Renamed"]))) for key in keys]
    machines = []
    if keys:
        for machine_id in draw(st.lists(st.sampled_from(MACHINE_IDS), unique=True)):
            own = draw(st.lists(st.sampled_from(keys), min_size=1, max_size=2, unique=True))
            machines.append(machine(machine_id, own, online=draw(st.booleans()), public_ip=draw(st.sampled_from([None, "192.0.2.1"])),
                                    heartbeat_age_seconds=draw(st.integers(0, 9))))
    return listing(fleets, machines)


def view(state: t.Mapping[str, t.Any]) -> dict:
    return {"fleets": {key: (item["name"], item["local_name"]) for key, item in state["fleets"].items()},
            "machines": {machine_id: (record["fields"], record["online"]) for machine_id, record in state["machines"].items()}}


def listed(current: Listing) -> dict:
    return {"fleets": {key: (item.name, item.local_name) for key, item in current.fleets.items()},
            "machines": {machine_id: (stable(item.fields), item.online) for machine_id, item in current.machines.items()}}


def apply(state: t.Mapping[str, t.Any], events: t.Sequence[dict]) -> dict:
    """What a consumer that saw the previous state and these events knows: the test's own oracle."""
    result = copy.deepcopy(view(state))
    for event in events:
        body = event["cmdop"]
        kind = body["type"]
        if kind in ("fleet_added", "fleet_renamed"):
            result["fleets"][body["fleet"]["id"]] = (body["fleet"]["name"], body["fleet"]["local_name"])
        elif kind == "fleet_left":
            del result["fleets"][body["fleet"]["id"]]
        elif kind in ("machine_joined", "machine_online", "machine_offline", "machine_changed"):
            online = body["machine"]["cmdop_is_online"] if kind == "machine_joined" else result["machines"][body["machine"]["cmdop_id"]][1]
            online = {"machine_online": True, "machine_offline": False}.get(kind, online)
            fields = stable(body["machine"]) if kind in ("machine_joined", "machine_changed") else result["machines"][body["machine"]["cmdop_id"]][0]
            result["machines"][body["machine"]["cmdop_id"]] = (fields, online)
        elif kind == "machine_left":
            del result["machines"][body["machine"]["cmdop_id"]]
    return result


@settings(max_examples=150, deadline=None)
@given(before=listings(), after=listings())
def test_the_events_carry_the_previous_state_to_the_current_one(before: Listing, after: Listing) -> None:
    previous = first_state(before, NOW)
    events, state = detect(previous, after, settle=1, now=NOW + 1)
    assert apply(previous, events) == listed(after) == view(state)


@settings(max_examples=150, deadline=None)
@given(before=listings(), after=listings(), settle=st.integers(1, 3))
def test_the_same_listing_again_says_nothing_once_settled(before: Listing, after: Listing, settle: int) -> None:
    state = first_state(before, NOW)
    for number in range(settle):
        _events, state = detect(state, after, settle=settle, now=NOW + number)
    assert detect(state, after, settle=settle, now=NOW + 10)[0] == []
    assert view(state) == listed(after)


@settings(max_examples=100, deadline=None)
@given(before=listings(), after=listings())
def test_uuids_are_stable_and_distinct(before: Listing, after: Listing) -> None:
    previous = first_state(before, NOW)
    first, _state = detect(previous, after, now=NOW)
    again, _state = detect(json.loads(json.dumps(previous)), after, now=NOW + 5)
    assert [event["meta"]["uuid"] for event in first] == [event["meta"]["uuid"] for event in again]
    assert len({event["meta"]["uuid"] for event in first}) == len(first)


@settings(max_examples=150, deadline=None)
@given(before=listings(), after=listings(), data=st.data())
def test_a_fleet_not_read_completely_makes_nothing_leave(before: Listing, after: Listing, data: t.Any) -> None:
    unread = data.draw(st.lists(st.sampled_from(sorted(after.fleets) or ["none"]), unique=True))
    partial = Listing(fleets=after.fleets, complete=frozenset(key for key in after.fleets if key not in unread),
                      machines={machine_id: item for machine_id, item in after.machines.items() if not set(item.fleets) & set(unread)})
    previous = first_state(before, NOW)
    events, state = detect(previous, partial, settle=1, now=NOW)
    for event in events:
        if event["cmdop"]["type"] == "machine_left":
            gone = previous["machines"][event["cmdop"]["machine"]["cmdop_id"]]
            assert not set(gone["fleets"]) & set(unread)
    for machine_id, record in previous["machines"].items():
        if set(record["fleets"]) & set(unread) & set(after.fleets):
            assert machine_id in state["machines"]
