"""Outputs appear complete or not at all: write to a temporary name, rename when done."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path


def temp_name(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}.tmp-{os.getpid()}")


def remove_stale_temps(dest: Path) -> None:
    """Remove temporary files a killed run left beside `dest` (their process is gone)."""
    for path in dest.parent.glob(f".{dest.name}.tmp-*"):
        pid = path.name.rsplit("-", 1)[-1]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            _remove(path)
        except PermissionError:
            pass  # someone else's live process


@contextlib.contextmanager
def atomic_path(dest: Path) -> Iterator[Path]:
    """Yield a temporary path beside `dest`; on success it replaces `dest`, on failure it is removed."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(dest)
    tmp = temp_name(dest)
    _remove(tmp)
    try:
        yield tmp
        os.replace(tmp, dest)
    except BaseException:
        _remove(tmp)
        raise


def write_bytes(dest: Path, data: bytes) -> None:
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)


def write_text(dest: Path, text: str) -> None:
    write_bytes(dest, text.encode("utf-8"))


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
