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
import tempfile
import time
import typing as t

Move = t.Callable[[str, str], t.Any]


class FileError(OSError):
    """An I/O failure, with a message fit for a user."""


def read_text(path: str) -> t.Optional[str]:
    """The file's text, or None when it does not exist."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise FileError("cannot read %s: %s" % (path, exc.strerror or exc)) from exc
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FileError("%s is not UTF-8 text (byte %d)" % (path, exc.start)) from exc


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


def _open_lock(lock_path: str, folder: str) -> int:
    """Open (creating) the lock file. flock needs only a descriptor, so a lock file of another user's that we may read will do.

    Root creates it owned by the folder's owner, so that the user can lock it in later runs of their own.
    """
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    except OSError as exc:
        raise FileError("cannot create lock file %s: %s" % (lock_path, exc.strerror or exc)) from exc
    else:
        if os.geteuid() == 0:
            folder_stat = os.stat(folder)
            os.fchown(fd, folder_stat.st_uid, folder_stat.st_gid)
        return fd
    try:
        return os.open(lock_path, os.O_RDONLY)
    except OSError as exc:
        raise FileError("cannot open lock file %s: %s" % (lock_path, exc.strerror or exc)) from exc


@contextlib.contextmanager
def locked(path: str, timeout: float) -> t.Iterator[None]:
    """Hold an exclusive lock on ``<folder>/.<name>.lock`` while the block runs.

    The file itself cannot carry the lock: an atomic write replaces its inode.
    Every run of this collection on a host takes the same lock, so two runs at
    once serialize instead of losing an update.
    """
    folder, name = os.path.split(os.path.abspath(path))
    lock_path = os.path.join(folder, ".%s.lock" % name)
    fd = _open_lock(lock_path, folder)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise FileError("cannot lock %s: %s" % (lock_path, exc.strerror or exc)) from exc
                if time.monotonic() >= deadline:
                    raise FileError("another run holds the lock on %s; gave up after %s seconds" % (path, timeout)) from exc
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def write_atomically(path: str, data: bytes, move: Move = os.replace, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` in one step; on any failure the old file stays as it was."""
    folder, name = os.path.split(os.path.abspath(path))
    try:
        fd, tmp_path = tempfile.mkstemp(prefix=".%s." % name, suffix=".tmp", dir=folder)
    except OSError as exc:
        raise FileError("cannot write %s: %s" % (path, exc.strerror or exc)) from exc
    try:
        try:
            with os.fdopen(fd, "wb") as handle:
                os.fchmod(handle.fileno(), mode)
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            raise FileError("cannot write %s: %s; the file was left as it was" % (path, exc.strerror or exc)) from exc
        try:
            move(tmp_path, path)
        except Exception as exc:  # pylint: disable=broad-except  # AnsibleModule.atomic_move raises plain Exception
            raise FileError("cannot replace %s: %s; the file was left as it was" % (path, getattr(exc, "strerror", None) or exc)) from exc
    finally:
        if os.path.exists(tmp_path):
            os.unlink(tmp_path)
