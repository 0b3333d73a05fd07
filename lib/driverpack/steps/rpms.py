"""build-rpms: rpmbuild each spec with settings the host's rpm 4.11 accepts, then read every RPM back."""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from driverpack.adapters.rpmbuild import BuiltSpec, rpmbuild
from driverpack.adapters.rpminfo import check_common, check_data_rpm, check_kmod_rpm, read_rpm
from driverpack.archive import write_tarball
from driverpack.context import Context
from driverpack.errors import BuildError
from driverpack.models import Driver
from driverpack.run import which
from driverpack.steps.compile import CompileResult
from driverpack.steps.specs import SpecsResult, data_source_name


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
            write_tarball(sources / data_source_name(driver), [(driver.data_folder(), folder)], ctx.epoch)


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


def build_srpms(ctx: Context, specs: SpecsResult) -> tuple[Path, ...]:
    """rpmbuild -bs every spec: the source RPMs that mock, Koji and COPR build from; nothing is compiled."""
    which("rpmbuild")
    _fresh_tree(ctx, ("SRPMS",))
    prepare_sources(ctx)
    spec_files = [s for item in specs.drivers for s in (item.kmod_spec, item.data_spec) if s is not None]
    with ThreadPoolExecutor(max_workers=max(1, min(len(spec_files), ctx.jobs))) as pool:
        built = list(pool.map(lambda spec: build_spec(ctx, spec, None, "-bs"), spec_files))
    return tuple(r.srpm for r in built if r.srpm is not None)


def build_rpms(ctx: Context, specs: SpecsResult, compiled: CompileResult, extra: tuple[Path, ...]) -> RpmsResult:
    """rpmbuild -ba every spec (in parallel), then check each RPM the way the host will need it."""
    which("rpmbuild")
    _fresh_tree(ctx, ("RPMS", "SRPMS", "BUILD", "BUILDROOT"))
    prepare_sources(ctx)
    prebuilt = {c.name: c.source_root for c in compiled.drivers}
    jobs: list[tuple[Driver, Path, Path | None, bool]] = []
    for item in specs.drivers:
        jobs.append((item.driver, item.kmod_spec, prebuilt.get(item.driver.name), True))
        if item.data_spec is not None:
            jobs.append((item.driver, item.data_spec, None, False))
    with ThreadPoolExecutor(max_workers=max(1, min(len(jobs), ctx.jobs))) as pool:
        futures = [pool.submit(build_spec, ctx, spec, pre) for _, spec, pre, _ in jobs]
        built = [f.result() for f in futures]
    kmod: list[Path] = []
    data: list[Path] = []
    for (_, _, _, is_kmod), result in zip(jobs, built, strict=True):
        (kmod if is_kmod else data).extend(result.rpms)
    problems: list[str] = []
    for path in kmod:
        problems += check_kmod_rpm(read_rpm(path), ctx.kernel.release, (ctx.kernel.module_dir,))
    for path in data:
        problems += check_data_rpm(read_rpm(path))
    for path in extra:
        info = read_rpm(path)
        carries_modules = any(f.path.startswith("/lib/modules/") for f in info.files)
        if carries_modules and ctx.kernel.release:  # built elsewhere (Koji, COPR): still for the target kernel?
            problems += check_kmod_rpm(info, ctx.kernel.release)
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
