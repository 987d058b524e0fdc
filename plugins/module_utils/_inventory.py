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
- Group names: ``group_prefix`` + local fleet name, sanitized by the caller's
  function (ansible-core's); a clash with another fleet's group or a reserved
  group gets ``_2``, ``_3``...

Private to the collection.
"""

from __future__ import annotations

import hashlib
import json
import keyword
import re
import typing as t
from dataclasses import dataclass, field

TOP_GROUP = "cmdop"
RESERVED_GROUPS = frozenset(["all", "ungrouped", TOP_GROUP])
HOSTNAME_SOURCES = ("name", "hostname", "id", "public_ip", "local_ip")
DEFAULT_HOSTNAMES = ("name", "hostname", "id")
CONNECT_WITH = ("public_ip", "local_ip", "hostname", "none")

# A host name users can type in a limit pattern: letters, digits, ``_``, ``.``, ``@``, ``-``.
_USABLE_NAME = re.compile(r"^\w[\w.@-]{0,254}$")


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


@dataclass
class Renamed:
    """A host or group that could not have the name it preferred, and the name it got."""

    wanted: str
    got: str
    what: str  # a machine id or a fleet's local name


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


def field_value(machine: t.Mapping[str, t.Any], source: str) -> t.Any:
    """A machine's value for a ``hostnames`` or ``connect_with`` source."""
    if source == "local_ip":
        ips = machine.get("local_ips") or []
        return next((ip for ip in ips if isinstance(ip, str) and ip), None)
    return machine.get(source)


def _candidates(machine: t.Mapping[str, t.Any], preferences: t.Sequence[str]) -> t.List[str]:
    names: t.List[str] = []
    for source in preferences:
        value = field_value(machine, source)
        if usable_name(value) and value not in names:
            names.append(value)
    if machine["id"] not in names:
        names.append(machine["id"])
    return names


def host_names(machines: t.Sequence[t.Mapping[str, t.Any]], preferences: t.Sequence[str]) -> t.Tuple[t.Dict[str, str], t.List[Renamed]]:
    """Machine id -> host name, by the duplicate rule, and the machines that did not get their preferred name."""
    ordered = sorted(machines, key=lambda machine: machine["id"])
    candidates = {machine["id"]: _candidates(machine, preferences) for machine in ordered}
    names: t.Dict[str, str] = {}
    taken: t.Set[str] = set()
    later: t.List[str] = []
    # First pass: every machine asks for its preferred name; the first (by id) gets it.
    for machine in ordered:
        wanted = candidates[machine["id"]][0]
        if wanted in taken:
            later.append(machine["id"])
        else:
            names[machine["id"]] = wanted
            taken.add(wanted)
    # Second pass: the others take their next preference that is still free, finally the id.
    renamed = []
    for machine_id in later:
        choices = candidates[machine_id]
        got = next((name for name in choices[1:] if name not in taken), None)
        counter = 2
        while got is None:  # even the id is taken (another machine is named after it)
            candidate = "%s-%d" % (machine_id, counter)
            got = None if candidate in taken else candidate
            counter += 1
        names[machine_id] = got
        taken.add(got)
        renamed.append(Renamed(wanted=choices[0], got=got, what=machine_id))
    return names, renamed


def group_names(fleets: t.Sequence[FleetSpec], group_prefix: str, sanitize: t.Callable[[str], str]) -> t.Tuple[t.List[str], t.List[Renamed]]:
    """Each fleet's group name, in fleet order; a later fleet whose sanitized name is taken gets ``_2``, ``_3``..."""
    taken = set(RESERVED_GROUPS)
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


def machine_variables(machine: t.Mapping[str, t.Any], prefix: str) -> t.Dict[str, t.Any]:
    """The machine's fields as host variables; a key that is not a valid variable name is left out."""
    result = {}
    for key, value in machine.items():
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
    connect_with: str = "none",
    online_only: bool = False,
    keep: t.Optional[t.Callable[[t.Dict[str, t.Any]], bool]] = None,
) -> Layout:
    """Hosts and groups for the given fleets; ``keep`` (host variables -> bool) filters hosts."""
    fleet_groups, renamed_groups = group_names(fleets, group_prefix, sanitize)
    machines: t.Dict[str, t.Mapping[str, t.Any]] = {}
    membership: t.Dict[str, t.List[int]] = {}
    for index, fleet in enumerate(fleets):
        for machine in listings.get(fleet.source, ()):
            if fleet.by_workspace and machine.get("workspace") != fleet.remote_id:
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
        home = next((fleets[index].name for index in indexes if fleets[index].remote_id and fleets[index].remote_id == machine.get("workspace")), own[0])
        variables = machine_variables(machine, hostvar_prefix)
        variables[hostvar_prefix + "fleet"] = home
        variables[hostvar_prefix + "fleets"] = own
        if keep is None or keep(variables):
            kept[machine_id] = variables

    names, renamed_hosts = host_names([machines[machine_id] for machine_id in kept], hostnames)
    hosts = []
    without_address = []
    for machine_id in sorted(kept, key=lambda key: names[key]):
        variables = kept[machine_id]
        name = names[machine_id]
        if connect_with != "none":
            address = field_value(machines[machine_id], connect_with)
            if isinstance(address, str) and address:
                variables["ansible_host"] = address
            else:
                without_address.append(name)
        hosts.append(Host(name=name, machine_id=machine_id, groups=[fleet_groups[index] for index in membership[machine_id]], variables=variables))

    groups = []
    for index, fleet in enumerate(fleets):
        variables = {hostvar_prefix + key: value for key, value in fleet.variables.items()}
        groups.append(Group(name=fleet_groups[index], fleet=fleet.name, variables=variables))
    return Layout(hosts=hosts, groups=groups, renamed_hosts=renamed_hosts, renamed_groups=renamed_groups, without_address=without_address)
