"""cmdop.fleet.sync end to end: ansible-playbook over real SSH (the users of a target slot as hosts t1/t2),
talking to the CMDOP emulator on 127.0.0.1. Each test states a rule users rely on."""

from __future__ import annotations

import ast
import calendar
import json
import os
import pwd
import shutil
import subprocess
import time
import typing as t
import uuid
from pathlib import Path

import pytest

from cmdop_helpers import (  # pylint: disable=unused-import
    ALICE,
    BOB,
    BOB_PERSONAL,
    FLEET_FILE,
    LAB,
    LOCAL_KEY,
    SEED_TEAM_A_KEY,
    STAGING,
    TEAM_A,
    TEAM_A_KEY,
    TOKEN_FILE,
    api_requests,
    entry,
    fleet_path,
    login,
    read_fleets,
    sync_play,
    write_as,
)
from harness import free_port


class KeptModules:
    """What ansible-playbook put on the targets: with ANSIBLE_KEEP_REMOTE_FILES the AnsiballZ files stay in a
    remote tmp folder of the run's own, and each holds the module arguments exactly as the controller sent them
    (before the module fills in its defaults)."""

    def __init__(self, targets: t.Any) -> None:
        self.targets = targets
        self.folder = ".ansible/e2e-kept-%s" % uuid.uuid4().hex[:12]
        self.env = {"ANSIBLE_KEEP_REMOTE_FILES": "1", "ANSIBLE_REMOTE_TMP": "~/" + self.folder}

    def files(self, host: str, module: str) -> t.List[Path]:
        return sorted((self.targets.home(host) / self.folder).glob("ansible-tmp-*/AnsiballZ_%s.py" % module))

    def module_args(self, host: str, module: str) -> t.List[dict]:
        """The ANSIBLE_MODULE_ARGS of every run of the module on the host (internal _ansible_* keys left out)."""
        found = []
        for path in self.files(host, module):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith('{"ANSIBLE_MODULE_ARGS"'):
                    args = json.loads(node.value)["ANSIBLE_MODULE_ARGS"]
                    found.append({key: value for key, value in args.items() if not key.startswith("_ansible_")})
        return found

    def cleanup(self) -> None:
        for home in [Path.home()] + [self.targets.home(host) for host in self.targets.hosts]:
            shutil.rmtree(home / self.folder, ignore_errors=True)


@pytest.fixture
def kept_modules(targets: t.Any) -> t.Iterator[KeptModules]:
    kept = KeptModules(targets)
    try:
        yield kept
    finally:
        kept.cleanup()


# ---- the happy path ----------------------------------------------------------


def test_first_run_adds_each_users_fleets_second_run_is_a_no_op(emulator, targets, inventory, run_playbook, api):
    login(emulator, targets, "t1", ALICE)
    login(emulator, targets, "t2", BOB)

    first = run_playbook(sync_play(api), inventory)
    assert first.rc == 0, first.describe()
    alice = first.task("sync", "t1")
    assert alice["changed"] is True
    assert sorted(item["name"] for item in alice["added"]) == ["lab", "staging", "team-a"]
    assert [item["name"] for item in first.task("sync", "t2")["added"]] == ["bob-personal"]

    document = read_fleets(targets, "t1")
    assert entry(document, "team-a") == {
        "name": "team-a", "api_key": "", "server": "", "remote_id": TEAM_A, "remote_name": "Team A",
        "last_synced_at": entry(document, "team-a")["last_synced_at"],
    }
    assert document["active"] == ""
    stat = fleet_path(targets, "t1").stat()
    assert oct(stat.st_mode & 0o777) == "0o600"
    assert oct(fleet_path(targets, "t1").parent.stat().st_mode & 0o777) == "0o700"
    assert stat.st_uid == pwd.getpwnam(targets.user("t1")).pw_uid
    before = {host: fleet_path(targets, host).read_bytes() for host in ("t1", "t2")}

    second = run_playbook(sync_play(api), inventory)
    assert second.rc == 0, second.describe()
    for host in ("t1", "t2"):
        assert second.task("sync", host)["changed"] is False
        assert second.stats[host]["changed"] == 0
        assert fleet_path(targets, host).read_bytes() == before[host]
    assert sorted(item["name"] for item in second.task("sync", "t1")["unchanged"]) == ["lab", "staging", "team-a"]


def test_local_config_is_never_touched(emulator, targets, inventory, run_playbook, api):
    """API keys, API-key-only fleets, active, server overrides, the other mode's entries, unknown keys."""
    login(emulator, targets, "t1", ALICE)
    original = {
        "active": "home",
        "version": 3,
        "workspaces": [
            {"name": "home", "api_key": LOCAL_KEY, "server": ""},
            {"name": "team-a", "api_key": TEAM_A_KEY, "server": "", "remote_id": TEAM_A, "remote_name": "Old name",
             "last_synced_at": "2026-01-01T00:00:00Z", "color": "blue"},
            {"name": "relay-lab", "api_key": "", "server": "https://relay.example.net", "remote_id": LAB, "remote_name": "Lab",
             "inactive": True},
            {"name": "relay-gone", "api_key": "", "server": "https://relay.example.net", "remote_id": "0000-gone", "remote_name": "Gone"},
            {"name": "dev-fleet", "api_key": "k", "server": "https://dev.cmdop.com", "remote_id": "dev-1", "remote_name": "Dev"},
        ],
    }
    write_as(targets, "t1", FLEET_FILE, json.dumps(original, indent=4))

    result = run_playbook(sync_play(api, hosts="t1"), inventory)
    assert result.rc == 0, result.describe()
    out = result.task("sync", "t1")
    document = read_fleets(targets, "t1")

    assert document["active"] == "home"
    assert document["version"] == 3
    assert document["workspaces"][0] == original["workspaces"][0]
    team_a = entry(document, "team-a")
    assert team_a["api_key"] == TEAM_A_KEY and team_a["color"] == "blue" and team_a["server"] == ""
    assert team_a["remote_name"] == "Team A" and team_a["last_synced_at"] != "2026-01-01T00:00:00Z"
    # a server override listed by the server is updated and reactivated ...
    assert "inactive" not in entry(document, "relay-lab")
    assert [item["name"] for item in out["reactivated"]] == ["relay-lab"]
    # ... one it does not list is never deactivated, and the dev entry is not prod's to touch
    assert entry(document, "relay-gone") == original["workspaces"][3]
    assert entry(document, "dev-fleet") == original["workspaces"][4]
    assert [item["name"] for item in out["added"]] == ["staging"]
    assert out["updated"] == [{"name": "team-a", "remote_id": TEAM_A, "fields": ["remote_name"]}]
    # the result never carries an API key
    assert LOCAL_KEY not in json.dumps(out) and TEAM_A_KEY not in json.dumps(out)
    assert entry({"workspaces": out["fleets"]}, "home")["api_key"] == "********"


def test_server_changes_rename_leave_rejoin(emulator, targets, inventory, run_playbook, api):
    login(emulator, targets, "t1", ALICE)
    assert run_playbook(sync_play(api, hosts="t1"), inventory).rc == 0
    document = read_fleets(targets, "t1")
    entry(document, "staging")["api_key"] = "cmdop_live_staging_key_added_by_hand"
    write_as(targets, "t1", FLEET_FILE, json.dumps(document, indent=2) + "\n")

    emulator.admin("PATCH", "fleets/" + TEAM_A, {"name": "Team A (platform)"})
    emulator.admin("DELETE", "members", {"fleet": STAGING, "user": ALICE})
    result = run_playbook(sync_play(api, hosts="t1"), inventory)
    out = result.task("sync", "t1")
    assert out["updated"] == [{"name": "team-a", "remote_id": TEAM_A, "fields": ["remote_name"]}]
    assert out["deactivated"] == [{"name": "staging", "remote_id": STAGING, "fields": ["inactive"]}]
    document = read_fleets(targets, "t1")
    assert entry(document, "team-a")["remote_name"] == "Team A (platform)"
    assert entry(document, "team-a")["name"] == "team-a"  # local names are never renamed
    assert entry(document, "staging")["inactive"] is True
    assert entry(document, "staging")["api_key"] == "cmdop_live_staging_key_added_by_hand"

    emulator.admin("POST", "members", {"fleet": STAGING, "user": ALICE})
    result = run_playbook(sync_play(api, hosts="t1"), inventory)
    assert [item["name"] for item in result.task("sync", "t1")["reactivated"]] == ["staging"]
    assert "inactive" not in entry(read_fleets(targets, "t1"), "staging")


def test_name_collision_with_an_api_key_only_fleet(emulator, targets, inventory, run_playbook, api):
    login(emulator, targets, "t1", ALICE)
    write_as(targets, "t1", FLEET_FILE, json.dumps({"active": "lab", "workspaces": [{"name": "lab", "api_key": LOCAL_KEY, "server": ""}]}))
    result = run_playbook(sync_play(api, hosts="t1"), inventory)
    assert result.rc == 0, result.describe()
    document = read_fleets(targets, "t1")
    assert entry(document, "lab") == {"name": "lab", "api_key": LOCAL_KEY, "server": ""}
    assert entry(document, "lab-" + LAB[:8])["remote_id"] == LAB


def test_dev_mode_touches_only_dev_entries(emulator, targets, inventory, run_playbook, api):
    token = emulator.admin("POST", "tokens", {"user": ALICE, "expires_in": 3600})
    token["expires_at"] = time.time() + 3600
    write_as(targets, "t1", ".cmdop/token_dev.json", json.dumps(token))
    prod = {"name": "team-a", "api_key": TEAM_A_KEY, "server": "", "remote_id": "prod-only-id", "remote_name": "Prod"}
    write_as(targets, "t1", FLEET_FILE, json.dumps({"active": "team-a", "workspaces": [prod]}))
    result = run_playbook(sync_play(dict(api, mode="dev"), hosts="t1"), inventory)
    assert result.rc == 0, result.describe()
    document = read_fleets(targets, "t1")
    assert document["workspaces"][0] == prod  # prod's entry: not deactivated, not touched
    added = {item["remote_id"]: item for item in document["workspaces"][1:]}
    assert set(added) == {TEAM_A, LAB, STAGING}
    assert all(item["server"] == "dev.cmdop.com:443" for item in added.values())
    assert added[TEAM_A]["name"] == "team-a-" + TEAM_A[:8]


def test_last_synced_always_stamps_every_listed_entry(emulator, targets, inventory, run_playbook, api):
    login(emulator, targets, "t1", ALICE)
    assert run_playbook(sync_play(api, hosts="t1"), inventory).rc == 0
    document = read_fleets(targets, "t1")
    for item in document["workspaces"]:
        item["last_synced_at"] = "2020-01-01T00:00:00Z"
    write_as(targets, "t1", FLEET_FILE, json.dumps(document, indent=2) + "\n")
    unchanged = run_playbook(sync_play(dict(api, last_synced="changed"), hosts="t1"), inventory)
    assert unchanged.task("sync", "t1")["changed"] is False
    always = run_playbook(sync_play(dict(api, last_synced="always"), hosts="t1"), inventory)
    assert always.task("sync", "t1")["changed"] is True
    assert all(item["last_synced_at"] != "2020-01-01T00:00:00Z" for item in read_fleets(targets, "t1")["workspaces"])


# ---- check mode, diff, backup, file arguments ------------------------------


def test_check_diff_shows_the_change_redacted_and_writes_nothing(emulator, targets, inventory, run_playbook, api):
    login(emulator, targets, "t1", ALICE)
    original = json.dumps({"active": "home", "workspaces": [
        {"name": "home", "api_key": LOCAL_KEY, "server": ""},
        {"name": "team-a", "api_key": TEAM_A_KEY, "server": "", "remote_id": TEAM_A, "remote_name": "Old"},
    ]}, indent=2)
    path = write_as(targets, "t1", FLEET_FILE, original)
    mtime = path.stat().st_mtime_ns

    result = run_playbook(sync_play(api, hosts="t1"), inventory, check=True, diff=True)
    assert result.rc == 0, result.describe()
    out = result.task("sync", "t1")
    assert out["changed"] is True
    assert [item["name"] for item in out["added"]] == ["lab", "staging"]
    assert path.read_text(encoding="utf-8") == original and path.stat().st_mtime_ns == mtime
    diff = out["diff"]
    assert '"remote_name": "Old"' in diff["before"] and '"remote_name": "Team A"' in diff["after"]
    assert '"api_key": "********"' in diff["before"] and '"api_key": "********"' in diff["after"]
    # the human diff, as a user sees it
    assert '+      "remote_name": "Team A",' in result.stdout
    for secret in (LOCAL_KEY, TEAM_A_KEY):
        assert secret not in result.stdout and secret not in json.dumps(out)
    assert not list(path.parent.glob(".ssh_workspaces.json.*.tmp"))


def test_check_mode_on_a_host_without_a_file_creates_nothing(emulator, targets, inventory, run_playbook, api):
    token = login(emulator, targets, "t1", ALICE)
    assert token
    result = run_playbook(sync_play(api, hosts="t1"), inventory, check=True, diff=True)
    out = result.task("sync", "t1")
    assert out["changed"] is True and out["diff"]["before"] == ""
    assert not fleet_path(targets, "t1").exists()


def test_backup_and_file_mode(emulator, targets, inventory, run_playbook, api):
    login(emulator, targets, "t1", ALICE)
    original = json.dumps({"active": "", "workspaces": []})
    write_as(targets, "t1", FLEET_FILE, original, mode=0o644)
    result = run_playbook(sync_play(dict(api, backup=True), hosts="t1"), inventory)
    out = result.task("sync", "t1")
    backup = Path(out["backup_file"])
    assert backup.read_text(encoding="utf-8") == original
    assert oct(fleet_path(targets, "t1").stat().st_mode & 0o777) == "0o644"  # an existing file keeps its mode
    predicted = run_playbook(sync_play(dict(api, file_mode="0640"), hosts="t1"), inventory, check=True)
    assert predicted.task("sync", "t1")["changed"] is True
    assert oct(fleet_path(targets, "t1").stat().st_mode & 0o777) == "0o644"
    result = run_playbook(sync_play(dict(api, file_mode="0640"), hosts="t1"), inventory)
    assert result.task("sync", "t1")["changed"] is True
    assert oct(fleet_path(targets, "t1").stat().st_mode & 0o777) == "0o640"


# ---- tokens ------------------------------------------------------------------


@pytest.mark.parametrize("check", [False, True], ids=["run", "check-mode"])
def test_expired_token_is_refreshed_and_the_rotated_pair_saved(emulator, targets, inventory, run_playbook, api, check):
    old = login(emulator, targets, "t1", ALICE)
    emulator.admin("POST", "tokens/expire", {"access_token": old["access_token"]})  # the server says 401
    result = run_playbook(sync_play(api, hosts="t1"), inventory, check=check)
    assert result.rc == 0, result.describe()
    assert result.task("sync", "t1")["token_refreshed"] is True
    token_path = targets.home("t1") / TOKEN_FILE
    saved = json.loads(token_path.read_text(encoding="utf-8"))
    assert saved["access_token"] != old["access_token"] and saved["refresh_token"] != old["refresh_token"]
    assert saved["access_token"].startswith("cmdop_") and saved["refresh_token"].startswith("clitr_")
    assert isinstance(saved["expires_at"], str) and isinstance(saved["scope"], str)
    assert time.time() < calendar.timegm(time.strptime(saved["expires_at"], "%Y-%m-%dT%H:%M:%SZ")) <= time.time() + 3600
    assert oct(token_path.stat().st_mode & 0o777) == "0o600"
    assert token_path.stat().st_uid == pwd.getpwnam(targets.user("t1")).pw_uid
    assert fleet_path(targets, "t1").exists() is (not check)
    # the old refresh token is dead (rotation), the saved one works: a second run is fine
    again = run_playbook(sync_play(api, hosts="t1"), inventory)
    assert again.rc == 0, again.describe()
    assert again.task("sync", "t1")["token_refreshed"] is False


def test_token_past_expires_at_is_refreshed_before_the_call(emulator, targets, inventory, run_playbook, api):
    token = login(emulator, targets, "t1", ALICE)
    token["expires_at"] = "2020-01-01T00:00:00Z"  # RFC 3339 form, in the past
    write_as(targets, "t1", TOKEN_FILE, json.dumps(token))
    emulator.admin("DELETE", "requests")
    result = run_playbook(sync_play(api, hosts="t1"), inventory)
    assert result.task("sync", "t1")["token_refreshed"] is True
    paths = [item["path"] for item in emulator.admin("GET", "requests")]
    assert paths == ["/api/system/oauth/token/", "/api/workspaces/workspaces/"]


def test_expired_token_without_refresh_token_is_unauthorized(emulator, targets, inventory, run_playbook, api):
    old = login(emulator, targets, "t1", ALICE, refresh=False)
    emulator.admin("POST", "tokens/expire", {"access_token": old["access_token"]})
    original = write_as(targets, "t1", FLEET_FILE, json.dumps({"active": "x", "workspaces": []})).read_bytes()
    result = run_playbook(sync_play(api, hosts="t1"), inventory)
    out = result.task("sync", "t1")
    assert result.status("sync", "t1") == "failed"
    assert out["msg"].startswith("sync: unauthorized:") and "cmdop login" in out["msg"]
    assert fleet_path(targets, "t1").read_bytes() == original


def test_refused_refresh_is_unauthorized_and_loses_nothing(emulator, targets, inventory, run_playbook, api):
    old = login(emulator, targets, "t1", ALICE)
    emulator.admin("POST", "tokens/expire", {"access_token": old["access_token"]})
    emulator.admin("POST", "tokens/revoke", {"refresh_token": old["refresh_token"]})
    original = write_as(targets, "t1", FLEET_FILE, json.dumps({"active": "", "workspaces": []})).read_bytes()
    result = run_playbook(sync_play(api, hosts="t1"), inventory)
    out = result.task("sync", "t1")
    assert out["msg"].startswith("sync: unauthorized:") and "invalid_grant" in out["msg"]
    assert fleet_path(targets, "t1").read_bytes() == original
    assert json.loads((targets.home("t1") / TOKEN_FILE).read_text(encoding="utf-8"))["refresh_token"] == old["refresh_token"]


def test_api_key_where_oauth_is_needed(emulator, targets, inventory, run_playbook, api):
    result = run_playbook(sync_play(dict(api, token=SEED_TEAM_A_KEY), hosts="t1"), inventory)
    out = result.task("sync", "t1")
    assert result.status("sync", "t1") == "failed"
    assert "403" in out["msg"] and "requires an OAuth token" in out["msg"] and "API key" in out["msg"]
    assert not fleet_path(targets, "t1").exists()


def test_no_credential_skips_or_fails_with_require_oauth(emulator, targets, inventory, run_playbook, api):
    write_as(targets, "t1", FLEET_FILE, json.dumps({"active": "home", "workspaces": [{"name": "home", "api_key": LOCAL_KEY}]}))
    skipped = run_playbook(sync_play(api, hosts="t1"), inventory)
    assert skipped.rc == 0
    assert skipped.status("sync", "t1") == "skipped"
    assert "fleet enumeration requires OAuth" in skipped.task("sync", "t1")["msg"]
    failed = run_playbook(sync_play(dict(api, require_oauth=True), hosts="t1"), inventory)
    assert failed.status("sync", "t1") == "failed"
    assert "fleet enumeration requires OAuth" in failed.task("sync", "t1")["msg"]
    assert api_requests(emulator) == []


# ---- bad input -----------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ('{"active": "home", "workspaces": [{"name": "home", "api_key": "%s"' % LOCAL_KEY, "is not valid JSON"),
    ('{"workspaces": [{"name": "home", "api_key": 12345678}]}', "workspaces[0].api_key must be of type string"),
    ('{"workspaces": {"name": "home"}}', "workspaces must be of type array"),
    ("", "is empty"),
], ids=["truncated", "api-key-not-string", "workspaces-not-list", "empty"])
def test_corrupt_fleet_file_fails_and_is_left_as_it_was(emulator, targets, inventory, run_playbook, api, text, expected):
    login(emulator, targets, "t1", ALICE)
    path = write_as(targets, "t1", FLEET_FILE, text)
    result = run_playbook(sync_play(api, hosts="t1"), inventory, verbosity=3)
    out = result.task("sync", "t1")
    assert result.status("sync", "t1") == "failed"
    assert expected in out["msg"], out["msg"]
    assert path.read_text(encoding="utf-8") == text
    assert LOCAL_KEY not in result.stdout + result.stderr


@pytest.mark.parametrize("fault, expected", [
    ({"status": 200, "body": "<html>not json</html>"}, "not JSON"),
    ({"status": 200, "body": json.dumps({"items": []})}, "must be of type array"),
    ({"status": 200, "body": json.dumps({"results": "none", "next": None})}, "(page 1) is not valid: it has no list of results"),
    ({"status": 200, "body": json.dumps([{"id": "../../etc/passwd", "name": "x"}])}, "[0].id is not a fleet id (a UUID)"),
    ({"status": 200, "body": json.dumps([{"id": TEAM_A, "name": "A"}, {"id": TEAM_A, "name": "B"}])}, "repeats the id"),
], ids=["not-json", "object", "results-not-a-list", "hostile-id", "duplicate-ids"])
def test_server_answer_of_the_wrong_shape(emulator, targets, inventory, run_playbook, api, fault, expected):
    login(emulator, targets, "t1", ALICE)
    emulator.admin("POST", "faults", dict(fault, path="/api/workspaces/workspaces/", count=1))
    result = run_playbook(sync_play(api, hosts="t1"), inventory)
    out = result.task("sync", "t1")
    assert result.status("sync", "t1") == "failed"
    assert out["msg"].startswith("sync: ") and expected in out["msg"], out["msg"]
    assert not fleet_path(targets, "t1").exists()


def test_429_is_retried_honouring_retry_after(emulator, targets, inventory, run_playbook, api):
    login(emulator, targets, "t1", ALICE)
    emulator.admin("POST", "faults", {"path": "/api/workspaces/workspaces/", "status": 429, "count": 1, "retry_after": 2})
    started = time.monotonic()
    result = run_playbook(sync_play(api, hosts="t1"), inventory)
    assert result.rc == 0, result.describe()
    assert time.monotonic() - started >= 2
    assert [item["status"] for item in api_requests(emulator, "/api/workspaces/")] == [429, 200]


def test_persistent_5xx_fails_after_bounded_retries(emulator, targets, inventory, run_playbook, api):
    login(emulator, targets, "t1", ALICE)
    emulator.admin("POST", "faults", {"path": "/api/workspaces/workspaces/", "status": 503, "count": 50})
    result = run_playbook(sync_play(dict(api, retries=2), hosts="t1"), inventory)
    out = result.task("sync", "t1")
    assert "answered 503" in out["msg"] and "retrying" in out["msg"]
    assert len(api_requests(emulator, "/api/workspaces/")) == 3  # the first try and 2 retries


def test_timeout(emulator, targets, inventory, run_playbook, api):
    login(emulator, targets, "t1", ALICE)
    emulator.admin("POST", "latency", {"seconds": 3})
    result = run_playbook(sync_play(dict(api, timeout=1, retries=0), hosts="t1"), inventory)
    assert "timed out after 1.0 seconds" in result.task("sync", "t1")["msg"]
    assert result.task("sync", "t1")["msg"].startswith("sync: http")


@pytest.mark.parametrize("retries", [0, 1])
def test_a_refused_connection_says_so(emulator, targets, inventory, run_playbook, retries):
    login(emulator, targets, "t1", ALICE)
    closed = "http://127.0.0.1:%d" % free_port()  # nothing listens there: the connection is refused at once
    result = run_playbook(sync_play({"api_url": closed, "retries": retries, "timeout": 30}, hosts="t1"), inventory)
    msg = result.task("sync", "t1")["msg"]
    assert result.status("sync", "t1") == "failed"
    assert msg.startswith("sync: %s/api/" % closed) and "connection refused" in msg, msg
    assert "timed out" not in msg, msg


@pytest.mark.case("File system", "a full disk (a 64 KiB tmpfs)", "the sync fails saying so; the file byte-for-byte unchanged; no temporary file left")
def test_a_full_disk_leaves_the_file_as_it_was(emulator, targets, inventory, run_playbook, api):
    login(emulator, targets, "t1", ALICE)
    mount = targets.home("t1") / ".cmdop" / "tiny-disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], check=True)
    try:
        entry_ = pwd.getpwnam(targets.user("t1"))
        os.chown(mount, entry_.pw_uid, entry_.pw_gid)
        path = mount / "ssh_workspaces.json"
        original = json.dumps({"active": "home", "workspaces": [{"name": "home", "api_key": LOCAL_KEY, "server": ""}]})
        path.write_text(original, encoding="utf-8")
        os.chown(path, entry_.pw_uid, entry_.pw_gid)
        filler = mount / "filler"
        with open(filler, "wb", buffering=0) as handle:
            with pytest.raises(OSError, match="No space left"):
                while True:
                    handle.write(b"\0" * 1024)
        result = run_playbook(sync_play(dict(api, path=str(path)), hosts="t1"), inventory)
        out = result.task("sync", "t1")
        assert result.status("sync", "t1") == "failed"
        assert "No space left on device" in out["msg"], out["msg"]
        assert path.read_text(encoding="utf-8") == original
        assert sorted(item.name for item in mount.iterdir()) == [".ssh_workspaces.json.lock", "filler", "ssh_workspaces.json"]
    finally:
        subprocess.run(["umount", str(mount)], check=True)
        mount.rmdir()


@pytest.mark.case("Concurrency", "another run holding the lock", "waited for; with a short lock_timeout the sync gives up saying so and loses nothing")
def test_a_concurrent_writer_holding_the_lock_is_waited_for(emulator, targets, inventory, run_playbook, api):
    """A second run waits for the lock (and with a short lock_timeout gives up, losing nothing)."""
    login(emulator, targets, "t1", ALICE)
    path = write_as(targets, "t1", FLEET_FILE, json.dumps({"active": "", "workspaces": []}))
    lock = path.parent / ".ssh_workspaces.json.lock"
    holder = subprocess.Popen(  # pylint: disable=consider-using-with
        ["runuser", "-u", targets.user("t1"), "--", "python3", "-c",
         "import fcntl,sys,time; f=open(sys.argv[1],'a'); fcntl.flock(f,fcntl.LOCK_EX); print('held',flush=True); sys.stdin.readline(); time.sleep(2)",
         str(lock)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # holds the lock until told, then 2 s more
    try:
        assert holder.stdout.readline().strip() == "held"
        gave_up = run_playbook(sync_play(dict(api, lock_timeout=0.5), hosts="t1"), inventory)
        assert "another run holds the lock" in gave_up.task("sync", "t1")["msg"]
        assert json.loads(path.read_text(encoding="utf-8")) == {"active": "", "workspaces": []}
        holder.stdin.write("go\n")
        holder.stdin.flush()
        waited = run_playbook(sync_play(dict(api, lock_timeout=30), hosts="t1"), inventory)
        assert waited.rc == 0, waited.describe()
        assert holder.poll() is not None  # it could only finish once the holder let go
        assert len(read_fleets(targets, "t1")["workspaces"]) == 3
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.case("Concurrency", "two syncs at once with different fleet lists",
                  "the lock serializes them: each sees the other's result, never two entries for one fleet")
def test_concurrent_runs_on_one_host_lose_no_update(emulator, targets, inventory, run_playbook, api):
    """Two syncs at once with different fleet lists: the lock serializes them, each sees the other's result."""
    path = write_as(targets, "t1", FLEET_FILE, json.dumps({"active": "", "workspaces": []}))
    fleets_a = [{"id": TEAM_A, "name": "Team A", "slug": "team-a"}]
    fleets_b = [{"id": TEAM_A, "name": "Team A renamed", "slug": "team-a"}, {"id": LAB, "name": "Lab", "slug": "lab"}]
    plays = [sync_play({"fleets": fleets_a, "path": str(path)}, hosts="t1"), sync_play({"fleets": fleets_b, "path": str(path)}, hosts="t1")]
    from concurrent.futures import ThreadPoolExecutor  # pylint: disable=import-outside-toplevel

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda play: run_playbook(play, inventory), plays))
    assert all(result.rc == 0 for result in results), [result.describe() for result in results]
    document = read_fleets(targets, "t1")
    names = sorted(item["name"] for item in document["workspaces"])
    assert names == ["lab", "team-a"]  # never two team-a entries, whatever the order
    json.loads(path.read_text(encoding="utf-8"))


# ---- secrets --------------------------------------------------------------------


def test_no_secret_reaches_the_output_even_at_vvvv(emulator, targets, inventory, run_playbook, api):
    old = login(emulator, targets, "t1", ALICE)
    emulator.admin("POST", "tokens/expire", {"access_token": old["access_token"]})
    write_as(targets, "t1", FLEET_FILE, json.dumps({"active": "home", "workspaces": [
        {"name": "home", "api_key": LOCAL_KEY, "server": ""},
        {"name": "team-a", "api_key": TEAM_A_KEY, "server": "", "remote_id": TEAM_A, "remote_name": "Old"}]}))
    given_token = emulator.admin("POST", "tokens", {"user": BOB, "expires_in": 3600})["access_token"]
    # t1 refreshes its token from the file; t2 gets a token given directly
    play = [{"hosts": "all", "gather_facts": False, "tasks": [{"name": "sync", "cmdop.fleet.sync": dict(
        api, token="{{ given_token if inventory_hostname == 't2' else omit }}")}]}]
    result = run_playbook(play, inventory, diff=True, verbosity=4, extra_vars={"given_token": given_token})
    assert result.rc == 0, result.describe()
    assert result.task("sync", "t1")["token_refreshed"] is True
    new = json.loads((targets.home("t1") / TOKEN_FILE).read_text(encoding="utf-8"))
    output = result.stdout + result.stderr + json.dumps(result.data)
    for secret in (old["access_token"], old["refresh_token"], new["access_token"], new["refresh_token"], given_token, LOCAL_KEY, TEAM_A_KEY):
        assert secret not in output
    assert "remote_name" in result.stdout  # the diff was shown


def test_a_hostile_server_cannot_echo_a_secret_into_the_message(emulator, targets, inventory, run_playbook, api):
    token = login(emulator, targets, "t1", ALICE, refresh=False)
    body = json.dumps({"detail": "bad token %s \x1b[31m" % token["access_token"]})
    emulator.admin("POST", "faults", {"path": "/api/workspaces/workspaces/", "status": 400, "body": body, "count": 1})
    result = run_playbook(sync_play(api, hosts="t1"), inventory, verbosity=4)
    out = result.task("sync", "t1")
    assert "answered 400" in out["msg"]
    # the module's own scrub masked it ("<secret>"), not only Ansible's no_log ("********") after it
    assert "bad token <secret>" in out["msg"], out["msg"]
    assert token["access_token"] not in result.stdout + result.stderr + json.dumps(result.data)


def test_a_server_echoing_an_api_key_of_the_fleet_file_never_shows_it(emulator, targets, inventory, run_playbook, api):
    """The fleet file's keys are masked before the first HTTP call (found by the reliability suite)."""
    login(emulator, targets, "t1", ALICE)
    write_as(targets, "t1", FLEET_FILE, json.dumps({"active": "", "workspaces": [{"name": "home", "api_key": LOCAL_KEY, "server": ""}]}))
    emulator.admin("POST", "faults", {"path": "/api/workspaces/workspaces/", "status": 400, "body": json.dumps({"detail": "key %s" % LOCAL_KEY})})
    result = run_playbook(sync_play(api, hosts="t1"), inventory, verbosity=4)
    assert result.rc != 0 and "answered 400" in result.task("sync", "t1")["msg"], result.describe()
    assert LOCAL_KEY not in result.stdout + result.stderr + json.dumps(result.data)


# ---- one API call for many hosts, redirects, action group, role ----------------


def test_fleet_info_once_then_sync_many_hosts_without_http(emulator, targets, inventory, run_playbook, api):
    token = emulator.admin("POST", "tokens", {"user": ALICE, "expires_in": 3600})["access_token"]
    play = [{"hosts": "all", "gather_facts": False, "tasks": [
        {"name": "list", "cmdop.fleet.fleet_info": dict(api, token=token, machines=True),
         "delegate_to": "localhost", "run_once": True, "register": "account", "vars": {"ansible_python_interpreter": "{{ ansible_playbook_python }}"}},
        {"name": "sync", "cmdop.fleet.cmdop_fleet_sync": {"fleets": "{{ account.fleets }}"}},
    ]}]
    emulator.admin("DELETE", "requests")
    result = run_playbook(play, inventory)
    assert result.rc == 0, result.describe()
    listing = result.task("list", "t1")
    assert sorted(fleet["slug"] for fleet in listing["fleets"]) == ["lab", "staging", "team-a"]
    assert {machine["workspace"] for machine in listing["machines"]} <= {TEAM_A, LAB, STAGING}
    assert [item["path"] for item in api_requests(emulator, "/api/workspaces/")] == ["/api/workspaces/workspaces/"]
    for host in ("t1", "t2"):
        assert sorted(item["name"] for item in read_fleets(targets, host)["workspaces"]) == ["lab", "staging", "team-a"]


def test_module_defaults_through_the_action_group(emulator, targets, inventory, run_playbook):
    login(emulator, targets, "t1", ALICE)
    play = [{"hosts": "t1", "gather_facts": False, "module_defaults": {"group/cmdop.fleet.fleet": {"api_url": emulator.url, "retries": 0}},
             "tasks": [{"name": "sync", "cmdop.fleet.sync": {}}]}]
    result = run_playbook(play, inventory)
    assert result.rc == 0, result.describe()
    assert len(result.task("sync", "t1")["added"]) == 3


def test_fleet_sync_role_with_one_listing_for_all_hosts(emulator, targets, inventory, run_playbook, api, kept_modules):
    """fleet_sync_fetch_once: one API call on the controller, and no credential travels to the targets."""
    token = emulator.admin("POST", "tokens", {"user": BOB, "expires_in": 3600})["access_token"]
    play = [{"hosts": "all", "gather_facts": False, "roles": [{"role": "cmdop.fleet.fleet_sync"}],
             "vars": {"fleet_sync_api_url": emulator.url, "fleet_sync_token": token, "fleet_sync_fetch_once": True,
                      "fleet_sync_token_file": "/nonexistent/controller/token_prod.json"}}]
    emulator.admin("DELETE", "requests")
    result = run_playbook(play, inventory, env=dict(kept_modules.env, ANSIBLE_PYTHON_INTERPRETER="auto_silent"), verbosity=3)
    assert result.rc == 0, result.describe()
    assert len(api_requests(emulator, "/api/workspaces/")) == 1
    assert api_requests(emulator, "/api/machines/") == []
    for host in ("t1", "t2"):
        assert [item["name"] for item in read_fleets(targets, host)["workspaces"]] == ["bob-personal"]
        # What reached the target: the fleet list and no credential at all.
        sent = kept_modules.module_args(host, "sync")
        assert len(sent) == 1, sent
        assert sent[0]["fleets"] and not {"token", "token_file", "api_key"} & set(sent[0]), sent[0]
        for path in kept_modules.files(host, "sync"):
            assert token not in path.read_text(encoding="utf-8")
        invocation = result.task("Sync the fleets into the host's fleet file", host)["invocation"]["module_args"]
        assert invocation.get("token") is None and invocation.get("token_file") is None, invocation
    assert token not in result.stdout + result.stderr


def test_fleet_sync_role_leaves_last_synced_to_the_module_unless_set(emulator, targets, inventory, run_playbook, kept_modules):
    """The role passes last_synced only when fleet_sync_last_synced is set, so that the module's own default applies."""
    login(emulator, targets, "t1", ALICE)
    play = {"hosts": "t1", "gather_facts": False, "roles": [{"role": "cmdop.fleet.fleet_sync"}]}
    for role_vars in ({}, {"fleet_sync_last_synced": "always"}):
        result = run_playbook([dict(play, vars=dict(role_vars, fleet_sync_api_url=emulator.url))], inventory, env=kept_modules.env)
        assert result.rc == 0, result.describe()
    unset, always = kept_modules.module_args("t1", "sync")
    assert "last_synced" not in unset, unset
    assert always["last_synced"] == "always", always


def test_a_host_moved_to_the_newer_client_is_skipped_or_refused(emulator, targets, inventory, run_playbook):
    """README, troubleshooting: the newer client keeps its token in the keyring and moves ~/.cmdop aside."""
    write_as(targets, "t1", ".cmdop.legacy-moved/ssh_workspaces.json", json.dumps({"active": "", "workspaces": []}))
    play = {"hosts": "t1", "gather_facts": False, "roles": [{"role": "cmdop.fleet.fleet_sync"}], "vars": {"fleet_sync_api_url": emulator.url}}
    skipped = run_playbook([play], inventory)
    assert skipped.rc == 0, skipped.describe()
    assert skipped.status("Sync the fleets into the host's fleet file", "t1") == "skipped"
    assert "no OAuth credential on this host" in skipped.task("Sync the fleets into the host's fleet file", "t1")["msg"]
    assert not (targets.home("t1") / ".cmdop").exists()
    relay = run_playbook([dict(play, environment={"CMDOP_TOKEN": "cmdop_relay_token_of_the_new_sdk_0123456789"})], inventory)
    assert relay.status("Sync the fleets into the host's fleet file", "t1") == "failed"
    assert "sync: unauthorized" in relay.task("Sync the fleets into the host's fleet file", "t1")["msg"]
    assert "cmdop_relay_token_of_the_new_sdk_0123456789" not in relay.stdout


def test_become_root_writes_another_users_file_owned_by_them(run_playbook, clean_targets):
    """As root (here: localhost), owner/group give the file, a created folder and the lock to the user."""
    home = clean_targets.home("t2")
    path = home / ".cmdop-owned" / "ssh_workspaces.json"
    play = [{"hosts": "localhost", "connection": "local", "gather_facts": False, "tasks": [{"name": "sync", "cmdop.fleet.sync": {
        "path": str(path), "owner": clean_targets.user("t2"), "group": clean_targets.user("t2"),
        "fleets": [{"id": TEAM_A, "name": "Team A", "slug": "team-a"}]}}]}]
    try:
        result = run_playbook(play, None)
        assert result.rc == 0, result.describe()
        user = pwd.getpwnam(clean_targets.user("t2"))
        for item, mode in ((path.parent, 0o700), (path, 0o600), (path.parent / ".ssh_workspaces.json.lock", 0o600)):
            stat = item.stat()
            assert (stat.st_uid, stat.st_gid, stat.st_mode & 0o777) == (user.pw_uid, user.pw_gid, mode), item
        again = run_playbook(play, None)
        assert again.task("sync", "localhost")["changed"] is False
    finally:
        subprocess.run(["rm", "-rf", str(path.parent)], check=True)


def test_fleet_info_says_an_api_key_cannot_list_fleets(emulator, targets, inventory, run_playbook, api):
    play = [{"hosts": "t1", "gather_facts": False, "tasks": [{"name": "info", "cmdop.fleet.fleet_info": dict(api, token=SEED_TEAM_A_KEY)}]}]
    result = run_playbook(play, inventory, verbosity=3)
    out = result.task("info", "t1")
    assert result.status("info", "t1") == "failed"
    assert out["msg"].startswith("fleet_info: ") and "requires an OAuth token" in out["msg"]
    assert SEED_TEAM_A_KEY not in result.stdout + result.stderr


def test_a_file_without_workspaces_and_nothing_to_add_is_left_alone(targets, inventory, run_playbook):
    original = json.dumps({"active": "home", "theme": "dark"})
    path = write_as(targets, "t1", FLEET_FILE, original)
    result = run_playbook(sync_play({"fleets": []}, hosts="t1"), inventory, diff=True)
    assert result.rc == 0, result.describe()
    out = result.task("sync", "t1")
    assert out["changed"] is False and out["fleets"] == []
    assert path.read_text(encoding="utf-8") == original
