# -*- coding: utf-8 -*-
# Copyright (c) cmdop.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What ``cmdop login`` does to ``ssh_workspaces.json``, as a pure function.

``reconcile(document, fleets, mode, now)`` takes the parsed fleet file, the
fleets the server lists for the user, the mode and the time, and returns the new
document and the list of changes. No I/O, no clock, no randomness: the same
input always gives the same output. Private to the collection.
"""

from __future__ import annotations

import copy
import re
import typing as t
import unicodedata
from dataclasses import dataclass

from ansible_collections.cmdop.fleet.plugins.module_utils import _timestamps
from ansible_collections.cmdop.fleet.plugins.module_utils._modes import (
    DEFAULT_DEV_SERVER,
    SCOPE_MODE,
    SCOPE_OTHER,
    entry_scope,
    has_scheme,
    server_for_new_entry,
)

ADDED = "added"
UPDATED = "updated"
REACTIVATED = "reactivated"
DEACTIVATED = "deactivated"
UNCHANGED = "unchanged"
ACTIONS = (ADDED, UPDATED, DEACTIVATED, REACTIVATED, UNCHANGED)

LAST_SYNCED_CHANGED = "changed"
LAST_SYNCED_MAX_AGE = "max_age"
LAST_SYNCED_ALWAYS = "always"
LAST_SYNCED_POLICIES = (LAST_SYNCED_MAX_AGE, LAST_SYNCED_CHANGED, LAST_SYNCED_ALWAYS)
DEFAULT_MAX_AGE = 86400  # seconds: a healthy host's file changes at most once a day
FUTURE_TOLERANCE = 300  # seconds a stamp may be ahead of this host's clock before it counts as wrong

_NAME_MAX = 63
# Latin letters NFKD does not decompose into a base letter and marks (casefold already makes ß ss).
_LATIN = str.maketrans({"ø": "o", "ł": "l", "đ": "d", "ð": "d", "þ": "th", "æ": "ae", "œ": "oe", "ı": "i", "ħ": "h", "ŧ": "t"})


def fleet_key(fleet_id: t.Any) -> str:
    """A fleet id as it is compared: UUIDs are case-insensitive (an upper-case id from ``fleets:`` or a hand edit is the
    same fleet). Only comparisons use it: an id is written as the server gave it, and an entry's ``remote_id`` as it is."""
    return fleet_id.lower() if isinstance(fleet_id, str) else ""


@dataclass(frozen=True)
class Change:
    """What a sync did to one entry, identified by its local name and remote id."""

    action: str
    name: str
    remote_id: str
    fields: t.Tuple[str, ...] = ()

    def as_dict(self) -> dict:
        result = {"name": self.name, "remote_id": self.remote_id}
        if self.fields:
            result["fields"] = list(self.fields)
        return result


@dataclass(frozen=True)
class Reconciliation:
    before: dict
    document: dict
    changes: t.Tuple[Change, ...]

    @property
    def changed(self) -> bool:
        return self.document != self.before

    def by_action(self) -> t.Dict[str, t.List[dict]]:
        """Changes grouped by action, every action present (empty lists included)."""
        grouped: t.Dict[str, t.List[dict]] = {action: [] for action in ACTIONS}
        for change in self.changes:
            grouped[change.action].append(change.as_dict())
        return grouped


def reconcile(
    document: dict,
    fleets: t.Sequence[dict],
    mode: str,
    now: str,
    last_synced: str = LAST_SYNCED_MAX_AGE,
    max_age: float = DEFAULT_MAX_AGE,
    dev_server: str = DEFAULT_DEV_SERVER,
    rewrite_dev_server: bool = False,
) -> Reconciliation:
    """Reconcile the fleet file with the server's fleets for one mode.

    - A known entry (same ``remote_id``, in this mode or a server override) takes
      the server's name as ``remote_name``, and is reactivated if it was inactive.
    - An entry of this mode whose fleet the server no longer lists is marked
      ``"inactive": true``; nothing else of it changes (its API key stays).
    - A fleet no entry knows is added under a new, unique local name; in dev mode its
      ``server`` is ``dev_server``.
    - Which entries are this mode's is decided by the host their ``server`` names
      (``_modes.entry_scope``). With ``rewrite_dev_server``, a dev sync sets the
      ``server`` of its entries that hold a URL with a scheme (what older releases
      wrote) to ``dev_server``; otherwise ``server`` is never changed.
    - API-key-only entries (no ``remote_id``), the other mode's entries, ``active``,
      ``api_key``, ``server`` and keys this code does not know are never touched.
    - ``last_synced_at`` (``now``, RFC 3339) is set on entries that changed; with
      ``last_synced`` ``max_age`` also on every listed entry whose stamp is missing,
      unreadable or older than ``max_age`` seconds (so a stale stamp means a failed
      sync, yet a healthy host's file changes at most once per ``max_age``); with
      ``always`` on every entry the server listed.
    """
    before = document
    document = copy.deepcopy(document)
    entries = document.get("workspaces", [])
    server_fleets = {fleet_key(fleet["id"]): fleet for fleet in fleets}
    stamp = _stamp_rule(last_synced, now, max_age)

    changes: t.List[Change] = []
    known: t.Set[str] = set()
    for entry in entries:
        remote_id = entry.get("remote_id")
        if not remote_id:
            continue  # API-key-only fleet: local by design
        scope = entry_scope(entry.get("server", ""), mode, dev_server)
        if scope == SCOPE_OTHER:
            continue
        rewrite = rewrite_dev_server and mode == "dev" and scope == SCOPE_MODE and has_scheme(entry.get("server"))
        fleet = server_fleets.get(fleet_key(remote_id))
        if fleet is not None:
            known.add(fleet_key(remote_id))
            change = _refresh(entry, fleet, now, stamp(entry))
        elif scope == SCOPE_MODE:
            change = _deactivate(entry, now)
        else:
            continue  # a server override the server does not list is left alone: it may be another server's fleet
        changes.append(_with_server(change, entry, dev_server, now) if rewrite else change)

    new_fleets = [fleet for fleet in fleets if fleet_key(fleet["id"]) not in known]
    names = new_fleet_names(new_fleets, {entry.get("name") for entry in entries})
    for fleet in new_fleets:
        entries.append(_new_entry(fleet, names[fleet["id"]], server_for_new_entry(mode, dev_server), now))
        changes.append(Change(ADDED, names[fleet["id"]], fleet["id"]))
    if new_fleets:
        document["workspaces"] = entries

    return Reconciliation(before=before, document=document, changes=tuple(changes))


def _stamp_rule(last_synced: str, now: str, max_age: float) -> t.Callable[[dict], bool]:
    """Whether a listed entry that did not change gets a new ``last_synced_at`` under the policy."""
    if last_synced == LAST_SYNCED_ALWAYS:
        return lambda entry: True
    if last_synced == LAST_SYNCED_CHANGED:
        return lambda entry: False
    if last_synced != LAST_SYNCED_MAX_AGE:
        raise ValueError("last_synced must be one of %s" % ", ".join(LAST_SYNCED_POLICIES))
    current = _timestamps.parse(now)
    oldest, newest = current - max_age, current + FUTURE_TOLERANCE

    def is_stale(entry: dict) -> bool:
        """Missing, unreadable, too old, or from the future (a clock that was wrong would otherwise stay fresh forever)."""
        stamped = _timestamps.parse_or_none(entry.get("last_synced_at"))
        return stamped is None or stamped <= oldest or stamped > newest

    return is_stale


def _refresh(entry: dict, fleet: dict, now: str, stamp: bool) -> Change:
    fields = []
    if entry.get("remote_name") != fleet["name"]:
        entry["remote_name"] = fleet["name"]
        fields.append("remote_name")
    reactivated = entry.get("inactive") is True
    if reactivated:
        del entry["inactive"]
        fields.append("inactive")
    if fields or stamp:
        entry["last_synced_at"] = now
    if reactivated:
        action = REACTIVATED
    elif fields:
        action = UPDATED
    else:
        action = UNCHANGED
    return Change(action, entry["name"], entry["remote_id"], tuple(fields))


def _deactivate(entry: dict, now: str) -> Change:
    if entry.get("inactive") is True:
        return Change(UNCHANGED, entry["name"], entry["remote_id"])
    entry["inactive"] = True
    entry["last_synced_at"] = now
    return Change(DEACTIVATED, entry["name"], entry["remote_id"], ("inactive",))


def _with_server(change: Change, entry: dict, server: str, now: str) -> Change:
    """``change`` after the entry's ``server`` was rewritten to ``server`` (an update, if it was nothing else)."""
    entry["server"] = server
    entry["last_synced_at"] = now
    action = UPDATED if change.action == UNCHANGED else change.action
    return Change(action, change.name, change.remote_id, change.fields + ("server",))


def _new_entry(fleet: dict, name: str, server: str, now: str) -> dict:
    return {
        "name": name,
        "api_key": "",
        "server": server,
        "remote_id": fleet["id"],
        "remote_name": fleet["name"],
        "last_synced_at": now,
    }


def new_fleet_names(fleets: t.Sequence[dict], taken: t.Set[str]) -> t.Dict[str, str]:
    """Local names for new fleets, given in a fixed order (oldest first, then by id).

    The order the server lists fleets in does not matter, so the same fleets get
    the same names on every host.
    """
    names: t.Dict[str, str] = {}
    taken = set(taken)
    for fleet in sorted(fleets, key=lambda fleet: (fleet.get("created_at") or "", fleet["id"])):
        names[fleet["id"]] = local_name(fleet, taken)
        taken.add(names[fleet["id"]])
    return names


def slugify(text: str) -> str:
    """A local handle users can type: lower case letters, digits, ``.``, ``_`` and ``-``.

    Accents are taken off, not the letters (``Équipe Paris`` gives ``equipe-paris``, ``Züri Ops`` ``zuri-ops``);
    letters of other scripts are dropped.
    """
    text = unicodedata.normalize("NFKD", text.strip().casefold().translate(_LATIN))
    text = "".join(char for char in text if not unicodedata.combining(char))
    slug = re.sub(r"[^a-z0-9._-]+", "-", text)
    slug = re.sub(r"-{2,}", "-", slug).strip("-.")
    return slug[:_NAME_MAX].rstrip("-.")


def local_name(fleet: dict, taken: t.Collection[str]) -> str:
    """The local name of a newly added fleet.

    The server's ``slug`` (or, without one, its name) made typeable, the first of
    them that holds a Latin letter; a fleet whose slug and name hold none (an
    all-Cyrillic name) is ``fleet-`` and the first eight characters of its id. When
    a local entry already has that name, the first eight characters of the fleet's
    id are appended (``team-a-7f0c8f5e``), so the same fleet gets the same name on
    every host; should that be taken too, ``-2``, ``-3``... follow.
    """
    short_id = re.sub(r"[^a-z0-9]", "", fleet_key(fleet["id"]))[:8]
    readable = [slug for slug in (slugify(fleet.get("slug") or ""), slugify(fleet.get("name") or "")) if re.search(r"[a-z]", slug)]
    base = readable[0] if readable else "fleet-%s" % short_id
    if base not in taken:
        return base
    stem = "%s-%s" % (base, short_id) if readable else base
    candidate = stem
    counter = 2
    while candidate in taken:
        candidate = "%s-%d" % (stem, counter)
        counter += 1
    return candidate
