"""What a process did to a file, seen from outside it: Linux inotify through ctypes (no extra package).

``FileWatch(path)`` records the events on ``path`` until it is closed, read at once by a thread of its own
(the kernel merges an event into an identical one still unread, so two processes' opens would count as one);
``opens`` counts the opens, ``opened_for_writing``
tells whether any process closed the file after opening it for writing (IN_CLOSE_WRITE),
``opened_read_only`` whether one closed it after opening it read-only (IN_CLOSE_NOWRITE).
On a folder, with another ``mask``, ``named`` lists each event with the name of the entry it concerns.
The e2e tests use it to see how a module running over SSH opened a lock file.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import select
import struct
import threading
import typing as t

IN_CLOSE_WRITE = 0x00000008
IN_CLOSE_NOWRITE = 0x00000010
IN_OPEN = 0x00000020
IN_ATTRIB = 0x00000004
IN_MOVED_TO = 0x00000080
IN_NONBLOCK = 0o4000
_EVENT = struct.Struct("iIII")

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


class FileWatch:
    """Events on one existing file; use as a context manager, read ``events`` after the block."""

    def __init__(self, path: str | os.PathLike, mask: int = IN_OPEN | IN_CLOSE_WRITE | IN_CLOSE_NOWRITE) -> None:
        self.path = os.fsencode(os.fspath(path))
        self.mask = mask
        self.events: list[int] = []
        self.named: list[tuple[int, str]] = []
        self._fd = -1
        self._stop = threading.Event()
        self._reader: threading.Thread | None = None

    def __enter__(self) -> FileWatch:
        self._fd = _libc.inotify_init1(IN_NONBLOCK)
        if self._fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        if _libc.inotify_add_watch(self._fd, self.path, self.mask) < 0:
            os.close(self._fd)
            raise OSError(ctypes.get_errno(), "inotify_add_watch %s" % self.path.decode())
        self._reader = threading.Thread(target=self._read_until_stopped, daemon=True)
        self._reader.start()
        return self

    def __exit__(self, *exc: t.Any) -> None:
        self._stop.set()
        if self._reader is not None:
            self._reader.join(timeout=10)
        self.drain(0.2)
        os.close(self._fd)

    def _read_until_stopped(self) -> None:
        while not self._stop.is_set():
            self.drain(0.01)

    def drain(self, wait: float) -> None:
        while select.select([self._fd], [], [], wait)[0]:
            try:
                data = os.read(self._fd, 65536)
            except BlockingIOError:
                break
            offset = 0
            while offset < len(data):
                _wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
                self.events.append(mask)
                self.named.append((mask, data[offset + _EVENT.size:offset + _EVENT.size + length].rstrip(b"\0").decode(errors="replace")))
                offset += _EVENT.size + length

    @property
    def opens(self) -> int:
        """How many times a process opened the file."""
        return sum(1 for mask in self.events if mask & IN_OPEN)

    @property
    def opened_for_writing(self) -> bool:
        return any(mask & IN_CLOSE_WRITE for mask in self.events)

    @property
    def opened_read_only(self) -> bool:
        return any(mask & IN_CLOSE_NOWRITE for mask in self.events)
