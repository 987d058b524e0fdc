# -*- coding: utf-8 -*-
# Copyright (c) cmdop.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The pure core of the ``cmdop.fleet.cmdop`` inventory: fleets and machines in, hosts and groups out.

``layout(fleets, listings, ...)`` takes the fleets to show (each with the label of
the machine listing that holds its machines) and the listings (the machines each
credential could see), and returns the hosts, their variables and groups. No I/O,
no clock: the same input always gives the same output. The rules it implements are
documented in the plugin and in ``docs/inventory.md``:

- Membership: a fleet listed with its own API key holds every machine of that
  listing; a fleet read from a shared (OAuth) listing holds the machines whose
  ``workspace`` is the fleet's id. A machine (by ``id``) in several fleets is one
  host in several groups.
- Host names: the first usable value of the ``hostnames`` preference, then ``id``.
  Machines are taken in order of their id; when several prefer the same name, the
  first keeps it and each later one takes its next preference that is no machine's
  preferred name and still free, finally its id. Nothing is ever replaced.
- No host shares its name with a group or with another machine's host of an
  earlier source, and none takes a name ansible-core reserves
  (``all``, ``ungrouped``) or answers as the controller (``localhost``...): the
  groups made first (``cmdop``, the fleets' groups, other sources' groups) keep
  their names and the machine takes its next preference, as for a duplicate; a
  group made later from API values (``keyed_groups``, ``groups``) whose name is a
  host's or the controller's is not made (``refused_group``). The event source
  names hosts with the same functions.
- Group names: ``group_prefix`` + local fleet name, sanitized by the caller's
  function (ansible-core's); a clash with another fleet's group, a reserved
  group, a controller name or another source's host gets ``_2``, ``_3``...

Before the layout, the policy (also pure; the plugin only reads files, the
cache and the API, and calls these):

- The plan (``plan_from_file``, ``plan_from_api``, ``plan_single_key``): which
  fleets are shown and which credential lists which; one listing per credential.
- After the listings: ``fleets_to_show`` (from the file, the API's fleet list or
  the single key's machines) and ``judge`` (the error rules of ``on_error``).
- The cache: ``usable(cached, plan)`` and, for ``on_error: cache``,
  ``with_fallback(plan, payload, stale, now)``, which serves the last good
  answer for what could not be listed.

Private to the collection.
"""

from __future__ import annotations

import hashlib
import json
import keyword
import re
import typing as t
from dataclasses import dataclass, field

from ansible_collections.cmdop.fleet.plugins.module_utils._api import API_KEY, OAUTH, CmdopError, Credential, UnauthorizedError
from ansible_collections.cmdop.fleet.plugins.module_utils._modes import DEFAULT_DEV_SERVER, SCOPE_MODE, entry_scope, normalize_url
from ansible_collections.cmdop.fleet.plugins.module_utils._reconcile import fleet_key, new_fleet_names
from ansible_collections.cmdop.fleet.plugins.module_utils._timestamps import format_utc

TOP_GROUP = "cmdop"
RESERVED_GROUPS = frozenset(["all", "ungrouped", TOP_GROUP])
# The names ansible-core's implicit localhost answers to (its C.LOCALHOST; a unit test checks they are the same):
# a host of such a name would be the controller for every task delegated to localhost, a group of it every play on it.
CONTROLLER_NAMES = frozenset(["localhost", "127.0.0.1", "::1"])
RESERVED_NAMES = RESERVED_GROUPS | CONTROLLER_NAMES  # never a host's name
HOSTNAME_SOURCES = ("name", "hostname", "id", "public_ip", "local_ip")
DEFAULT_HOSTNAMES = ("name", "hostname", "id")
CONNECT_WITH = ("public_ip", "local_ip", "hostname", "none")
ON_ERROR = ("fail", "warn", "cache")
CACHE_VERSION = 2  # 2: the payload holds fetched_at
SHOWN = 10  # at most this many names in one warning

# A host name users can type in a limit pattern: letters, digits, ``_``, ``.``, ``@``, ``-``; matched whole (``\Z``:
# ``$`` would also match before a final newline).
_USABLE_NAME = re.compile(r"\w[\w.@-]{0,254}\Z")


@dataclass(frozen=True)
class FleetSpec:
    """One fleet to show.

    ``source`` labels the listing that holds its machines. With ``by_workspace``
    only the listing's machines whose ``workspace`` is ``remote_id`` are its own
    (a shared OAuth listing); otherwise every machine of the listing is (the
    fleet's own API key). ``variables`` become group variables (prefixed by the caller).
    """

    name: str
    source: str
    remote_id: str = ""
    by_workspace: bool = False
    variables: t.Mapping[str, t.Any] = field(default_factory=dict)


@dataclass
class Host:
    name: str
    machine_id: str
    groups: t.List[str]
    variables: t.Dict[str, t.Any]


@dataclass
class Group:
    name: str
    fleet: str
    variables: t.Dict[str, t.Any]


HOST_CLASH = "host"  # Renamed.clash: another machine (earlier by id) has the name
GROUP_CLASH = "group"  # Renamed.clash: a group has the name, or ansible-core reserves it
SOURCE_CLASH = "source"  # Renamed.clash: a host of an earlier inventory source, not this machine, has the name


@dataclass
class Renamed:
    """A host or group that could not have the name it preferred, and the name it got."""

    wanted: str
    got: str
    what: str  # a machine id or a fleet's local name
    clash: str = HOST_CLASH


@dataclass
class Layout:
    hosts: t.List[Host]
    groups: t.List[Group]
    renamed_hosts: t.List[Renamed]
    renamed_groups: t.List[Renamed]
    without_address: t.List[str]  # host names that have no value for connect_with


def fingerprint(*parts: str) -> str:
    """A short, one-way label for a credential or an account, fit for a cache key (never the secret itself)."""
    digest = hashlib.sha256()
    for part in ("cmdop.fleet inventory",) + parts:
        digest.update(part.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()[:20]


def cache_suffix(api_url: str, mode: str, fleets_from: str, labels: t.Iterable[str]) -> str:
    """The account part of a cache key: the API URL, the mode, the source and every listing's fingerprint."""
    return fingerprint(json.dumps([api_url, mode, fleets_from, sorted(set(labels))]))


def is_online(machine: t.Mapping[str, t.Any]) -> bool:
    value = machine.get("is_online")
    if isinstance(value, bool):
        return value
    return machine.get("status") == "online"


def usable_name(value: t.Any) -> bool:
    return isinstance(value, str) and bool(_USABLE_NAME.match(value))


def refused_group(name: str, hosts: t.Container[str]) -> t.Optional[str]:
    """Why a group made after the hosts (from API values: ``keyed_groups``, ``groups``) must not be made, or None.

    A group of a host's name would take the host's variables (ansible-core sets a
    group's variable for a name that is both) and its place in patterns; a group of
    a controller name would make ``hosts: localhost`` run on fleet machines.
    """
    if name in CONTROLLER_NAMES:
        return "it is a name of the controller (localhost)"
    if name in hosts:
        return "a host has that name"
    return None


def field_value(machine: t.Mapping[str, t.Any], source: str) -> t.Any:
    """A machine's value for a ``hostnames`` or ``connect_with`` source."""
    if source == "local_ip":
        ips = machine.get("local_ips") or []
        return next((ip for ip in ips if isinstance(ip, str) and ip), None)
    return machine.get(source)


def address_of(machine: t.Mapping[str, t.Any], sources: t.Sequence[str]) -> t.Optional[str]:
    """The first non-empty value among ``sources`` (``connect_with``), tried in order."""
    for source in sources:
        value = field_value(machine, source)
        if isinstance(value, str) and value:
            return value
    return None


def _candidates(machine: t.Mapping[str, t.Any], preferences: t.Sequence[str]) -> t.List[str]:
    names: t.List[str] = []
    for source in preferences:
        value = field_value(machine, source)
        if usable_name(value) and value not in names:
            names.append(value)
    if machine["id"] not in names:
        names.append(machine["id"])
    return names


def host_names(machines: t.Sequence[t.Mapping[str, t.Any]], preferences: t.Sequence[str],
               groups: t.Collection[str] = (), others: t.Optional[t.Mapping[str, str]] = None) -> t.Tuple[t.Dict[str, str], t.List[Renamed]]:
    """Machine id -> host name, by the duplicate rule, and the machines that did not get their preferred name.

    No host takes a name of ``groups`` (the groups made before the hosts) or of
    ``RESERVED_NAMES``, nor one of ``others`` (hosts of earlier sources: name ->
    their machine id, empty when they are none) unless it is the same machine:
    such a name is skipped as a taken one is.
    """
    unavailable = RESERVED_NAMES | frozenset(groups)
    others = others or {}

    def free_for(machine_id: str, name: str) -> bool:
        return name not in unavailable and others.get(name, machine_id) == machine_id

    ordered = sorted(machines, key=lambda machine: machine["id"])
    candidates = {machine["id"]: _candidates(machine, preferences) for machine in ordered}
    allowed = {machine_id: [name for name in names if free_for(machine_id, name)] for machine_id, names in candidates.items()}
    names: t.Dict[str, str] = {}
    taken: t.Set[str] = set()
    later: t.List[str] = []
    # First pass: every machine asks for its preferred name that is no group's; the first (by id) gets it.
    for machine in ordered:
        choices = allowed[machine["id"]]
        if not choices or choices[0] in taken:
            later.append(machine["id"])
        else:
            names[machine["id"]] = choices[0]
            taken.add(choices[0])
    # Second pass: the others take their next preference that is still free, finally the id.
    for machine_id in later:
        got = next((name for name in allowed[machine_id] if name not in taken), None)
        counter = 2
        while got is None:  # even the id is taken (another machine is named after it) or a group's
            candidate = "%s-%d" % (machine_id, counter)
            got = candidate if candidate not in taken and free_for(machine_id, candidate) else None
            counter += 1
        names[machine_id] = got
        taken.add(got)
    renamed = []
    for machine in ordered:
        wanted, got = candidates[machine["id"]][0], names[machine["id"]]
        if got != wanted:
            clash = GROUP_CLASH if wanted in unavailable else HOST_CLASH if free_for(machine["id"], wanted) else SOURCE_CLASH
            renamed.append(Renamed(wanted=wanted, got=got, what=machine["id"], clash=clash))
    return names, renamed


def group_names(fleets: t.Sequence[FleetSpec], group_prefix: str, sanitize: t.Callable[[str], str],
                hosts: t.Collection[str] = ()) -> t.Tuple[t.List[str], t.List[Renamed]]:
    """Each fleet's group name, in fleet order; a later fleet whose sanitized name is taken gets ``_2``, ``_3``...

    Taken: another fleet's group, ``RESERVED_NAMES`` and ``hosts`` (other sources' hosts, made before).
    """
    taken = set(RESERVED_NAMES) | set(hosts)
    names = []
    renamed = []
    for fleet in fleets:
        wanted = sanitize(group_prefix + fleet.name)
        got = wanted
        counter = 2
        while got in taken:
            got = "%s_%d" % (wanted, counter)
            counter += 1
        if got != wanted:
            renamed.append(Renamed(wanted=wanted, got=got, what=fleet.name))
        taken.add(got)
        names.append(got)
    return names, renamed


def machine_variables(machine: t.Mapping[str, t.Any], prefix: str, fields: t.Optional[t.Collection[str]] = None) -> t.Dict[str, t.Any]:
    """The machine's fields (all, or only ``fields``) as host variables; a key that is not a valid variable name is left out."""
    result = {}
    for key, value in machine.items():
        if fields is not None and key not in fields:
            continue
        name = prefix + str(key)
        if name.isidentifier() and not keyword.iskeyword(name):
            result[name] = value
    return result


def layout(
    fleets: t.Sequence[FleetSpec],
    listings: t.Mapping[str, t.Sequence[t.Mapping[str, t.Any]]],
    sanitize: t.Callable[[str], str],
    hostnames: t.Sequence[str] = DEFAULT_HOSTNAMES,
    hostvar_prefix: str = "cmdop_",
    group_prefix: str = "fleet_",
    connect_with: t.Sequence[str] = (),
    online_only: bool = False,
    keep: t.Optional[t.Callable[[t.Dict[str, t.Any]], bool]] = None,
    hostvar_fields: t.Optional[t.Collection[str]] = None,
    other_groups: t.Collection[str] = (),
    other_hosts: t.Optional[t.Mapping[str, str]] = None,
) -> Layout:
    """Hosts and groups for the given fleets; ``keep`` (host variables -> bool) filters hosts.

    ``connect_with``: the fields tried in order for ``ansible_host`` (``none`` is
    no field). ``hostvar_fields``: the machine fields kept as host variables
    (None: all); host names and ``connect_with`` use every field either way.
    ``other_groups``, ``other_hosts``: what the inventory already has (earlier
    sources; hosts as name -> their machine id, empty when they are none): no host
    takes a group's name or another machine's host's, no fleet group a host's.
    """
    sources = [source for source in connect_with if source != "none"]
    fleet_groups, renamed_groups = group_names(fleets, group_prefix, sanitize, other_hosts or ())
    machines: t.Dict[str, t.Mapping[str, t.Any]] = {}
    membership: t.Dict[str, t.List[int]] = {}
    for index, fleet in enumerate(fleets):
        for machine in listings.get(fleet.source, ()):
            if fleet.by_workspace and fleet_key(machine.get("workspace")) != fleet_key(fleet.remote_id):
                continue
            machines.setdefault(machine["id"], machine)
            indexes = membership.setdefault(machine["id"], [])
            if index not in indexes:
                indexes.append(index)

    kept = {}
    for machine_id, machine in machines.items():
        if online_only and not is_online(machine):
            continue
        indexes = membership[machine_id]
        own = [fleets[index].name for index in indexes]
        home = next((fleets[index].name for index in indexes
                     if fleets[index].remote_id and fleet_key(fleets[index].remote_id) == fleet_key(machine.get("workspace"))), own[0])
        variables = machine_variables(machine, hostvar_prefix, hostvar_fields)
        variables[hostvar_prefix + "fleet"] = home
        variables[hostvar_prefix + "fleets"] = own
        if keep is None or keep(variables):
            kept[machine_id] = variables

    names, renamed_hosts = host_names([machines[machine_id] for machine_id in kept], hostnames, set(fleet_groups) | set(other_groups), other_hosts)
    hosts = []
    without_address = []
    for machine_id in sorted(kept, key=lambda key: names[key]):
        variables = kept[machine_id]
        name = names[machine_id]
        if sources:
            address = address_of(machines[machine_id], sources)
            if address is not None:
                variables["ansible_host"] = address
            else:
                without_address.append(name)
        hosts.append(Host(name=name, machine_id=machine_id, groups=[fleet_groups[index] for index in membership[machine_id]], variables=variables))

    groups = []
    for index, fleet in enumerate(fleets):
        variables = {hostvar_prefix + key: value for key, value in fleet.variables.items()}
        groups.append(Group(name=fleet_groups[index], fleet=fleet.name, variables=variables))
    return Layout(hosts=hosts, groups=groups, renamed_hosts=renamed_hosts, renamed_groups=renamed_groups, without_address=without_address)


# ---- the plan: which fleets, which credential lists which --------------------------------------------

FLEET_LIST = "(the fleet list)"  # the label of a failed fleet list (fleets_from=api) in a payload's "failed"
Labelled = t.Tuple[Credential, str]  # a credential and the label of its listing (a one-way fingerprint)


@dataclass
class Plan:
    """What to list: one listing per credential, and the fleets known before listing (from the fleet file)."""

    fleets: t.List[FleetSpec] = field(default_factory=list)
    order: t.List[str] = field(default_factory=list)  # local names of the fleets in scope, in file order
    credentials: t.Dict[str, Credential] = field(default_factory=dict)  # listing label -> credential
    unlistable: t.Dict[str, str] = field(default_factory=dict)  # local fleet name -> why nothing can list it
    left_out: t.List[t.Tuple[str, str]] = field(default_factory=list)  # (local fleet name, why), for -vvv
    fleet_list: t.Optional[str] = None  # fleets_from=api: the label of the OAuth listing, whose credential also lists the fleets
    single_key: t.Optional[str] = None  # an api_key alone: the label of its listing

    def use(self, label: str, credential: Credential) -> None:
        self.credentials.setdefault(label, credential)  # one listing per credential, however many fleets it serves


def key_credential(secret: str, api_url: str) -> Labelled:
    return Credential(secret, API_KEY), fingerprint("key", normalize_url(api_url), secret)


def in_scope(entry: t.Mapping[str, t.Any], mode: str, api_url: str, dev_server: str = DEFAULT_DEV_SERVER) -> bool:
    """A fleet file entry of ``mode`` (``dev_server``'s host counts as dev's, as in the sync), or one whose ``server`` is
    the API URL in use."""
    server = entry.get("server") or ""
    if entry_scope(server, mode, dev_server) == SCOPE_MODE:
        return True
    return bool(server) and normalize_url(server) == normalize_url(api_url)


def _shown(document: t.Mapping[str, t.Any], mode: str, api_url: str, include_inactive: bool,
           dev_server: str) -> t.Tuple[t.List[dict], t.List[t.Tuple[str, str]]]:
    shown, left_out = [], []
    for entry in document.get("workspaces") or []:
        if entry.get("inactive") and not include_inactive:
            left_out.append((entry["name"], "it is inactive (include_inactive)"))
        elif not in_scope(entry, mode, api_url, dev_server):
            left_out.append((entry["name"], "it belongs to another mode or server"))
        else:
            shown.append(entry)
    return shown, left_out


def needs_oauth(document: t.Mapping[str, t.Any], mode: str, api_url: str, include_inactive: bool, dev_server: str = DEFAULT_DEV_SERVER) -> bool:
    """Whether a shown fleet of the file has no api_key but a remote_id: only the OAuth token can list it."""
    shown = _shown(document, mode, api_url, include_inactive, dev_server)[0]
    return any(not entry.get("api_key") and entry.get("remote_id") for entry in shown)


def plan_from_file(document: t.Mapping[str, t.Any], mode: str, api_url: str, include_inactive: bool,
                   oauth: t.Optional[Labelled], no_oauth: str = "", dev_server: str = DEFAULT_DEV_SERVER) -> Plan:
    """The file's fleets of the mode: each with an api_key listed with its key, the others with the OAuth credential.

    ``no_oauth`` says where an OAuth token would have come from, for the fleets
    that need one when ``oauth`` is None.
    """
    plan = Plan()
    shown, plan.left_out = _shown(document, mode, api_url, include_inactive, dev_server)
    for entry in shown:
        name = entry["name"]
        plan.order.append(name)
        remote_id = entry.get("remote_id") or ""
        variables = {
            "fleet_id": remote_id,
            "fleet_name": name,
            "fleet_remote_name": entry.get("remote_name") or "",
            "fleet_inactive": bool(entry.get("inactive")),
        }
        if entry.get("api_key"):
            credential, label = key_credential(entry["api_key"], api_url)
            plan.fleets.append(FleetSpec(name=name, source=label, remote_id=remote_id, variables=variables))
            plan.use(label, credential)
        elif not remote_id:
            plan.unlistable[name] = "it has neither an api_key nor a remote_id, so nothing can list its machines"
        elif oauth is None:
            plan.unlistable[name] = "it has no api_key, and there is no OAuth token (%s) to list it with" % no_oauth
        else:
            plan.fleets.append(FleetSpec(name=name, source=oauth[1], remote_id=remote_id, by_workspace=True, variables=variables))
            plan.use(oauth[1], oauth[0])
    return plan


def plan_from_api(oauth: Labelled) -> Plan:
    """fleets_from=api: the user's fleets and their machines, both with the OAuth credential."""
    plan = Plan(fleet_list=oauth[1])
    plan.use(oauth[1], oauth[0])
    return plan


def plan_single_key(secret: str, api_url: str) -> Plan:
    """An api_key alone: its single fleet, known from its machines."""
    credential, label = key_credential(secret, api_url)
    plan = Plan(single_key=label)
    plan.use(label, credential)
    return plan


# ---- after the listings: the fleets to show, and the error rules ----------------------------------------


def _server_fleet_variables(fleet: t.Mapping[str, t.Any]) -> dict:
    return {"fleet_slug": fleet.get("slug"), "fleet_type": fleet.get("type"), "fleet_plan": fleet.get("plan")}


def _named(server_fleets: t.Sequence[dict], label: str, extra: t.Callable[[t.Mapping[str, t.Any]], dict]) -> t.List[FleetSpec]:
    names = new_fleet_names(server_fleets, set())  # the names cmdop.fleet.sync gives the same fleets
    fleets = []
    for fleet in sorted(server_fleets, key=lambda fleet: fleet["id"]):
        name = names[fleet["id"]]
        variables = {"fleet_id": fleet["id"], "fleet_name": name, "fleet_remote_name": fleet.get("name") or ""}
        variables.update(extra(fleet))
        fleets.append(FleetSpec(name=name, source=label, remote_id=fleet["id"], by_workspace=True, variables=variables))
    return fleets


def fleets_to_show(plan: Plan, payload: t.Mapping[str, t.Any]) -> t.List[FleetSpec]:
    """The fleets to show: the file's (planned), the API's fleet list, or the single key's fleet (from its machines)."""
    if plan.fleet_list is not None:
        return _named(payload.get("fleets") or [], plan.fleet_list, _server_fleet_variables)
    if plan.single_key is not None:
        seen: t.Dict[str, dict] = {}
        for machine in sorted(payload["listings"].get(plan.single_key, []), key=lambda machine: machine["id"]):
            seen.setdefault(fleet_key(machine["workspace"]), {"id": machine["workspace"], "name": machine.get("workspace_name") or ""})
        return _named(list(seen.values()), plan.single_key, lambda fleet: {})
    return plan.fleets


@dataclass
class Verdict:
    fleets: t.List[FleetSpec]  # the fleets to show, whose machines could be listed
    warnings: t.List[str]  # not scrubbed: the caller scrubs


def judge(plan: Plan, payload: t.Mapping[str, t.Any], on_error: str, where: str, mode: str) -> Verdict:
    """The error rules: a fleet that cannot be listed fails the inventory (no partial inventory), or with
    ``on_error: warn`` is left out with a warning, unless no fleet at all could be listed. A failed fleet list or
    a single key that cannot be listed always fails. (``on_error: cache`` has served what it could before.)"""
    failed_labels = payload.get("failed") or {}
    if FLEET_LIST in failed_labels:
        raise CmdopError("cannot list the user's fleets: %s" % failed_labels[FLEET_LIST])
    if plan.single_key in failed_labels:
        raise CmdopError("cannot list the machines of the api_key's fleet: %s" % failed_labels[plan.single_key])
    fleets = fleets_to_show(plan, payload)
    failed = dict(plan.unlistable)
    failed.update((fleet.name, failed_labels[fleet.source]) for fleet in fleets if fleet.source in failed_labels)
    position = {name: index for index, name in enumerate(plan.order)}
    failed = {name: failed[name] for name in sorted(failed, key=lambda name: position.get(name, len(position)))}
    fleets = [fleet for fleet in fleets if fleet.name not in failed]
    if failed and (on_error != "warn" or not fleets):
        raise CmdopError("cannot list the machines of %d fleet(s), so no inventory was made (on_error: warn shows the others): %s"
                         % (len(failed), "; ".join("fleet %r: %s" % (name, reason) for name, reason in failed.items())))
    warnings = ["cmdop: fleet %r left out: %s" % (name, reason) for name, reason in failed.items()]
    if not fleets:
        warnings.append("cmdop: there is no fleet to show (no %s fleet in %s)" % (mode, where))
    return Verdict(fleets=fleets, warnings=warnings)


# ---- the cache ---------------------------------------------------------------------------------------------


def empty_payload(now: float) -> dict:
    """What the API answered, as ``{"version", "fetched_at", "fleets", "listings": {label: machines}, "failed": {label: reason}}``."""
    return {"version": CACHE_VERSION, "fetched_at": now, "fleets": None, "listings": {}, "failed": {}}


def usable(cached: t.Any, plan: Plan) -> bool:
    """Whether a cache entry holds everything the plan lists (and is of this version)."""
    if not isinstance(cached, dict) or cached.get("version") != CACHE_VERSION or not isinstance(cached.get("listings"), dict):
        return False
    if not isinstance(cached.get("fetched_at"), (int, float)):
        return False
    if plan.fleet_list is not None and not isinstance(cached.get("fleets"), list):
        return False
    return all(isinstance(cached["listings"].get(label), list) for label in plan.credentials)


def to_cache(payload: t.Mapping[str, t.Any]) -> t.Optional[dict]:
    """What is cached of a payload: all of it but ``failed``; nothing when something failed (no partial answer is cached)."""
    if payload.get("failed"):
        return None
    return {name: value for name, value in payload.items() if name != "failed"}


def age(seconds: float) -> str:
    """A duration as people say it: 40 seconds, 12 minutes, 3 hours, 2 days."""
    seconds = max(0, int(seconds))
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = seconds // size
            return "%d %s%s" % (count, unit, "" if count == 1 else "s")
    return "%d second%s" % (seconds, "" if seconds == 1 else "s")


def with_fallback(plan: Plan, payload: t.Mapping[str, t.Any], stale: t.Any, now: float) -> t.Tuple[dict, t.List[str]]:
    """``on_error: cache``: what failed is served from the last good answer ``stale`` (a cache entry, even expired).

    A failed listing is replaced by the stale entry's; a failed fleet list
    (``fleets_from=api``) by the stale fleet list and all of its listings.
    What the stale entry does not hold stays failed (and the error rules apply).
    Returns the payload to use and the warnings: which fleets, and how old the answer is.
    """
    failed = dict(payload.get("failed") or {})
    if not failed or not usable(stale, plan):
        return dict(payload), []
    result = dict(payload, listings=dict(payload["listings"]), failed={})
    served = set(plan.credentials) if FLEET_LIST in failed else set(failed)
    if FLEET_LIST in failed:
        result["fleets"] = stale["fleets"]
    for label in served:
        result["listings"][label] = stale["listings"][label]
    names = [fleet.name for fleet in fleets_to_show(plan, result) if fleet.source in served]
    reasons = sorted(set(failed.values()))
    shown = ", ".join(repr(name) for name in names[:SHOWN]) + (" and %d more" % (len(names) - SHOWN) if len(names) > SHOWN else "")
    warning = "cmdop: on_error=cache: %d fleet(s) could not be listed, so they are shown as the cache had them %s ago (listed at %s): %s; the error: %s" % (
        len(names), age(now - stale["fetched_at"]), format_utc(stale["fetched_at"]), shown or "(none)", "; ".join(reasons))
    return result, [warning]


def failure_reason(error: Exception, kind: str, login_hint: str) -> str:
    """Why a listing failed, with what to do about a refused credential."""
    if not isinstance(error, UnauthorizedError):
        return str(error)
    if kind == OAUTH:
        return "%s; %s" % (error, login_hint)
    return "%s; the server refused the fleet's api_key (revoked?)" % error
