"""Runs that share a checkout: one run per pack at a time, and shared caches written one at a time.

The locks are flock(2) locks on files under build/.locks/: the kernel drops them when their
process ends, however it ends, so a lock left by a killed run is simply free for the next one.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from driverpack.errors import BusyError

_POLL_SECONDS = 0.2


def locks_dir(root: Path) -> Path:
    return root / "build" / ".locks"


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created if needed) for the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing drops the lock


@contextlib.contextmanager
def pack_lock(root: Path, label: str, wait: float | None, say: Callable[[str], None]) -> Iterator[None]:
    """Hold the pack's lock for the block: wait for a run that holds it (at most `wait` seconds, None: as long
    as it takes), saying once who holds it."""
    path = locks_dir(root) / f"{label}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        if not _try_lock(fd):
            holder = _holder(fd, settle=True)
            limit = "" if wait is None else f" (at most {wait:g}s: --wait)"
            say(f"... [{label}] waiting for another driverpack run on this pack ({holder}) to end{limit}")
            deadline = None if wait is None else time.monotonic() + wait
            while not _try_lock(fd):
                if deadline is not None and time.monotonic() >= deadline:
                    raise BusyError(
                        f"pack {label!r} is busy: another driverpack run ({_holder(fd)}) still builds it "
                        f"after {wait:g}s",
                        hint="rerun when it has ended, or give --wait more seconds (without --wait: until it ends)",
                    )
                time.sleep(_POLL_SECONDS)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _holder(fd: int, settle: bool = False) -> str:
    """The holder's pid from the lock file (just after taking the lock, it may not have written it yet)."""
    for _ in range(10 if settle else 1):
        text = os.pread(fd, 64, 0).decode(errors="replace").strip()
        if text.isdigit():
            return f"pid {text}"
        time.sleep(_POLL_SECONDS / 4)
    return "pid unknown"
