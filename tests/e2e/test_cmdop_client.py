"""Living beside the real CMDOP client, end to end (ansible-playbook over SSH, the emulator on 127.0.0.1).

The CLI writes ``server`` as a gRPC address (``grpc.cmdop.com:443``), its daemon rotates the token pair in the token
file without knowing this collection's lock, and API keys come with any prefix. The fleet file the CLI leaves is
``tests/emulator/fleet-files/cli-written.json`` (its fleet ids are the demo seed's)."""

from __future__ import annotations

import json
import time
import typing as t
from pathlib import Path

import pytest

from cmdop_helpers import (
    ALICE,
    FLEET_FILE,
    SEED_TEAM_A_KEY,
    TOKEN_FILE,
    LAB,
    STAGING,
    TEAM_A,
    entry,
    login,
    plain,
    read_fleets,
    sync_play,
    write_as,
)

CLI_WRITTEN = Path(__file__).resolve().parents[1] / "emulator" / "fleet-files" / "cli-written.json"
DEV_TOKEN_FILE = ".cmdop/token_dev.json"


def cli_written() -> dict:
    return json.loads(CLI_WRITTEN.read_text(encoding="utf-8"))


def login_dev(emulator: t.Any, targets: t.Any, host: str, user: str) -> dict:
    """A dev token file, as `cmdop --dev login` leaves it."""
    token = emulator.admin("POST", "tokens", {"user": user, "expires_in": 3600})
    token["expires_at"] = time.time() + 3600
    write_as(targets, host, DEV_TOKEN_FILE, json.dumps(token))
    return token


def unchanged_but_stamp(before: dict, after: dict) -> bool:
    """``after`` is ``before`` but for a newer ``last_synced_at``."""
    return {key: value for key, value in after.items() if key != "last_synced_at"} == \
        {key: value for key, value in before.items() if key != "last_synced_at"}


# ---- an entry's mode is decided by host -------------------------------------------------------------------------


@pytest.mark.case("CMDOP client", "a prod fleet the user left, whose entry the CLI wrote with server grpc.cmdop.com:443",
                  "a prod sync marks it inactive (its key kept); the dev entry (dev.cmdop.com:443) and the on-prem override are untouched")
def test_a_left_fleet_written_as_a_grpc_address_is_marked_inactive(emulator, targets, inventory, run_playbook, api):
    login(emulator, targets, "t1", ALICE)
    original = cli_written()
    write_as(targets, "t1", FLEET_FILE, json.dumps(original, indent=2))
    emulator.admin("DELETE", "members", {"fleet": STAGING, "user": ALICE})

    result = run_playbook(sync_play(api, hosts="t1"), inventory)
    assert result.rc == 0, result.describe()
    out = result.task("sync", "t1")
    assert out["deactivated"] == [{"name": "staging", "remote_id": STAGING, "fields": ["inactive"]}]
    assert out["added"] == [], "a fleet the CLI's grpc.cmdop.com:443 entry knows is not added again"
    document = read_fleets(targets, "t1")
    before = {item["name"]: item for item in original["workspaces"]}
    staging = entry(document, "staging")
    assert staging["inactive"] is True
    assert staging["api_key"] == before["staging"]["api_key"] and staging["server"] == "grpc.cmdop.com:443"
    assert unchanged_but_stamp(before["team-a"], entry(document, "team-a"))
    assert entry(document, "lab")["remote_id"] == LAB and "server" not in entry(document, "lab")
    assert entry(document, "dev-team-a") == before["dev-team-a"]
    assert entry(document, "on-prem") == before["on-prem"]
    assert sorted(item["name"] for item in out["unchanged"]) == ["lab", "team-a"]


# ---- what a dev entry's server holds ------------------------------------------------------------------------------


@pytest.mark.case("CMDOP client", "a dev sync adding fleets, with the default and with dev_server set through the role",
                  "each new dev entry's server is a host:port without a scheme (dev.cmdop.com:443, or dev_server's value)")
def test_a_new_dev_entry_has_no_scheme(emulator, targets, inventory, run_playbook, api):
    for host in ("t1", "t2"):
        login_dev(emulator, targets, host, ALICE)
    assert run_playbook(sync_play(dict(api, mode="dev"), hosts="t1"), inventory).rc == 0
    role = [{"hosts": "t2", "gather_facts": False, "roles": [{"role": "cmdop.fleet.fleet_sync", "vars": {
        "fleet_sync_mode": "dev", "fleet_sync_api_url": api["api_url"], "fleet_sync_dev_server": "grpc-dev.example.net:443"}}]}]
    result = run_playbook(role, inventory)
    assert result.rc == 0, result.describe()
    for host, server in (("t1", "dev.cmdop.com:443"), ("t2", "grpc-dev.example.net:443")):
        added = read_fleets(targets, host)["workspaces"]
        assert sorted(item["remote_id"] for item in added) == sorted([TEAM_A, LAB, STAGING])
        assert {item["server"] for item in added} == {server}, host
    # the role's dev_server host counts as dev's: a second dev sync through it adds nothing again
    again = run_playbook(role, inventory)
    assert again.rc == 0 and again.stats["t2"]["changed"] == 0, again.describe()


def test_a_dev_server_with_a_scheme_is_refused(emulator, targets, inventory, run_playbook, api):
    login_dev(emulator, targets, "t1", ALICE)
    result = run_playbook(sync_play(dict(api, mode="dev", dev_server="https://dev.cmdop.com"), hosts="t1"), inventory)
    assert result.rc != 0
    assert "dev_server 'https://dev.cmdop.com' is a URL with a scheme" in result.task("sync", "t1")["msg"]
    assert not (targets.home("t1") / FLEET_FILE).exists()


@pytest.mark.case("CMDOP client", "a dev entry an older release wrote with server https://dev.cmdop.com",
                  "still dev's: a dev sync updates and deactivates it, never rewrites its server; rewrite_dev_server: true does, once")
def test_an_older_dev_entry_stays_devs_and_is_rewritten_only_on_request(emulator, targets, inventory, run_playbook, api):
    login_dev(emulator, targets, "t1", ALICE)
    old = {"name": "team-a", "api_key": "", "server": "https://dev.cmdop.com", "remote_id": TEAM_A, "remote_name": "Old name"}
    gone = {"name": "gone", "api_key": "", "server": "https://dev.cmdop.com/", "remote_id": "0b1c2d3e-0000-4000-8000-000000000001",
            "remote_name": "Gone"}
    write_as(targets, "t1", FLEET_FILE, json.dumps({"active": "", "workspaces": [old, gone]}))

    result = run_playbook(sync_play(dict(api, mode="dev"), hosts="t1"), inventory)
    assert result.rc == 0, result.describe()
    out = result.task("sync", "t1")
    assert out["updated"] == [{"name": "team-a", "remote_id": TEAM_A, "fields": ["remote_name"]}]
    assert [item["name"] for item in out["deactivated"]] == ["gone"]
    assert sorted(item["name"] for item in out["added"]) == ["lab", "staging"], "Team A's old entry is dev's: not added again"
    document = read_fleets(targets, "t1")
    assert entry(document, "team-a")["server"] == "https://dev.cmdop.com"
    assert entry(document, "gone")["server"] == "https://dev.cmdop.com/"

    rewrite = run_playbook(sync_play(dict(api, mode="dev", rewrite_dev_server=True), hosts="t1"), inventory)
    assert rewrite.rc == 0, rewrite.describe()
    out = rewrite.task("sync", "t1")
    assert out["updated"] == [{"name": "team-a", "remote_id": TEAM_A, "fields": ["server"]},
                              {"name": "gone", "remote_id": gone["remote_id"], "fields": ["server"]}]
    assert {item["server"] for item in read_fleets(targets, "t1")["workspaces"]} == {"dev.cmdop.com:443"}
    again = run_playbook(sync_play(dict(api, mode="dev", rewrite_dev_server=True), hosts="t1"), inventory)
    assert again.stats["t1"]["changed"] == 0, again.describe()


# ---- living with the daemon ---------------------------------------------------------------------------------------


def arm_daemon(emulator: t.Any, targets: t.Any, host: str, write: bool) -> None:
    emulator.admin("POST", "daemon", {"token_file": str(targets.home(host) / TOKEN_FILE), "write": write})


@pytest.mark.case("CMDOP client", "CMDOP's daemon rotating the token pair in the token file between a run's read and its refresh",
                  "the refused refresh (invalid_grant) is followed by a read of the file under the lock: "
                  "the sync succeeds with the daemon's token and leaves the file as the daemon wrote it")
def test_a_token_the_daemon_rotated_meanwhile_is_used(emulator, targets, inventory, run_playbook, api):
    original = login(emulator, targets, "t1", ALICE)
    emulator.admin("POST", "tokens/expire", {"access_token": original["access_token"]})  # the server refuses it: a refresh is due
    arm_daemon(emulator, targets, "t1", write=True)

    result = run_playbook(sync_play(api, hosts="t1"), inventory, verbosity=3)
    assert result.rc == 0, result.describe()
    out = result.task("sync", "t1")
    assert out["token_refreshed"] is False, "the daemon refreshed it, not this run"
    assert sorted(item["remote_id"] for item in out["added"]) == sorted([TEAM_A, LAB, STAGING])
    daemon = emulator.admin("GET", "daemon")
    assert daemon["armed"] is None and daemon["rotations"] == [{"status": 200, "written": True}]
    token_file = json.loads((targets.home("t1") / TOKEN_FILE).read_text(encoding="utf-8"))
    assert token_file["access_token"] != original["access_token"]
    # the run's own refresh was refused; the fleet list, refused with the expired token, then answered with the daemon's
    calls = [(item["path"], item["status"]) for item in emulator.admin("GET", "requests")]
    assert calls == [("/api/workspaces/workspaces/", 401), ("/api/system/oauth/token/", 400), ("/api/workspaces/workspaces/", 200)]
    for secret in (token_file["access_token"], token_file["refresh_token"], original["refresh_token"]):
        assert secret not in result.stdout + result.stderr


@pytest.mark.case("CMDOP client", "a refused refresh (invalid_grant) while the token file still holds the pair this run read",
                  "the sync fails with unauthorized and 'log in again'; the fleet file and the token file are left as they were")
def test_a_refused_refresh_with_an_unchanged_file_says_log_in_again(emulator, targets, inventory, run_playbook, api):
    original = login(emulator, targets, "t1", ALICE)
    write_as(targets, "t1", FLEET_FILE, json.dumps(cli_written(), indent=2))
    before = {path: (targets.home("t1") / path).read_bytes() for path in (TOKEN_FILE, FLEET_FILE)}
    emulator.admin("POST", "tokens/expire", {"access_token": original["access_token"]})
    arm_daemon(emulator, targets, "t1", write=False)  # a daemon that spends the refresh token and dies before writing

    result = run_playbook(sync_play(api, hosts="t1"), inventory)
    assert result.rc != 0
    message = result.task("sync", "t1")["msg"]
    assert message.startswith("sync: unauthorized: the server refused to refresh the token (invalid_grant"), message
    assert message.endswith("log in again with cmdop login (or give a fresh token)"), message
    assert emulator.admin("GET", "daemon")["rotations"] == [{"status": 200, "written": False}]
    assert {path: (targets.home("t1") / path).read_bytes() for path in before} == before


@pytest.mark.case("CMDOP client", "a token 4 minutes from expiry (the daemon refreshes at about 5)",
                  "used as it is: the run leaves the refresh to the daemon (its leeway is 30 s), no refresh request, token file unchanged")
def test_a_token_the_daemon_is_about_to_refresh_is_left_to_it(emulator, targets, inventory, run_playbook, api):
    login(emulator, targets, "t1", ALICE, expires_in=240)
    before = (targets.home("t1") / TOKEN_FILE).read_bytes()
    result = run_playbook(sync_play(api, hosts="t1"), inventory)
    assert result.rc == 0, result.describe()
    assert result.task("sync", "t1")["token_refreshed"] is False
    assert [item["path"] for item in emulator.admin("GET", "requests")] == ["/api/workspaces/workspaces/"]
    assert (targets.home("t1") / TOKEN_FILE).read_bytes() == before


# ---- the fleet file's mode ----------------------------------------------------------------------------------------


@pytest.mark.case("CMDOP client", "a fleet file holding API keys with mode 0644, synced with backup: true",
                  "a warning names the mode and file_mode; the file stays 0644, its backup is 0600; file_mode: '0600' narrows it, without a warning")
def test_a_readable_file_holding_api_keys_is_warned_about_and_kept(emulator, targets, inventory, run_playbook, api):
    login(emulator, targets, "t1", ALICE)
    path = write_as(targets, "t1", FLEET_FILE, json.dumps(cli_written(), indent=2), mode=0o644)
    emulator.admin("PATCH", "fleets/" + TEAM_A, {"name": "Team A (renamed)"})  # so that the sync writes, and backs up

    result = run_playbook(sync_play(dict(api, backup=True), hosts="t1"), inventory)
    assert result.rc == 0, result.describe()
    out = result.task("sync", "t1")
    assert out["changed"] is True
    warnings = [text for text in out.get("warnings", []) if "API keys" in text]
    assert len(warnings) == 1 and "(mode 0644)" in warnings[0] and "file_mode: '0600'" in warnings[0], out.get("warnings")
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)
    assert oct(Path(out["backup_file"]).stat().st_mode & 0o777) == oct(0o600)
    assert Path(out["backup_file"]).stat().st_uid == path.stat().st_uid

    narrowed = run_playbook(sync_play(dict(api, file_mode="0600"), hosts="t1"), inventory)
    assert narrowed.rc == 0, narrowed.describe()
    assert not [text for text in narrowed.task("sync", "t1").get("warnings", []) if "API keys" in text]
    assert oct(path.stat().st_mode & 0o777) == oct(0o600)


def test_a_readable_file_without_api_keys_gets_no_warning(emulator, targets, inventory, run_playbook, api):
    login(emulator, targets, "t1", ALICE)
    document = cli_written()
    for item in document["workspaces"]:
        item["api_key"] = ""
    path = write_as(targets, "t1", FLEET_FILE, json.dumps(document), mode=0o644)
    result = run_playbook(sync_play(api, hosts="t1"), inventory)
    assert result.rc == 0, result.describe()
    assert not [text for text in result.task("sync", "t1").get("warnings", []) if "API keys" in text]
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)


# ---- opaque local values ------------------------------------------------------------------------------------------


KEYS_BY_FLEET = {name: item["api_key"] for name, item in ((item["name"], item) for item in cli_written()["workspaces"]) if item["api_key"]}


@pytest.mark.case("CMDOP client", "API keys of every published prefix (cmd_, ck_live_, cmdop_) and a remote_id that is no UUID (ws_on_prem_7)",
                  "the inventory lists each key's fleet with that key, a sync keeps every key and id as it is; no key is shown")
def test_keys_of_any_prefix_and_opaque_ids_work_through_inventory_and_sync(emulator, targets, inventory, run_playbook, run_inventory,
                                                                           api, tmp_path):
    assert sorted(key.split("_")[0] + "_" for key in KEYS_BY_FLEET.values()) == ["ck_", "cmd_", "cmdop_", "cmdop_"]
    for name, fleet in (("team-a", TEAM_A), ("staging", STAGING), ("lab", LAB)):
        emulator.admin("PATCH", "fleets/" + fleet, {"api_keys": [KEYS_BY_FLEET[name]]})
    original = cli_written()

    home = tmp_path / "controller-home"
    (home / ".cmdop").mkdir(parents=True, mode=0o700)
    (home / ".cmdop" / "ssh_workspaces.json").write_text(json.dumps(original), encoding="utf-8")
    (home / ".cmdop" / "ssh_workspaces.json").chmod(0o600)
    config = tmp_path / "fleets.cmdop.yml"
    config.write_text("plugin: cmdop.fleet.cmdop\n", encoding="utf-8")
    listed = run_inventory(["-i", str(config), "--list"], env={"HOME": str(home), "CMDOP_API_URL": emulator.url, "CMDOP_TOKEN": None,
                                                               "CMDOP_API_KEY": None, "ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED": "true"})
    assert listed.rc == 0, listed.describe()
    groups = json.loads(listed.stdout)
    seed = json.loads((Path(__file__).resolve().parents[1] / "emulator" / "seed-demo.json").read_text(encoding="utf-8"))
    for name, fleet in (("team_a", TEAM_A), ("staging", STAGING), ("lab", LAB)):
        hosts = groups["fleet_%s" % name]["hosts"]
        assert len(hosts) == len([machine for machine in seed["machines"] if machine["workspace"] == fleet]), (name, groups)
    kinds = {item["credential_kind"] for item in emulator.admin("GET", "requests") if item["path"].startswith("/api/machines/")}
    assert kinds == {"api_key"}

    login(emulator, targets, "t1", ALICE)
    write_as(targets, "t1", FLEET_FILE, json.dumps(original, indent=2))
    synced = run_playbook(sync_play(api, hosts="t1"), inventory, verbosity=3)
    assert synced.rc == 0, synced.describe()
    after = {item["name"]: item for item in read_fleets(targets, "t1")["workspaces"]}
    for item in original["workspaces"]:
        assert after[item["name"]]["api_key"] == item["api_key"] and after[item["name"]]["remote_id"] == item["remote_id"]
    for key in KEYS_BY_FLEET.values():
        for text in (listed.stdout, listed.stderr, synced.stdout, synced.stderr):
            assert key not in text


# ---- supported targets --------------------------------------------------------------------------------------------


def readme_windows_example() -> str:
    """The inventory source README's "Supported targets" shows for Windows machines."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Supported targets", 1)[1].split("\n## ", 1)[0]
    return section.split("```yaml\n", 1)[1].split("```", 1)[0]


def test_the_readme_example_sets_windows_machines_connection_from_cmdop_os(emulator, run_inventory, tmp_path):
    windows = emulator.admin("POST", "machines", {"workspace": TEAM_A, "name": "win-1", "hostname": "win-1.example.net", "os": "windows",
                                                  "username": "Administrator", "local_ips": ["10.0.0.9"], "is_online": True})
    home = tmp_path / "controller-home"
    (home / ".cmdop").mkdir(parents=True, mode=0o700)
    team_a = dict(next(item for item in cli_written()["workspaces"] if item["name"] == "team-a"), api_key=SEED_TEAM_A_KEY, server="")
    (home / ".cmdop" / "ssh_workspaces.json").write_text(json.dumps({"active": "", "workspaces": [team_a]}), encoding="utf-8")
    config = tmp_path / "fleets.cmdop.yml"
    config.write_text(readme_windows_example(), encoding="utf-8")
    listed = run_inventory(["-i", str(config), "--list"], env={"HOME": str(home), "CMDOP_API_URL": emulator.url, "CMDOP_TOKEN": None,
                                                               "CMDOP_API_KEY": None, "ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED": "true"})
    assert listed.rc == 0, listed.describe()
    inventory = plain(json.loads(listed.stdout))
    hostvars = inventory["_meta"]["hostvars"]
    assert inventory["os_windows"]["hosts"] == ["win-1"]
    assert hostvars["win-1"]["ansible_shell_type"] == "powershell" and hostvars["win-1"]["ansible_user"] == "Administrator"
    linux = inventory["os_linux"]["hosts"]
    assert linux and all(hostvars[name]["ansible_shell_type"] == "sh" for name in linux)
    assert windows["id"] == hostvars["win-1"]["cmdop_id"]
