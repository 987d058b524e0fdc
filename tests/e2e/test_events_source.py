"""The ``cmdop.fleet.fleet_events`` source in process, against the real emulator: its ``main(queue, args)`` run by asyncio as
ansible-rulebook runs it (loaded with runpy from the collection), HTTP through the collection's client, the state file on disk.

Each step changes the emulator's state through its admin API, then runs the source; a run with ``max_polls: 1`` and the
same state file is a restart. ansible-rulebook itself (a JVM) runs only in tests/e2e/test_events.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import runpy
import stat
import typing as t
from pathlib import Path

import pytest

from harness import REPO_ROOT, AnsibleRunner, Emulator

SOURCE = REPO_ROOT / "extensions" / "eda" / "plugins" / "event_source" / "fleet_events.py"
ALICE = "u-alice"
FLEET_A = "0d3e5d8a-6a4b-4d3e-9a51-5b1f2c3d4e01"
FLEET_B = "0d3e5d8a-6a4b-4d3e-9a51-5b1f2c3d4e02"
FLEET_C = "0d3e5d8a-6a4b-4d3e-9a51-5b1f2c3d4e03"
KEY_A = "cmdop_live_events_key_a_5e3f9a7b1c2d"
KEY_B = "cmdop_live_events_key_b_8c1d2e3f4a5b"
M1, M2, M3, M4 = ("0f0e0d0c-0000-4000-8000-00000000000%d" % number for number in range(1, 5))


def fleet(fleet_id: str, name: str, keys: t.Sequence[str] = ()) -> dict:
    return {"id": fleet_id, "name": name, "slug": name.lower().replace(" ", "-"), "type": "team", "plan": "pro",
            "created_at": "2026-01-01T00:00:00Z", "members": [ALICE], "api_keys": list(keys)}


def machine(machine_id: str, fleet_id: str, name: str, **fields: t.Any) -> dict:
    return dict({"id": machine_id, "workspace": fleet_id, "name": name, "is_online": True}, **fields)


SEED = {
    "users": [{"id": ALICE, "email": "alice@example.com"}],
    "fleets": [fleet(FLEET_A, "Team A", [KEY_A]), fleet(FLEET_B, "Lab", [KEY_B])],
    "machines": [machine(M1, FLEET_A, "web-1"), machine(M2, FLEET_A, "web-2"), machine(M3, FLEET_B, "lab-1")],
}


@pytest.fixture
def emulator_seed() -> dict:
    return SEED


class Recorder:
    """A queue that keeps what is put on it; ``fail_at`` makes the n-th put raise (the engine went away mid-poll)."""

    def __init__(self, fail_at: int = 0) -> None:
        self.events: t.List[dict] = []
        self.fail_at = fail_at

    async def put(self, event: dict) -> None:
        if self.fail_at and len(self.events) + 1 == self.fail_at:
            raise RuntimeError("the queue is gone")
        self.events.append(json.loads(json.dumps(event)))


class Source:
    """The source with fixed arguments; ``run(**more)`` is one start of it, to its ``max_polls``."""

    def __init__(self, emulator: t.Any, tmp_path: Path, **args: t.Any) -> None:
        self.emulator = emulator
        self.state_file = tmp_path / "state" / "events.json"
        self.args = dict({"api_url": emulator.url, "retries": 0, "timeout": 10, "interval": 0.2, "max_polls": 1, "initial": "none",
                          "state_file": str(self.state_file)}, **args)
        self.secrets: t.List[str] = [KEY_A, KEY_B]

    def login(self, tmp_path: Path, refresh: bool = True) -> dict:
        token = self.emulator.admin("POST", "tokens", {"user": ALICE, "expires_in": 3600})
        if not refresh:
            token.pop("refresh_token", None)
        path = tmp_path / "token_prod.json"
        path.write_text(json.dumps(token), encoding="utf-8")
        path.chmod(0o600)
        self.args["token_file"] = str(path)
        self.secrets += [value for key, value in token.items() if key in ("access_token", "refresh_token")]
        return token

    def fleet_file(self, tmp_path: Path, *entries: dict) -> Path:
        path = tmp_path / "ssh_workspaces.json"
        path.write_text(json.dumps({"workspaces": list(entries)}), encoding="utf-8")
        path.chmod(0o600)
        self.args.update(fleets_from="file", path=str(path))
        return path

    def run(self, queue: t.Optional[Recorder] = None, **more: t.Any) -> t.List[dict]:
        queue = queue or Recorder()
        main = runpy.run_path(str(SOURCE))["main"]
        asyncio.run(asyncio.wait_for(main(queue, dict(self.args, **more)), timeout=60))
        return queue.events

    def state(self) -> dict:
        return json.loads(self.state_file.read_text(encoding="utf-8"))


def kinds(events: t.Sequence[dict]) -> t.List[t.Tuple[str, str]]:
    return [(event["cmdop"]["type"], event["cmdop"].get("host") or event["cmdop"].get("fleet", {}).get("name", "")) for event in events]


@pytest.fixture
def source(emulator: t.Any, tmp_path: Path) -> Source:
    """The source watching alice's fleets from the API with her token file."""
    watcher = Source(emulator, tmp_path, fleets_from="api")
    watcher.login(tmp_path)
    return watcher


def assert_no_secret(source: Source, *texts: str) -> None:
    for text in texts + (source.state_file.read_text(encoding="utf-8") if source.state_file.exists() else "",):
        for secret in source.secrets:
            assert secret not in text


@pytest.mark.case("events", "each kind of change between two polls", "one event of its type, with the inventory's host name")
def test_each_change_is_one_event(source: Source, emulator: t.Any, caplog: pytest.LogCaptureFixture) -> None:
    start = source.run(initial="snapshot")
    assert kinds(start) == [("snapshot", "")]
    assert start[0]["meta"]["hosts"] == ["lab-1", "web-1", "web-2"]
    assert source.run() == []

    emulator.admin("POST", "fleets", fleet(FLEET_C, "Staging"))
    emulator.admin("PATCH", "fleets/%s" % FLEET_B, {"name": "Lab 2"})
    emulator.admin("POST", "machines", machine(M4, FLEET_A, "web-3", public_ip="192.0.2.4"))
    emulator.admin("PATCH", "machines/%s" % M1, {"public_ip": "192.0.2.1"})
    events = source.run()
    assert kinds(events) == [("fleet_added", "Staging"), ("fleet_renamed", "Lab 2"), ("machine_joined", "web-3"), ("machine_changed", "web-1")]
    joined = events[2]
    assert joined["meta"]["hosts"] == "web-3" and joined["cmdop"]["machine"]["cmdop_public_ip"] == "192.0.2.4"
    assert joined["cmdop"]["machine"]["cmdop_fleet"] == "team-a" and joined["cmdop"]["fleet"]["name"] == "Team A"
    assert events[1]["cmdop"]["previous"]["name"] == "Lab" and events[1]["cmdop"]["fleet"]["local_name"] == "lab"
    assert events[3]["cmdop"]["changed"] == {"cmdop_public_ip": {"old": None, "new": "192.0.2.1"}}

    emulator.admin("PATCH", "machines/%s" % M2, {"is_online": False})
    assert source.run() == []  # settle: 2 polls
    assert kinds(source.run()) == [("machine_offline", "web-2")]
    emulator.admin("PATCH", "machines/%s" % M2, {"is_online": True})
    assert kinds(source.run(settle=1)) == [("machine_online", "web-2")]

    emulator.admin("DELETE", "machines/%s" % M4)
    emulator.admin("DELETE", "members", {"fleet": FLEET_C, "user": ALICE})
    assert kinds(source.run()) == [("machine_left", "web-3"), ("fleet_left", "Staging")]
    assert source.run() == []
    assert_no_secret(source, caplog.text, json.dumps(start))
    assert stat.S_IMODE(os.stat(source.state_file).st_mode) == 0o600


@pytest.mark.case("events", "changes made while the source was down", "emitted once on the next start, never again")
def test_changes_while_down_are_emitted_once(source: Source, emulator: t.Any) -> None:
    source.run()
    emulator.admin("POST", "machines", machine(M4, FLEET_B, "lab-2"))
    emulator.admin("DELETE", "machines/%s" % M1)
    events = source.run(initial="snapshot")
    assert kinds(events) == [("machine_joined", "lab-2"), ("machine_left", "web-1"), ("snapshot", "")]
    assert source.run() == [] and source.run(max_polls=3) == []


@pytest.mark.case("events", "the engine fails while the poll's events are put on its queue",
                  "the state is not saved: the next start emits them again, with the same uuids")
def test_the_state_is_saved_only_after_the_queue_took_the_events(source: Source, emulator: t.Any) -> None:
    source.run()
    saved = source.state_file.read_bytes()
    emulator.admin("POST", "machines", machine(M4, FLEET_B, "lab-2"))
    emulator.admin("DELETE", "machines/%s" % M1)
    with pytest.raises(RuntimeError, match="the queue is gone"):
        source.run(Recorder(fail_at=2))
    assert source.state_file.read_bytes() == saved
    first = source.run()
    again_from_the_same_state = Recorder()
    assert kinds(first) == [("machine_joined", "lab-2"), ("machine_left", "web-1")]
    source.state_file.write_bytes(saved)
    assert [event["meta"]["uuid"] for event in source.run(again_from_the_same_state)] == [event["meta"]["uuid"] for event in first]


@pytest.mark.case("events", "a fleet whose API key is refused in one poll while its machine left",
                  "no machine_left for it then; once it is read again, the machine that left is said once")
def test_a_fleet_that_cannot_be_read_makes_nothing_leave(emulator: t.Any, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    source = Source(emulator, tmp_path)
    source.fleet_file(tmp_path, {"name": "team-a", "api_key": KEY_A, "remote_id": FLEET_A, "remote_name": "Team A"},
                      {"name": "lab", "api_key": KEY_B, "remote_id": FLEET_B, "remote_name": "Lab"})
    source.run()
    emulator.admin("PATCH", "fleets/%s" % FLEET_B, {"api_keys": ["cmdop_live_rotated_elsewhere_0000"]})
    emulator.admin("DELETE", "machines/%s" % M3)
    emulator.admin("POST", "machines", machine(M4, FLEET_A, "web-3"))
    with caplog.at_level(logging.WARNING):
        events = source.run()
    assert kinds(events) == [("machine_joined", "web-3")]  # team-a was read; lab was not: nothing said of it
    assert "lab" in caplog.text and "401" in caplog.text
    emulator.admin("PATCH", "fleets/%s" % FLEET_B, {"api_keys": [KEY_B]})
    assert kinds(source.run()) == [("machine_left", "lab-1")]
    assert_no_secret(source, caplog.text)


@pytest.mark.case("events", "a failed page of the one listing, and 500 and 429 storms",
                  "no false left; one scrubbed log line per failure; it keeps polling and catches up")
def test_storms_are_ridden_out_without_false_events(source: Source, emulator: t.Any, caplog: pytest.LogCaptureFixture) -> None:
    source.run()
    emulator.admin("POST", "machines", machine(M4, FLEET_B, "lab-2"))
    emulator.admin("POST", "faults", {"path": "/api/machines/", "status": 500, "count": 3})
    emulator.admin("POST", "faults", {"path": "/api/workspaces/", "status": 429, "retry_after": 0, "count": 2})
    with caplog.at_level(logging.WARNING):
        events = source.run(max_polls=8, interval=0.1)
    assert kinds(events) == [("machine_joined", "lab-2")]
    failures = [record for record in caplog.records if "failed" in record.getMessage()]
    assert len(failures) == 5, caplog.text
    assert_no_secret(source, caplog.text)


@pytest.mark.case("events", "the OAuth token is refused and cannot be refreshed",
                  "the source stops with a message that says to log in again, and no secret")
def test_a_refused_token_stops_the_source(source: Source, emulator: t.Any, tmp_path: Path) -> None:
    token = source.login(tmp_path, refresh=False)
    source.run()
    emulator.admin("POST", "tokens/expire", {"access_token": token["access_token"]})
    with pytest.raises(Exception, match="log in again with cmdop login") as raised:
        source.run(max_polls=5)
    assert_no_secret(source, str(raised.value))


def test_dev_server_makes_the_entries_a_sync_wrote_with_it_dev_s(emulator: t.Any, tmp_path: Path) -> None:
    """As the inventory plugin: the sync's dev_server given, its entries are watched with mode dev; without it, not."""
    source = Source(emulator, tmp_path, mode="dev")
    source.fleet_file(tmp_path, {"name": "team-a", "api_key": KEY_A, "server": "relay.dev.example:7443", "remote_id": FLEET_A},
                      {"name": "lab", "api_key": KEY_B, "server": "", "remote_id": FLEET_B})
    given = source.run(initial="snapshot", dev_server="relay.dev.example:7443", state_file=str(tmp_path / "given.json"))
    assert kinds(given) == [("snapshot", "")] and given[0]["meta"]["hosts"] == ["web-1", "web-2"]
    default = source.run(initial="snapshot", state_file=str(tmp_path / "default.json"))
    assert kinds(default) == [("snapshot", "")] and default[0]["meta"]["hosts"] == []


def test_a_configuration_error_stops_at_start(source: Source) -> None:
    with pytest.raises(Exception, match="unknown option"):
        source.run(intervall=3)
    with pytest.raises(Exception, match="hostnames must be a list"):
        source.run(hostnames=["nickname"])
    # the bounds and the URL rule of the modules and the inventory plugin (_api.check_api_numbers, check_no_user_info)
    with pytest.raises(Exception, match=r"timeout must be more than 0 and at most 3600, not 3601\.0"):
        source.run(timeout=3601)
    with pytest.raises(Exception, match="retries must be at least 0 and at most 100, not 101"):
        source.run(retries=101)
    with pytest.raises(Exception, match="dev_server 'https://relay.dev.example' is a URL with a scheme"):
        source.run(dev_server="https://relay.dev.example")
    with pytest.raises(Exception, match="must not hold a user name or password") as raised:
        source.run(api_url="https://alice:s3cret-pass@127.0.0.1:9")
    assert "s3cret-pass" not in str(raised.value)


@pytest.mark.case("events", "a corrupt state file, and one of another account",
                  "corrupt: a warning and a first start; another account's: the source stops and names the file")
def test_a_corrupt_or_foreign_state_file(source: Source, caplog: pytest.LogCaptureFixture) -> None:
    source.state_file.parent.mkdir(parents=True)
    source.state_file.write_text("{not json", encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        assert kinds(source.run(initial="snapshot")) == [("snapshot", "")]
    assert "corrupt" in caplog.text and str(source.state_file) in caplog.text
    state = source.state()
    state["account"] = "someone-else"
    source.state_file.write_text(json.dumps(state), encoding="utf-8")
    with pytest.raises(Exception, match="belongs to another account") as raised:
        source.run()
    assert str(source.state_file) in str(raised.value)


def test_host_names_follow_the_inventory_s_rule_and_options(source: Source, emulator: t.Any) -> None:
    emulator.admin("POST", "machines", machine(M4, FLEET_B, "web-1"))  # a duplicate name: the later id gets its next choice
    event = source.run(initial="snapshot", hostnames=["name", "id"])[0]
    assert event["meta"]["hosts"] == sorted(["lab-1", "web-1", "web-2", M4])


@pytest.mark.case("events", "machines named localhost, all, cmdop and like a fleet's group (issue 13's takeover, through the source)",
                  "each takes its id in meta.hosts, as in the inventory: no event names the controller or a group")
def test_a_machine_named_like_a_group_or_localhost_is_not_that_host_in_events(source: Source, emulator: t.Any) -> None:
    taken = {"localhost": "0f0e0d0c-0000-4000-8000-000000000011", "all": "0f0e0d0c-0000-4000-8000-000000000012",
             "cmdop": "0f0e0d0c-0000-4000-8000-000000000013", "127.0.0.1": "0f0e0d0c-0000-4000-8000-000000000014"}
    for name, machine_id in taken.items():
        emulator.admin("POST", "machines", machine(machine_id, FLEET_B, name))
    hosts = source.run(initial="snapshot", hostnames=["name", "id"])[0]["meta"]["hosts"]
    assert sorted(hosts) == sorted(["lab-1", "web-1", "web-2"] + list(taken.values()))


@pytest.mark.case("events", "the state file cannot be written (its folder is a file)",
                  "a warning each poll; the source keeps running and emits each change once")
def test_a_state_file_that_cannot_be_written_stops_nothing(source: Source, emulator: t.Any, tmp_path: Path,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("", encoding="utf-8")
    source.args["state_file"] = str(blocker / "events.json")
    emulator.admin("POST", "faults", {"path": "/api/machines/", "add_machine": machine(M4, FLEET_B, "lab-2"), "skip": 1})
    with caplog.at_level(logging.WARNING):
        events = source.run(max_polls=3, interval=0.1)
    assert kinds(events) == [("machine_joined", "lab-2")]
    assert caplog.text.count("could not be saved") == 3


def test_a_poll_costs_what_the_inventory_s_cold_listing_costs(tmp_path: Path, collections_path: Path) -> None:
    """The same requests: the fleet list and one paged listing (pages of 200), nothing per machine."""
    seed = dict(SEED, machines=[machine("0f0e0d0c-0000-4000-8000-%012d" % number, (FLEET_A, FLEET_B)[number % 2], "m-%d" % number)
                                for number in range(450)])
    emulator = Emulator(seed, tmp_path / "emulator").start()
    try:
        source = Source(emulator, tmp_path, fleets_from="api")
        source.login(tmp_path)
        emulator.admin("DELETE", "requests")
        assert len(source.run(initial="snapshot")[0]["meta"]["hosts"]) == 450
        polled = [(item["path"], item["query"].get("page")) for item in emulator.admin("GET", "requests")]
        emulator.admin("DELETE", "requests")
        inventory = tmp_path / "api.cmdop.yml"
        inventory.write_text(json.dumps({"plugin": "cmdop.fleet.cmdop", "fleets_from": "api", "api_url": emulator.url,
                                         "token_file": source.args["token_file"]}), encoding="utf-8")
        listed = AnsibleRunner(collections_path, tmp_path / "ansible").run_inventory(["-i", str(inventory), "--list"])
        assert listed.rc == 0, listed.describe()
        assert sorted(polled) == sorted((item["path"], item["query"].get("page")) for item in emulator.admin("GET", "requests"))
        assert len(polled) == 1 + 3
    finally:
        emulator.stop()
