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


def source_members(ctx: Context, specs: Iterable[Path], srpms: Iterable[Path]) -> list[tuple[str, Path]]:
    """What the GPL asks a vendor to ship beside the binaries: sources, patches, specs, data, SRPMs."""
    top = f"{ctx.label}-source"
    members: list[tuple[str, Path]] = [(f"{top}/pack.toml", ctx.loaded.folder / "pack.toml")]
    for driver in ctx.loaded.pack.drivers:
        base = f"{top}/{driver.name}"
        # Named as in SOURCES and the spec: the pack's paths (which may hold '..') never name a member.
        for item, name in zip(
            (driver.source, *driver.patches), (driver.source_name(), *driver.patch_names()), strict=True
        ):
            members.append((f"{base}/{name}", ctx.loaded.resolve(item)))
        if driver.data is not None:
            members.append((f"{base}/{driver.data_dir_name}", ctx.loaded.data_folder(driver)))
    members += [(f"{top}/SPECS/{spec.name}", spec) for spec in specs]
    members += [(f"{top}/SRPMS/{srpm.name}", srpm) for srpm in srpms]
    return members


def write_release_zip(
    ctx: Context, iso: Path, md5_files: tuple[Path, ...], specs: tuple[Path, ...], srpms: tuple[Path, ...]
) -> ReleaseResult:
    """dist/<label>-<version>.zip: sorted members, fixed times and modes, written under a temporary name."""
    source_archive = ctx.work / f"{ctx.label}-source.tar.gz"
    write_tarball(source_archive, source_members(ctx, specs, srpms), ctx.epoch)
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
