# -*- coding: utf-8 -*-
# Copyright (c) cmdop.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Unit tests of the small file I/O helpers, on real temporary files."""

from __future__ import annotations

import multiprocessing
import os
import stat
import time

import pytest

from ansible_collections.cmdop.fleet.plugins.module_utils._files import (
    Attributes,
    FileError,
    ensure_folder,
    locked,
    read_snapshot,
    read_text,
    resolve,
    set_attributes,
    write_atomically,
)

pytestmark = pytest.mark.core_independent  # pure code, the emulator or a static check: run once (tests/conftest.py)
ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root; make test runs as root")

OLD = b'{"active": "", "workspaces": [{"name": "lab", "api_key": "cmdop_live_old"}]}\n'
NEW = '{"active": "", "workspaces": [{"name": "équipe"}]}\n'.encode("utf-8")


def _mode(path):
    return stat.S_IMODE(os.stat(str(path)).st_mode)


def _with_umask(umask, func, *args, **kwargs):
    old = os.umask(umask)
    try:
        return func(*args, **kwargs)
    finally:
        os.umask(old)


# ---------------------------------------------------------------- write_atomically


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077])
def test_write_creates_the_file_with_0600(tmp_path, umask):
    target = tmp_path / "ssh_workspaces.json"
    _with_umask(umask, write_atomically, str(target), NEW)
    assert target.read_bytes() == NEW
    assert _mode(target) == 0o600
    assert os.listdir(str(tmp_path)) == ["ssh_workspaces.json"]


def test_write_honours_the_mode_argument(tmp_path):
    target = tmp_path / "file"
    _with_umask(0o077, write_atomically, str(target), b"x", mode=0o640)
    assert _mode(target) == 0o640


def test_write_replaces_the_content(tmp_path):
    target = tmp_path / "ssh_workspaces.json"
    target.write_bytes(OLD * 50)
    os.chmod(str(target), 0o644)
    write_atomically(str(target), NEW)
    assert target.read_bytes() == NEW
    assert _mode(target) == 0o600
    assert os.listdir(str(tmp_path)) == ["ssh_workspaces.json"]


def test_write_of_empty_data(tmp_path):
    target = tmp_path / "f"
    target.write_bytes(OLD)
    write_atomically(str(target), b"")
    assert target.read_bytes() == b""


def test_write_with_a_relative_path(tmp_path, monkeypatch):
    monkeypatch.chdir(str(tmp_path))
    write_atomically("rel.json", NEW)
    assert (tmp_path / "rel.json").read_bytes() == NEW
    assert os.listdir(str(tmp_path)) == ["rel.json"]


def test_the_file_is_replaced_by_a_new_one_renamed_into_place(tmp_path):
    """A rename, not a rewrite: a reader holding the old file keeps the old bytes, and no temporary file is left."""
    target = tmp_path / "ssh_workspaces.json"
    target.write_bytes(OLD)
    with open(str(target), "rb") as reader:
        before = os.fstat(reader.fileno()).st_ino
        written = write_atomically(str(target), NEW)
        assert reader.read() == OLD
    assert target.read_bytes() == NEW
    assert os.stat(str(target)).st_ino == written.st_ino != before
    assert os.listdir(str(tmp_path)) == ["ssh_workspaces.json"]


def test_a_failed_write_leaves_the_target_and_no_temporary_file(tmp_path, file_size_limit):
    target = tmp_path / "ssh_workspaces.json"
    target.write_bytes(OLD)
    os.chmod(str(target), 0o640)
    with file_size_limit(8):
        with pytest.raises(FileError) as info:
            write_atomically(str(target), NEW, mode=None)
    assert str(target) in str(info.value)
    assert "left as it was" in str(info.value)
    assert target.read_bytes() == OLD
    assert _mode(target) == 0o640
    assert os.listdir(str(tmp_path)) == ["ssh_workspaces.json"]


def test_a_failed_rename_leaves_the_target_and_no_temporary_file(tmp_path):
    """The name is a folder: the rename fails (the file is never read as one either)."""
    target = tmp_path / "ssh_workspaces.json"
    target.mkdir()
    (target / "inside").write_bytes(b"kept")
    with pytest.raises(FileError) as info:
        write_atomically(str(target), NEW)
    assert "Is a directory" in str(info.value)
    assert (target / "inside").read_bytes() == b"kept"
    assert os.listdir(str(tmp_path)) == ["ssh_workspaces.json"]


def test_a_secret_file_is_never_wider_than_its_mode_not_even_before_the_rename(tmp_path):
    """The mode is set on the temporary file, before the rename: a 0644 token file's new bytes are 0600 from the start."""
    target = tmp_path / "token_prod.json"
    target.write_bytes(OLD)
    os.chmod(str(target), 0o644)
    written = write_atomically(str(target), NEW, mode=0o600)
    assert stat.S_IMODE(written.st_mode) == 0o600 and _mode(target) == 0o600
    write_atomically(str(target), OLD, mode=None)
    assert _mode(target) == 0o600  # None keeps the old file's mode


def test_a_failed_write_of_a_new_file_creates_nothing(tmp_path, file_size_limit):
    with file_size_limit(8):
        with pytest.raises(FileError):
            write_atomically(str(tmp_path / "new.json"), NEW)
    assert os.listdir(str(tmp_path)) == []


def test_write_into_a_missing_folder_is_a_file_error(tmp_path):
    with pytest.raises(FileError) as info:
        write_atomically(str(tmp_path / "missing" / "f.json"), NEW)
    assert "missing" in str(info.value)
    assert not (tmp_path / "missing").exists()


def test_file_error_is_an_os_error():
    assert issubclass(FileError, OSError)


# ---------------------------------------------------------------- locked


def _hold_lock(path, ready, release, hold_for):
    with locked(path, 5):
        ready.set()
        if hold_for is None:
            release.wait(30)
        else:
            time.sleep(hold_for)


def _start_holder(path, hold_for=None):
    context = multiprocessing.get_context("fork")
    ready, release = context.Event(), context.Event()
    process = context.Process(target=_hold_lock, args=(path, ready, release, hold_for))
    process.start()
    assert ready.wait(10), "the other process did not take the lock"
    return process, release


def test_lock_held_by_another_process_times_out_then_succeeds_after_release(tmp_path):
    path = str(tmp_path / "ssh_workspaces.json")
    process, release = _start_holder(path)
    try:
        started = time.monotonic()
        with pytest.raises(FileError) as info:
            with locked(path, 0.5):
                pytest.fail("the lock was taken while another process holds it")
        elapsed = time.monotonic() - started
        assert 0.45 <= elapsed < 3.0
        assert "another run holds the lock" in str(info.value)
        assert path in str(info.value)
    finally:
        release.set()
        process.join(10)
    assert process.exitcode == 0

    started = time.monotonic()
    with locked(path, 5):
        entered = time.monotonic() - started
    assert entered < 1.0


def test_lock_waits_for_another_process_to_finish(tmp_path):
    path = str(tmp_path / "ssh_workspaces.json")
    process, _release = _start_holder(path, hold_for=0.6)
    try:
        started = time.monotonic()
        with locked(path, 10):
            waited = time.monotonic() - started
        assert waited < 5.0, "the lock was taken as soon as the other process let go"
    finally:
        process.join(10)
    assert process.exitcode == 0


def test_lock_with_zero_timeout_fails_at_once_when_held(tmp_path):
    path = str(tmp_path / "f.json")
    process, release = _start_holder(path)
    try:
        started = time.monotonic()
        with pytest.raises(FileError):
            with locked(path, 0):
                pass
        assert time.monotonic() - started < 1.0
    finally:
        release.set()
        process.join(10)


def test_lock_is_exclusive_even_within_one_process(tmp_path):
    path = str(tmp_path / "f.json")
    with locked(path, 1):
        with pytest.raises(FileError):
            with locked(path, 0.1):
                pass


def test_lock_is_released_when_the_block_raises(tmp_path):
    path = str(tmp_path / "f.json")
    with pytest.raises(RuntimeError):
        with locked(path, 1):
            raise RuntimeError("boom")
    with locked(path, 0.1):
        pass


def test_lock_file_sits_beside_the_target_and_the_target_is_not_created(tmp_path):
    path = tmp_path / "ssh_workspaces.json"
    with locked(str(path), 1):
        lock_file = tmp_path / ".ssh_workspaces.json.lock"
        assert lock_file.exists()
        assert _mode(lock_file) == 0o600
        assert not path.exists()


def _open_fds_to(path):
    """The access modes of this process's open descriptors of ``path`` (from /proc)."""
    modes = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink("/proc/self/fd/%s" % fd) == str(path):
                with open("/proc/self/fdinfo/%s" % fd, encoding="ascii") as info:
                    flags = int(info.read().split("flags:")[1].split()[0], 8)
                modes.append(flags & os.O_ACCMODE)
        except OSError:
            pass
    return modes


def test_an_existing_lock_file_is_opened_read_write_for_flock_over_nfs(tmp_path):
    path = tmp_path / "ssh_workspaces.json"
    lock_file = tmp_path / ".ssh_workspaces.json.lock"
    lock_file.write_bytes(b"")
    os.chmod(str(lock_file), 0o600)
    with locked(str(path), 1):
        assert _open_fds_to(lock_file) == [os.O_RDWR]


def test_a_lock_file_that_is_a_symlink_is_refused(tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"root's file")
    (tmp_path / ".ssh_workspaces.json.lock").symlink_to(victim)
    with pytest.raises(FileError) as info:
        with locked(str(tmp_path / "ssh_workspaces.json"), 0.1):
            pass
    assert "lock file" in str(info.value)
    assert victim.read_bytes() == b"root's file"


@ROOT_ONLY
def test_root_creates_the_lock_file_with_the_locked_files_owner(tmp_path):
    path = tmp_path / "ssh_workspaces.json"
    path.write_text("{}", encoding="utf-8")
    os.chown(str(path), 4321, 4322)
    with locked(str(path), 1):
        lock = os.stat(str(tmp_path / ".ssh_workspaces.json.lock"))
    assert (lock.st_uid, lock.st_gid, stat.S_IMODE(lock.st_mode)) == (4321, 4322, 0o600)


def test_without_create_a_missing_lock_file_is_not_made(tmp_path):
    path = tmp_path / "ssh_workspaces.json"
    with locked(str(path), 1, create=False):
        assert os.listdir(str(tmp_path)) == []


def test_without_create_an_existing_lock_is_still_taken(tmp_path):
    path = tmp_path / "ssh_workspaces.json"
    with locked(str(path), 1):
        pass
    with locked(str(path), 1, create=False):
        assert _open_fds_to(tmp_path / ".ssh_workspaces.json.lock") == [os.O_RDWR]


def test_lock_in_a_missing_folder_is_a_file_error(tmp_path):
    with pytest.raises(FileError):
        with locked(str(tmp_path / "missing" / "f.json"), 0.1):
            pass


# ---------------------------------------------------------------- ensure_folder


@pytest.mark.parametrize("umask", [0o000, 0o022])
def test_ensure_folder_creates_0700_and_returns_it(tmp_path, umask):
    path = tmp_path / "home" / ".cmdop" / "ssh_workspaces.json"
    created = _with_umask(umask, ensure_folder, str(path))
    assert created == str(tmp_path / "home" / ".cmdop")
    assert os.path.isdir(created)
    assert _mode(created) == 0o700
    assert not path.exists()
    assert ensure_folder(str(path)) is None


def test_ensure_folder_mode_does_not_depend_on_the_umask(tmp_path):
    # A umask that takes the owner's own write bit away: the folder must still be 0700.
    created = _with_umask(0o277, ensure_folder, str(tmp_path / ".cmdop" / "ssh_workspaces.json"))
    assert created == str(tmp_path / ".cmdop")
    assert _mode(created) == 0o700


def test_ensure_folder_leaves_an_existing_folder_alone(tmp_path):
    folder = tmp_path / ".cmdop"
    folder.mkdir()
    os.chmod(str(folder), 0o755)
    assert ensure_folder(str(folder / "ssh_workspaces.json")) is None
    assert _mode(folder) == 0o755


def test_ensure_folder_returns_an_absolute_path(tmp_path, monkeypatch):
    monkeypatch.chdir(str(tmp_path))
    created = ensure_folder(os.path.join("sub", "f.json"))
    assert created == str(tmp_path / "sub")
    assert os.path.isabs(created)


def test_ensure_folder_over_a_file_is_a_file_error(tmp_path):
    (tmp_path / ".cmdop").write_bytes(b"not a folder")
    with pytest.raises(FileError) as info:
        ensure_folder(str(tmp_path / ".cmdop" / "ssh_workspaces.json"))
    assert ".cmdop" in str(info.value)


# ---------------------------------------------------------------- read_text


def test_read_text_of_a_missing_file_is_none(tmp_path):
    assert read_text(str(tmp_path / "nope.json")) is None


def test_read_text_returns_the_text_as_is(tmp_path):
    path = tmp_path / "f.json"
    text = '{"name": "Équipe 東京"}\r\n\n'
    path.write_bytes(text.encode("utf-8"))
    assert read_text(str(path)) == text
    (tmp_path / "empty").write_bytes(b"")
    assert read_text(str(tmp_path / "empty")) == ""


def test_read_text_of_non_utf8_is_a_file_error(tmp_path):
    path = tmp_path / "ssh_workspaces.json"
    path.write_bytes(b'{"api_key": "cmdop_live_latin1_\xe9\xff"}')
    with pytest.raises(FileError) as info:
        read_text(str(path))
    assert str(path) in str(info.value)
    assert "UTF-8" in str(info.value)
    assert "cmdop_live" not in str(info.value)


def test_read_text_of_a_folder_is_a_file_error(tmp_path):
    with pytest.raises(FileError) as info:
        read_text(str(tmp_path))
    assert str(tmp_path) in str(info.value)


def test_read_text_of_a_fifo_is_refused_without_blocking(tmp_path):
    path = tmp_path / "ssh_workspaces.json"
    os.mkfifo(str(path))
    with pytest.raises(FileError) as info:
        read_text(str(path))
    assert "it is a FIFO, not a regular file" in str(info.value)


# ---------------------------------------------------------------- resolve


def test_a_failed_run_removes_the_folders_it_made_and_their_lock(tmp_path):
    path = tmp_path / "a" / "b" / "ssh_workspaces.json"
    with resolve(str(path), create=True) as place:
        assert stat.S_IMODE(os.stat(str(tmp_path / "a")).st_mode) == 0o700
        with locked(place, 1):
            pass
        place.discard_created()
    assert os.listdir(str(tmp_path)) == []


def test_a_link_of_the_runs_user_is_followed_through_folders_and_files(tmp_path):
    real = tmp_path / "dotfiles" / "cmdop" / "real.json"
    real.parent.mkdir(parents=True)
    real.write_bytes(OLD)
    (tmp_path / "cmdop").symlink_to("dotfiles/cmdop")
    (tmp_path / "dotfiles" / "cmdop" / "ssh_workspaces.json").symlink_to("real.json")
    with resolve(str(tmp_path / "cmdop" / "ssh_workspaces.json")) as place:
        assert place.real == str(real)
        assert read_text(place) == OLD.decode()


@ROOT_ONLY
@pytest.mark.parametrize("what", ["file", "folder", "dangling"])
def test_another_users_link_to_what_is_not_theirs_is_refused(tmp_path, what):
    """As root: a link of uid 4321 to root's file, folder, or a name in root's folder, is never followed."""
    roots = tmp_path / "roots"
    roots.mkdir()
    (roots / "ssh_workspaces.json").write_bytes(OLD)
    home = tmp_path / "home"
    home.mkdir()
    os.chown(str(home), 4321, 4321)
    link = home / ("cmdop" if what == "folder" else "ssh_workspaces.json")
    link.symlink_to(roots if what == "folder" else roots / ("new.json" if what == "dangling" else "ssh_workspaces.json"))
    os.lchown(str(link), 4321, 4321)
    with pytest.raises(FileError) as info:
        read_snapshot(str(home / ("cmdop/ssh_workspaces.json" if what == "folder" else "ssh_workspaces.json")))
    assert "%s is a symlink of 4321's" % link in str(info.value)
    assert sorted(os.listdir(str(roots))) == ["ssh_workspaces.json"] and (roots / "ssh_workspaces.json").read_bytes() == OLD


@ROOT_ONLY
def test_root_leaves_a_file_that_is_not_the_folder_owners_alone(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    os.chown(str(home), 4321, 4321)
    path = home / "ssh_workspaces.json"
    path.write_bytes(OLD)  # root's file in 4321's folder
    with pytest.raises(FileError) as info:
        write_atomically(str(path), NEW)
    assert "locks, creates and changes nothing there" in str(info.value)
    assert os.listdir(str(home)) == ["ssh_workspaces.json"] and path.read_bytes() == OLD


@ROOT_ONLY
def test_attributes_are_set_on_the_open_file(tmp_path):
    path = tmp_path / "ssh_workspaces.json"
    path.write_bytes(OLD)
    with resolve(str(path)) as place:
        seen = read_snapshot(place)[1]
        assert set_attributes(place, Attributes(4321, 4322, 0o640), seen) is True
        assert set_attributes(place, Attributes(4321, 4322, 0o640), read_snapshot(place)[1]) is False
    status = os.stat(str(path))
    assert (status.st_uid, status.st_gid, stat.S_IMODE(status.st_mode)) == (4321, 4322, 0o640)


def test_a_link_into_a_missing_folder_is_an_error_even_for_reading(tmp_path):
    """Check mode reads without creating: it must fail where the real run (which would not make the folder) fails."""
    (tmp_path / "ssh_workspaces.json").symlink_to(tmp_path / "gone" / "real.json")
    for attempt in (lambda: read_text(str(tmp_path / "ssh_workspaces.json")), lambda: resolve(str(tmp_path / "ssh_workspaces.json"), create=True)):
        with pytest.raises(FileError) as info:
            attempt()
        assert "whose folder does not exist" in str(info.value)
    assert sorted(os.listdir(str(tmp_path))) == ["ssh_workspaces.json"]
