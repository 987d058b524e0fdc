"""What CMDOP's own SDKs and binaries say the API does, and the client's promises about it, end to end:
ansible-playbook over SSH (and ansible-inventory) against the emulator, which answers each shape."""

from __future__ import annotations

import json
import time
import typing as t

import pytest
import requests

from ansible_collections.cmdop.fleet.plugins.module_utils import _client as client
from ansible_collections.cmdop.fleet.plugins.module_utils._api import OAUTH, Credential
from cmdop_helpers import ALICE, LAB, STAGING, TEAM_A, api_requests, login, read_fleets, sync_play

MACHINES = "/api/machines/machines/"
FLEETS = "/api/workspaces/workspaces/"


def info_play(args: dict, hosts: str = "t1") -> list:
    return [{"hosts": hosts, "gather_facts": False, "tasks": [{"name": "info", "cmdop.fleet.fleet_info": dict(args, machines=True)}]}]


def machine_page(count: int, pages: int, results: list, page: int = 1) -> str:
    return json.dumps({"count": count, "page": page, "pages": pages, "page_size": 200, "has_next": page < pages,
                       "has_previous": page > 1, "results": results})


def seed_machine(emulator: t.Any, fleet: str, machine_id: str, created_at: str) -> dict:
    machine = {"id": machine_id, "workspace": fleet, "name": machine_id, "created_at": created_at}
    emulator.admin("POST", "machines", machine)
    return machine


# ---- the fleet list: a plain array, or pages ----------------------------------------------------


def test_a_paginated_fleet_list_is_read_to_its_last_page(emulator, targets, inventory, run_playbook, api):
    login(emulator, targets, "t1", ALICE)
    emulator.admin("POST", "settings", {"fleets_page_size": 1})
    emulator.admin("DELETE", "requests")
    result = run_playbook(sync_play(api, hosts="t1"), inventory)
    assert result.rc == 0, result.describe()
    assert sorted(item["remote_id"] for item in read_fleets(targets, "t1")["workspaces"]) == sorted([TEAM_A, LAB, STAGING])
    pages = [item["query"].get("page", "1") for item in api_requests(emulator, FLEETS)]
    assert pages == ["1", "2", "3"]
    # nothing was deactivated because of a page not read
    assert result.task("sync", "t1")["deactivated"] == []


@pytest.mark.case("Server faults", "a fleet page whose next link points to another host",
                  "not followed: the token goes to no other host; the sync fails saying so")
def test_a_next_link_to_another_host_is_not_followed(emulator, targets, inventory, run_playbook, api):
    login(emulator, targets, "t1", ALICE)
    body = json.dumps({"count": 2, "next": "https://collector.invalid/steal?page=2",
                       "results": [{"id": TEAM_A, "name": "Team A"}]})
    emulator.admin("POST", "faults", {"path": FLEETS, "status": 200, "body": body})
    result = run_playbook(sync_play(api, hosts="t1"), inventory)
    assert result.rc != 0
    assert "links its next page outside %s; not followed" % emulator.url in result.task("sync", "t1")["msg"], result.describe()


def test_a_fleet_page_that_links_to_itself_is_an_error(emulator, targets, inventory, run_playbook, api):
    login(emulator, targets, "t1", ALICE)
    body = json.dumps({"count": 2, "next": emulator.url + FLEETS + "?page=2", "results": [{"id": TEAM_A, "name": "Team A"}]})
    emulator.admin("POST", "faults", {"path": FLEETS, "status": 200, "body": body, "count": 3})
    result = run_playbook(sync_play(api, hosts="t1"), inventory)
    assert "links to a page already read" in result.task("sync", "t1")["msg"], result.describe()


# ---- the base URL from CMDOP's SDK variable ---------------------------------------------------------


def test_cmdop_api_base_url_is_read_and_cmdop_api_url_wins(emulator, targets, inventory, run_playbook):
    login(emulator, targets, "t1", ALICE)
    play = sync_play({"retries": 0, "timeout": 5}, hosts="t1")
    play[0]["environment"] = {"CMDOP_API_BASE_URL": emulator.url}
    alone = run_playbook(play, inventory)
    assert alone.rc == 0 and len(alone.task("sync", "t1")["added"]) == 3, alone.describe()
    play[0]["environment"] = {"CMDOP_API_BASE_URL": "http://127.0.0.1:9", "CMDOP_API_URL": emulator.url}
    both = run_playbook(play, inventory)
    assert both.rc == 0, both.describe()


def test_the_inventory_reads_cmdop_api_base_url_and_cmdop_api_url_wins(emulator, tmp_path, run_inventory):
    token = emulator.admin("POST", "tokens", {"user": ALICE, "expires_in": 3600})
    source = tmp_path / "fleets.cmdop.yml"
    source.write_text("plugin: cmdop.fleet.cmdop\nfleets_from: api\nretries: 0\n", encoding="utf-8")
    env = {"HOME": str(tmp_path), "CMDOP_TOKEN": token["access_token"], "ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED": "true",
           "CMDOP_API_URL": None, "CMDOP_API_BASE_URL": emulator.url}
    alone = run_inventory(["-i", source, "--graph"], env=env)
    assert alone.rc == 0 and "@fleet_team_a" in alone.stdout, alone.describe()
    both = run_inventory(["-i", source, "--graph"], env=dict(env, CMDOP_API_BASE_URL="http://127.0.0.1:9", CMDOP_API_URL=emulator.url))
    assert both.rc == 0 and "@fleet_team_a" in both.stdout, both.describe()


# ---- error bodies ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body, said",
    [
        ({"detail": "Not allowed here."}, ": Not allowed here."),
        ({"detail": ["First reason.", "Second reason."]}, ": First reason.; Second reason."),
        ({"detail": {"page_size": ["Must be at most 200."], "ordering": "Unknown field."}}, ": page_size: Must be at most 200.; ordering: Unknown field."),
        ({"non_field_errors": ["Workspace is archived."]}, ": non_field_errors: Workspace is archived."),
    ],
    ids=["string", "list", "field-map", "drf-validation"],
)
def test_each_shape_of_error_body_gives_a_clear_message(emulator, targets, inventory, run_playbook, api, body, said):
    login(emulator, targets, "t1", ALICE)
    emulator.admin("POST", "faults", {"path": FLEETS, "status": 400, "body": json.dumps(body)})
    out = run_playbook(sync_play(api, hosts="t1"), inventory).task("sync", "t1")
    assert out["msg"] == "sync: %s%s answered 400%s" % (emulator.url, FLEETS, said)


def test_the_token_endpoints_error_and_description_are_said(emulator, targets, inventory, run_playbook, api):
    token = login(emulator, targets, "t1", ALICE, expires_in=1)
    time.sleep(1.5)
    body = json.dumps({"error": "invalid_grant", "error_description": "Refresh token %s was revoked." % token["refresh_token"]})
    emulator.admin("POST", "faults", {"path": "/api/system/oauth/token/", "status": 400, "body": body})
    result = run_playbook(sync_play(api, hosts="t1"), inventory, verbosity=3)
    msg = result.task("sync", "t1")["msg"]
    assert "sync: unauthorized: the server refused to refresh the token (invalid_grant: Refresh token <secret> was revoked.)" in msg, msg
    assert token["refresh_token"] not in result.stdout + result.stderr


@pytest.mark.parametrize("status", [503, 429])
def test_a_server_error_while_refreshing_is_retried_and_is_not_called_unauthorized(emulator, targets, inventory, run_playbook, api, status):
    token = login(emulator, targets, "t1", ALICE, expires_in=1)
    time.sleep(1.5)
    emulator.admin("POST", "faults", {"path": "/api/system/oauth/token/", "status": status, "count": 1, "retry_after": 0})
    recovered = run_playbook(sync_play(api, hosts="t1"), inventory)
    assert recovered.rc == 0 and recovered.task("sync", "t1")["token_refreshed"] is True, recovered.describe()
    # persistent: a clear message that keeps the user away from an interactive login
    again = login(emulator, targets, "t1", ALICE, expires_in=1)
    time.sleep(1.5)
    emulator.admin("POST", "faults", {"path": "/api/system/oauth/token/", "status": status, "count": 10, "retry_after": 0})
    failed = run_playbook(sync_play(api, hosts="t1"), inventory)
    msg = failed.task("sync", "t1")["msg"]
    assert "answered %d while refreshing the token" % status in msg and "unauthorized" not in msg, msg
    assert "the token was kept" in msg
    assert json.loads((targets.home("t1") / ".cmdop" / "token_prod.json").read_text(encoding="utf-8"))["refresh_token"] == again["refresh_token"]
    assert token


# ---- machine listings: order, churn, lies -------------------------------------------------------------------


def test_machines_are_asked_for_in_an_explicit_order(emulator, targets, inventory, run_playbook, api):
    token = login(emulator, targets, "t1", ALICE)
    emulator.admin("DELETE", "requests")
    result = run_playbook(info_play(dict(api, token=token["access_token"])), inventory)
    assert result.rc == 0, result.describe()
    queries = [item["query"] for item in api_requests(emulator, MACHINES)]
    assert queries and all(query.get("ordering") == "created_at,id" for query in queries)


def test_a_machine_added_while_the_pages_are_read_needs_no_second_read(emulator, tmp_path, run_inventory):
    """Without an explicit order the emulator lists by id (a UUID key, no ORDER BY), so a machine registered
    between two page reads shifts every later page: a machine repeats, another is skipped, and the count check
    forces a second read. Oldest first, the newcomer lands after the pages being read: one read, no repeat, nothing hidden."""
    token = emulator.admin("POST", "tokens", {"user": ALICE, "expires_in": 3600})
    visible = requests.get(emulator.url + MACHINES, params={"page_size": 1}, timeout=10,
                           headers={"Authorization": "Bearer %s" % token["access_token"]}).json()["count"]
    # an even number of machines fills the last page of 2, so without an order the shift hides one machine
    for number in range(1, 7 + visible % 2):
        seed_machine(emulator, TEAM_A, "0m-%02d" % number, "2026-01-%02dT00:00:00Z" % number)
    newcomer = {"id": "00-new", "workspace": TEAM_A, "name": "new", "created_at": "2026-12-01T00:00:00Z"}
    emulator.admin("POST", "faults", {"path": MACHINES, "skip": 1, "count": 1, "add_machine": newcomer})
    emulator.admin("DELETE", "requests")
    source = tmp_path / "fleets.cmdop.yml"
    source.write_text("plugin: cmdop.fleet.cmdop\nfleets_from: api\npage_size: 2\nmax_workers: 1\n", encoding="utf-8")
    result = run_inventory(["-i", source, "--list"], env={"HOME": str(tmp_path), "CMDOP_TOKEN": token["access_token"],
                                                          "CMDOP_API_URL": emulator.url, "ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED": "true"})
    assert result.rc == 0, result.describe()
    first_pages = [item for item in api_requests(emulator, MACHINES) if item["query"].get("page") == "1"]
    assert len(first_pages) == 1, "the listing had to be read again"
    hosts = result.json()["_meta"]["hostvars"]
    assert len(hosts) >= visible + 6


def test_a_count_that_disagrees_once_is_read_again(emulator, targets, inventory, run_playbook, api):
    token = login(emulator, targets, "t1", ALICE)
    emulator.admin("POST", "faults", {"path": MACHINES, "status": 200, "body": machine_page(150, 1, []), "count": 1})
    emulator.admin("DELETE", "requests")
    result = run_playbook(info_play(dict(api, token=token["access_token"])), inventory)
    assert result.rc == 0, result.describe()
    assert len([item for item in api_requests(emulator, MACHINES) if item["query"].get("page") == "1"]) == 2


def test_more_machines_than_counted_are_taken_as_they_are(emulator, targets, inventory, run_playbook, api):
    """A machine registered while the pages were read: nothing was skipped, so no second read and no failure."""
    token = login(emulator, targets, "t1", ALICE)
    extra = {"id": "m-extra", "workspace": TEAM_A, "name": "extra"}
    emulator.admin("POST", "faults", {"path": MACHINES, "status": 200, "body": machine_page(0, 1, [extra]), "count": 1})
    emulator.admin("DELETE", "requests")
    result = run_playbook(info_play(dict(api, token=token["access_token"])), inventory)
    assert result.rc == 0 and [machine["id"] for machine in result.task("info", "t1")["machines"]] == ["m-extra"], result.describe()
    assert len(api_requests(emulator, MACHINES)) == 1


def test_a_count_that_still_disagrees_fails_clearly(emulator, targets, inventory, run_playbook, api):
    token = login(emulator, targets, "t1", ALICE)
    emulator.admin("POST", "faults", {"path": MACHINES, "status": 200, "body": machine_page(150, 1, []), "count": 2})
    msg = run_playbook(info_play(dict(api, token=token["access_token"])), inventory).task("info", "t1")["msg"]
    assert "the machine list changed while it was read, twice (the server counted 150, its pages held 0 distinct machines)" in msg


@pytest.mark.case("Server faults", "a machine list claiming 10,001 pages", "refused after the first page, saying so")
def test_more_pages_than_the_client_reads_is_refused_before_reading_them(emulator, targets, inventory, run_playbook, api):
    token = login(emulator, targets, "t1", ALICE)
    emulator.admin("POST", "faults", {"path": MACHINES, "status": 200, "body": machine_page(10 ** 7, 10001, []), "count": 1})
    emulator.admin("DELETE", "requests")
    msg = run_playbook(info_play(dict(api, token=token["access_token"])), inventory).task("info", "t1")["msg"]
    assert "claims 10001 pages, more than the 10000 this client reads" in msg
    assert len(api_requests(emulator, MACHINES)) == 1


@pytest.mark.parametrize(
    "results, said",
    [([{"id": "m-1"}], "[0] lacks required key 'workspace'"), ([{"id": "m 1", "workspace": TEAM_A}], "results[0].id does not match")],
    ids=["missing-workspace", "bad-id"],
)
def test_a_machine_page_of_the_wrong_shape_is_refused(emulator, targets, inventory, run_playbook, api, results, said):
    token = login(emulator, targets, "t1", ALICE)
    emulator.admin("POST", "faults", {"path": MACHINES, "status": 200, "body": machine_page(1, 1, results), "count": 1})
    msg = run_playbook(info_play(dict(api, token=token["access_token"])), inventory).task("info", "t1")["msg"]
    assert "the server's machine list (page 1) is not valid" in msg and said in msg, msg


# ---- transport promises -----------------------------------------------------------------------------------------


# Addresses that keep every packet on this machine even if the check were broken: a name that never
# resolves (.invalid, RFC 6761) and the unspecified address, which is not loopback yet connects locally.
@pytest.mark.case("Secrets", "plain HTTP (or a non-HTTP scheme) to a host that is not loopback: http://cmdop.invalid, http://0.0.0.0:9, ftp://",
                  "the sync fails before any credential is sent: only HTTPS carries one, plain HTTP only to loopback")
@pytest.mark.parametrize("url", ["http://cmdop.invalid", "http://0.0.0.0:9", "ftp://127.0.0.1"])
def test_plain_http_is_refused_for_any_host_but_loopback(emulator, targets, inventory, run_playbook, url):
    login(emulator, targets, "t1", ALICE)
    result = run_playbook(sync_play({"api_url": url, "retries": 0, "timeout": 1}, hosts="t1"), inventory)
    msg = result.task("sync", "t1")["msg"]
    assert result.rc != 0
    assert ("credentials are only sent over HTTPS" in msg) if url.startswith("http:") else ("is not an http(s) URL" in msg), msg


@pytest.mark.case("Server faults", "429 with Retry-After: 100000, twice, with the default retries",
                  "all the waits of a request share 60 s (not 120 s); the sync then succeeds")
def test_a_huge_retry_after_is_capped(emulator, monkeypatch):
    """Retry-After: 100000 would stall the run for a day; with the default retries, twice, it would still wait 120 s:
    all the waits of a request share 60 seconds, then the retries back off as usual.

    Proved without waiting a minute: the module's client (the same code, the default retries of the module), against
    the emulator, with its one wait call (``_client._sleep``) recording the waits instead; then one short real wait
    through the same call shows it is the one that waits (and nothing else does: the recorded run took no time)."""
    token = emulator.admin("POST", "tokens", {"user": ALICE, "expires_in": 3600})["access_token"]
    credential = Credential(token, OAUTH)

    waits: t.List[float] = []
    monkeypatch.setattr(client, "_sleep", waits.append)
    emulator.admin("POST", "faults", {"path": FLEETS, "status": 429, "retry_after": 100000, "count": 2})
    emulator.admin("DELETE", "requests")
    started = time.monotonic()
    fleets = client.CmdopClient(emulator.url, timeout=10).list_fleets(credential)  # the module's default retries (4)
    assert time.monotonic() - started < 10
    assert {fleet["id"] for fleet in fleets} == {TEAM_A, LAB, STAGING}
    assert len(api_requests(emulator, FLEETS)) == 3  # two 429s, then the answer
    # the first Retry-After spends the whole budget; the second is not honoured: the back-off (0.5 * 2 s) instead
    assert waits == [client.RETRY_AFTER_BUDGET, 1.0] and client.RETRY_AFTER_BUDGET == 60.0, waits

    waited: t.List[float] = []
    monkeypatch.setattr(client, "_sleep", lambda seconds: (waited.append(seconds), time.sleep(seconds)))
    emulator.admin("POST", "faults", {"path": FLEETS, "status": 429, "retry_after": 1, "count": 1})
    started = time.monotonic()
    client.CmdopClient(emulator.url, timeout=10).list_fleets(credential)
    assert waited == [1.0] and time.monotonic() - started >= 1.0
