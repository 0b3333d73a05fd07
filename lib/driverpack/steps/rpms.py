"""build-rpms: rpmbuild each spec with settings the host's rpm 4.11 accepts, then read every RPM back."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from driverpack import inbox
from driverpack.adapters.rpmbuild import BuiltSpec, rpmbuild
from driverpack.adapters.rpminfo import check_common, check_data_rpm, check_kmod_rpm, read_rpm
from driverpack.archive import write_tarball
from driverpack.context import Context
from driverpack.errors import BuildError
from driverpack.run import which


@dataclass(frozen=True)
class RpmsResult:
    kmod_rpms: tuple[Path, ...]
    data_rpms: tuple[Path, ...]
    srpms: tuple[Path, ...]
    extra_rpms: tuple[Path, ...]

    @property
    def payload(self) -> tuple[Path, ...]:
        """Every binary RPM that goes into the pack."""
        return self.kmod_rpms + self.data_rpms + self.extra_rpms


def prepare_sources(ctx: Context) -> None:
    """Copy every source and patch into SOURCES, and pack each data folder as a tarball."""
    sources = ctx.rpmbuild_dir / "SOURCES"
    sources.mkdir(parents=True, exist_ok=True)
    for driver in ctx.loaded.pack.drivers:
        for item in (driver.source, *driver.patches):
            path = ctx.loaded.resolve(item)
            _copy_if_changed(path, sources / path.name)
        if driver.data is not None:
            folder = ctx.loaded.folder / driver.data_folder()
            write_tarball(sources / driver.data_source(), [(driver.data_folder(), folder)], ctx.epoch)


def _copy_if_changed(src: Path, dest: Path) -> None:
    if dest.exists() and dest.stat().st_size == src.stat().st_size and dest.read_bytes() == src.read_bytes():
        return
    shutil.copyfile(src, dest)


def build_spec(ctx: Context, spec: Path, prebuilt: Path | None, what: str = "-ba") -> BuiltSpec:
    defines = {"_smp_mflags": f"-j{ctx.jobs}", "kernel_build_dir": str(ctx.kernel.build_dir)}
    if prebuilt is not None:
        defines["driverpack_prebuilt"] = str(prebuilt)
    log = ctx.logs_dir / f"rpmbuild-{spec.stem}.log"
    log.unlink(missing_ok=True)
    return rpmbuild(spec, ctx.rpmbuild_dir, epoch=ctx.epoch, log=log, defines=defines, what=what)


def _fresh_tree(ctx: Context, subdirs: tuple[str, ...]) -> None:
    for sub in subdirs:
        # Made fresh before the parallel rpmbuilds, which would race to create them.
        shutil.rmtree(ctx.rpmbuild_dir / sub, ignore_errors=True)
        (ctx.rpmbuild_dir / sub).mkdir(parents=True)


@dataclass(frozen=True)
class SpecBuild:
    """One spec to build: a kernel-module spec (maybe with modules already compiled) or a data spec."""

    spec: Path
    prebuilt: Path | None  # the compile step's tree, reused instead of compiling again
    is_kmod: bool


def build_srpms(ctx: Context, spec_files: Sequence[Path]) -> tuple[Path, ...]:
    """rpmbuild -bs every spec: the source RPMs that mock, Koji and COPR build from; nothing is compiled."""
    which("rpmbuild")
    _fresh_tree(ctx, ("SRPMS",))
    prepare_sources(ctx)
    with ThreadPoolExecutor(max_workers=max(1, min(len(spec_files), ctx.jobs))) as pool:
        built = list(pool.map(lambda spec: build_spec(ctx, spec, None, "-bs"), spec_files))
    return tuple(r.srpm for r in built if r.srpm is not None)


def build_rpms(ctx: Context, builds: Sequence[SpecBuild], extra: tuple[Path, ...]) -> RpmsResult:
    """rpmbuild -ba every spec (in parallel), then check each RPM the way the host will need it."""
    which("rpmbuild")
    _fresh_tree(ctx, ("RPMS", "SRPMS", "BUILD", "BUILDROOT"))
    prepare_sources(ctx)
    with ThreadPoolExecutor(max_workers=max(1, min(len(builds), ctx.jobs))) as pool:
        built = list(pool.map(lambda b: build_spec(ctx, b.spec, b.prebuilt), builds))
    kmod = [rpm for b, result in zip(builds, built, strict=True) if b.is_kmod for rpm in result.rpms]
    data = [rpm for b, result in zip(builds, built, strict=True) if not b.is_kmod for rpm in result.rpms]
    problems: list[str] = []
    for path in kmod:
        info = read_rpm(path)
        problems += check_kmod_rpm(info, ctx.kernel.release, (ctx.kernel.module_dir,))
        problems += inbox.rpm_problems(info)
    for path in data:
        problems += check_data_rpm(read_rpm(path))
    for path in extra:
        info = read_rpm(path)
        carries_modules = any(f.path.startswith("/lib/modules/") for f in info.files)
        if carries_modules and ctx.kernel.release:  # built elsewhere (Koji, COPR): still for the target kernel?
            problems += check_kmod_rpm(info, ctx.kernel.release)
            problems += inbox.rpm_problems(info)
        else:
            problems += check_common(info)
    if problems:
        raise BuildError("\n".join(problems), hint="fix the spec or the pack; the RPMs above would fail on the host")
    return RpmsResult(
        kmod_rpms=tuple(kmod),
        data_rpms=tuple(data),
        srpms=tuple(r.srpm for r in built if r.srpm is not None),
        extra_rpms=extra,
    )
