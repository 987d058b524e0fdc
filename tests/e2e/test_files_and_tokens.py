"""Files and tokens on real hosts, as ansible-core's own file modules treat them: symlinks, modes, locks,
check mode, unsafe_writes, and one token refresh across processes. Through ansible-playbook over SSH
(and ansible-inventory on the controller), against the CMDOP emulator."""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import threading
import time
import typing as t
from pathlib import Path

import pytest

from cmdop_helpers import ALICE, FLEET_FILE, TEAM_A, TOKEN_FILE, api_requests, fleet_path, login, read_fleets, sync_play, write_as
from inotify import FileWatch
from harness import TARGET_PYTHON

RFC3339_UTC = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$"


def refresh_grants(emulator: t.Any) -> list:
    return [item for item in api_requests(emulator, "/api/system/oauth/token/") if item["method"] == "POST"]


def owned_by(targets: t.Any, host: str, path: Path) -> None:
    user = pwd.getpwnam(targets.user(host))
    os.chown(path, user.pw_uid, user.pw_gid)


def mode_of(path: Path) -> int:
    return path.stat().st_mode & 0o777


# ---- 1. a symlinked fleet file ------------------------------------------------------


def test_a_symlinked_fleet_file_is_edited_where_it_points_and_stays_a_link(emulator, targets, inventory, run_playbook, api):
    login(emulator, targets, "t1", ALICE)
    dotfiles = targets.home("t1") / "dotfiles"
    shutil.rmtree(dotfiles, ignore_errors=True)
    try:
        real = write_as(targets, "t1", "dotfiles/cmdop/ssh_workspaces.json", json.dumps({"active": "", "workspaces": []}), mode=0o600)
        link = fleet_path(targets, "t1")
        link.symlink_to(real)
        user = pwd.getpwnam(targets.user("t1"))
        os.lchown(link, user.pw_uid, user.pw_gid)

        result = run_playbook(sync_play(dict(api, backup=True), hosts="t1"), inventory)
        assert result.rc == 0, result.describe()
        assert link.is_symlink() and os.readlink(link) == str(real)
        assert sorted(item["name"] for item in json.loads(real.read_text(encoding="utf-8"))["workspaces"]) == ["lab", "staging", "team-a"]
        assert mode_of(real) == 0o600
        backup = Path(result.task("sync", "t1")["backup_file"])
        assert backup.parent == real.parent  # the backup, lock and temporary file are beside the real file
        assert sorted(item.name for item in real.parent.iterdir() if item != backup) == [".ssh_workspaces.json.lock", "ssh_workspaces.json"]
        again = run_playbook(sync_play(api, hosts="t1"), inventory)
        assert again.task("sync", "t1")["changed"] is False and link.is_symlink()
    finally:
        shutil.rmtree(dotfiles, ignore_errors=True)


# ---- 2 and the contract: a refreshed token file -----------------------------------------


def test_a_refreshed_token_file_is_0600_keeps_its_fields_and_says_expires_at_in_rfc3339(emulator, targets, inventory, run_playbook, api):
    token = emulator.admin("POST", "tokens", {"user": ALICE, "expires_in": 3600})
    emulator.admin("POST", "tokens/expire", {"access_token": token["access_token"]})
    # as CMDOP's Go client writes it: RFC 3339 with nanoseconds, and fields this collection does not know
    on_disk = dict(token, expires_at="2020-01-01T00:00:00.123456789Z", client_hostname="ci-7", extra={"kept": [1, 2]})
    path = write_as(targets, "t1", TOKEN_FILE, json.dumps(on_disk, indent=2), mode=0o644)

    result = run_playbook(sync_play(api, hosts="t1"), inventory)
    assert result.rc == 0, result.describe()
    assert result.task("sync", "t1")["token_refreshed"] is True
    saved = json.loads(path.read_text(encoding="utf-8"))
    assert mode_of(path) == 0o600
    assert path.stat().st_uid == pwd.getpwnam(targets.user("t1")).pw_uid
    assert saved["client_hostname"] == "ci-7" and saved["extra"] == {"kept": [1, 2]}
    assert saved["access_token"] != token["access_token"] and saved["refresh_token"] != token["refresh_token"]
    assert isinstance(saved["expires_at"], str)
    assert re.match(RFC3339_UTC, saved["expires_at"]), saved["expires_at"]
    assert [key for key in saved if key in on_disk] == list(on_disk)  # every field kept, in its place


# ---- 3. check mode creates nothing --------------------------------------------------------


def test_check_mode_creates_no_lock_file(emulator, targets, inventory, run_playbook, api):
    login(emulator, targets, "t1", ALICE)
    write_as(targets, "t1", FLEET_FILE, json.dumps({"active": "", "workspaces": []}))
    before = sorted(item.name for item in fleet_path(targets, "t1").parent.iterdir())
    result = run_playbook(sync_play(api, hosts="t1"), inventory, check=True, diff=True)
    assert result.task("sync", "t1")["changed"] is True, result.describe()
    assert sorted(item.name for item in fleet_path(targets, "t1").parent.iterdir()) == before


# ---- 4. one refresh across processes ----------------------------------------------------------


def test_two_runs_that_find_the_same_expired_token_refresh_it_once(emulator, targets, ansible_runner, api):
    """cron and a playbook, or two forks on one host: the second waits for the first's refresh and uses its token.

    The token endpoint answers slowly, so both runs have read the expired token before either is refreshed.
    Refresh tokens rotate (the emulator refuses a used one): without the lock the second run fails with invalid_grant.
    """
    login(emulator, targets, "t1", ALICE, expires_in=1)
    time.sleep(1.5)
    emulator.admin("POST", "faults", {"path": "/api/system/oauth/token/", "delay": 8.0, "count": 1})
    emulator.admin("DELETE", "requests")
    lock = write_as(targets, "t1", ".cmdop/.token_prod.json.lock", "")
    inventories = [targets.inventory(ansible_runner.workdir / ("inventory-%d.yml" % index), hosts=["t1"]) for index in range(2)]
    results: dict = {}

    def run(index: int) -> None:
        results[index] = ansible_runner.run_playbook(sync_play(api, hosts="t1", name="sync"), inventories[index])

    with FileWatch(lock) as watch:
        threads = [threading.Thread(target=run, args=(index,)) for index in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
    for index in range(2):
        assert results[index].rc == 0, results[index].describe()
    assert len(refresh_grants(emulator)) == 1
    # both runs found the token expired and went through the lock (a run that started late would not have)
    assert watch.opens == 2, watch.events
    assert sorted(results[index].task("sync", "t1")["token_refreshed"] for index in range(2)) == [False, True]


def test_the_inventory_and_a_play_on_the_controller_share_one_refresh(emulator, tmp_path, ansible_runner):
    """ansible-inventory and fleet_info on the controller, one token file, at once: one refresh, both succeed."""
    token = emulator.admin("POST", "tokens", {"user": ALICE, "expires_in": 1})
    token["expires_at"] = time.time() - 10
    token_file = tmp_path / "token_prod.json"
    token_file.write_text(json.dumps(token), encoding="utf-8")
    lock = tmp_path / ".token_prod.json.lock"
    lock.write_text("", encoding="utf-8")
    source = tmp_path / "fleets.cmdop.yml"
    source.write_text("plugin: cmdop.fleet.cmdop\nfleets_from: api\napi_url: %s\ntoken_file: %s\n" % (emulator.url, token_file), encoding="utf-8")
    play = [{"hosts": "localhost", "connection": "local", "gather_facts": False, "tasks": [
        {"name": "info", "cmdop.fleet.fleet_info": {"api_url": emulator.url, "token_file": str(token_file)}}]}]
    emulator.admin("POST", "faults", {"path": "/api/system/oauth/token/", "delay": 8.0, "count": 1})
    emulator.admin("DELETE", "requests")
    results: dict = {}
    watch = FileWatch(lock).__enter__()
    threads = [
        threading.Thread(target=lambda: results.update(inventory=ansible_runner.run_inventory(["-i", source, "--list"], env={
            "ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED": "true"}))),
        threading.Thread(target=lambda: results.update(play=ansible_runner.run_playbook(play, None))),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    watch.__exit__(None, None, None)
    assert results["inventory"].rc == 0, results["inventory"].describe()
    assert results["play"].rc == 0, results["play"].describe()
    assert len(refresh_grants(emulator)) == 1
    assert watch.opens == 2, watch.events
    assert mode_of(token_file) == 0o600


# ---- 5. a token without a known expiry --------------------------------------------------------


def test_a_token_answer_without_expires_in_is_used_until_the_server_refuses_it(emulator, targets, inventory, run_playbook, api):
    emulator.admin("POST", "settings", {"token_expires_in_omitted": True})
    token = login(emulator, targets, "t1", ALICE)
    path = targets.home("t1") / TOKEN_FILE
    write_as(targets, "t1", TOKEN_FILE, json.dumps(dict(token, expires_at=time.time() - 60)))
    first = run_playbook(sync_play(api, hosts="t1"), inventory)
    assert first.task("sync", "t1")["token_refreshed"] is True, first.describe()
    saved = json.loads(path.read_text(encoding="utf-8"))
    assert "expires_at" not in saved and "expires_in" not in saved
    emulator.admin("DELETE", "requests")
    for _run in range(2):
        again = run_playbook(sync_play(api, hosts="t1"), inventory)
        assert again.rc == 0 and again.task("sync", "t1")["token_refreshed"] is False, again.describe()
    assert refresh_grants(emulator) == []
    # the server refuses it at last: then it is refreshed, once
    emulator.admin("POST", "tokens/expire", {"access_token": saved["access_token"]})
    refused = run_playbook(sync_play(api, hosts="t1"), inventory)
    assert refused.task("sync", "t1")["token_refreshed"] is True and len(refresh_grants(emulator)) == 1


# ---- 6. the lock file -------------------------------------------------------------------------------


def test_an_existing_lock_file_is_opened_for_writing(emulator, targets, inventory, run_playbook, api):
    """flock over NFS (CI runners' home folders) needs a descriptor open for writing: seen from outside with inotify."""
    login(emulator, targets, "t1", ALICE)
    write_as(targets, "t1", FLEET_FILE, json.dumps({"active": "", "workspaces": []}))
    lock = write_as(targets, "t1", ".cmdop/.ssh_workspaces.json.lock", "")
    with FileWatch(lock) as watch:
        result = run_playbook(sync_play(api, hosts="t1"), inventory)
    assert result.rc == 0, result.describe()
    assert watch.opened_for_writing and not watch.opened_read_only, watch.events


def test_root_creates_the_lock_file_with_the_fleet_files_owner(run_playbook, clean_targets):
    """A file of cmdop-t2's in a folder of root's: the lock root creates is cmdop-t2's, 0600, so cmdop-t2's own runs can take it."""
    folder = Path(tempfile.mkdtemp(prefix="cmdop-shared-", dir="/tmp"))
    try:
        os.chmod(folder, 0o755)
        path = folder / "ssh_workspaces.json"
        path.write_text(json.dumps({"active": "", "workspaces": []}), encoding="utf-8")
        owned_by(clean_targets, "t2", path)
        play = [{"hosts": "localhost", "connection": "local", "gather_facts": False, "tasks": [{"name": "sync", "cmdop.fleet.sync": {
            "path": str(path), "fleets": [{"id": TEAM_A, "name": "Team A", "slug": "team-a"}]}}]}]
        result = run_playbook(play, None)
        assert result.rc == 0, result.describe()
        user = pwd.getpwnam(clean_targets.user("t2"))
        lock = folder / ".ssh_workspaces.json.lock"
        assert (lock.stat().st_uid, lock.stat().st_gid, mode_of(lock)) == (user.pw_uid, user.pw_gid, 0o600)
        as_user = subprocess.run(["runuser", "-u", user.pw_name, "--", TARGET_PYTHON, "-c",
                                  "import fcntl, os; fd = os.open(%r, os.O_RDWR); fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)" % str(lock)],
                                 capture_output=True, text=True, check=False)
        assert as_user.returncode == 0, as_user.stderr
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# ---- 7. unsafe_writes -------------------------------------------------------------------------------


def test_unsafe_writes_writes_a_bind_mounted_file_in_place(emulator, targets, inventory, run_playbook, api, tmp_path):
    """A file bind-mounted over the fleet file (as into a container) cannot be renamed over: EBUSY."""
    login(emulator, targets, "t1", ALICE)
    original = json.dumps({"active": "", "workspaces": []})
    target = write_as(targets, "t1", FLEET_FILE, original)
    outside = tmp_path / "outside.json"
    outside.write_text(original, encoding="utf-8")
    owned_by(targets, "t1", outside)
    os.chmod(outside, 0o600)
    subprocess.run(["mount", "--bind", str(outside), str(target)], check=True)
    try:
        refused = run_playbook(sync_play(api, hosts="t1"), inventory)
        assert refused.rc != 0
        # ansible-core 2.19's atomic_move raises (our message); older ones fail the module themselves
        assert re.search("cannot replace|Unable to make", refused.task("sync", "t1")["msg"]), refused.describe()
        assert outside.read_text(encoding="utf-8") == original
        written = run_playbook(sync_play(dict(api, unsafe_writes=True), hosts="t1"), inventory)
        assert written.rc == 0, written.describe()
        assert sorted(item["name"] for item in json.loads(outside.read_text(encoding="utf-8"))["workspaces"]) == ["lab", "staging", "team-a"]
        assert sorted(item.name for item in target.parent.iterdir()) == [".ssh_workspaces.json.lock", "ssh_workspaces.json", "token_prod.json"]
    finally:
        subprocess.run(["umount", str(target)], check=True)


# ---- 8. a token_file that was asked for must exist ------------------------------------------------------------


def test_a_missing_token_file_given_explicitly_fails_and_the_default_one_skips(emulator, targets, inventory, run_playbook, api):
    mistyped = run_playbook(sync_play(dict(api, token_file="~/.cmdop/token_prdo.json"), hosts="t1"), inventory)
    out = mistyped.task("sync", "t1")
    assert mistyped.rc != 0 and out.get("skipped") is not True, mistyped.describe()
    assert "token_prdo.json does not exist" in out["msg"]
    default = run_playbook(sync_play(api, hosts="t1"), inventory)
    assert default.rc == 0 and default.status("sync", "t1") == "skipped", default.describe()
    assert not fleet_path(targets, "t1").exists()


def test_a_missing_token_file_given_explicitly_fails_the_inventory(emulator, tmp_path, run_inventory):
    source = tmp_path / "fleets.cmdop.yml"
    source.write_text("plugin: cmdop.fleet.cmdop\nfleets_from: api\napi_url: %s\ntoken_file: %s\n"
                      % (emulator.url, tmp_path / "token_prdo.json"), encoding="utf-8")
    result = run_inventory(["-i", source, "--list"], env={"ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED": "true", "HOME": str(tmp_path)})
    assert result.rc != 0
    assert "token_prdo.json does not exist" in result.stderr, result.describe()


# ---- last_synced_at: a stale stamp means a failed sync ----------------------------------------------------


def test_by_default_a_stamp_older_than_a_day_is_renewed_and_a_fresh_one_is_left(emulator, targets, inventory, run_playbook, api):
    login(emulator, targets, "t1", ALICE)
    assert run_playbook(sync_play(api, hosts="t1"), inventory).rc == 0
    fresh = fleet_path(targets, "t1").read_bytes()
    again = run_playbook(sync_play(api, hosts="t1"), inventory)
    assert again.task("sync", "t1")["changed"] is False and fleet_path(targets, "t1").read_bytes() == fresh
    document = read_fleets(targets, "t1")
    stale = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 86400 - 120))
    young = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 3600))
    document["workspaces"][0]["last_synced_at"] = stale
    document["workspaces"][1]["last_synced_at"] = young
    write_as(targets, "t1", FLEET_FILE, json.dumps(document, indent=2) + "\n")
    renewed = run_playbook(sync_play(api, hosts="t1"), inventory)
    assert renewed.task("sync", "t1")["changed"] is True, renewed.describe()
    after = read_fleets(targets, "t1")["workspaces"]
    assert after[0]["last_synced_at"] > stale and after[1]["last_synced_at"] == young
    kept = run_playbook(sync_play(dict(api, last_synced="changed"), hosts="t1"), inventory)
    assert kept.task("sync", "t1")["changed"] is False
    shorter = run_playbook(sync_play(dict(api, last_synced_max_age=60), hosts="t1"), inventory)
    assert shorter.task("sync", "t1")["changed"] is True
    assert read_fleets(targets, "t1")["workspaces"][1]["last_synced_at"] > young


@pytest.mark.parametrize("value", [-1])
def test_a_negative_max_age_is_refused(emulator, targets, inventory, run_playbook, api, value):
    login(emulator, targets, "t1", ALICE)
    result = run_playbook(sync_play(dict(api, last_synced_max_age=value), hosts="t1"), inventory)
    assert "last_synced_max_age must be 0 or more" in result.task("sync", "t1")["msg"]
