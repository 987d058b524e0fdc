# -*- coding: utf-8 -*-
# Copyright (c) cmdop.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The pure change detection of the ``cmdop.fleet.fleet_events`` event source.

``detect(previous, current, settle, now)`` takes the state the source saved after
its last poll and what this poll listed, and returns the events to emit and the
state to save. No I/O: the same input always gives the same output (``now`` is
only written into the state, for ``offline_seconds``). The rules:

- ``current.fleets`` is every fleet watched now (the fleet list was read:
  a poll whose fleet list failed is no poll). A fleet of the previous state that
  is not there has left (``fleet_left``); one that was not there before is
  ``fleet_added``; one whose server name or local name changed is
  ``fleet_renamed``.
- ``current.complete`` names the fleets whose machines were read completely. A
  machine of the previous state that is not listed now has left
  (``machine_left``) only when none of its fleets is listed but incomplete: a
  failed page or key never makes a machine leave; its record is kept as it was.
- A listed machine that was not known has joined (``machine_joined``). One whose
  fields (but the volatile ones, ``VOLATILE``) changed is ``machine_changed``,
  with each changed field's old and new value.
- ``machine_online`` / ``machine_offline``: the observed online state differs
  from the settled one in ``settle`` consecutive polls. The pending count lives in
  the state, so a restart neither forgets nor repeats it.
- Each event's ``meta.uuid`` is a uuid5 of the change and of the state's
  ``generation`` (the count of polls the state has seen): the same change
  detected twice from the same saved state (a source that stopped after putting
  its events on the queue but before saving the state) has the same uuid.

A first start (no state) is ``detect(empty_state(), current, ...)`` when every
fleet and machine should be reported (``initial: events``), or
``first_state(current, now)`` when only the ``snapshot`` event is.

Private to the collection.
"""

from __future__ import annotations

import json
import typing as t
import uuid
from dataclasses import dataclass, field

STATE_VERSION = 1
PREFIX = "cmdop_"  # the machine fields are the inventory's host variables, under its default prefix
NAMESPACE = uuid.UUID("0b6f2c62-8f7e-5d1a-9c3e-6a1f0e2d4b17")  # of this source's uuids (uuid5)
EVENT_TYPES = (
    "fleet_added", "fleet_renamed", "fleet_left",
    "machine_joined", "machine_changed", "machine_online", "machine_offline", "machine_left",
    "snapshot",
)
# Fields that change without anything a rule acts on (or that have their own event): never machine_changed,
# and not kept in the state (the state file does not churn with every heartbeat).
VOLATILE = frozenset(PREFIX + name for name in (
    "heartbeat_age_seconds", "last_seen", "status", "is_online", "status_emoji", "active_terminal_session",
    "workspace_name", "fleet", "fleets",
))


@dataclass(frozen=True)
class Fleet:
    """A watched fleet: ``key`` is its server id, or ``name:<local name>`` for a fleet known by its API key only."""

    key: str
    id: str
    name: str  # the server's name
    local_name: str  # the name in the fleet file (or the inventory's name for it)

    def view(self) -> dict:
        return {"id": self.id, "name": self.name, "local_name": self.local_name}


@dataclass(frozen=True)
class Machine:
    """A watched machine as the inventory would show it: its host name and host variables."""

    id: str
    host: str
    fleet: str  # the key of its own fleet
    fleets: t.Tuple[str, ...]  # the keys of all its watched fleets
    fields: t.Mapping[str, t.Any]  # the inventory's host variables (cmdop_id, cmdop_name, ...)
    online: bool


@dataclass
class Listing:
    """What one poll read: every watched fleet, the machines of the fleets read completely, and which those are."""

    fleets: t.Dict[str, Fleet] = field(default_factory=dict)
    machines: t.Dict[str, Machine] = field(default_factory=dict)
    complete: t.FrozenSet[str] = frozenset()


def fleet_key(remote_id: str, local_name: str) -> str:
    return remote_id if remote_id else "name:%s" % local_name


def empty_state() -> dict:
    return {"version": STATE_VERSION, "generation": 0, "fleets": {}, "machines": {}}


def is_state(value: t.Any) -> bool:
    """Whether a loaded state file has the shape ``detect`` needs (else it is treated as a first start)."""
    if not isinstance(value, dict) or value.get("version") != STATE_VERSION:
        return False
    if not isinstance(value.get("generation"), int) or not isinstance(value.get("fleets"), dict) or not isinstance(value.get("machines"), dict):
        return False
    for fleet in value["fleets"].values():
        if not isinstance(fleet, dict) or not all(isinstance(fleet.get(key), str) for key in ("id", "name", "local_name")):
            return False
    for record in value["machines"].values():
        if not isinstance(record, dict) or not isinstance(record.get("host"), str) or not isinstance(record.get("fleet"), str):
            return False
        if not isinstance(record.get("fleets"), list) or not isinstance(record.get("fields"), dict) or not isinstance(record.get("online"), bool):
            return False
        pending = record.get("pending")
        if pending is not None and not (isinstance(pending, dict) and isinstance(pending.get("online"), bool) and isinstance(pending.get("polls"), int)):
            return False
    return True


def stable(fields: t.Mapping[str, t.Any]) -> dict:
    """The fields compared for ``machine_changed`` and kept in the state."""
    return {name: value for name, value in fields.items() if name not in VOLATILE}


def event_uuid(generation: int, kind: str, subject: str, change: t.Any) -> str:
    """The same change from the same saved state: the same uuid."""
    text = json.dumps([generation, kind, subject, change], sort_keys=True, separators=(",", ":"), default=str)
    return str(uuid.uuid5(NAMESPACE, text))


def _event(kind: str, uuid_of: str, body: t.Mapping[str, t.Any], hosts: t.Any = None) -> dict:
    meta: t.Dict[str, t.Any] = {"uuid": uuid_of}
    if hosts is not None:
        meta["hosts"] = hosts
    return {"cmdop": dict(body, type=kind), "meta": meta}


def _fleet_view(key: str, *places: t.Mapping[str, t.Any]) -> dict:
    for place in places:
        if key in place:
            fleet = place[key]
            return fleet.view() if isinstance(fleet, Fleet) else dict(fleet)
    return {"id": "", "name": "", "local_name": ""}


def _record(machine: Machine, online: bool, since: float, pending: t.Optional[dict]) -> dict:
    return {"host": machine.host, "fleet": machine.fleet, "fleets": list(machine.fleets), "fields": stable(machine.fields),
            "online": online, "since": since, "pending": pending}


def first_state(current: Listing, now: float) -> dict:
    """The state of a first start: everything listed now, settled as it is, generation 1."""
    state = empty_state()
    state["generation"] = 1
    state["fleets"] = {key: fleet.view() for key, fleet in sorted(current.fleets.items())}
    state["machines"] = {machine_id: _record(machine, machine.online, now, None) for machine_id, machine in sorted(current.machines.items())}
    return state


def snapshot(state: t.Mapping[str, t.Any], current: Listing) -> dict:
    """The ``snapshot`` event: every watched fleet and machine now (with every field of the machines listed)."""
    machines = []
    for machine_id, record in sorted(state["machines"].items()):
        listed = current.machines.get(machine_id)
        fields = dict(listed.fields) if listed is not None else dict(record["fields"])
        machines.append({"host": record["host"], "fleet": _fleet_view(record["fleet"], state["fleets"]), "online": record["online"],
                         "machine": fields})
    fleets = [dict(fleet) for _key, fleet in sorted(state["fleets"].items())]
    hosts = sorted(item["host"] for item in machines)
    digest = [sorted(state["fleets"]), [[item["host"], item["machine"].get(PREFIX + "id")] for item in machines]]
    return _event("snapshot", event_uuid(state["generation"], "snapshot", "", digest), {"fleets": fleets, "machines": machines}, hosts)


def detect(previous: t.Mapping[str, t.Any], current: Listing, settle: int = 2, now: float = 0.0) -> t.Tuple[t.List[dict], dict]:
    """The events between ``previous`` (a state) and ``current``, and the state to save after them."""
    settle = max(1, settle)
    generation = previous["generation"]
    old_fleets: t.Mapping[str, dict] = previous["fleets"]
    old_machines: t.Mapping[str, dict] = previous["machines"]
    incomplete = frozenset(key for key in current.fleets if key not in current.complete)
    state = {"version": STATE_VERSION, "generation": generation + 1, "fleets": {}, "machines": {}}
    for key in previous:
        if key not in state:
            state[key] = previous[key]  # what the caller keeps there (its account key) stays
    added, renamed, left_fleets, joined, changed, moved, left = [], [], [], [], [], [], []  # type: ignore[var-annotated]

    for key, fleet in sorted(current.fleets.items()):
        state["fleets"][key] = fleet.view()
        old = old_fleets.get(key)
        if old is None:
            added.append(_event("fleet_added", event_uuid(generation, "fleet_added", key, fleet.view()), {"fleet": fleet.view()}))
        elif (old["name"], old["local_name"]) != (fleet.name, fleet.local_name):
            renamed.append(_event("fleet_renamed", event_uuid(generation, "fleet_renamed", key, [old, fleet.view()]),
                                  {"fleet": fleet.view(), "previous": dict(old)}))
    for key in sorted(set(old_fleets) - set(current.fleets)):
        left_fleets.append(_event("fleet_left", event_uuid(generation, "fleet_left", key, old_fleets[key]), {"fleet": dict(old_fleets[key])}))

    for machine_id, machine in sorted(current.machines.items()):
        fleet = _fleet_view(machine.fleet, current.fleets, old_fleets)
        body = {"fleet": fleet, "machine": dict(machine.fields), "host": machine.host}
        old = old_machines.get(machine_id)
        if old is None:
            state["machines"][machine_id] = _record(machine, machine.online, now, None)
            joined.append(_event("machine_joined", event_uuid(generation, "machine_joined", machine_id, stable(machine.fields)), body, machine.host))
            continue
        kept = tuple(key for key in old["fleets"] if key in incomplete and key not in machine.fleets)  # not read: still its fleet
        machine = Machine(machine.id, machine.host, machine.fleet, machine.fleets + kept, machine.fields, machine.online)
        now_fields, old_fields = stable(machine.fields), old["fields"]
        difference = {name: {"old": old_fields.get(name), "new": now_fields.get(name)}
                      for name in sorted(set(now_fields) | set(old_fields)) if now_fields.get(name) != old_fields.get(name)}
        if difference:
            changed.append(_event("machine_changed", event_uuid(generation, "machine_changed", machine_id, difference),
                                  dict(body, changed=difference, previous=dict(old_fields)), machine.host))
        online, since, pending = old["online"], old.get("since", now), None
        if machine.online != online:
            polls = old["pending"]["polls"] + 1 if old.get("pending") and old["pending"]["online"] == machine.online else 1
            if polls >= settle:
                kind = "machine_online" if machine.online else "machine_offline"
                extra = {"previous": {"online": online, "since": since}, "seconds_in_previous": max(0.0, now - since) if since is not None else None}
                moved.append(_event(kind, event_uuid(generation, kind, machine_id, [online, since, polls]), dict(body, **extra), machine.host))
                online, since = machine.online, now
            else:
                pending = {"online": machine.online, "polls": polls}
        state["machines"][machine_id] = _record(machine, online, since, pending)

    for machine_id in sorted(set(old_machines) - set(current.machines)):
        old = old_machines[machine_id]
        if any(key in incomplete for key in old["fleets"]):
            state["machines"][machine_id] = dict(old)  # its fleet could not be read: nothing is known, nothing is said
            continue
        body = {"fleet": _fleet_view(old["fleet"], current.fleets, old_fleets), "machine": dict(old["fields"]), "host": old["host"]}
        left.append(_event("machine_left", event_uuid(generation, "machine_left", machine_id, old["fields"]), body, old["host"]))

    return added + renamed + joined + changed + moved + left + left_fleets, state
