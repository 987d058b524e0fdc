# -*- coding: utf-8 -*-
# Copyright (c) cmdop.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Unit tests of the inventory's policy in the pure core: the plan, the error rules, the cache and its fallback, addresses."""

from __future__ import annotations

import re
import typing as t

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from ansible_collections.cmdop.fleet.plugins.module_utils._api import OAUTH, CmdopError, Credential, UnauthorizedError
from ansible_collections.cmdop.fleet.plugins.module_utils._inventory import (
    CONTROLLER_NAMES,
    FLEET_LIST,
    GROUP_CLASH,
    HOST_CLASH,
    RESERVED_GROUPS,
    SOURCE_CLASH,
    FleetSpec,
    address_of,
    age,
    empty_payload,
    failure_reason,
    judge,
    layout,
    needs_oauth,
    plan_from_api,
    plan_from_file,
    plan_single_key,
    refused_group,
    to_cache,
    usable,
    with_fallback,
)

pytestmark = pytest.mark.core_independent  # pure code, the emulator or a static check: run once (tests/conftest.py)

API = "https://api.cmdop.com"
OAUTH_LABEL = "oauth-label"
OAUTH_CREDENTIAL = (Credential("token-secret", OAUTH), OAUTH_LABEL)
NOW = 1_800_000_000.0


def entry(name: str, key: str = "", remote_id: str = "", **fields: object) -> dict:
    return dict({"name": name, "api_key": key, "server": "", "remote_id": remote_id}, **fields)


DOCUMENT = {"workspaces": [
    entry("a", "key-a", "fa"),
    entry("a-ops", "key-a2", "fa"),
    entry("lab", "", "fb"),
    entry("stg", "", "fc"),
    entry("gone", "key-g", "fg", inactive=True),
    entry("dev", "key-d", "fd", server="https://dev.cmdop.com"),
    entry("orphan"),
]}


def machine(machine_id: str, workspace: str, **fields: object) -> dict:
    return dict({"id": machine_id, "workspace": workspace, "name": machine_id}, **fields)


def test_each_key_is_one_listing_and_keyless_fleets_share_the_oauth_one() -> None:
    plan = plan_from_file(DOCUMENT, "prod", API, False, OAUTH_CREDENTIAL)
    assert plan.order == ["a", "a-ops", "lab", "stg", "orphan"]
    assert len(plan.credentials) == 3  # key-a, key-a2, and one OAuth listing for lab and stg
    assert [(fleet.name, fleet.by_workspace) for fleet in plan.fleets] == [("a", False), ("a-ops", False), ("lab", True), ("stg", True)]
    assert {fleet.source for fleet in plan.fleets if fleet.by_workspace} == {OAUTH_LABEL}
    assert plan.unlistable == {"orphan": "it has neither an api_key nor a remote_id, so nothing can list its machines"}
    assert dict(plan.left_out) == {"gone": "it is inactive (include_inactive)", "dev": "it belongs to another mode or server"}
    # A label is a fingerprint, never the key.
    assert not [label for label in plan.credentials if "key-" in label]


def test_without_an_oauth_token_keyless_fleets_are_unlistable_and_say_where_a_token_would_come_from() -> None:
    plan = plan_from_file(DOCUMENT, "prod", API, True, None, no_oauth="the token file ~/.cmdop/token_prod.json")
    assert plan.unlistable["lab"] == "it has no api_key, and there is no OAuth token (the token file ~/.cmdop/token_prod.json) to list it with"
    assert "gone" in plan.order  # include_inactive


def test_the_token_is_needed_only_for_a_shown_keyless_fleet() -> None:
    assert needs_oauth(DOCUMENT, "prod", API, False)
    assert not needs_oauth({"workspaces": [entry("a", "key-a", "fa"), entry("orphan")]}, "prod", API, False)
    assert not needs_oauth({"workspaces": [entry("x", "", "fx", server="https://dev.cmdop.com")]}, "prod", API, False)
    assert needs_oauth({"workspaces": [entry("x", "", "fx", server="http://127.0.0.1:8000/")]}, "prod", "http://127.0.0.1:8000", False)


def test_the_host_of_dev_server_counts_as_dev_s_as_in_the_sync() -> None:
    """Entries a sync wrote with its own dev_server (a relay the user's CLI writes) are dev's when the same value is given."""
    document = {"workspaces": [entry("relay", "key-r", "fr", server="relay.dev.example:7443"), entry("p", "key-p", "fp")]}
    default = plan_from_file(document, "dev", "https://dev.cmdop.com", False, None)
    assert default.order == [] and dict(default.left_out)["relay"] == "it belongs to another mode or server"
    given = plan_from_file(document, "dev", "https://dev.cmdop.com", False, None, dev_server="relay.dev.example:7443")
    assert given.order == ["relay"] and dict(given.left_out) == {"p": "it belongs to another mode or server"}
    prod = plan_from_file(document, "prod", API, False, None, dev_server="relay.dev.example:7443")
    assert prod.order == ["p"] and "relay" in dict(prod.left_out)
    keyless = {"workspaces": [entry("relay", "", "fr", server="relay.dev.example:7443")]}
    assert needs_oauth(keyless, "dev", "https://dev.cmdop.com", False, "relay.dev.example:7443")
    assert not needs_oauth(keyless, "dev", "https://dev.cmdop.com", False)


def test_fleets_from_api_and_a_single_key() -> None:
    api = plan_from_api(OAUTH_CREDENTIAL)
    assert api.fleet_list == OAUTH_LABEL and list(api.credentials) == [OAUTH_LABEL]
    single = plan_single_key("key-x", API)
    assert single.single_key in single.credentials and single.fleet_list is None
    payload = dict(empty_payload(NOW), listings={single.single_key: [machine("m2", "fz", workspace_name="Zed"), machine("m1", "fy")]})
    verdict = judge(single, payload, "fail", "here", "prod")
    assert [(fleet.name, fleet.remote_id) for fleet in verdict.fleets] == [("fleet-fy", "fy"), ("zed", "fz")]  # no name: from its id


def listed(plan: object, failed: dict) -> dict:
    payload = empty_payload(NOW)
    for label in plan.credentials:  # type: ignore[attr-defined]
        if label not in failed:
            payload["listings"][label] = [machine("m-" + label[:6], "fb")]
    payload["failed"] = dict(failed)
    return payload


def test_judge_fails_the_whole_inventory_or_with_warn_leaves_the_failed_fleets_out() -> None:
    plan = plan_from_file({"workspaces": DOCUMENT["workspaces"][:3]}, "prod", API, False, OAUTH_CREDENTIAL)
    key_label = plan.fleets[0].source
    payload = listed(plan, {key_label: "answered 401"})
    with pytest.raises(CmdopError, match=r"cannot list the machines of 1 fleet\(s\), so no inventory was made .*fleet 'a': answered 401"):
        judge(plan, payload, "fail", "file", "prod")
    with pytest.raises(CmdopError):
        judge(plan, payload, "cache", "file", "prod")  # whatever the cache could not serve fails as fail does
    verdict = judge(plan, payload, "warn", "file", "prod")
    assert [fleet.name for fleet in verdict.fleets] == ["a-ops", "lab"]
    assert verdict.warnings == ["cmdop: fleet 'a' left out: answered 401"]
    everything = listed(plan, {label: "down" for label in plan.credentials})
    with pytest.raises(CmdopError):
        judge(plan, everything, "warn", "file", "prod")  # no fleet at all: fails even with warn


def test_a_failed_fleet_list_or_single_key_always_fails() -> None:
    api = plan_from_api(OAUTH_CREDENTIAL)
    with pytest.raises(CmdopError, match="cannot list the user's fleets: answered 500"):
        judge(api, dict(empty_payload(NOW), failed={FLEET_LIST: "answered 500"}), "warn", "the account", "prod")
    single = plan_single_key("key-x", API)
    with pytest.raises(CmdopError, match="api_key's fleet: refused"):
        judge(single, dict(empty_payload(NOW), failed={single.single_key: "refused"}), "warn", "x", "prod")


def test_only_a_complete_answer_is_cached_and_a_cached_entry_must_cover_the_plan() -> None:
    plan = plan_from_file(DOCUMENT, "prod", API, False, OAUTH_CREDENTIAL)
    good = listed(plan, {})
    entry_ = to_cache(good)
    assert entry_ is not None and "failed" not in entry_ and entry_["fetched_at"] == NOW
    assert usable(entry_, plan)
    assert to_cache(listed(plan, {OAUTH_LABEL: "down"})) is None
    assert not usable(dict(entry_, version=1), plan)
    assert not usable({key: value for key, value in entry_.items() if key != "fetched_at"}, plan)
    assert not usable(dict(entry_, listings={}), plan)
    assert not usable(entry_, plan_from_api(OAUTH_CREDENTIAL))  # no fleet list in it


def test_the_fallback_serves_only_what_failed_and_says_which_fleets_and_how_old() -> None:
    plan = plan_from_file(DOCUMENT, "prod", API, False, OAUTH_CREDENTIAL)
    stale = to_cache(listed(plan, {}))
    stale["fetched_at"] = NOW - 7300
    stale["listings"][OAUTH_LABEL] = [machine("old-lab", "fb")]
    fresh = listed(plan, {OAUTH_LABEL: "answered 503, and still did after retrying"})
    payload, warnings = with_fallback(plan, fresh, stale, NOW)
    assert payload["failed"] == {}
    assert payload["listings"][OAUTH_LABEL] == [machine("old-lab", "fb")]
    assert payload["listings"][plan.fleets[0].source] == fresh["listings"][plan.fleets[0].source]  # what was listed stays fresh
    assert warnings == ["cmdop: on_error=cache: 2 fleet(s) could not be listed, so they are shown as the cache had them 2 hours ago "
                        "(listed at 2027-01-15T05:58:20Z): 'lab', 'stg'; the error: answered 503, and still did after retrying"]
    assert [fleet.name for fleet in judge(plan, payload, "warn", "file", "prod").fleets] == ["a", "a-ops", "lab", "stg"]  # only orphan fails


def test_without_a_usable_last_answer_the_failure_stands() -> None:
    plan = plan_from_file(DOCUMENT, "prod", API, False, OAUTH_CREDENTIAL)
    fresh = listed(plan, {OAUTH_LABEL: "down"})
    for stale in (None, {"version": 2}, to_cache(listed(plan_from_file({"workspaces": DOCUMENT["workspaces"][:1]}, "prod", API, False, None), {}))):
        payload, warnings = with_fallback(plan, fresh, stale, NOW)
        assert payload["failed"] == {OAUTH_LABEL: "down"} and warnings == []


def test_a_failed_fleet_list_is_served_with_all_its_listings() -> None:
    plan = plan_from_api(OAUTH_CREDENTIAL)
    stale = dict(empty_payload(NOW - 30), fleets=[{"id": "fb", "name": "Lab", "slug": "lab"}], listings={OAUTH_LABEL: [machine("m1", "fb")]})
    payload, warnings = with_fallback(plan, dict(empty_payload(NOW), failed={FLEET_LIST: "answered 500"}), to_cache(stale), NOW)
    assert payload["fleets"] == stale["fleets"] and payload["listings"] == stale["listings"]
    assert "1 fleet(s) could not be listed" in warnings[0] and "30 seconds ago" in warnings[0] and "'lab'" in warnings[0]


def test_age_and_failure_reasons() -> None:
    assert [age(seconds) for seconds in (0, 1, 59, 60, 3599, 7200, 86400 * 3)] == [
        "0 seconds", "1 second", "59 seconds", "1 minute", "59 minutes", "2 hours", "3 days"]
    assert failure_reason(UnauthorizedError("401"), OAUTH, "log in again") == "401; log in again"
    assert failure_reason(UnauthorizedError("401"), "api_key", "log in again") == "401; the server refused the fleet's api_key (revoked?)"
    assert failure_reason(CmdopError("503"), OAUTH, "log in again") == "503"


def test_connect_with_is_tried_in_order_and_hostvar_fields_keeps_only_those_fields() -> None:
    host = {"public_ip": "", "local_ips": ["", "10.0.0.2"], "hostname": "h.example"}
    assert address_of(host, ["public_ip", "local_ip", "hostname"]) == "10.0.0.2"
    assert address_of(host, ["hostname", "local_ip"]) == "h.example"
    assert address_of({"public_ip": None}, ["public_ip", "local_ip", "hostname"]) is None
    plan = plan_from_file({"workspaces": [entry("a", "key-a", "fa")]}, "prod", API, False, None)
    label = plan.fleets[0].source
    machines = [machine("m1", "fa", public_ip="203.0.113.1", has_shell=True, cpu_count=4), machine("m2", "fa", hostname="m2.example")]
    result = layout(plan.fleets, {label: machines}, sanitize=lambda name: name.replace("-", "_"),
                    connect_with=["public_ip", "none", "hostname"], hostvar_fields={"has_shell"})
    assert {host.name: host.variables for host in result.hosts} == {
        "m1": {"cmdop_has_shell": True, "cmdop_fleet": "a", "cmdop_fleets": ["a"], "ansible_host": "203.0.113.1"},
        "m2": {"cmdop_fleet": "a", "cmdop_fleets": ["a"], "ansible_host": "m2.example"},
    }


# ---- host names never take a group's name, nor a reserved one --------------------------------------------------

SANITIZE = re.compile(r"[^A-Za-z0-9_]")  # as ansible-core's default group-name sanitizing


def sanitize(name: str) -> str:
    return SANITIZE.sub("_", name)


def populate(fleets: t.Sequence[FleetSpec], machines: t.Sequence[dict], constructed: t.Mapping[str, t.Sequence[str]],
             group_prefix: str = "fleet_", others: t.Optional[t.Mapping[str, str]] = None) -> t.Tuple[t.Dict[str, str], t.Set[str], t.Any]:
    """What the plugin makes: the layout (groups first, then hosts), then ``constructed`` (machine id -> the group names that
    keyed_groups or groups would make for it), each admitted by ``refused_group``. ``others``: an earlier source's hosts
    (name -> machine id). Returns machine id -> host name, every group name of the final inventory, and the layout."""
    result = layout(fleets, {"key": machines}, sanitize=sanitize, group_prefix=group_prefix, other_hosts=others)
    hosts = {host.machine_id: host.name for host in result.hosts}
    groups = set(RESERVED_GROUPS) | {group.name for group in result.groups}
    for machine_id, wanted in constructed.items():
        if machine_id in hosts:
            groups.update(name for name in wanted if refused_group(name, set(hosts.values())) is None)
    return hosts, groups, result


def test_a_machine_named_like_a_group_or_the_controller_takes_its_next_preference() -> None:
    fleets = [FleetSpec(name="team-a", source="key"), FleetSpec(name="web", source="key")]
    machines = [
        machine("m1", "f", name="all", hostname="m1.example"),
        machine("m2", "f", name="localhost", hostname="cmdop"),  # both reserved: its id
        machine("m3", "f", name="fleet_team_a", hostname="web"),  # a fleet's group; web is free (the group is fleet_web)
        machine("m4", "f", name="evil\n", hostname="evil"),  # a final newline is no usable name
        machine("m5", "f", name="127.0.0.1"),
        machine("m6", "f", name="web"),  # web was m3's next preference, but m6 prefers it: m3 took it first (by id)
    ]
    hosts, _groups, result = populate(fleets, machines, {})
    assert hosts == {"m1": "m1.example", "m2": "m2", "m3": "web", "m4": "evil", "m5": "m5", "m6": "m6"}
    assert [(item.what, item.wanted, item.got, item.clash) for item in result.renamed_hosts] == [
        ("m1", "all", "m1.example", GROUP_CLASH), ("m2", "localhost", "m2", GROUP_CLASH), ("m3", "fleet_team_a", "web", GROUP_CLASH),
        ("m5", "127.0.0.1", "m5", GROUP_CLASH), ("m6", "web", "m6", HOST_CLASH)]


def test_an_id_that_is_a_groups_name_gets_a_number() -> None:
    hosts, _groups, _result = populate([FleetSpec(name="a", source="key")], [machine("cmdop", "f", name="cmdop"), machine("all", "f")], {})
    assert hosts == {"cmdop": "cmdop-2", "all": "all-2"}


def test_another_sources_groups_and_hosts_are_taken_too() -> None:
    machines = [machine("m1", "f", name="db"), machine("m2", "f", name="ok"), machine("m3", "f", name="static"), machine("m4", "f", name="same")]
    result = layout([FleetSpec(name="web", source="key")], {"key": machines}, sanitize=sanitize, group_prefix="", other_groups={"db"},
                    other_hosts={"web": "", "static": "", "same": "m4"})
    assert [group.name for group in result.groups] == ["web_2"]
    # m3 may not take over the static host; m4 is the same machine as another cmdop source's host "same", so it joins it
    assert [host.name for host in result.hosts] == ["m1", "m3", "ok", "same"]
    assert [(item.what, item.clash) for item in result.renamed_hosts] == [("m1", GROUP_CLASH), ("m3", SOURCE_CLASH)]


def test_a_group_made_after_the_hosts_is_refused_when_a_host_or_the_controller_has_its_name() -> None:
    assert refused_group("web", {"web", "db"}) == "a host has that name"
    assert refused_group("localhost", set()) == "it is a name of the controller (localhost)"
    assert refused_group("os_linux", {"web"}) is None


machine_ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,12}", fullmatch=True)  # the listing schema's machine ids
names = (st.sampled_from(sorted(RESERVED_GROUPS | CONTROLLER_NAMES) + ["web", "db", "fleet_a", "fleet_web", "evil\n", "web\n", " web", "a b"])
         | st.text(max_size=12) | machine_ids)


@st.composite
def inventories(draw: t.Callable) -> t.Tuple[t.List[FleetSpec], t.List[dict], t.Dict[str, t.List[str]], str, t.Dict[str, str]]:
    ids = draw(st.lists(machine_ids, min_size=1, max_size=12, unique=True))
    machines = [dict({"id": machine_id, "workspace": "f"}, **draw(st.fixed_dictionaries({}, optional={"name": names, "hostname": names})))
                for machine_id in ids]
    fleets = [FleetSpec(name=name, source="key") for name in draw(st.lists(names, min_size=1, max_size=4))]
    constructed = {machine_id: draw(st.lists(names | st.sampled_from(ids), max_size=4)) for machine_id in ids}  # keyed groups from API values
    others = draw(st.dictionaries(names, st.sampled_from(ids) | st.just(""), max_size=4))  # an earlier source's hosts
    return fleets, machines, constructed, draw(st.sampled_from(["", "fleet_"])), others


@settings(max_examples=500, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(inventories())
def test_hosts_and_groups_never_share_a_name_and_no_host_takes_a_reserved_one(case: t.Any) -> None:
    fleets, machines, constructed, group_prefix, others = case
    hosts, groups, _result = populate(fleets, machines, constructed, group_prefix, others)
    assert sorted(hosts) == sorted(machine["id"] for machine in machines)  # every machine is a host
    names_given = list(hosts.values())
    assert len(set(names_given)) == len(names_given)  # no two machines share a host
    assert not set(names_given) & groups, (hosts, groups)
    assert not set(names_given) & CONTROLLER_NAMES
    assert not groups & CONTROLLER_NAMES
    for name in names_given:
        assert not re.search(r"[\s\x00-\x1f\x7f]", name), repr(name)
    for machine_id, name in hosts.items():  # a host of an earlier source is joined only by its own machine
        assert others.get(name, machine_id) == machine_id, (machine_id, name, others)


def test_a_fleets_machines_are_matched_by_workspace_without_case() -> None:
    fleets = [FleetSpec(name="a", source="oauth", remote_id="ABCDEF", by_workspace=True),
              FleetSpec(name="b", source="oauth", remote_id="ff", by_workspace=True)]
    result = layout(fleets, {"oauth": [machine("m1", "abcdef"), machine("m2", "AbCdEf"), machine("m3", "FF")]}, sanitize=sanitize)
    assert {host.name: (host.groups, host.variables["cmdop_fleet"]) for host in result.hosts} == {
        "m1": (["fleet_a"], "a"), "m2": (["fleet_a"], "a"), "m3": (["fleet_b"], "b")}
    single = plan_single_key("key-x", API)
    payload = dict(empty_payload(NOW), listings={single.single_key: [machine("m1", "abcdef"), machine("m2", "ABCDEF")]})
    assert [fleet.remote_id for fleet in judge(single, payload, "fail", "here", "prod").fleets] == ["abcdef"]  # one fleet, as given first
