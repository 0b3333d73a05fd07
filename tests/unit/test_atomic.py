"""Outputs appear complete or not at all, and what a killed run left behind is cleaned up."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from driverpack.atomic import atomic_path, remove_stale_temps, write_text


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_failed_write_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    dest = tmp_path / "pack.iso"
    write_text(dest, "old")
    with pytest.raises(RuntimeError), atomic_path(dest) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert dest.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["pack.iso"]


def test_stale_temps_of_dead_runs_are_removed(tmp_path: Path) -> None:
    dest = tmp_path / "pack.iso"
    stale = tmp_path / f".pack.iso.tmp-{dead_pid()}"
    live = tmp_path / f".pack.iso.tmp-{os.getppid()}"
    other = tmp_path / f".other.iso.tmp-{dead_pid()}"
    for path in (stale, live, other):
        path.write_text("partial")
    remove_stale_temps(dest)
    assert not stale.exists()
    assert live.exists() and other.exists()
