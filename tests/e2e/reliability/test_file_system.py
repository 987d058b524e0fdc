"""File-system faults on a real target, as root sets them up, through ``cmdop.fleet.sync`` (ansible-playbook over SSH):
nothing half-written, no temporary file left behind, a clear ``msg``; a backup keeps the original's mode.
(The full disk, a small tmpfs, is tests/e2e/test_sync.py::test_a_full_disk_leaves_the_file_as_it_was.)"""

from __future__ import annotations

import json
import os
import pwd
import stat
import typing as t
from pathlib import Path

import pytest

from cmdop_helpers import ALICE, FLEET_FILE, LOCAL_KEY, TEAM_A, fleet_path, login, read_fleets, sync_play, write_as

AREA = "File system"
ORIGINAL = json.dumps({"active": "home", "workspaces": [{"name": "home", "api_key": LOCAL_KEY, "server": ""}]})
CLEAN = "the sync fails saying why; the file byte-for-byte unchanged; no temporary file left"


def leftovers(folder: Path) -> t.List[str]:
    return sorted(item.name for item in folder.iterdir() if item.name.endswith(".tmp")) if folder.is_dir() else []


def failed_with(result: t.Any, said: str) -> str:
    msg = result.task("sync", "t1")["msg"]
    assert result.status("sync", "t1") == "failed", result.describe()
    assert said in msg and "Traceback" not in result.stdout + result.stderr, msg
    return msg


@pytest.mark.case(AREA, "a read-only ~/.cmdop folder", CLEAN)
def test_a_read_only_folder(emulator, targets, inventory, run_playbook, api):
    login(emulator, targets, "t1", ALICE)
    path = write_as(targets, "t1", FLEET_FILE, ORIGINAL)
    os.chmod(path.parent, 0o500)
    try:
        failed_with(run_playbook(sync_play(api, hosts="t1"), inventory), "Permission denied")
        assert path.read_text(encoding="utf-8") == ORIGINAL and leftovers(path.parent) == []
    finally:
        os.chmod(path.parent, 0o700)


@pytest.mark.case(AREA, "the fleet file's path is a folder", CLEAN)
def test_the_path_is_a_folder(emulator, targets, inventory, run_playbook, api):
    login(emulator, targets, "t1", ALICE)
    path = write_as(targets, "t1", FLEET_FILE, ORIGINAL)
    path.unlink()
    path.mkdir()
    failed_with(run_playbook(sync_play(api, hosts="t1"), inventory), "Is a directory")
    assert path.is_dir() and list(path.iterdir()) == [] and leftovers(path.parent) == []


@pytest.mark.case(AREA, "a dangling symlink into an existing folder", "the file is created where the link points; the link stays")
def test_a_dangling_symlink_into_a_folder_that_exists(emulator, targets, inventory, run_playbook, api):
    login(emulator, targets, "t1", ALICE)
    path = fleet_path(targets, "t1")
    real = write_as(targets, "t1", "dotfiles/cmdop.json", "")
    real.unlink()
    path.symlink_to(real)
    result = run_playbook(sync_play(api, hosts="t1"), inventory)
    assert result.rc == 0, result.describe()
    assert path.is_symlink() and os.readlink(path) == str(real)
    assert len(json.loads(real.read_text(encoding="utf-8"))["workspaces"]) == 3


@pytest.mark.case(AREA, "a dangling symlink into a folder that does not exist", "refused; no folder is made where the link points")
def test_a_dangling_symlink_into_a_missing_folder(emulator, targets, inventory, run_playbook, api):
    login(emulator, targets, "t1", ALICE)
    path = fleet_path(targets, "t1")
    missing = targets.home("t1") / "gone" / "deeper" / "cmdop.json"
    path.symlink_to(missing)
    failed_with(run_playbook(sync_play(api, hosts="t1"), inventory), "is a symlink to %s, whose folder does not exist" % missing)
    assert not (targets.home("t1") / "gone").exists() and path.is_symlink()


@pytest.mark.case(AREA, "the lock file is a symlink to a file root owns; the sync runs as root",
                  "refused (a lock file is never followed); root's file unchanged, in content, owner and mode")
def test_the_lock_file_is_a_symlink_to_a_file_root_owns(targets, run_playbook, tmp_path):
    path = write_as(targets, "t1", FLEET_FILE, ORIGINAL)
    precious = tmp_path / "root-owned.conf"
    precious.write_text("root's\n", encoding="utf-8")
    os.chmod(precious, 0o644)
    (path.parent / ".ssh_workspaces.json.lock").symlink_to(precious)
    before = precious.stat()
    play = [{"hosts": "localhost", "connection": "local", "gather_facts": False, "tasks": [{"name": "sync", "cmdop.fleet.sync": {
        "path": str(path), "fleets": [{"id": TEAM_A, "name": "Team A", "slug": "team-a"}]}}]}]
    result = run_playbook(play, None)
    msg = result.task("sync", "localhost")["msg"]
    assert result.rc != 0 and "cannot open lock file" in msg and "Traceback" not in result.stdout + result.stderr, result.describe()
    after = precious.stat()
    assert precious.read_text(encoding="utf-8") == "root's\n"
    assert (after.st_uid, after.st_gid, stat.S_IMODE(after.st_mode)) == (before.st_uid, before.st_gid, 0o644)
    assert path.read_text(encoding="utf-8") == ORIGINAL and leftovers(path.parent) == []


@pytest.mark.case(AREA, "the fleet file belongs to another user (0600)", CLEAN)
def test_another_users_file(emulator, targets, inventory, run_playbook, api):
    login(emulator, targets, "t1", ALICE)
    path = write_as(targets, "t1", FLEET_FILE, ORIGINAL)
    other = pwd.getpwnam(targets.user("t2"))
    os.chown(path, other.pw_uid, other.pw_gid)
    failed_with(run_playbook(sync_play(api, hosts="t1"), inventory), "Permission denied")
    assert path.read_text(encoding="utf-8") == ORIGINAL and path.stat().st_uid == other.pw_uid and leftovers(path.parent) == []


@pytest.mark.case(AREA, "no ~/.cmdop folder at all (the token given as an option)", "the folder is made 0700, the file 0600, both the user's")
def test_a_missing_cmdop_folder(emulator, targets, inventory, run_playbook, api):
    token = emulator.admin("POST", "tokens", {"user": ALICE, "expires_in": 3600})
    folder = targets.home("t1") / ".cmdop"
    assert not folder.exists()
    result = run_playbook(sync_play(dict(api, token=token["access_token"]), hosts="t1"), inventory)
    assert result.rc == 0, result.describe()
    user = pwd.getpwnam(targets.user("t1"))
    for item, mode in ((folder, 0o700), (folder / "ssh_workspaces.json", 0o600)):
        assert (stat.S_IMODE(item.stat().st_mode), item.stat().st_uid) == (mode, user.pw_uid), item
    assert len(read_fleets(targets, "t1")["workspaces"]) == 3


@pytest.mark.parametrize("original, mode", [
    pytest.param(ORIGINAL, 0o600, marks=pytest.mark.case(
        AREA, "a backup of a 0640 file that holds an API key",
        "the backup keeps the original's bytes, and is 0600: never more readable than that with a key")),
    pytest.param(ORIGINAL.replace(LOCAL_KEY, ""), 0o640, marks=pytest.mark.case(
        AREA, "a backup of a 0640 file without API keys", "the backup keeps the original's bytes and mode 0640")),
], ids=["with-key", "without-key"])
def test_a_backup_keeps_the_originals_mode(emulator, targets, inventory, run_playbook, api, original, mode):
    login(emulator, targets, "t1", ALICE)
    path = write_as(targets, "t1", FLEET_FILE, original, mode=0o640)
    result = run_playbook(sync_play(dict(api, backup=True), hosts="t1"), inventory)
    assert result.rc == 0, result.describe()
    backup = Path(result.task("sync", "t1")["backup_file"])
    assert backup.read_text(encoding="utf-8") == original and stat.S_IMODE(backup.stat().st_mode) == mode
    assert leftovers(path.parent) == []
