"""Fixtures shared by the module_utils unit tests."""

from __future__ import annotations

import contextlib
import resource
import signal
import typing as t

import pytest


@contextlib.contextmanager
def _limited(size: int) -> t.Iterator[None]:
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old_handler)


@pytest.fixture
def file_size_limit() -> t.Callable[[int], t.ContextManager[None]]:
    """``with file_size_limit(n):`` writes past n bytes fail with EFBIG, a real failure of the write (as a full disk's)."""
    return _limited
