"""release-zip: the ISO, the GPL source archive and the checksums in one reproducible zip."""

from __future__ import annotations

import datetime as dt
import shutil
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from driverpack.archive import write_tarball
from driverpack.atomic import atomic_path
from driverpack.context import Context

_ZIP_EPOCH_MIN = 315532800  # 1980-01-01: the earliest time a zip entry can carry


@dataclass(frozen=True)
class ReleaseResult:
    zip: Path
    source_archive: Path
    members: tuple[str, ...]


def source_members(ctx: Context, srpms: Iterable[Path]) -> list[tuple[str, Path]]:
    """What the GPL asks a vendor to ship beside the binaries, each byte once: every driver's SRPM (its
    tarball, patches and spec) and the pack file that builds them.

    The data RPMs' sources (firmware, configuration) are not GPL source and the ISO carries them
    already; the pipeline passes their SRPMs only when the pack asks (`source_archive_data`).
    """
    top = f"{ctx.label}-source"
    members: list[tuple[str, Path]] = [(f"{top}/pack.toml", ctx.loaded.folder / "pack.toml")]
    members += [(f"{top}/SRPMS/{srpm.name}", srpm) for srpm in srpms]
    return members


def write_release_zip(ctx: Context, iso: Path, md5_files: tuple[Path, ...], srpms: tuple[Path, ...]) -> ReleaseResult:
    """dist/<label>-<version>.zip: sorted members, fixed times and modes, written under a temporary name."""
    source_archive = ctx.work / f"{ctx.label}-source.tar.gz"
    write_tarball(source_archive, source_members(ctx, srpms), ctx.epoch)
    entries = sorted([(iso.name, iso), (source_archive.name, source_archive), *((p.name, p) for p in md5_files)])
    stamp = dt.datetime.fromtimestamp(max(ctx.epoch, _ZIP_EPOCH_MIN), dt.UTC).timetuple()[:6]
    dest = ctx.dist / f"{ctx.label}-{ctx.loaded.pack.pack.version}.zip"
    with atomic_path(dest) as tmp, zipfile.ZipFile(tmp, "w") as archive:
        for name, path in entries:
            info = zipfile.ZipInfo(name, date_time=stamp)
            # The ISO (compressed RPMs) and the gzip source archive do not shrink: deflating them only costs time.
            stored = name.endswith((".iso", ".gz"))
            info.compress_type = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
            info.external_attr = (0o100644 & 0xFFFF) << 16
            info.create_system = 3  # unix, so the mode above is honoured
            with path.open("rb") as src, archive.open(info, "w", force_zip64=True) as out:
                shutil.copyfileobj(src, out, 1 << 20)
    return ReleaseResult(zip=dest, source_archive=source_archive, members=tuple(name for name, _ in entries))
