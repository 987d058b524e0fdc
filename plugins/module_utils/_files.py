# -*- coding: utf-8 -*-
# Copyright (c) cmdop.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Small, safe file I/O: a lock beside a file, and atomic writes.

A write goes to a temporary file in the target's folder, is flushed and
fsync'ed, and only then moved over the target, so a reader sees the old bytes
or the new ones, never a mix; a failed write (full disk, permissions) removes
the temporary file and leaves the target as it was. Modules pass
``AnsibleModule.atomic_move`` as ``move``; the inventory plugin uses
``os.replace``. Private to the collection.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import tempfile
import time
import typing as t

Move = t.Callable[[str, str], t.Any]


class FileError(OSError):
    """An I/O failure, with a message fit for a user."""


class FileChangedError(FileError):
    """The file is no longer the one that was read: another writer replaced or changed it."""


Identity = t.Optional[t.Tuple[int, int, int, int]]  # device, inode, size, mtime (ns) of a file; None: no file


def _identity(status: os.stat_result) -> Identity:
    return (status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns)


def identity(path: str) -> Identity:
    """What tells this file apart from the one it was: a writer that replaces it (by rename) or rewrites it changes it."""
    try:
        return _identity(os.stat(path))
    except FileNotFoundError:
        return None


def read_snapshot(path: str) -> t.Tuple[t.Optional[str], Identity]:
    """The file's text (None when it does not exist) and the identity of the very file read."""
    try:
        with open(path, "rb") as handle:
            seen = _identity(os.fstat(handle.fileno()))
            data = handle.read()
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        raise FileError("cannot read %s: %s" % (path, exc.strerror or exc)) from exc
    try:
        return data.decode("utf-8"), seen
    except UnicodeDecodeError as exc:
        raise FileError("%s is not UTF-8 text (byte %d)" % (path, exc.start)) from exc


def read_text(path: str) -> t.Optional[str]:
    """The file's text, or None when it does not exist."""
    return read_snapshot(path)[0]


def ensure_folder(path: str, mode: int = 0o700) -> t.Optional[str]:
    """Create the folder that will hold ``path`` (and its parents) when missing; return it if created."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(folder):
        return None
    try:
        os.makedirs(folder, mode)
        os.chmod(folder, mode)  # makedirs' mode is filtered by the umask
    except OSError as exc:
        raise FileError("cannot create folder %s: %s" % (folder, exc.strerror or exc)) from exc
    return folder


def real_path(path: str) -> str:
    """Where a file really is: a symlinked file (dotfiles kept by stow or chezmoi) is edited there, and the link kept."""
    return os.path.realpath(os.path.abspath(path))


def lock_path(path: str) -> str:
    """The lock file of ``path``: ``.<name>.lock`` beside it."""
    folder, name = os.path.split(os.path.abspath(path))
    return os.path.join(folder, ".%s.lock" % name)


def _open_lock(lock_file: str, owner_of: str, create: bool) -> t.Optional[int]:
    """Open the lock file read-write (flock over NFS needs that), or None when it is absent and ``create`` is false.

    A new lock file is 0600 and, when root creates it, owned by the owner of
    ``owner_of`` (the locked file, else its folder), so that user can lock it in
    their own later runs. A symlink is never followed.
    """
    flags = os.O_RDWR | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    if create:
        try:
            fd = os.open(lock_file, flags | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        except OSError as exc:
            raise FileError("cannot create lock file %s: %s" % (lock_file, exc.strerror or exc)) from exc
        else:
            if os.geteuid() == 0:
                owner = os.stat(owner_of)
                os.fchown(fd, owner.st_uid, owner.st_gid)
            return fd
    try:
        return os.open(lock_file, flags)
    except FileNotFoundError:
        if create:
            raise FileError("cannot open lock file %s: it vanished" % lock_file) from None
        return None
    except PermissionError:
        pass  # another user's lock file: a local flock works on a read-only descriptor too
    except OSError as exc:
        raise FileError("cannot open lock file %s: %s" % (lock_file, exc.strerror or exc)) from exc
    try:
        return os.open(lock_file, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise FileError("cannot open lock file %s: %s" % (lock_file, exc.strerror or exc)) from exc


@contextlib.contextmanager
def locked(path: str, timeout: float, create: bool = True) -> t.Iterator[None]:
    """Hold an exclusive lock on ``<folder>/.<name>.lock`` while the block runs.

    The file itself cannot carry the lock: an atomic write replaces its inode.
    Every run of this collection on a host takes the same lock, so two runs at
    once serialize instead of losing an update. With ``create`` false (check
    mode), a missing lock file is not created and the block runs unlocked.
    """
    lock_file = lock_path(path)
    owner_of = path if os.path.exists(path) else os.path.dirname(lock_file)
    fd = _open_lock(lock_file, owner_of, create)
    if fd is None:
        yield
        return
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise FileError("cannot lock %s: %s" % (lock_file, exc.strerror or exc)) from exc
                if time.monotonic() >= deadline:
                    raise FileError("another run holds the lock on %s; gave up after %s seconds" % (path, timeout)) from exc
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # closing releases the lock


_ANY_FILE = object()


def write_atomically(path: str, data: bytes, move: Move = os.replace, mode: t.Optional[int] = 0o600, replaces: t.Any = _ANY_FILE) -> None:
    """Replace ``path`` with ``data`` in one step; on any failure the old file stays as it was.

    ``replaces``, an ``Identity`` (None: no file) or omitted, is the file the data was made from: when ``path`` is no
    longer that file at the last moment before the move (a writer that does not take this collection's lock, such as
    ``cmdop login``, replaced it meanwhile), nothing is written and FileChangedError is raised, so the caller can read
    it again rather than overwrite the other writer's change.

    ``mode``, when given, is the file's mode afterwards: ``AnsibleModule.atomic_move``
    gives the new file the old one's mode (or the umask's, for a new file), so the
    mode is set after the move. Before it, an existing file that others may read
    is narrowed to ``mode``, so the new bytes are never more widely readable than
    asked, not even for the moment between the move and the chmod. ``mode=None``
    keeps what the move gives.
    """
    folder, name = os.path.split(os.path.abspath(path))
    try:
        fd, tmp_path = tempfile.mkstemp(prefix=".%s." % name, suffix=".tmp", dir=folder)
    except OSError as exc:
        raise FileError("cannot write %s: %s" % (path, exc.strerror or exc)) from exc
    try:
        try:
            with os.fdopen(fd, "wb") as handle:
                os.fchmod(handle.fileno(), 0o600 if mode is None else mode)
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            raise FileError("cannot write %s: %s; the file was left as it was" % (path, exc.strerror or exc)) from exc
        if replaces is not _ANY_FILE and identity(path) != replaces:
            raise FileChangedError("%s was changed by another writer while this run updated it" % path)
        try:
            if mode is not None and os.path.isfile(path) and stat.S_IMODE(os.stat(path).st_mode) & ~mode:
                os.chmod(path, stat.S_IMODE(os.stat(path).st_mode) & mode)  # the move copies this mode: never wider than asked
            move(tmp_path, path)
        except Exception as exc:  # pylint: disable=broad-except  # AnsibleModule.atomic_move raises plain Exception
            raise FileError("cannot replace %s: %s; the file was left as it was" % (path, getattr(exc, "strerror", None) or exc)) from exc
        if mode is not None:
            try:
                os.chmod(path, mode)
            except OSError as exc:
                raise FileError("replaced %s, but cannot set its mode to %04o: %s" % (path, mode, exc.strerror or exc)) from exc
    finally:
        if os.path.exists(tmp_path):
            os.unlink(tmp_path)
