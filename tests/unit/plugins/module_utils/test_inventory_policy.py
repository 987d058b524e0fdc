# -*- coding: utf-8 -*-
# Copyright (c) cmdop.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Unit tests of the inventory's policy in the pure core: the plan, the error rules, the cache and its fallback, addresses."""

from __future__ import annotations

import pytest

from ansible_collections.cmdop.fleet.plugins.module_utils._api import OAUTH, CmdopError, Credential, UnauthorizedError
from ansible_collections.cmdop.fleet.plugins.module_utils._inventory import (
    FLEET_LIST,
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


def test_fleets_from_api_and_a_single_key() -> None:
    api = plan_from_api(OAUTH_CREDENTIAL)
    assert api.fleet_list == OAUTH_LABEL and list(api.credentials) == [OAUTH_LABEL]
    single = plan_single_key("key-x", API)
    assert single.single_key in single.credentials and single.fleet_list is None
    payload = dict(empty_payload(NOW), listings={single.single_key: [machine("m2", "fz", workspace_name="Zed"), machine("m1", "fy")]})
    verdict = judge(single, payload, "fail", "here", "prod")
    assert [(fleet.name, fleet.remote_id) for fleet in verdict.fleets] == [("fleet", "fy"), ("zed", "fz")]


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
