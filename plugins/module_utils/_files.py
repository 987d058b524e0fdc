# -*- coding: utf-8 -*-
# Copyright (c) cmdop.fleet contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Small, safe file I/O: a path resolved so that it cannot be redirected, a lock beside a file, and atomic writes.

A path is resolved one component at a time from open folder descriptors (``resolve``), never by name twice: what
was checked is what is written. A symlink is followed only when the run's user (or root) owns it, or when its owner
also owns what it points to (the kernel's ``protected_symlinks`` rule, applied to every link); and when the run's
user does not own the folder of the file (root in a user's home), a file that is not the folder owner's is neither
locked nor changed there.

A write goes to a temporary file created in that folder (by its descriptor), which is written, fsync'ed, given its
owner, group and mode (``fchown``/``fchmod`` on the open file), and only then renamed over the target relative to the
folder's descriptor, so a reader sees the old bytes or the new ones, never a mix, and no race can redirect a chmod or
chown. A failed write removes the temporary file and leaves the target as it was. With ``unsafe_writes``, where the
rename is impossible (a bind-mounted file), the file is written in place only after its new size is reserved and a
backup taken. Only regular files are read, up to MAX_FILE_SIZE bytes. Private to the collection.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import grp
import os
import pwd
import stat
import time
import typing as t
import uuid


class FileError(OSError):
    """An I/O failure, with a message fit for a user."""


class FileChangedError(FileError):
    """The file is no longer the one that was read: another writer replaced or changed it."""


class MissingFolderError(FileError):
    """A folder of the path does not exist (and was not to be made)."""


Identity = t.Optional[t.Tuple[int, int, int, int]]  # device, inode, size, mtime (ns) of a file; None: no file

# The largest fleet or token file read: a fleet file of 230,000 entries (about 120 MB) is known to work.
MAX_FILE_SIZE = 128 * 1024 * 1024
MAX_LINKS = 40  # symlinks followed in one path, as the kernel's ELOOP
FOLDER_MODE = 0o700
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_FOLDER = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _NOFOLLOW | _CLOEXEC
_REGULAR = os.O_NONBLOCK | _NOFOLLOW | _CLOEXEC
_IN_PLACE_ERRNOS = (errno.EPERM, errno.EXDEV, errno.EACCES, errno.ETXTBSY, errno.EBUSY)  # as ansible-core's atomic_move


def _why(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc)


def _identity(status: os.stat_result) -> Identity:
    return (status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns)


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


class Attributes(t.NamedTuple):
    """The owner, group and mode a written file is given; None: the old file's (a new file: see ``write_atomically``)."""

    uid: t.Optional[int] = None
    gid: t.Optional[int] = None
    mode: t.Optional[int] = None


def _lookup(value: t.Any, by_name: t.Callable[[str], int], option: str, kind: str) -> t.Optional[int]:
    """The ``option``'s name or number as an id; FileError when there is no such ``kind`` (user or group) on this host."""
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        pass
    try:
        return by_name(str(value))
    except KeyError:
        raise FileError("%s %s: there is no such %s on this host; nothing was changed" % (option, value, kind)) from None


def lookup_owner(owner: t.Any) -> t.Optional[int]:
    """A user name or id as a uid; FileError when there is no such user."""
    return _lookup(owner, lambda name: pwd.getpwnam(name).pw_uid, "owner", "user")


def lookup_group(group: t.Any) -> t.Optional[int]:
    """A group name or id as a gid; FileError when there is no such group."""
    return _lookup(group, lambda name: grp.getgrnam(name).gr_gid, "group", "group")


class Place:
    """A file's folder, held open, and the file's name in it: every later step works relative to that folder."""

    def __init__(self, path: str, fd: int, folder: str, name: str, created: t.List[t.Tuple[int, str]]) -> None:
        self.path = path  # as given, for messages
        self.fd = fd
        self.folder = folder  # the folder's real path, for messages
        self.name = name
        self.created = created  # folders this resolution made: (descriptor of the parent, name), outermost first

    @property
    def real(self) -> str:
        """The file's real path (for messages and results)."""
        return os.path.join(self.folder, self.name)

    def entry(self, name: t.Optional[str] = None) -> str:
        """A path that reaches ``name`` (default: the file) through the open folder, as path-only helpers need it."""
        name = self.name if name is None else name
        through = "/proc/self/fd/%d" % self.fd
        return os.path.join(through if os.path.isdir(through) else self.folder, name)

    def lstat(self, name: t.Optional[str] = None) -> t.Optional[os.stat_result]:
        try:
            return os.stat(self.name if name is None else name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise FileError("cannot read %s: %s" % (self.real, _why(exc))) from exc

    def folder_stat(self) -> os.stat_result:
        return os.fstat(self.fd)

    def discard_created(self, lock: bool = True) -> None:
        """Remove what this resolution created (its new folders, and the lock in the innermost), after a failed run."""
        if not self.created:
            return
        if lock:
            with contextlib.suppress(OSError):
                os.unlink(lock_name(self.name), dir_fd=self.fd)
        for parent, name in reversed(self.created):
            with contextlib.suppress(OSError):
                os.rmdir(name, dir_fd=parent)

    def close(self) -> None:
        for parent, _name in self.created:
            with contextlib.suppress(OSError):
                os.close(parent)
        self.created = []
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Place:
        return self

    def __exit__(self, *exc: t.Any) -> None:
        self.close()


def _join(folder: str, name: str) -> str:
    return os.path.dirname(folder) if name == ".." else os.path.join(folder, name)


class _Resolver:
    """One resolution of one path; see ``resolve``."""

    def __init__(self, path: str, create: bool, owner: t.Optional[t.Tuple[t.Optional[int], t.Optional[int]]]) -> None:
        self.path = path
        self.create = create
        self.owner = owner or (None, None)
        self.links = 0
        self.created: t.List[t.Tuple[int, str]] = []

    def walk(self, fd: int, where: str, text: str, via: t.Optional[t.Tuple[str, str]]) -> t.Tuple[int, str, str]:
        """From the folder ``fd`` (``where``; the caller's descriptor, closed or returned here), the folder that holds
        the last component of ``text`` and that component, every link on the way followed as allowed. ``via``: the link
        (path, target) this text came from."""
        if text.startswith("/"):
            os.close(fd)
            fd, where = os.open("/", _FOLDER), "/"
        parts = [part for part in text.split("/") if part not in ("", ".")]
        try:
            if not parts:
                raise FileError("%s is a folder, not a file" % (via[0] if via else self.path))
            for part in parts[:-1]:
                fd, where = self.enter(fd, where, part, via)
            return self.last(fd, where, parts[-1])
        except BaseException:
            with contextlib.suppress(OSError):
                os.close(fd)
            raise

    def follow(self, fd: int, where: str, name: str, link: os.stat_result) -> t.Tuple[str, str, int, str, str]:
        """The link ``name`` in ``fd`` resolved: (its path, its target text, and the folder fd, path and last name of the target)."""
        self.links += 1
        if self.links > MAX_LINKS:
            raise FileError("%s: too many levels of symbolic links" % self.path)
        link_path = _join(where, name)
        try:
            target = os.readlink(name, dir_fd=fd)
        except OSError as exc:  # no longer a link: another process swapped it meanwhile
            raise FileError("%s changed while this run looked it up: %s; nothing was read, created or changed" % (link_path, _why(exc))) from exc
        tfd, twhere, tname = self.walk(os.dup(fd), where, target, (link_path, target))
        return link_path, target, tfd, twhere, tname

    @staticmethod
    def allow(link_path: str, target: str, link: os.stat_result, owner: int) -> None:
        """The protected_symlinks rule: a link is followed when the run's user or root owns it, or its owner owns what it points to."""
        if link.st_uid in (0, os.geteuid()) or link.st_uid == owner:
            return
        raise FileError("%s is a symlink of %s's to %s, which is %s's: a link is followed only when its owner also owns what it "
                        "points to (or the link is the run's user's or root's); nothing was read, created or changed"
                        % (link_path, _user(link.st_uid), target, _user(owner)))

    def enter(self, fd: int, where: str, part: str, via: t.Optional[t.Tuple[str, str]]) -> t.Tuple[int, str]:
        try:
            sub = os.open(part, _FOLDER, dir_fd=fd)
        except FileNotFoundError:
            sub = self.make(fd, where, part, via)
        except OSError as exc:
            if exc.errno not in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
                raise FileError("cannot open folder %s: %s" % (_join(where, part), _why(exc))) from exc
            try:
                link = os.stat(part, dir_fd=fd, follow_symlinks=False)
            except OSError as exc2:
                raise FileError("%s changed while this run looked it up: %s" % (_join(where, part), _why(exc2))) from exc2
            if not stat.S_ISLNK(link.st_mode):
                raise FileError("%s is not a folder" % _join(where, part)) from None
            link_path, target, tfd, twhere, tname = self.follow(fd, where, part, link)
            try:
                try:
                    sub = os.open(tname, _FOLDER, dir_fd=tfd)
                except FileNotFoundError:
                    raise FileError("%s is a symlink to %s, which does not exist; nothing is made there" % (link_path, target)) from None
                except OSError as exc2:
                    raise FileError("cannot open folder %s: %s" % (_join(twhere, tname), _why(exc2))) from exc2
            finally:
                os.close(tfd)
            try:
                self.allow(link_path, target, link, os.fstat(sub).st_uid)
            except FileError:
                os.close(sub)
                raise
            os.close(fd)
            return sub, _join(twhere, tname)
        os.close(fd)
        return sub, _join(where, part)

    def make(self, fd: int, where: str, part: str, via: t.Optional[t.Tuple[str, str]]) -> int:
        """A missing folder of the path: made (0700, the parent folder's owner when root makes it) or refused."""
        if via is not None:  # an error in check mode too: the real run would fail
            raise FileError("%s is a symlink to %s, whose folder does not exist; nothing is made there" % via)
        if not self.create:
            raise MissingFolderError("folder %s does not exist" % _join(where, part))
        try:
            os.mkdir(part, FOLDER_MODE, dir_fd=fd)
            self.created.append((os.dup(fd), part))
            sub = os.open(part, _FOLDER, dir_fd=fd)
            parent = os.fstat(fd)
            uid, gid = self.owner
            if os.geteuid() == 0:
                os.fchown(sub, parent.st_uid if uid is None else uid, parent.st_gid if gid is None else gid)
            elif gid is not None:
                os.fchown(sub, -1, gid)
            os.fchmod(sub, FOLDER_MODE)  # mkdir's mode is filtered by the umask
        except OSError as exc:
            raise FileError("cannot create folder %s: %s" % (_join(where, part), _why(exc))) from exc
        return sub

    def last(self, fd: int, where: str, name: str) -> t.Tuple[int, str, str]:
        try:
            entry = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            return fd, where, name
        except OSError as exc:
            raise FileError("cannot read %s: %s" % (_join(where, name), _why(exc))) from exc
        if not stat.S_ISLNK(entry.st_mode):
            return fd, where, name
        link_path, target, tfd, twhere, tname = self.follow(fd, where, name, entry)
        try:
            found = os.stat(tname, dir_fd=tfd, follow_symlinks=False)
            owner = found.st_uid
        except FileNotFoundError:
            owner = os.fstat(tfd).st_uid  # a dangling link: the file would be made in that folder
        except OSError as exc:
            os.close(tfd)
            raise FileError("cannot read %s: %s" % (_join(twhere, tname), _why(exc))) from exc
        try:
            self.allow(link_path, target, entry, owner)
        except FileError:
            os.close(tfd)
            raise
        os.close(fd)
        return tfd, twhere, tname


def resolve(path: str, create: bool = False, owner: t.Optional[t.Tuple[t.Optional[int], t.Optional[int]]] = None) -> Place:
    """Where ``path`` really is, reached one component at a time from open folders (close the Place after use).

    Symlinks are followed as ``_Resolver.allow`` says. Missing folders of the path itself are made 0700 when ``create``
    is true, owned by ``owner`` (uid, gid; None: when root makes them, the parent folder's), else MissingFolderError;
    a link into a missing folder is a FileError (nothing is made where a link points). When the run's user does not
    own the file's folder (root in a user's home), a file there that is not the folder owner's is refused: nothing is
    locked, created or changed beside it.
    """
    absolute = os.path.abspath(path)
    resolver = _Resolver(path, create, owner)
    try:
        fd, folder, name = resolver.walk(os.open("/", _FOLDER), "/", absolute, None)
    except BaseException as exc:
        for parent, name in reversed(resolver.created):  # a failed resolution leaves no folder it made
            with contextlib.suppress(OSError):
                os.rmdir(name, dir_fd=parent)
            os.close(parent)
        if isinstance(exc, OSError) and not isinstance(exc, FileError):
            raise FileError("cannot resolve %s: %s" % (path, _why(exc))) from exc
        raise
    place = Place(path, fd, folder, name, resolver.created)
    try:
        here = place.folder_stat()
        found = place.lstat()
        if here.st_uid != os.geteuid() and found is not None and not stat.S_ISLNK(found.st_mode) and found.st_uid != here.st_uid:
            raise FileError("%s is %s's, in a folder of %s's: this run (as %s) locks, creates and changes nothing there"
                            % (place.real, _user(found.st_uid), _user(here.st_uid), _user(os.geteuid())))
    except BaseException:
        place.close()
        raise
    return place


@contextlib.contextmanager
def _placed(target: t.Union[str, Place]) -> t.Iterator[Place]:
    if isinstance(target, Place):
        yield target
        return
    with resolve(target) as place:
        yield place


def identity(target: t.Union[str, Place]) -> Identity:
    """What tells this file apart from the one it was: a writer that replaces it (by rename) or rewrites it changes it."""
    try:
        with _placed(target) as place:
            found = place.lstat()
    except MissingFolderError:
        return None
    return None if found is None else _identity(found)


def _kind(mode: int) -> str:
    for test, kind in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symlink (put there while this run read it)")):
        if test(mode):
            return kind
    return "not a regular file"


def _check_regular(place: Place, status: os.stat_result) -> None:
    if stat.S_ISDIR(status.st_mode):
        raise FileError("cannot read %s: %s" % (place.real, os.strerror(errno.EISDIR)))
    if not stat.S_ISREG(status.st_mode):
        raise FileError("cannot read %s: it is %s, not a regular file; nothing was read or written" % (place.real, _kind(status.st_mode)))
    if status.st_size > MAX_FILE_SIZE:
        raise FileError("%s is %d bytes, more than the %d (128 MiB) this collection reads; nothing was read or written"
                        % (place.real, status.st_size, MAX_FILE_SIZE))


def _open_regular(place: Place, flags: int) -> t.Tuple[int, os.stat_result]:
    """The file, opened without following a link or blocking, checked to be a regular file of a size we read."""
    found = place.lstat()
    if found is None:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), place.real)
    _check_regular(place, found)  # before opening: a device is never even opened
    try:
        fd = os.open(place.name, flags | _REGULAR, dir_fd=place.fd)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise FileError("cannot read %s: %s" % (place.real, _why(exc))) from exc
    try:
        status = os.fstat(fd)
        _check_regular(place, status)
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    except BaseException:
        os.close(fd)
        raise
    return fd, status


def _read_all(place: Place, fd: int) -> bytes:
    chunks = []
    size = 0
    while True:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > MAX_FILE_SIZE:
            raise FileError("%s grew past %d bytes (128 MiB) while it was read; nothing was written" % (place.real, MAX_FILE_SIZE))
        chunks.append(chunk)


def read_stat(target: t.Union[str, Place]) -> t.Tuple[t.Optional[str], t.Optional[os.stat_result]]:
    """The file's text (None when it does not exist) and the status of the very file read."""
    try:
        with _placed(target) as place:
            try:
                fd, status = _open_regular(place, os.O_RDONLY)
            except FileNotFoundError:
                return None, None
            try:
                data = _read_all(place, fd)
            except OSError as exc:
                if isinstance(exc, FileError):
                    raise
                raise FileError("cannot read %s: %s" % (place.real, _why(exc))) from exc
            finally:
                os.close(fd)
    except MissingFolderError:
        return None, None
    try:
        return data.decode("utf-8"), status
    except UnicodeDecodeError as exc:
        raise FileError("%s is not UTF-8 text (byte %d)" % (place.real, exc.start)) from exc


def read_snapshot(target: t.Union[str, Place]) -> t.Tuple[t.Optional[str], Identity]:
    """The file's text (None when it does not exist) and the identity of the very file read."""
    text, status = read_stat(target)
    return text, None if status is None else _identity(status)


def read_text(target: t.Union[str, Place]) -> t.Optional[str]:
    """The file's text, or None when it does not exist."""
    return read_stat(target)[0]


def ensure_folder(path: str) -> t.Optional[str]:
    """Create the folder that will hold ``path`` (and its parents, 0700) when missing; return it if created."""
    with resolve(path, create=True) as place:
        return place.folder if place.created else None


def lock_name(name: str) -> str:
    return ".%s.lock" % name


def _open_lock(place: Place, create: bool) -> t.Optional[int]:
    """Open the lock file read-write (flock over NFS needs that), or None when it is absent and ``create`` is false.

    A new lock file is 0600 and, when root creates it, owned by the owner of the
    locked file (else of its folder), so that user can lock it in their own later
    runs. A symlink is never followed.
    """
    name = lock_name(place.name)
    shown = os.path.join(place.folder, name)
    flags = os.O_RDWR | _NOFOLLOW | _CLOEXEC | os.O_NONBLOCK
    if create:
        try:
            fd = os.open(name, flags | os.O_CREAT | os.O_EXCL, 0o600, dir_fd=place.fd)
        except FileExistsError:
            pass
        except OSError as exc:
            raise FileError("cannot create lock file %s: %s" % (shown, _why(exc))) from exc
        else:
            if os.geteuid() == 0:
                owner = place.lstat() or place.folder_stat()
                os.fchown(fd, owner.st_uid, owner.st_gid)
            return fd
    try:
        fd = os.open(name, flags, dir_fd=place.fd)
    except FileNotFoundError:
        if create:
            raise FileError("cannot open lock file %s: it vanished" % shown) from None
        return None
    except PermissionError:
        fd = -1  # another user's lock file: a local flock works on a read-only descriptor too
    except OSError as exc:
        raise FileError("cannot open lock file %s: %s" % (shown, _why(exc))) from exc
    if fd < 0:
        try:
            fd = os.open(name, os.O_RDONLY | _NOFOLLOW | _CLOEXEC | os.O_NONBLOCK, dir_fd=place.fd)
        except OSError as exc:
            raise FileError("cannot open lock file %s: %s" % (shown, _why(exc))) from exc
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise FileError("cannot open lock file %s: it is not a regular file" % shown)
    return fd


@contextlib.contextmanager
def locked(target: t.Union[str, Place], timeout: float, create: bool = True) -> t.Iterator[None]:
    """Hold an exclusive lock on ``<folder>/.<name>.lock`` while the block runs.

    The file itself cannot carry the lock: an atomic write replaces its inode.
    Every run of this collection on a host takes the same lock, so two runs at
    once serialize instead of losing an update. With ``create`` false (check
    mode), a missing lock file is not created and the block runs unlocked.
    """
    with _placed(target) as place:
        fd = _open_lock(place, create)
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
                        raise FileError("cannot lock %s: %s" % (os.path.join(place.folder, lock_name(place.name)), _why(exc))) from exc
                    if time.monotonic() >= deadline:
                        raise FileError("another run holds the lock on %s; gave up after %s seconds" % (place.path, timeout)) from exc
                    time.sleep(0.05)
            yield
        finally:
            os.close(fd)  # closing releases the lock


def final_attributes(place: Place, wanted: Attributes, old: t.Optional[os.stat_result], new_mode: int = 0o600) -> t.Tuple[int, int, int]:
    """The (uid, gid, mode) a file written at ``place`` gets: ``wanted``, else the old file's; a new file: 0600 (or
    ``new_mode``) and, when root writes it, the folder's owner and group, else the run's."""
    if old is not None:
        uid, gid, mode = old.st_uid, old.st_gid, stat.S_IMODE(old.st_mode)
    else:
        folder = place.folder_stat()
        root = os.geteuid() == 0
        inherits = root or folder.st_mode & stat.S_ISGID  # as atomic_move: a set-group-ID folder gives its group
        uid, gid, mode = (folder.st_uid if root else os.geteuid()), (folder.st_gid if inherits else os.getegid()), new_mode
    return (uid if wanted.uid is None else wanted.uid, gid if wanted.gid is None else wanted.gid, mode if wanted.mode is None else wanted.mode)


def _apply(fd: int, shown: str, uid: int, gid: int, mode: int) -> None:
    """Owner, group and mode on an open file: chown first (it clears set-id bits), then chmod."""
    status = os.fstat(fd)
    try:
        if (status.st_uid, status.st_gid) != (uid, gid):
            os.fchown(fd, uid, gid)
    except OSError as exc:
        raise FileError("cannot give %s to %s:%s: %s; the file was left as it was" % (shown, _user(uid), gid, _why(exc))) from exc
    try:
        os.fchmod(fd, mode)
    except OSError as exc:
        raise FileError("cannot set the mode of %s to %04o: %s; the file was left as it was" % (shown, mode, _why(exc))) from exc


def set_attributes(place: Place, wanted: Attributes, replaces: Identity) -> bool:
    """Give the existing file (still the one read: ``replaces``) the owner, group and mode asked, on the open file; whether any changed."""
    fd, status = _open_regular(place, os.O_RDONLY)
    try:
        if _identity(status) != replaces:
            raise FileChangedError("%s was changed by another writer while this run updated it" % place.path)
        uid, gid, mode = final_attributes(place, wanted, status)
        if (status.st_uid, status.st_gid, stat.S_IMODE(status.st_mode)) == (uid, gid, mode):
            return False
        _apply(fd, place.real, uid, gid, mode)
        return True
    finally:
        os.close(fd)


def _create(place: Place, name: str, data: bytes, uid: int, gid: int, mode: int) -> int:
    """A new file ``name`` in the place's folder holding ``data``, fsync'ed, with its owner and mode; the open descriptor."""
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, 0o600, dir_fd=place.fd)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
        _apply(fd, place.real, uid, gid, mode)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(name, dir_fd=place.fd)
        raise
    return fd


def backup(place: Place, data: bytes, old: os.stat_result, private: bool = False) -> str:
    """A copy of the old bytes beside the file, as ``AnsibleModule.backup_local`` names it, with the old owner and mode (at
    most 0600 when ``private``: the file holds API keys); its path. The copy is made with its final mode, never wider."""
    name = "%s.%s.%s" % (place.name, os.getpid(), time.strftime("%Y-%m-%d@%H:%M:%S~", time.localtime()))
    mode = stat.S_IMODE(old.st_mode) & (0o600 if private else 0o7777)
    try:
        os.close(_create(place, name, data, old.st_uid, old.st_gid, mode))
    except OSError as exc:
        raise FileError("cannot back up %s: %s; the file was left as it was" % (place.real, _why(exc))) from exc
    return os.path.join(place.folder, name)


def _write_in_place(place: Place, data: bytes, attributes: t.Tuple[int, int, int], replaces: t.Any) -> None:
    """``unsafe_writes``: overwrite the file itself, after reserving its new size and backing it up."""
    try:
        fd, status = _open_regular(place, os.O_RDWR)
    except FileNotFoundError:
        raise FileError("cannot write %s in place: it does not exist; nothing was written" % place.real) from None
    saved = None
    try:
        if replaces is not _ANY_FILE and _identity(status) != replaces:
            raise FileChangedError("%s was changed by another writer while this run updated it" % place.path)
        old = _read_all(place, fd)
        try:
            os.posix_fallocate(fd, 0, max(len(data), 1))  # the space is reserved, or nothing is changed
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                raise FileError("cannot write %s in place: %s; the file was left as it was" % (place.real, _why(exc))) from exc
            room = os.fstatvfs(fd)
            if len(data) > status.st_blocks * 512 + room.f_bavail * room.f_frsize:
                raise FileError("cannot write %s in place: no room for %d bytes; the file was left as it was" % (place.real, len(data))) from exc
        saved = backup(place, old, status, private=True)  # it may hold API keys
        _apply(fd, place.real, *attributes)
        try:
            written = 0
            while written < len(data):
                written += os.pwrite(fd, data[written:], written)
            os.ftruncate(fd, len(data))
            os.fsync(fd)
        except OSError as exc:
            raise FileError("writing %s in place failed midway: %s; the file is damaged, and its previous content is in %s"
                            % (place.real, _why(exc), saved)) from exc
    finally:
        os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(os.path.basename(saved), dir_fd=place.fd)  # written whole: the automatic backup is not needed


_ANY_FILE = object()


def write_atomically(target: t.Union[str, Place], data: bytes, mode: t.Optional[int] = 0o600, replaces: t.Any = _ANY_FILE,
                     wanted: Attributes = Attributes(), unsafe_writes: bool = False) -> os.stat_result:
    """Replace the file with ``data`` in one step; on any failure the old file stays as it was. The new file's status.

    ``replaces``, an ``Identity`` (None: no file) or omitted, is the file the data was made from: when the file is no
    longer that file at the last moment before the rename (a writer that does not take this collection's lock, such
    as ``cmdop login``, replaced it meanwhile), nothing is written and FileChangedError is raised, so the caller can
    read it again rather than overwrite the other writer's change.

    The new file's owner, group and mode are ``wanted``'s, else the old file's, else (a new file) the folder owner's
    when root writes and 0600; ``mode``, when not None, is the mode whatever the old file's was. They are set on the
    temporary file before the rename, never by path afterwards. ``unsafe_writes``: where the rename fails as
    ansible-core's ``atomic_move`` then writes in place (a bind-mounted file), the file is written in place.
    """
    with _placed(target) as place:
        old = place.lstat()
        if old is not None and stat.S_ISLNK(old.st_mode):  # not there when the path was resolved: someone swapped it in
            raise FileChangedError("%s was replaced by a symlink while this run updated it; nothing was written" % place.real)
        if old is not None:
            _check_regular(place, old)
        if mode is not None and wanted.mode is None:
            wanted = wanted._replace(mode=mode)
        uid, gid, new_mode = final_attributes(place, wanted, old, 0o600 if mode is None else mode)
        tmp = ".%s.%s.tmp" % (place.name, uuid.uuid4().hex[:12])
        try:
            fd = _create(place, tmp, data, uid, gid, new_mode)
        except FileError:
            raise
        except OSError as exc:
            raise FileError("cannot write %s: %s; the file was left as it was" % (place.real, _why(exc))) from exc
        try:
            if replaces is not _ANY_FILE and identity(place) != replaces:
                raise FileChangedError("%s was changed by another writer while this run updated it" % place.path)
            try:
                os.rename(tmp, place.name, src_dir_fd=place.fd, dst_dir_fd=place.fd)
            except OSError as exc:
                if not (unsafe_writes and exc.errno in _IN_PLACE_ERRNOS):
                    raise FileError("cannot replace %s: %s; the file was left as it was" % (place.real, _why(exc))) from exc
                _write_in_place(place, data, (uid, gid, new_mode), replaces)
                return os.stat(place.name, dir_fd=place.fd, follow_symlinks=False)
            with contextlib.suppress(OSError):
                os.fsync(place.fd)
            return os.fstat(fd)
        finally:
            os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp, dir_fd=place.fd)
