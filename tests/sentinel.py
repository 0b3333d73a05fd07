"""A folder tree to run `inv` in, with sentinel files all around the checkout and the pack, and its snapshot.

    <root>/                      sentinels (what enough '../' reaches), lib/firmware/a.bin, etc/...
      home/                      HOME
      tmp/                       TMPDIR: must be empty again after every run
      outside/                   beside the checkout: sentinels
      checkout/                  the current directory of inv: build/, dist/ and keys/ may change
        packs/                   sentinels beside the pack
          pack/                  the pack folder

A snapshot records every path under <root> but build/, dist/ and keys/ of the checkout and TMPDIR:
its type, mode, size, modification time and content digest (or link target).
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

WRITABLE = ("build", "dist", "keys")  # under the checkout: the only places inv may create, change or delete
SENTINELS = {
    "sentinel.txt": b"a file driverpack must leave alone\n",
    "lib/firmware/a.bin": b"\x00firmware that is not the pack's\n",
    "etc/modprobe.d/other.conf": b"options other debug=1\n",
    "other-pack/pack.toml": b"# another pack's file\n",
}


@dataclass(frozen=True)
class SentinelTree:
    root: Path

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def above(self) -> Path:
        return self.root

    @property
    def beside_work(self) -> Path:
        return self.root / "outside"

    @property
    def work(self) -> Path:
        return self.root / "checkout"

    @property
    def pack(self) -> Path:
        return self.work / "packs" / "pack"

    @property
    def env(self) -> dict[str, str]:
        return {"HOME": str(self.home), "TMPDIR": str(self.tmp)}

    def snapshot(self) -> dict[str, str]:
        """Every path outside what inv may write, with what identifies its content and metadata."""
        skip = {self.work / name for name in WRITABLE} | {self.tmp}
        found: dict[str, str] = {}
        for dirpath, dirnames, filenames in os.walk(self.root):
            here = Path(dirpath)
            dirnames[:] = sorted(d for d in dirnames if here / d not in skip)
            for name in [*dirnames, *sorted(filenames)]:
                path = here / name
                found[os.fsdecode(path.relative_to(self.root))] = _identity(path, is_work=path == self.work)
        found["<tmp left>"] = " ".join(sorted(os.listdir(self.tmp)))
        return found


def _identity(path: Path, *, is_work: bool) -> str:
    info = path.lstat()
    mode = stat.filemode(info.st_mode)
    if stat.S_ISLNK(info.st_mode):
        return f"{mode} -> {os.readlink(path)}"
    if stat.S_ISREG(info.st_mode):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        return f"{mode} {info.st_size} {info.st_mtime_ns} {digest}"
    if is_work:
        # Creating build/, dist/ or keys/ changes the checkout's time: its other entries are listed anyway.
        return mode
    # A folder's time changes when anything is created in it, even a temporary file removed again.
    return f"{mode} {info.st_mtime_ns}"


def new_sentinel_tree(root: Path) -> SentinelTree:
    tree = SentinelTree(root)
    for folder in (tree.home, tree.tmp, tree.beside_work, tree.pack.parent):
        folder.mkdir(parents=True, exist_ok=True)
    for base in (tree.above, tree.home, tree.beside_work, tree.work, tree.pack.parent):
        for rel, data in SENTINELS.items():
            path = base / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
    return tree


def changes(before: Mapping[str, str], after: Mapping[str, str]) -> list[str]:
    """+created, -deleted, ~changed paths between two snapshots."""
    return sorted(
        [f"+{p}" for p in after.keys() - before.keys()]
        + [f"-{p}" for p in before.keys() - after.keys()]
        + [f"~{p}: {before[p]} -> {after[p]}" for p in before.keys() & after.keys() if before[p] != after[p]]
    )
