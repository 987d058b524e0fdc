"""Tests for the CMDOP API emulator (tests/emulator/cmdop_emulator.py), through real HTTP."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import typing as t
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

EMULATOR_DIR = Path(__file__).resolve().parents[2] / "emulator"
sys.path.insert(0, str(EMULATOR_DIR))

import cmdop_emulator  # noqa: E402  pylint: disable=wrong-import-position

pytestmark = pytest.mark.core_independent  # pure code, the emulator or a static check: run once (tests/conftest.py)

FLEET_A = "00000000-0000-4000-8000-00000000000a"
FLEET_B = "00000000-0000-4000-8000-00000000000b"
FLEET_BOB = "00000000-0000-4000-8000-0000000000b0"
KEY_A = "cmdop_live_key_for_fleet_a_0123456789"
KEY_B = "cmdop_live_key_for_fleet_b_0123456789"
ALICE_TOKEN = "cmdop_at_alice_0123456789abcdef"
ALICE_REFRESH = "clitr_alice_0123456789abcdef"
BOB_TOKEN = "cmdop_at_bob_0123456789abcdef"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
PUBLIC_FLEET_KEYS = {"id", "name", "slug", "type", "plan", "created_at", "member_count", "machine_count"}
PAGE_KEYS = {"count", "page", "pages", "page_size", "has_next", "has_previous", "next_page", "previous_page", "results"}


def machine(fleet: str, index: int, **fields: t.Any) -> dict[str, t.Any]:
    """A seed machine with a predictable id."""
    return dict({"id": "m-%s-%02d" % (fleet[-2:], index), "workspace": fleet, "name": "host-%s-%d" % (fleet[-2:], index)}, **fields)


def make_seed() -> dict[str, t.Any]:
    """Alice in fleets A (5 machines) and B (1 machine); Bob in his own fleet."""
    return {
        "settings": {"device_interval": 0},
        "users": [{"id": "u-alice", "email": "alice@example.com"}, {"id": "u-bob", "email": "bob@example.com"}],
        "fleets": [
            {"id": FLEET_A, "name": "Team A", "slug": "team-a", "type": "team", "plan": "pro",
             "created_at": "2026-01-01T00:00:00Z", "members": ["u-alice", "u-bob"], "api_keys": [KEY_A]},
            {"id": FLEET_B, "name": "Lab", "slug": "lab", "members": ["u-alice"], "api_keys": [KEY_B]},
            {"id": FLEET_BOB, "name": "Bob's", "slug": "bobs", "type": "personal", "members": ["u-bob"], "api_keys": []},
        ],
        "machines": [machine(FLEET_A, i) for i in range(5)] + [
            machine(FLEET_B, 0, os="macos", status="offline"),
            machine(FLEET_BOB, 0),
        ],
        "tokens": [
            {"access_token": ALICE_TOKEN, "refresh_token": ALICE_REFRESH, "user": "u-alice", "expires_in": 3600, "workspace": FLEET_A},
            {"access_token": BOB_TOKEN, "refresh_token": "clitr_bob_0123456789abcdef", "user": "u-bob", "expires_in": 3600,
             "workspace": None},
        ],
    }


class Emu:
    """A client for one running emulator."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.session = requests.Session()

    def get(self, path: str, credential: str | None = None, **params: t.Any) -> requests.Response:
        """GET a public API path, with ``Authorization: Bearer credential``."""
        headers = {"Authorization": "Bearer %s" % credential} if credential else {}
        return self.session.get(self.base_url + path, headers=headers, params=params, timeout=10)

    def oauth(self, endpoint: str, data: dict[str, str], as_json: bool = False) -> requests.Response:
        """POST to /api/system/oauth/<endpoint>/ as a form (default) or as JSON."""
        url = "%s/api/system/oauth/%s/" % (self.base_url, endpoint)
        if as_json:
            return self.session.post(url, json=data, timeout=10)
        return self.session.post(url, data=data, timeout=10)

    def admin(self, method: str, path: str, body: t.Any = None, expect: int | None = None) -> t.Any:
        """Call the admin API and return the decoded answer (checking the status when ``expect`` is given)."""
        response = self.session.request(method, self.base_url + "/_admin/" + path, json=body, timeout=10)
        if expect is not None:
            assert response.status_code == expect, response.text
        else:
            assert response.ok, response.text
        return response.json()

    def close(self) -> None:
        """Close the HTTP session."""
        self.session.close()


@pytest.fixture(name="emu")
def emu_fixture() -> t.Iterator[Emu]:
    """A fresh emulator with ``make_seed()`` in this process."""
    server, base_url = cmdop_emulator.start_in_thread(make_seed())
    client = Emu(base_url)
    yield client
    client.close()
    server.shutdown()


def test_fleets_with_oauth(emu: Emu) -> None:
    response = emu.get("/api/workspaces/workspaces/", ALICE_TOKEN)
    assert response.status_code == 200
    fleets = response.json()
    assert isinstance(fleets, list)
    assert [fleet["slug"] for fleet in fleets] == ["team-a", "lab"]
    assert all(set(fleet) == PUBLIC_FLEET_KEYS for fleet in fleets)
    assert fleets[0] == {"id": FLEET_A, "name": "Team A", "slug": "team-a", "type": "team", "plan": "pro",
                         "created_at": "2026-01-01T00:00:00Z", "member_count": 2, "machine_count": 5}
    assert fleets[1]["machine_count"] == 1 and fleets[1]["member_count"] == 1
    assert [fleet["id"] for fleet in emu.get("/api/workspaces/workspaces/", BOB_TOKEN).json()] == [FLEET_A, FLEET_BOB]


def add_fleets(emu: Emu, count: int) -> list[str]:
    """Add ``count`` more fleets with Alice as a member; returns their ids."""
    ids = ["f-extra-%02d" % index for index in range(count)]
    for fleet_id in ids:
        emu.admin("POST", "fleets", {"id": fleet_id, "name": fleet_id, "members": ["u-alice"]}, expect=201)
    return ids


def test_fleets_paginated_drf_style(emu: Emu) -> None:
    extra = add_fleets(emu, 3)
    plain = emu.get("/api/workspaces/workspaces/", ALICE_TOKEN).json()
    assert isinstance(plain, list) and len(plain) == 5
    assert emu.admin("POST", "settings", {"fleets_page_size": 2})["fleets_page_size"] == 2
    url = emu.base_url + "/api/workspaces/workspaces/"
    pages = [emu.get("/api/workspaces/workspaces/", ALICE_TOKEN).json()]
    pages += [emu.get("/api/workspaces/workspaces/", ALICE_TOKEN, page=n).json() for n in (2, 3)]
    assert all(set(page) == {"count", "next", "previous", "results"} for page in pages)
    assert [page["count"] for page in pages] == [5, 5, 5]
    assert [(page["previous"], page["next"]) for page in pages] == [
        (None, url + "?page=2"), (url, url + "?page=3"), (url + "?page=2", None)]
    assert [fleet for page in pages for fleet in page["results"]] == plain
    assert [fleet["id"] for fleet in plain] == [FLEET_A, FLEET_B] + extra
    for page in (0, 4, "x"):
        response = emu.get("/api/workspaces/workspaces/", ALICE_TOKEN, page=page)
        assert (response.status_code, response.json()) == (404, {"detail": "Invalid page."})


def test_fleet_page_links_follow_and_keep_the_query(emu: Emu) -> None:
    add_fleets(emu, 1)
    emu.admin("POST", "settings", {"fleets_page_size": 1})
    response = emu.get("/api/workspaces/workspaces/", ALICE_TOKEN, search="", ordering="name")
    seen = []
    while True:
        body = response.json()
        seen += [fleet["id"] for fleet in body["results"]]
        if body["next"] is None:
            break
        assert body["next"].startswith(emu.base_url + "/api/workspaces/workspaces/?ordering=name&page=")
        response = emu.session.get(body["next"], headers={"Authorization": "Bearer " + ALICE_TOKEN}, timeout=10)
    assert seen == [FLEET_A, FLEET_B, "f-extra-00"]
    assert body["previous"] == emu.base_url + "/api/workspaces/workspaces/?ordering=name&page=2&search="


def test_fleet_pages_empty_list_and_seed_setting() -> None:
    seed = make_seed()
    seed["settings"]["fleets_page_size"] = 10
    seed["users"].append({"id": "u-carol"})
    server, base_url = cmdop_emulator.start_in_thread(seed)
    client = Emu(base_url)
    try:
        token = client.admin("POST", "tokens", {"user": "u-carol"}, expect=201)["access_token"]
        assert client.get("/api/workspaces/workspaces/", token).json() == {"count": 0, "next": None, "previous": None, "results": []}
        assert client.get("/api/workspaces/workspaces/", token, page=2).status_code == 404
        alice = client.get("/api/workspaces/workspaces/", ALICE_TOKEN).json()
        assert (alice["count"], len(alice["results"]), alice["next"]) == (2, 2, None)
    finally:
        client.close()
        server.shutdown()


@pytest.mark.parametrize("settings", [{"fleets_page_size": -1}, {"fleets_page_size": 1.5}, {"fleets_page_size": True},
                                      {"fleets_page_size": "2"}, {"no_such_setting": 1}])
def test_bad_settings_are_refused_and_change_nothing(emu: Emu, settings: dict[str, t.Any]) -> None:
    response = emu.session.post(emu.base_url + "/_admin/settings", json=dict(settings, device_interval=9), timeout=10)
    assert response.status_code == 400 and response.json()["detail"]
    assert emu.admin("GET", "state")["settings"]["device_interval"] == 0
    assert isinstance(emu.get("/api/workspaces/workspaces/", ALICE_TOKEN).json(), list)


def test_fleets_refused_to_api_key(emu: Emu) -> None:
    response = emu.get("/api/workspaces/workspaces/", KEY_A)
    assert response.status_code == 403
    assert response.json() == {"detail": "API keys cannot list workspaces; use OAuth"}


@pytest.mark.parametrize("credential", [None, "cmdop_unknown", ALICE_REFRESH])
def test_bad_credentials_are_401(emu: Emu, credential: str | None) -> None:
    for path in ("/api/workspaces/workspaces/", "/api/machines/machines/", "/api/machines/machines/m-0a-00/"):
        response = emu.get(path, credential)
        assert response.status_code == 401
        assert set(response.json()) == {"detail"}


def test_malformed_authorization_header(emu: Emu) -> None:
    response = emu.session.get(emu.base_url + "/api/machines/machines/", headers={"Authorization": "Token " + KEY_A}, timeout=10)
    assert response.status_code == 401
    assert emu.admin("GET", "requests")[-1]["credential_kind"] == "invalid"


def test_pagination_across_three_pages(emu: Emu) -> None:
    pages = [emu.get("/api/machines/machines/", KEY_A, page=n, page_size=2).json() for n in (1, 2, 3)]
    assert all(set(page) == PAGE_KEYS for page in pages)
    assert [(p["count"], p["page"], p["pages"], p["page_size"]) for p in pages] == [(5, 1, 3, 2), (5, 2, 3, 2), (5, 3, 3, 2)]
    assert [(p["has_previous"], p["has_next"]) for p in pages] == [(False, True), (True, True), (True, False)]
    assert [(p["previous_page"], p["next_page"]) for p in pages] == [(None, 2), (1, 3), (2, None)]
    assert [len(p["results"]) for p in pages] == [2, 2, 1]
    ids = [m["id"] for p in pages for m in p["results"]]
    assert ids == ["m-0a-%02d" % i for i in range(5)]
    for page in (0, 4, "x"):
        response = emu.get("/api/machines/machines/", KEY_A, page=page, page_size=2)
        assert (response.status_code, response.json()) == (404, {"detail": "Invalid page."})


def test_page_size_default_and_clamp(emu: Emu) -> None:
    assert emu.get("/api/machines/machines/", KEY_A).json()["page_size"] == 50
    assert emu.get("/api/machines/machines/", KEY_A, page_size=1000).json()["page_size"] == 200
    assert emu.get("/api/machines/machines/", KEY_A, page_size="bad").json()["page_size"] == 50


def test_empty_fleet_has_one_empty_page(emu: Emu) -> None:
    emu.admin("POST", "fleets", {"id": "f-empty", "name": "Empty", "members": ["u-alice"], "api_keys": ["cmdop_live_empty"]}, expect=201)
    page = emu.get("/api/machines/machines/", "cmdop_live_empty").json()
    assert (page["count"], page["pages"], page["results"], page["has_next"]) == (0, 1, [], False)


def machine_ids(emu: Emu, credential: str, **params: t.Any) -> list[str]:
    """The ids of one page of machines."""
    response = emu.get("/api/machines/machines/", credential, **params)
    assert response.status_code == 200, response.text
    return [m["id"] for m in response.json()["results"]]


def test_machines_come_in_id_order_across_fleets(emu: Emu) -> None:
    emu.admin("POST", "machines", {"id": "m-0a-01b", "workspace": FLEET_B, "name": "late"}, expect=201)
    emu.admin("POST", "machines", {"id": "a-first", "workspace": FLEET_A, "name": "later"}, expect=201)
    everything = ["a-first", "m-0a-00", "m-0a-01", "m-0a-01b", "m-0a-02", "m-0a-03", "m-0a-04", "m-0b-00"]
    assert machine_ids(emu, ALICE_TOKEN) == everything
    assert machine_ids(emu, ALICE_TOKEN, page=1, page_size=3) + machine_ids(emu, ALICE_TOKEN, page=2, page_size=3) == everything[:6]
    assert machine_ids(emu, KEY_B) == ["m-0a-01b", "m-0b-00"]


def test_machine_ordering(emu: Emu) -> None:
    created = {"m-0a-00": "2026-03-01T00:00:00Z", "m-0a-01": "2026-01-01T00:00:00Z", "m-0a-02": "2026-02-01T00:00:00Z",
               "m-0a-03": "2026-01-01T00:00:00Z", "m-0a-04": "2026-02-01T00:00:00Z"}
    emu.admin("POST", "reset", {"seed": dict(make_seed(), machines=[
        machine(FLEET_A, int(machine_id[-2:]), created_at=stamp, name="n%d" % (5 - int(machine_id[-2:])),
                public_ip="192.0.2.%d" % int(machine_id[-2:]) if machine_id in ("m-0a-01", "m-0a-03") else None)
        for machine_id, stamp in created.items()])})
    assert machine_ids(emu, KEY_A, ordering="created_at,id") == ["m-0a-01", "m-0a-03", "m-0a-02", "m-0a-04", "m-0a-00"]
    assert machine_ids(emu, KEY_A, ordering=" created_at , -id ") == ["m-0a-03", "m-0a-01", "m-0a-04", "m-0a-02", "m-0a-00"]
    assert machine_ids(emu, KEY_A, ordering="-created_at,id") == ["m-0a-00", "m-0a-02", "m-0a-04", "m-0a-01", "m-0a-03"]
    assert machine_ids(emu, KEY_A, ordering="created_at,id", page=2, page_size=2) == ["m-0a-02", "m-0a-04"]
    assert machine_ids(emu, KEY_A, ordering="no_such_field,name") == ["m-0a-04", "m-0a-03", "m-0a-02", "m-0a-01", "m-0a-00"]
    assert machine_ids(emu, KEY_A, ordering="name") == ["m-0a-04", "m-0a-03", "m-0a-02", "m-0a-01", "m-0a-00"]
    assert machine_ids(emu, KEY_A, ordering="no_such_field,,-") == ["m-0a-00", "m-0a-01", "m-0a-02", "m-0a-03", "m-0a-04"]
    assert machine_ids(emu, KEY_A, ordering="public_ip,id") == ["m-0a-01", "m-0a-03", "m-0a-00", "m-0a-02", "m-0a-04"]
    assert machine_ids(emu, KEY_A, ordering="-public_ip,id") == ["m-0a-00", "m-0a-02", "m-0a-04", "m-0a-03", "m-0a-01"]
    assert emu.admin("GET", "requests")[-1]["query"] == {"ordering": "-public_ip,id"}


def test_machine_ordering_by_numbers_and_only_by_known_fields(emu: Emu) -> None:
    emu.admin("POST", "machines", {"id": "m-0a-05", "workspace": FLEET_A, "name": "big", "cpu_count": 16, "local_ips": ["10.0.0.1"]})
    emu.admin("POST", "machines", {"id": "m-0a-06", "workspace": FLEET_A, "name": "small", "cpu_count": 9, "local_ips": ["10.0.0.0"]})
    assert machine_ids(emu, KEY_A, ordering="-cpu_count,id")[:3] == ["m-0a-05", "m-0a-06", "m-0a-00"]
    assert machine_ids(emu, KEY_A, ordering="cpu_count,-id")[-3:] == ["m-0a-00", "m-0a-06", "m-0a-05"]
    assert machine_ids(emu, KEY_A, ordering="local_ips")[-2:] == ["m-0a-05", "m-0a-06"]  # not an ordering field: ignored


def test_machine_fields_and_defaults(emu: Emu) -> None:
    results = emu.get("/api/machines/machines/", KEY_B).json()["results"]
    assert len(results) == 1
    lab = results[0]
    assert lab["workspace"] == FLEET_B and lab["workspace_name"] == "Lab"
    assert (lab["os"], lab["status"], lab["is_online"]) == ("macos", "offline", False)
    assert lab["hostname"] == lab["name"] and isinstance(lab["local_ips"], list)
    team = emu.get("/api/machines/machines/m-0a-00/", ALICE_TOKEN).json()
    assert (team["os"], team["status"], team["is_online"], team["workspace_name"]) == ("linux", "online", True, "Team A")


def test_api_key_scoping(emu: Emu) -> None:
    assert {m["workspace"] for m in emu.get("/api/machines/machines/", KEY_A).json()["results"]} == {FLEET_A}
    assert emu.get("/api/machines/machines/m-0a-00/", KEY_A).status_code == 200
    assert emu.get("/api/machines/machines/m-0a-00/", KEY_B).status_code == 404
    assert emu.get("/api/machines/machines/m-b0-00/", ALICE_TOKEN).status_code == 404
    assert emu.get("/api/machines/machines/no-such-machine/", ALICE_TOKEN).status_code == 404
    alice = emu.get("/api/machines/machines/", ALICE_TOKEN).json()
    assert alice["count"] == 6
    assert {m["workspace"] for m in alice["results"]} == {FLEET_A, FLEET_B}
    bob = emu.get("/api/machines/machines/", BOB_TOKEN).json()
    assert {m["workspace"] for m in bob["results"]} == {FLEET_A, FLEET_BOB}


def start_device_flow(emu: Emu, as_json: bool = False) -> dict[str, t.Any]:
    """POST the device authorization request the way the CLI does."""
    response = emu.oauth("device", {"client_name": "cmdop.fleet", "client_version": "0.1.0",
                                    "client_hostname": "ci", "client_platform": "linux"}, as_json)
    assert response.status_code == 200, response.text
    return response.json()


def poll(emu: Emu, device_code: str, as_json: bool = False) -> requests.Response:
    """Poll the token endpoint once."""
    return emu.oauth("token", {"grant_type": DEVICE_GRANT, "device_code": device_code}, as_json)


def assert_token_response(token: dict[str, t.Any], workspace: str | None, workspace_name: str | None) -> None:
    """The token response carries the CMDOP fields."""
    assert token["access_token"].startswith("cmdop_") and token["refresh_token"].startswith("clitr_")
    assert (token["token_type"], token["scope"], token["expires_in"]) == ("Bearer", "workspace:access", 3600)
    assert (token["workspace_id"], token["workspace_name"]) == (workspace, workspace_name)
    assert (token["user_id"], token["user_email"]) == ("u-alice", "alice@example.com")


@pytest.mark.parametrize("as_json", [False, True], ids=["form", "json"])
def test_device_flow_pending_approved_token(emu: Emu, as_json: bool) -> None:
    device = start_device_flow(emu, as_json)
    assert {"device_code", "user_code", "verification_uri", "expires_in", "interval"} <= set(device)
    assert device["verification_uri"] == emu.base_url + "/device"
    pending = poll(emu, device["device_code"], as_json)
    assert (pending.status_code, pending.json()["error"]) == (400, "authorization_pending")
    emu.admin("POST", "device/approve", {"user_code": device["user_code"], "user": "u-alice"})
    granted = poll(emu, device["device_code"], as_json)
    assert granted.status_code == 200, granted.text
    token = granted.json()
    assert_token_response(token, FLEET_A, "Team A")
    assert emu.get("/api/workspaces/workspaces/", token["access_token"]).status_code == 200
    reused = poll(emu, device["device_code"], as_json)
    assert (reused.status_code, reused.json()["error"]) == (400, "invalid_grant")


def test_device_flow_denied_expired_slow_down_unknown(emu: Emu) -> None:
    denied = start_device_flow(emu)
    emu.admin("POST", "device/deny", {"user_code": denied["user_code"]})
    assert poll(emu, denied["device_code"]).json()["error"] == "access_denied"
    expired = start_device_flow(emu)
    emu.admin("POST", "device/expire", {"user_code": expired["user_code"]})
    assert poll(emu, expired["device_code"]).json()["error"] == "expired_token"
    assert poll(emu, "no-such-code").json()["error"] == "invalid_grant"
    emu.admin("POST", "settings", {"device_interval": 30})
    slow = start_device_flow(emu)
    assert slow["interval"] == 30
    assert poll(emu, slow["device_code"]).json()["error"] == "authorization_pending"
    assert poll(emu, slow["device_code"]).json()["error"] == "slow_down"


def test_approve_with_explicit_workspace(emu: Emu) -> None:
    device = start_device_flow(emu)
    emu.admin("POST", "device/approve", {"user_code": device["user_code"], "user": "u-alice", "workspace": FLEET_B})
    assert_token_response(poll(emu, device["device_code"]).json(), FLEET_B, "Lab")


def refresh(emu: Emu, refresh_token: str, as_json: bool = False) -> requests.Response:
    """Use a refresh token once."""
    return emu.oauth("token", {"grant_type": "refresh_token", "refresh_token": refresh_token}, as_json)


@pytest.mark.parametrize("as_json", [False, True], ids=["form", "json"])
def test_refresh_rotates(emu: Emu, as_json: bool) -> None:
    first = refresh(emu, ALICE_REFRESH, as_json)
    assert first.status_code == 200, first.text
    pair = first.json()
    assert_token_response(pair, FLEET_A, "Team A")
    assert pair["refresh_token"] != ALICE_REFRESH
    again = refresh(emu, ALICE_REFRESH, as_json)
    assert (again.status_code, again.json()["error"]) == (400, "invalid_grant")
    assert emu.get("/api/workspaces/workspaces/", pair["access_token"]).status_code == 200
    second = refresh(emu, pair["refresh_token"], as_json)
    assert second.status_code == 200 and second.json()["refresh_token"] not in (ALICE_REFRESH, pair["refresh_token"])


def test_revoked_refresh_token(emu: Emu) -> None:
    emu.admin("POST", "tokens/revoke", {"refresh_token": ALICE_REFRESH})
    response = refresh(emu, ALICE_REFRESH)
    assert (response.status_code, response.json()["error"]) == (400, "invalid_grant")


def test_token_endpoint_rfc6749_errors(emu: Emu) -> None:
    assert emu.oauth("token", {"grant_type": "password"}).json()["error"] == "unsupported_grant_type"
    assert emu.oauth("token", {"grant_type": DEVICE_GRANT}).json()["error"] == "invalid_request"
    bad = emu.session.post(emu.base_url + "/api/system/oauth/token/", data="{not json",
                           headers={"Content-Type": "application/json"}, timeout=10)
    assert (bad.status_code, bad.json()["error"]) == (400, "invalid_request")


def test_minted_and_expired_tokens(emu: Emu) -> None:
    token = emu.admin("POST", "tokens", {"user": "u-alice"}, expect=201)
    assert_token_response(token, FLEET_A, "Team A")
    assert emu.get("/api/workspaces/workspaces/", token["access_token"]).status_code == 200
    emu.admin("POST", "tokens/expire", {"access_token": token["access_token"]})
    expired = emu.get("/api/workspaces/workspaces/", token["access_token"])
    assert expired.status_code == 401 and "detail" in expired.json()
    assert refresh(emu, token["refresh_token"]).status_code == 200
    short = emu.admin("POST", "tokens", {"user": "u-alice", "expires_in": 0, "workspace": None}, expect=201)
    assert (short["expires_in"], short["workspace_id"], short["workspace_name"]) == (0, None, None)
    assert emu.get("/api/machines/machines/", short["access_token"]).status_code == 401


def test_token_answers_without_expires_in(emu: Emu) -> None:
    emu.admin("POST", "settings", {"token_expires_in_omitted": True, "token_expires_in": 2})
    device = start_device_flow(emu)
    emu.admin("POST", "device/approve", {"user_code": device["user_code"], "user": "u-alice"})
    granted = poll(emu, device["device_code"]).json()
    refreshed = refresh(emu, ALICE_REFRESH).json()
    minted = emu.admin("POST", "tokens", {"user": "u-alice"}, expect=201)
    for token in (granted, refreshed, minted):
        assert "expires_in" not in token and token["access_token"].startswith("cmdop_"), token
        assert token["workspace_id"] == FLEET_A and token["token_type"] == "Bearer"
    assert "expires_in" in emu.admin("POST", "tokens", {"user": "u-alice", "omit_expires_in": False}, expect=201)
    assert emu.get("/api/workspaces/workspaces/", refreshed["access_token"]).status_code == 200
    time.sleep(2.1)
    for token in (granted, refreshed, minted):
        assert emu.get("/api/workspaces/workspaces/", token["access_token"]).status_code == 401


def test_minted_token_without_expires_in_per_call(emu: Emu) -> None:
    token = emu.admin("POST", "tokens", {"user": "u-alice", "omit_expires_in": True, "expires_in": 0}, expect=201)
    assert "expires_in" not in token and token["refresh_token"].startswith("clitr_")
    assert emu.get("/api/workspaces/workspaces/", token["access_token"]).status_code == 401
    assert refresh(emu, token["refresh_token"]).json()["expires_in"] == 3600
    emu.admin("POST", "tokens", {"user": "u-alice", "omit_expires_in": "yes"}, expect=400)
    sneaky = emu.oauth("token", {"grant_type": "refresh_token", "refresh_token": ALICE_REFRESH, "omit_expires_in": "1",
                                 "token_expires_in": "5"}).json()
    assert sneaky["expires_in"] == 3600


def test_fault_429_then_success(emu: Emu) -> None:
    emu.admin("POST", "faults", {"path": "/api/workspaces/", "status": 429, "retry_after": 2}, expect=201)
    limited = emu.get("/api/workspaces/workspaces/", ALICE_TOKEN)
    assert (limited.status_code, limited.headers["Retry-After"]) == (429, "2")
    assert "detail" in limited.json()
    assert emu.get("/api/workspaces/workspaces/", ALICE_TOKEN).status_code == 200


def test_faults_in_order_count_and_clear(emu: Emu) -> None:
    emu.admin("POST", "faults", {"path": "/api/machines/", "status": 503, "count": 2})
    faults = emu.admin("POST", "faults", {"path": "/api/", "status": 500})
    assert [f["status"] for f in faults] == [503, 500]
    statuses = [emu.get("/api/machines/machines/", KEY_A).status_code for _attempt in range(4)]
    assert statuses == [503, 503, 500, 200]
    emu.admin("POST", "faults", {"path": "/api/", "status": 500, "count": 5})
    assert emu.admin("DELETE", "faults") == []
    assert emu.get("/api/machines/machines/", KEY_A).status_code == 200


def test_fault_malformed_body_and_delay(emu: Emu) -> None:
    emu.admin("POST", "faults", {"path": "/api/machines/machines/", "status": 200, "body": "not json"})
    response = emu.get("/api/machines/machines/", KEY_A)
    assert (response.status_code, response.text) == (200, "not json")
    with pytest.raises(ValueError):
        response.json()
    emu.admin("POST", "faults", {"path": "/api/", "delay": 0.3})
    started = time.monotonic()
    assert emu.get("/api/machines/machines/", KEY_A).status_code == 200
    assert time.monotonic() - started >= 0.3


MACHINES = "/api/machines/machines/"


def test_fault_adds_a_machine_between_two_page_reads(emu: Emu) -> None:
    assert machine_ids(emu, KEY_A, page=1, page_size=2) == ["m-0a-00", "m-0a-01"]
    new = {"id": "m-0a-00b", "workspace": FLEET_A, "name": "newcomer", "os": "macos"}
    queued = emu.admin("POST", "faults", {"path": MACHINES, "count": 1, "add_machine": new}, expect=201)
    assert queued[0]["add_machine"] == new and queued[0]["status"] is None
    page = emu.get(MACHINES, KEY_A, page=2, page_size=2)
    assert page.status_code == 200 and page.json()["count"] == 6
    assert [m["id"] for m in page.json()["results"]] == ["m-0a-01", "m-0a-02"]  # the change shifted the pages
    assert emu.admin("GET", "faults") == []
    assert emu.get(MACHINES + "m-0a-00b/", KEY_A).json()["os"] == "macos"
    assert emu.admin("GET", "requests")[-2]["status"] == 200


def test_fault_skip_deletes_on_the_second_matching_request(emu: Emu) -> None:
    emu.admin("POST", "faults", {"path": MACHINES, "skip": 1, "delete_machine": "m-0a-00"}, expect=201)
    assert emu.get("/api/workspaces/workspaces/", ALICE_TOKEN).status_code == 200  # another path: not counted
    assert emu.get(MACHINES, KEY_A, page_size=2).json()["count"] == 5
    assert emu.admin("GET", "faults")[0]["skip"] == 0
    second = emu.get(MACHINES, KEY_A, page=2, page_size=2).json()
    assert second["count"] == 4 and [m["id"] for m in second["results"]] == ["m-0a-03", "m-0a-04"]
    assert emu.admin("GET", "faults") == []
    assert emu.get(MACHINES + "m-0a-00/", KEY_A).status_code == 404


def test_skipped_fault_lets_a_later_fault_answer(emu: Emu) -> None:
    emu.admin("POST", "faults", {"path": MACHINES, "skip": 1, "status": 503})
    emu.admin("POST", "faults", {"path": "/api/", "status": 500})
    assert [emu.get(MACHINES, KEY_A).status_code for _attempt in range(3)] == [500, 503, 200]


def test_fault_changes_the_fleet_and_answers_an_error(emu: Emu) -> None:
    emu.admin("POST", "faults", {"path": MACHINES, "status": 503, "add_machine": {"workspace": FLEET_B, "name": "added"}})
    generated = emu.admin("GET", "faults")[0]["add_machine"]["id"]
    assert emu.get(MACHINES, KEY_B).status_code == 503
    assert generated in machine_ids(emu, KEY_B)


def test_fleet_change_that_became_impossible_is_a_500(emu: Emu) -> None:
    emu.admin("POST", "faults", {"path": MACHINES, "delete_machine": "m-0a-00"}, expect=201)
    emu.admin("DELETE", "machines/m-0a-00")
    response = emu.get(MACHINES, KEY_A)
    assert response.status_code == 500 and "m-0a-00" in response.json()["detail"]
    assert emu.admin("GET", "requests")[-1]["status"] == 500
    assert emu.get(MACHINES, KEY_A).status_code == 200


def test_churn_faults_are_checked_when_queued(emu: Emu) -> None:
    emu.admin("POST", "faults", {"path": MACHINES, "add_machine": {"workspace": "nowhere", "name": "x"}}, expect=404)
    emu.admin("POST", "faults", {"path": MACHINES, "add_machine": {"id": "m-0a-01", "workspace": FLEET_A, "name": "x"}}, expect=409)
    emu.admin("POST", "faults", {"path": MACHINES, "add_machine": {"workspace": FLEET_A}}, expect=400)
    emu.admin("POST", "faults", {"path": MACHINES, "delete_machine": "no-such-machine"}, expect=404)
    assert emu.admin("GET", "faults") == []
    emu.admin("POST", "faults", {"path": MACHINES, "add_machine": {"id": "m-new", "workspace": FLEET_A, "name": "x"}}, expect=201)
    emu.admin("POST", "faults", {"path": MACHINES, "add_machine": {"id": "m-new", "workspace": FLEET_A, "name": "y"}}, expect=409)
    emu.admin("POST", "faults", {"path": MACHINES, "delete_machine": "m-new"}, expect=201)
    assert [emu.get(MACHINES, KEY_A).json()["count"] for _attempt in range(3)] == [6, 5, 5]


def test_fault_html_body_and_headers(emu: Emu) -> None:
    emu.admin("POST", "faults", {"path": MACHINES, "status": 502, "body": "<html><h1>Bad Gateway</h1></html>", "content_type": "text/html"})
    html = emu.get(MACHINES, KEY_A)
    assert (html.status_code, html.headers["Content-Type"], html.text) == (502, "text/html", "<html><h1>Bad Gateway</h1></html>")
    emu.admin("POST", "faults", {"path": MACHINES, "status": 429, "headers": {"Retry-After": "Wed, 21 Oct 2026 07:28:00 GMT"}})
    limited = emu.get(MACHINES, KEY_A)
    assert (limited.status_code, limited.headers["Retry-After"]) == (429, "Wed, 21 Oct 2026 07:28:00 GMT")
    emu.admin("POST", "faults", {"path": MACHINES, "status": 429, "retry_after": 3, "headers": {"retry-after": "soon"}})
    assert emu.get(MACHINES, KEY_A).headers["Retry-After"] == "soon"
    emu.admin("POST", "faults", {"path": MACHINES, "status": 302, "headers": {"Location": "http://127.0.0.1:9/elsewhere", "X-Count": 7}})
    moved = emu.session.get(emu.base_url + MACHINES, headers={"Authorization": "Bearer " + KEY_A}, allow_redirects=False, timeout=10)
    assert (moved.status_code, moved.headers["Location"], moved.headers["X-Count"]) == (302, "http://127.0.0.1:9/elsewhere", "7")
    emu.admin("POST", "faults", {"path": MACHINES, "headers": {"content-type": "text/plain", "X-Extra": "1"}})
    real = emu.get(MACHINES, KEY_A)
    assert (real.status_code, real.headers["Content-Type"], real.headers["X-Extra"]) == (200, "text/plain", "1")
    assert real.json()["count"] == 5
    assert emu.get(MACHINES, KEY_A).headers["Content-Type"] == "application/json"


@pytest.mark.parametrize("fault, detail", [
    ({"path": "/api/", "stauts": 500}, "Unknown fault field(s): stauts"),
    ({"path": "/api/", "status": "500"}, "'status' (expected an integer)"),
    ({"path": "/api/", "status": True}, "'status' (expected an integer)"),
    ({"path": "/api/"}, "A fault needs a status, a body, a delay, headers, cut_after, add_machine or delete_machine."),
    ({"path": "api/", "status": 500}, "'path' must start with '/'"),
    ({"path": "/_admin/state", "status": 500}, "the admin API is never faulted"),
    ({"status": 99}, "'status' must be an HTTP status"),
    ({"status": 500, "count": 0}, "'count' must be >= 1."),
    ({"status": 500, "skip": -1}, "'skip' must be >= 0."),
    ({"status": 500, "delay": -1}, "'delay' must be >= 0."),
    ({"status": 500, "content_type": "text/html"}, "'content_type' is the media type of 'body'"),
    ({"status": 500, "body": "x", "content_type": 5}, "'content_type' (expected a string)"),
    ({"status": 500, "headers": ["Retry-After"]}, "'headers' (expected an object)"),
    ({"status": 500, "headers": {"Content-Length": "5"}}, "'Content-Length' is not a header a fault can set"),
    ({"status": 500, "headers": {"Bad Name": "x"}}, "'Bad Name' is not a header a fault can set"),
    ({"status": 500, "headers": {"X-A": "a\r\nSet-Cookie: x"}}, "the value of 'X-A' must be a one-line string"),
    ({"status": 500, "headers": {"X-A": None}}, "the value of 'X-A' must be a one-line string"),
    ({"add_machine": {"workspace": FLEET_A, "name": "x"}, "count": 2}, "use count 1"),
    ({"add_machine": "m-1"}, "'add_machine' (expected an object)"),
], ids=lambda value: value if isinstance(value, str) else None)
def test_bad_faults_are_400_with_a_clear_detail(emu: Emu, fault: dict[str, t.Any], detail: str) -> None:
    response = emu.session.post(emu.base_url + "/_admin/faults", json=fault, timeout=10)
    assert response.status_code == 400, response.text
    assert detail in response.json()["detail"]
    assert emu.admin("GET", "faults") == []


def test_global_latency(emu: Emu) -> None:
    emu.admin("POST", "latency", {"seconds": 0.2})
    started = time.monotonic()
    emu.get("/api/machines/machines/", KEY_A)
    assert time.monotonic() - started >= 0.2
    emu.admin("POST", "latency", {"seconds": 0})


def test_request_log(emu: Emu) -> None:
    emu.get("/api/workspaces/workspaces/", ALICE_TOKEN)
    emu.get("/api/workspaces/workspaces/", KEY_A)
    emu.get("/api/machines/machines/", KEY_A, page=2, page_size=2)
    emu.get("/api/machines/machines/")
    emu.get("/api/machines/machines/", "cmdop_bogus")
    emu.admin("GET", "state")
    log = emu.admin("GET", "requests")
    assert [(e["method"], e["path"], e["credential_kind"], e["status"]) for e in log] == [
        ("GET", "/api/workspaces/workspaces/", "oauth", 200),
        ("GET", "/api/workspaces/workspaces/", "api_key", 403),
        ("GET", "/api/machines/machines/", "api_key", 200),
        ("GET", "/api/machines/machines/", "none", 401),
        ("GET", "/api/machines/machines/", "invalid", 401),
    ]
    assert log[2]["query"] == {"page": "2", "page_size": "2"}
    assert ALICE_TOKEN not in json.dumps(log) and KEY_A not in json.dumps(log)
    assert emu.admin("DELETE", "requests") == []
    assert emu.admin("GET", "requests") == []


def test_concurrent_requests(emu: Emu) -> None:
    def worker(index: int) -> list[int]:
        client = Emu(emu.base_url)
        try:
            statuses = []
            for attempt in range(25):
                credential = (KEY_A, ALICE_TOKEN, BOB_TOKEN)[(index + attempt) % 3]
                statuses.append(client.get("/api/machines/machines/", credential, page_size=2).status_code)
            token = client.admin("POST", "tokens", {"user": "u-alice"}, expect=201)
            statuses.append(refresh(client, token["refresh_token"]).status_code)
            return statuses
        finally:
            client.close()

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(worker, range(8)))
    assert all(status == 200 for statuses in results for status in statuses)
    assert len(emu.admin("GET", "requests")) == 8 * 26


def test_approve_for_unknown_user_changes_nothing(emu: Emu) -> None:
    device = start_device_flow(emu)
    emu.admin("POST", "device/approve", {"user_code": device["user_code"], "user": "u-nobody"}, expect=404)
    assert poll(emu, device["device_code"]).json()["error"] == "authorization_pending"


def test_admin_fleet_member_machine_changes(emu: Emu) -> None:
    fleets = "/api/workspaces/workspaces/"
    emu.admin("POST", "fleets", {"id": "f-new", "name": "New Fleet", "members": ["u-alice"], "api_keys": ["cmdop_live_new"]}, expect=201)
    new = emu.get(fleets, ALICE_TOKEN).json()[-1]
    assert (new["id"], new["slug"], new["type"], new["plan"], new["machine_count"]) == ("f-new", "new-fleet", "team", "free", 0)
    emu.admin("PATCH", "fleets/f-new", {"name": "Renamed", "slug": "renamed"})
    assert emu.get(fleets, ALICE_TOKEN).json()[-1]["name"] == "Renamed"
    added = emu.admin("POST", "machines", {"machine": {"workspace": "f-new", "name": "fresh"}}, expect=201)
    assert added["workspace_name"] == "Renamed" and emu.get(fleets, ALICE_TOKEN).json()[-1]["machine_count"] == 1
    emu.admin("DELETE", "machines/" + added["id"])
    assert emu.get("/api/machines/machines/", "cmdop_live_new").json()["count"] == 0
    emu.admin("DELETE", "members", {"fleet": FLEET_B, "user": "u-alice"})
    assert FLEET_B not in [f["id"] for f in emu.get(fleets, ALICE_TOKEN).json()]
    emu.admin("POST", "members", {"fleet": FLEET_B, "user": "u-alice"})
    assert FLEET_B in [f["id"] for f in emu.get(fleets, ALICE_TOKEN).json()]
    emu.admin("DELETE", "fleets/f-new")
    assert emu.get("/api/machines/machines/", "cmdop_live_new").status_code == 401
    assert "f-new" not in [f["id"] for f in emu.get(fleets, ALICE_TOKEN).json()]


def test_admin_errors(emu: Emu) -> None:
    emu.admin("POST", "fleets", {"name": "Dup key", "api_keys": [KEY_A]}, expect=409)
    emu.admin("POST", "fleets", {"name": "Ghost", "members": ["u-nobody"]}, expect=404)
    emu.admin("PATCH", "fleets/missing", {"name": "x"}, expect=404)
    emu.admin("POST", "machines", {"workspace": "missing", "name": "x"}, expect=404)
    emu.admin("POST", "machines", {"workspace": FLEET_A}, expect=400)
    emu.admin("POST", "faults", {"path": "/api/"}, expect=400)
    emu.admin("GET", "fleets", expect=405)
    emu.admin("GET", "nothing-here", expect=404)
    assert emu.session.post(emu.base_url + "/_admin/fleets", data="[", timeout=10).status_code == 400


def test_state_and_reset(emu: Emu) -> None:
    emu.admin("DELETE", "fleets/" + FLEET_B)
    state = emu.admin("GET", "state")
    assert FLEET_B not in [f["id"] for f in state["fleets"]]
    assert {f["id"]: f["api_keys"] for f in state["fleets"]}[FLEET_A] == [KEY_A]
    emu.admin("POST", "reset", {})
    assert FLEET_B in [f["id"] for f in emu.admin("GET", "state")["fleets"]]
    emu.admin("POST", "reset", {"seed": {"users": [{"id": "u-carol"}], "fleets": [{"name": "C", "members": ["u-carol"]}]}})
    assert emu.get("/api/workspaces/workspaces/", ALICE_TOKEN).status_code == 401
    token = emu.admin("POST", "tokens", {"user": "u-carol"}, expect=201)
    assert [f["name"] for f in emu.get("/api/workspaces/workspaces/", token["access_token"]).json()] == ["C"]
    emu.admin("POST", "reset", {"seed": {"fleets": [{"name": "Bad", "members": ["u-ghost"]}]}}, expect=404)
    assert [f["name"] for f in emu.admin("GET", "state")["fleets"]] == ["C"]


def test_unknown_paths_and_methods(emu: Emu) -> None:
    assert emu.get("/api/nothing/", ALICE_TOKEN).status_code == 404
    assert emu.session.post(emu.base_url + "/api/machines/machines/", timeout=10).status_code == 405
    assert emu.session.get(emu.base_url + "/api/system/oauth/token/", timeout=10).status_code == 405


def test_twenty_thousand_machines_paginate_quickly() -> None:
    seed = make_seed()
    seed["machines"] += [machine(FLEET_B, i + 1) | {"id": "big-%05d" % i} for i in range(20000)]
    server, base_url = cmdop_emulator.start_in_thread(seed)
    client = Emu(base_url)
    try:
        started = time.monotonic()
        seen = 0
        page = 1
        while page:
            body = client.get("/api/machines/machines/", KEY_B, page=page, page_size=200).json()
            seen += len(body["results"])
            page = body["next_page"]
        assert (seen, body["count"], body["pages"]) == (20001, 20001, 101)
        assert time.monotonic() - started < 20
    finally:
        client.close()
        server.shutdown()


def test_demo_seed_loads() -> None:
    seed = json.loads((EMULATOR_DIR / "seed-demo.json").read_text(encoding="utf-8"))
    server, base_url = cmdop_emulator.start_in_thread(seed)
    client = Emu(base_url)
    try:
        token = seed["tokens"][0]
        assert token["access_token"].startswith("cmdop_demo_access_") and token["refresh_token"].startswith("clitr_demo_refresh_")
        fleets = client.get("/api/workspaces/workspaces/", token["access_token"]).json()
        assert [f["slug"] for f in fleets] == ["team-a", "lab", "staging"]
        assert all(2 <= f["machine_count"] <= 3 for f in fleets)
        for fleet in seed["fleets"]:
            page = client.get("/api/machines/machines/", fleet["api_keys"][0]).json()
            assert {m["workspace"] for m in page["results"]} == {fleet["id"]}
            assert {m["os"] for m in page["results"]} == {"linux"}
        bob = client.admin("POST", "tokens", {"user": "u-bob"}, expect=201)
        assert len(client.get("/api/workspaces/workspaces/", bob["access_token"]).json()) == 1
    finally:
        client.close()
        server.shutdown()


def test_runs_as_a_script(tmp_path: Path) -> None:
    seed_file = tmp_path / "seed.json"
    seed_file.write_text(json.dumps(make_seed()), encoding="utf-8")
    with subprocess.Popen(
        [sys.executable, str(EMULATOR_DIR / "cmdop_emulator.py"), "--seed", str(seed_file), "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    ) as process:
        try:
            line = process.stdout.readline()
            assert line.startswith("CMDOP emulator listening on http://127.0.0.1:"), line
            base_url = line.strip().rsplit(" ", 1)[-1]
            port = int(base_url.rsplit(":", 1)[-1])
            assert port > 0
            response = requests.get(base_url + "/api/workspaces/workspaces/", headers={"Authorization": "Bearer " + ALICE_TOKEN}, timeout=10)
            assert response.status_code == 200
        finally:
            process.terminate()
        assert process.wait(timeout=10) == 0
        assert process.stdout.read() == ""


def test_script_rejects_a_bad_seed(tmp_path: Path) -> None:
    seed_file = tmp_path / "seed.json"
    seed_file.write_text(json.dumps({"machines": [{"workspace": "nowhere", "name": "x"}]}), encoding="utf-8")
    result = subprocess.run([sys.executable, str(EMULATOR_DIR / "cmdop_emulator.py"), "--seed", str(seed_file)],
                            capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 2 and result.stdout == ""
    assert "nowhere" in result.stderr
