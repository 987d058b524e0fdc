"""A sync run as root on a user's files (``become``, or a play on the host as root), tried from the user's side as a
local user with a shell would: links out of their home, a race swapping links while root syncs, FIFOs and devices,
huge files, a full disk under ``unsafe_writes``, bad owner/group/mode, new folders, hard links. Real users (the
harness's cmdop-t1), real ansible-playbook runs on this host that become root (``become_method: su``), and for the
race many runs of the module as root in one process while the user's process swaps links."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import textwrap
import typing as t
from pathlib import Path

import pytest

from cmdop_helpers import ALICE, FLEET_FILE, LOCAL_KEY, TEAM_A, TOKEN_FILE, fleet_path, sync_play, write_as
from harness import TARGET_PYTHON, collection_layout
from inotify import IN_ATTRIB, IN_MOVED_TO, FileWatch

AREA = "Root runs"
FLEETS = [{"id": TEAM_A, "name": "Team A", "slug": "team-a"}]
ORIGINAL = json.dumps({"active": "home", "workspaces": [{"name": "home", "api_key": LOCAL_KEY, "server": ""}]})
ROOTS = '{"active": "", "workspaces": [{"name": "root-only", "api_key": "cmdop_live_roots_own_key_0123456789abcdef"}]}'
# A play on this host that becomes root (su, as root: no password), as `become: true` on a user's host runs the module.
BECOME_ROOT = {"hosts": "localhost", "connection": "local", "gather_facts": False, "become": True, "become_method": "su", "become_user": "root"}
REFUSED = "refused, naming the link and why; nothing outside the user's files created or changed (bytes, owner, mode)"


def user(targets: t.Any) -> pwd.struct_passwd:
    return pwd.getpwnam(targets.user("t1"))


def as_user(targets: t.Any, path: Path) -> Path:
    entry = user(targets)
    os.lchown(path, entry.pw_uid, entry.pw_gid)
    return path


def tree(folder: Path) -> dict:
    """Every entry under ``folder`` (the folder too): type, owner, group, mode, content or link target."""
    found = {}
    for item in [folder] + sorted(folder.rglob("*")):
        status = item.lstat()
        content = os.readlink(item) if item.is_symlink() else item.read_bytes() if item.is_file() else None
        found[str(item)] = (stat.S_IFMT(status.st_mode), status.st_uid, status.st_gid, stat.S_IMODE(status.st_mode), content)
    return found


@pytest.fixture
def roots(tmp_path: Path) -> t.Iterator[Path]:
    """A folder of root's (0755) holding root's files: a fleet file (0640) and a text file."""
    folder = tmp_path / "roots"
    folder.mkdir()
    os.chmod(folder, 0o755)
    (folder / "precious.json").write_text(ROOTS, encoding="utf-8")
    os.chmod(folder / "precious.json", 0o640)
    (folder / "notes.txt").write_text("root's notes\n", encoding="utf-8")
    yield folder


@pytest.fixture
def home(targets: t.Any) -> t.Iterator[Path]:
    """cmdop-t1's home, its ~/.cmdop wiped, and cleaned of what a test puts there."""
    folder = targets.home("t1")
    extra = [folder / name for name in ("dotfiles", "cmdop-evil", "cmdop-stop")]
    yield folder
    for item in extra + [folder / ".cmdop"]:
        if item.is_symlink() or item.is_file():
            item.unlink()
        else:
            shutil.rmtree(item, ignore_errors=True)


def root_sync(run_playbook: t.Callable[..., t.Any], path: Path, check: bool = False, **args: t.Any) -> t.Tuple[t.Any, dict]:
    """cmdop.fleet.sync on this host with ``become`` (root), on ``path``."""
    play = [dict(BECOME_ROOT, tasks=[{"name": "sync", "cmdop.fleet.sync": dict({"path": str(path), "fleets": FLEETS}, **args)}])]
    result = run_playbook(play, None, check=check, timeout=300)
    return result, result.task("sync", "localhost")


def failed(result: t.Any, out: dict, *said: str, host: str = "localhost") -> str:
    msg = out.get("msg", "")
    assert result.status("sync", host) == "failed" and out.get("changed") is False, result.describe()
    assert msg.startswith("sync: ") and "Traceback" not in result.stdout + result.stderr, msg
    for words in said:
        assert words in msg, msg
    return msg


# ---- links out of the user's files -----------------------------------------------------------------------------


def _link(targets: t.Any, link: Path, to: Path) -> Path:
    link.symlink_to(to)
    return as_user(targets, link)


@pytest.mark.parametrize("kind", [
    pytest.param("file", marks=pytest.mark.case(AREA, "the user links ~/.cmdop/ssh_workspaces.json to a root-owned fleet file; "
                                                      "root syncs with owner/group the user's", REFUSED)),
    pytest.param("text", marks=pytest.mark.case(AREA, "the user links the fleet file to a root-owned file that is not JSON", REFUSED + "; no lock file there")),
    pytest.param("dangling", marks=pytest.mark.case(AREA, "the user's dangling link into a root-owned folder", REFUSED + "; no file made there")),
    pytest.param("folder", marks=pytest.mark.case(AREA, "the user links ~/.cmdop itself to a root-owned folder", REFUSED + "; no file, lock or backup there")),
])
def test_root_never_follows_a_users_link_to_what_is_not_theirs(run_playbook, targets, home, roots, kind):
    write_as(targets, "t1", ".cmdop/.keep", "")
    cmdop = home / ".cmdop"
    if kind == "folder":
        shutil.rmtree(cmdop)
        link, points_to = _link(targets, cmdop, roots), roots
    else:
        points_to = roots / {"file": "precious.json", "text": "notes.txt", "dangling": "new.json"}[kind]
        link = _link(targets, cmdop / "ssh_workspaces.json", points_to)
    before = tree(roots)
    owner = targets.user("t1")
    for check in (True, False):
        result, out = root_sync(run_playbook, home / FLEET_FILE, check=check, owner=owner, group=owner, backup=True)
        failed(result, out, "%s is a symlink of %s's to %s" % (link, owner, points_to), "a link is followed only when its owner also owns")
    assert tree(roots) == before
    assert link.is_symlink()


@pytest.mark.case(AREA, "the user's own link to their own file (dotfiles), root syncs",
                  "followed, as blockinfile does: the file it points to is written, keeps its owner and mode; the link stays; "
                  "the result's owner and mode are the file's, not the link's")
def test_root_follows_a_users_link_to_their_own_file_and_reports_the_file(run_playbook, targets, home):
    real = write_as(targets, "t1", "dotfiles/cmdop.json", ORIGINAL, mode=0o640)
    write_as(targets, "t1", ".cmdop/.keep", "")
    link = _link(targets, fleet_path(targets, "t1"), real)
    result, out = root_sync(run_playbook, link)
    assert result.rc == 0 and out["changed"] is True, result.describe()
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert [item["name"] for item in json.loads(real.read_text(encoding="utf-8"))["workspaces"]] == ["home", "team-a"]
    status = real.stat()
    assert (status.st_uid, stat.S_IMODE(status.st_mode)) == (user(targets).pw_uid, 0o640)
    assert (out["owner"], out["mode"], out["state"], out["size"]) == (targets.user("t1"), "0640", "file", status.st_size), out


@pytest.mark.case(AREA, "the user links ~/.cmdop/token_prod.json to root's own token file (expired); root syncs with that token_file",
                  "refused before the token is read, refreshed or rewritten; root's token file unchanged; no fleet file written")
def test_root_never_follows_a_users_link_to_roots_token_file(run_playbook, targets, home, roots, emulator, api):
    token = emulator.admin("POST", "tokens", {"user": ALICE, "expires_in": 3600})
    token["expires_at"] = 1.0  # expired: a refresh would rewrite the file
    (roots / "token_prod.json").write_text(json.dumps(token), encoding="utf-8")
    os.chmod(roots / "token_prod.json", 0o600)
    write_as(targets, "t1", ".cmdop/.keep", "")
    link = _link(targets, home / TOKEN_FILE, roots / "token_prod.json")
    before = tree(roots)
    play = [dict(BECOME_ROOT, tasks=[{"name": "sync", "cmdop.fleet.sync": dict(api, path=str(home / FLEET_FILE), token_file=str(link))}])]
    result = run_playbook(play, None, timeout=300)
    failed(result, result.task("sync", "localhost"), "%s is a symlink of %s's to %s" % (link, targets.user("t1"), roots / "token_prod.json"))
    assert tree(roots) == before and not (home / FLEET_FILE).exists()
    assert [item for item in emulator.admin("GET", "requests") if item["path"].startswith("/api/")] == []


# ---- what root makes, and what a failed run leaves --------------------------------------------------------------


@pytest.mark.case(AREA, "root syncs into a home without ~/.cmdop, no owner or group given",
                  "the folder (0700) and the file (0600) are the home owner's, so their own cmdop can use them")
def test_root_makes_the_folder_and_file_the_home_owners(run_playbook, targets, home):
    result, out = root_sync(run_playbook, home / FLEET_FILE)
    assert result.rc == 0, result.describe()
    entry = user(targets)
    for item, mode in ((home / ".cmdop", 0o700), (home / FLEET_FILE, 0o600), (home / ".cmdop" / ".ssh_workspaces.json.lock", 0o600)):
        status = item.stat()
        assert (status.st_uid, status.st_gid, stat.S_IMODE(status.st_mode)) == (entry.pw_uid, entry.pw_gid, mode), item
    assert out["owner"] == targets.user("t1") and out["mode"] == "0600"


@pytest.mark.parametrize("args, said", [
    pytest.param({"owner": "no-such-user"}, "owner no-such-user: there is no such user",
                 marks=pytest.mark.case(AREA, "owner: no-such-user (check mode and a real run; a new ~/.cmdop and an existing file)",
                                        "both fail alike with the sync: prefix, changed false; nothing made, the file byte-for-byte as it was")),
    pytest.param({"group": "no-such-group"}, "group no-such-group: there is no such group",
                 marks=pytest.mark.case(AREA, "group: no-such-group (check mode and a real run)", "as for a bad owner")),
    pytest.param({"file_mode": "u=banana"}, "file_mode u=banana must be in octal or symbolic form",
                 marks=pytest.mark.case(AREA, "file_mode: u=banana (check mode and a real run)", "as for a bad owner; the file keeps its mode")),
])
def test_a_bad_owner_group_or_mode_fails_before_anything_changes(run_playbook, targets, home, args, said):
    for check in (True, False):
        result, out = root_sync(run_playbook, home / FLEET_FILE, check=check, **args)
        failed(result, out, said)
        assert not (home / ".cmdop").exists()
    path = write_as(targets, "t1", FLEET_FILE, ORIGINAL, mode=0o640)
    listing = sorted(os.listdir(path.parent))
    for check in (True, False):
        result, out = root_sync(run_playbook, path, check=check, **args)
        failed(result, out, said)
        assert path.read_text(encoding="utf-8") == ORIGINAL and stat.S_IMODE(path.stat().st_mode) == 0o640
        assert sorted(os.listdir(path.parent)) == listing


@pytest.mark.case(AREA, "root syncs with file_mode 0640 while the user watches the folder (inotify)",
                  "owner and mode are set on the temporary file before the rename; nothing is done to the file by its name afterwards")
def test_no_chmod_or_chown_by_path_after_the_rename(run_playbook, targets, home):
    path = write_as(targets, "t1", FLEET_FILE, ORIGINAL)
    with FileWatch(path.parent, IN_ATTRIB | IN_MOVED_TO) as watch:
        result, _out = root_sync(run_playbook, path, file_mode="0640", owner=targets.user("t1"))
    assert result.rc == 0, result.describe()
    assert stat.S_IMODE(path.stat().st_mode) == 0o640 and path.stat().st_uid == user(targets).pw_uid
    moved = [index for index, (mask, name) in enumerate(watch.named) if mask & IN_MOVED_TO and name == path.name]
    assert len(moved) == 1, watch.named
    assert [name for mask, name in watch.named[moved[0]:] if mask & IN_ATTRIB] == [], watch.named


@pytest.mark.case(AREA, "a fleet file with a second hard link",
                  "a warning says the file has 2 hard links and that the other names keep the old content")
def test_a_hard_linked_fleet_file_is_reported(run_playbook, targets, home):
    path = write_as(targets, "t1", FLEET_FILE, ORIGINAL)
    other = home / ".cmdop" / "other-name.json"
    os.link(path, other)
    result, out = root_sync(run_playbook, path)
    assert result.rc == 0, result.describe()
    assert any("has 2 hard links" in warning and "other names keep the old content" in warning for warning in out.get("warnings", [])), out
    assert other.read_text(encoding="utf-8") == ORIGINAL and path.read_text(encoding="utf-8") != ORIGINAL


# ---- files that are not regular files -------------------------------------------------------------------------


@pytest.mark.parametrize("check", [pytest.param(False, marks=pytest.mark.case(AREA, "the fleet file is a FIFO (the user's own run)",
                                                                              "refused at once (no hang): it is a FIFO, not a regular file")),
                                   pytest.param(True, marks=pytest.mark.case(AREA, "the fleet file is a FIFO, --check", "refused at once, as the real run"))])
def test_a_fifo_is_refused_at_once(run_playbook, targets, home, inventory, check):
    path = write_as(targets, "t1", FLEET_FILE, "")
    path.unlink()
    os.mkfifo(path, 0o600)
    as_user(targets, path)
    result = run_playbook(sync_play({"fleets": FLEETS}, hosts="t1"), inventory, check=check, timeout=120)
    failed(result, result.task("sync", "t1"), "it is a FIFO, not a regular file", host="t1")


@pytest.mark.case(AREA, "the fleet file is a character device (/dev/zero's numbers), root syncs",
                  "refused before it is opened or read: it is a character device")
def test_a_device_is_refused(run_playbook, targets, home):
    path = write_as(targets, "t1", FLEET_FILE, "")
    path.unlink()
    os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 5))
    as_user(targets, path)
    result, out = root_sync(run_playbook, path)
    failed(result, out, "it is a character device, not a regular file")


@pytest.mark.case(AREA, "a fleet file of 128 MiB and one byte (sparse)", "refused before it is read, saying the bound")
def test_a_file_over_the_size_bound_is_refused(run_playbook, targets, home):
    path = write_as(targets, "t1", FLEET_FILE, "")
    os.truncate(path, 128 * 1024 * 1024 + 1)
    result, out = root_sync(run_playbook, path)
    failed(result, out, "is 134217729 bytes, more than the 134217728 (128 MiB) this collection reads")


# ---- unsafe_writes on a full disk --------------------------------------------------------------------------------


@pytest.mark.case(AREA, "unsafe_writes: the fleet file is bind-mounted from a full disk and must grow",
                  "the space is reserved first: fails saying so, the file byte-for-byte as it was (never truncated); no backup left")
def test_unsafe_writes_on_a_full_disk_never_truncates(run_playbook, targets, home, tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)], check=True)
    path = write_as(targets, "t1", FLEET_FILE, ORIGINAL)
    try:
        outside = disk / "ssh_workspaces.json"
        outside.write_text(ORIGINAL, encoding="utf-8")
        as_user(targets, outside)
        with open(disk / "filler", "wb", buffering=0) as handle:
            with pytest.raises(OSError, match="No space left"):
                while True:
                    handle.write(b"\0" * 1024)
        subprocess.run(["mount", "--bind", str(outside), str(path)], check=True)
        try:
            fleets = [dict(FLEETS[0], id="%s%04d" % (TEAM_A[:-4], index), slug="team-%d" % index) for index in range(200)]
            result, out = root_sync(run_playbook, path, unsafe_writes=True, fleets=fleets)
            failed(result, out, "No space left on device", "the file was left as it was")
            assert outside.read_text(encoding="utf-8") == ORIGINAL
            assert sorted(os.listdir(path.parent)) == [".ssh_workspaces.json.lock", "ssh_workspaces.json"]
        finally:
            subprocess.run(["umount", str(path)], check=True)
    finally:
        subprocess.run(["umount", str(disk)], check=True)


# ---- the race -----------------------------------------------------------------------------------------------------

ATTACKER = textwrap.dedent("""
    import ctypes, os, sys
    libc = ctypes.CDLL(None, use_errno=True)
    home, roots, stop = sys.argv[1], sys.argv[2], sys.argv[3]
    cmdop, evil = home + "/.cmdop", home + "/cmdop-evil"
    name, bait = cmdop + "/ssh_workspaces.json", cmdop + "/bait"
    def exchange(a, b):  # renameat2(RENAME_EXCHANGE): both names swap places at once
        libc.renameat2(-100, a.encode(), -100, b.encode(), 2)
    swaps = 0
    while not os.path.exists(stop):
        for folder in (cmdop, evil):  # whichever name the real folder has now: keep a link to root's file in it
            if os.path.isdir(folder) and not os.path.islink(folder + "/bait"):
                try:
                    os.unlink(folder + "/bait")
                except OSError:
                    pass
                try:
                    os.symlink(roots + "/precious.json", folder + "/bait")
                except OSError:
                    pass
        exchange(name, bait)        # the fleet file <-> a link to root's fleet file
        exchange(cmdop, evil)       # ~/.cmdop <-> a link to root's folder
        swaps += 1
    print(swaps)
""")
RUNS = 300


@pytest.mark.case(AREA, "a race: the user swaps the fleet file and ~/.cmdop with links to root's files and folder (renameat2 "
                  "RENAME_EXCHANGE, in a loop) while root syncs %d times with owner/group/file_mode set" % RUNS,
                  "no file outside the user's home created or changed (bytes, owner, group, mode); each run succeeds or fails saying why")
def test_a_user_swapping_links_while_root_syncs_changes_nothing_outside_their_home(targets, home, roots, tmp_path):
    entry = user(targets)
    write_as(targets, "t1", FLEET_FILE, ORIGINAL)
    evil = _link(targets, home / "cmdop-evil", roots)
    before = tree(roots)
    driver = tmp_path / "drive.py"
    driver.write_text(textwrap.dedent("""
        import contextlib, io, json, sys
        from ansible.module_utils import basic
        from ansible_collections.cmdop.fleet.plugins.modules import sync
        runs, variants = int(sys.argv[1]), json.loads(sys.argv[2])
        outcomes = []
        for index in range(runs):
            basic._ANSIBLE_ARGS = json.dumps({"ANSIBLE_MODULE_ARGS": variants[index % len(variants)]}).encode()
            basic._ANSIBLE_PROFILE = "legacy"  # ansible-core 2.19 asks for one; older ones ignore it
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                try:
                    sync.main()
                except SystemExit:
                    pass
            outcomes.append(json.loads(out.getvalue()))
        print(json.dumps(outcomes))
    """), encoding="utf-8")
    common = {"path": str(home / FLEET_FILE), "owner": entry.pw_name, "group": entry.pw_name, "file_mode": "0600", "lock_timeout": 5}
    variants = [dict(common, fleets=[dict(FLEETS[0], name=name)]) for name in ("Team A", "Team A renamed")]
    stop = home / "cmdop-stop"  # where the user's process can see it
    attacker = subprocess.Popen(["runuser", "-u", entry.pw_name, "--", TARGET_PYTHON, "-c", ATTACKER, str(home), str(roots), str(stop)],
                                stdout=subprocess.PIPE, text=True)
    try:
        ran = subprocess.run([sys.executable, str(driver), str(RUNS), json.dumps(variants)], capture_output=True, text=True, timeout=600,
                             env=dict(os.environ, PYTHONPATH=str(collection_layout())), check=False)
    finally:
        stop.touch()
        try:
            swaps = int(attacker.communicate(timeout=60)[0] or 0)
        finally:
            if attacker.poll() is None:
                attacker.kill()
    assert ran.returncode == 0, ran.stderr[-3000:]
    outcomes = json.loads(ran.stdout)
    assert len(outcomes) == RUNS and swaps > RUNS, swaps
    assert tree(roots) == before
    assert evil.is_symlink() or (home / ".cmdop").is_symlink()
    for out in outcomes:
        assert not out.get("failed") or (out["msg"].startswith("sync: ") and "Traceback" not in out.get("exception", "")), out
    refused = [out for out in outcomes if "a link is followed only when" in out.get("msg", "")]
    assert refused, "the race never put a link in the run's way: %s" % sorted({out.get("msg", "ok") for out in outcomes})
