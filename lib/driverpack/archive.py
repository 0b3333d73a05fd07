"""Reproducible archives: sorted members, fixed owner, times and modes, so identical inputs give identical bytes."""

from __future__ import annotations

import gzip
import stat
import tarfile
from collections.abc import Iterable
from pathlib import Path
from typing import IO

from driverpack.atomic import atomic_path


def _normalized(info: tarfile.TarInfo, epoch: int) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mtime = epoch
    if info.isdir() or info.mode & stat.S_IXUSR:
        info.mode = 0o755
    else:
        info.mode = 0o644
    return info


def write_tarball(dest: Path, members: Iterable[tuple[str, Path]], epoch: int) -> None:
    """Write dest (.tar.gz, or .tar uncompressed) from (name in archive, file or folder on disk).

    Folders are added recursively; links and special files are left out (packs carry plain files).
    """
    entries: dict[str, Path] = {}
    for name, source in members:
        entries[name] = source
        if source.is_dir():
            for path in source.rglob("*"):
                entries[f"{name}/{path.relative_to(source).as_posix()}"] = path
    with atomic_path(dest) as tmp, tmp.open("wb") as raw:
        if dest.name.endswith(".gz"):
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz:
                _write_tar(gz, entries, epoch)
        else:
            _write_tar(raw, entries, epoch)


def _write_tar(out: gzip.GzipFile | IO[bytes], entries: dict[str, Path], epoch: int) -> None:
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name in sorted(entries):
            source = entries[name]
            info = _normalized(tar.gettarinfo(str(source), arcname=name), epoch)
            if info.isreg():
                with source.open("rb") as f:
                    tar.addfile(info, f)
            elif info.isdir():
                tar.addfile(info)
