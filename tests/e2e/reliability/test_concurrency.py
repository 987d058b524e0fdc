"""Concurrency on one fleet file: 20 syncs at once (ansible-playbook, forks 20, every host the same target user), and a
writer that does not know this collection's lock (as ``cmdop login`` itself) replacing the file by rename meanwhile.

The final file is valid JSON, every sync's result is in it, and the outside writer's change is never lost: before its
rename a sync checks that the file is still the one it read, and reconciles again if it is not."""

from __future__ import annotations

import json
import os
import pwd
import tempfile
import threading
import time
import typing as t
import uuid
from pathlib import Path

import pytest
import yaml

from cmdop_helpers import FLEET_FILE, LOCAL_KEY, write_as

AREA = "Concurrency"
SYNCS = 20


def outside_write(path: Path, change: t.Callable[[dict], None]) -> None:
    """What a writer that knows no lock does: read, change, write a temporary file, rename it over the file.
    Careful in its own way (as an editor that checks the file on save), it starts again when the file changed under it,
    so the writes it loses are none of ours: the test can then ask that every change be in the final file."""
    user = path.stat()
    while True:
        seen = os.stat(path)
        document = json.loads(path.read_text(encoding="utf-8"))
        change(document)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="cmdop-login-")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(document, handle)
        os.chown(tmp, user.st_uid, user.st_gid)
        now = os.stat(path)
        if (now.st_ino, now.st_mtime_ns) != (seen.st_ino, seen.st_mtime_ns):
            os.unlink(tmp)
            continue
        os.replace(tmp, path)
        return


def many_hosts_inventory(targets: t.Any, folder: Path, fleet_ids: t.List[str]) -> Path:
    """SYNCS hosts, all of them target t1 (one user, one file), each with a fleet of its own."""
    base = targets.host_vars("t1")
    hosts = {"h%02d" % number: dict(base, my_fleet=fleet_id) for number, fleet_id in enumerate(fleet_ids)}
    path = folder / "many.yml"
    path.write_text(yaml.safe_dump({"all": {"hosts": hosts}}), encoding="utf-8")
    return path


@pytest.mark.case(AREA, "20 syncs at once on one file, each adding its own fleet, and an outside writer (no lock) "
                        "replacing the file by rename 10 times meanwhile",
                  "the final file is valid; every sync's fleet and every outside change is in it; no temporary file left")
def test_twenty_syncs_and_an_outside_writer(targets, run_playbook, tmp_path):
    path = write_as(targets, "t1", FLEET_FILE, json.dumps({"active": "home", "workspaces": [{"name": "home", "api_key": LOCAL_KEY}]}))
    fleet_ids = [str(uuid.uuid4()) for _number in range(SYNCS)]
    inventory = many_hosts_inventory(targets, tmp_path, fleet_ids)
    play = [{"hosts": "all", "gather_facts": False, "tasks": [{"name": "sync", "cmdop.fleet.sync": {
        "path": str(path), "lock_timeout": 120, "fleets": [{"id": "{{ my_fleet }}", "name": "Fleet {{ inventory_hostname }}"}]}}]}]
    done = threading.Event()
    written: t.List[str] = []

    def outside() -> None:
        while not done.is_set() and len(written) < 10:
            mark = "outside-%02d" % len(written)
            outside_write(path, lambda document, mark=mark: document.__setitem__(mark, True))
            written.append(mark)
            time.sleep(0.3)

    writer = threading.Thread(target=outside, daemon=True)
    writer.start()
    try:
        result = run_playbook(play, inventory, args=["--forks", str(SYNCS)], env={"ANSIBLE_PIPELINING": "true"})
    finally:
        done.set()
        writer.join(30)
    assert result.rc == 0, result.describe()[-3000:]
    document = json.loads(path.read_text(encoding="utf-8"))
    assert written and all(document.get(mark) is True for mark in written), (written, sorted(document))
    assert sorted(entry.get("remote_id") for entry in document["workspaces"] if entry.get("remote_id")) == sorted(fleet_ids)
    assert document["workspaces"][0] == {"name": "home", "api_key": LOCAL_KEY} and document["active"] == "home"
    assert [item.name for item in path.parent.iterdir() if item.name.endswith(".tmp") or item.name.startswith("cmdop-login-")] == []
    assert path.stat().st_uid == pwd.getpwnam(targets.user("t1")).pw_uid


@pytest.mark.case(AREA, "an outside writer that read the file before a sync renaming its version over it while the sync "
                        "writes its temporary file",
                  "the sync sees the file is not the one it read, reconciles again, and keeps the outside change")
def test_a_file_replaced_between_read_and_rename_is_read_again(targets, inventory, run_playbook):
    for _attempt in range(5):
        names, in_time = replace_during_a_sync(targets, inventory, run_playbook)
        assert "from-cmdop-login" in names, names  # the outside change is never lost
        if in_time:
            assert sorted(names) == ["from-cmdop-login", "team"], names
            return
        # The outside rename came after the sync's own (the sync was quicker than the watcher): try again.
    pytest.fail("the outside writer never renamed while a sync was writing")


def replace_during_a_sync(targets: t.Any, inventory: Path, run_playbook: t.Callable) -> t.Tuple[t.List[str], bool]:
    """Run one sync; the moment its temporary file appears, rename a version made from the file as it was before the
    sync (an outside writer that read it earlier). Returns the final entry names and whether the rename came in time."""
    path = write_as(targets, "t1", FLEET_FILE, json.dumps({"active": "", "workspaces": []}))
    version = {"active": "", "workspaces": [{"name": "from-cmdop-login", "api_key": LOCAL_KEY}]}
    fd, ready = tempfile.mkstemp(dir=path.parent, prefix="cmdop-login-")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(version, handle)
    owner = path.stat()
    os.chown(ready, owner.st_uid, owner.st_gid)
    stop = threading.Event()
    in_time: t.List[bool] = []

    def rename_when_the_temporary_file_appears() -> None:
        while not stop.is_set():
            temporary = [name for name in os.listdir(path.parent) if name.startswith(".ssh_workspaces.json.") and name.endswith(".tmp")]
            if temporary:
                os.replace(ready, path)
                in_time.append(os.path.exists(path.parent / temporary[0]))
                return

    watcher = threading.Thread(target=rename_when_the_temporary_file_appears, daemon=True)
    watcher.start()
    try:
        result = run_playbook([{"hosts": "t1", "gather_facts": False, "tasks": [{"name": "sync", "cmdop.fleet.sync": {
            "path": str(path), "fleets": [{"id": str(uuid.uuid4()), "name": "Team"}]}}]}], inventory)
    finally:
        stop.set()
        watcher.join(10)
    assert result.rc == 0, result.describe()
    if os.path.exists(ready):
        os.unlink(ready)
    return [entry["name"] for entry in json.loads(path.read_text(encoding="utf-8"))["workspaces"]], bool(in_time and in_time[0])
