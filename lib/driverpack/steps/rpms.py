"""build-rpms: rpmbuild each spec with settings the host's rpm 4.11 accepts, then read every RPM back.

Each driver's kernel-module RPM and data RPM is its own unit of work with its own rpmbuild tree
(build/<label>/rpmbuild/<unit>/), writing into the shared RPMS/ and SRPMS/ folders: rebuilding one
driver never touches another driver's files.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from driverpack import inbox
from driverpack.adapters.rpmbuild import BuiltSpec, macro_path, rpmbuild
from driverpack.adapters.rpminfo import check_common, check_data_rpm, check_kmod_rpm, read_rpm
from driverpack.archive import write_tarball
from driverpack.context import Context
from driverpack.errors import BuildError
from driverpack.models import Driver
from driverpack.run import which


@dataclass(frozen=True)
class BuiltRpms:
    """What one unit of build-rpms wrote."""

    rpms: tuple[Path, ...]
    srpms: tuple[Path, ...]

    @property
    def files(self) -> tuple[Path, ...]:
        return self.rpms + self.srpms


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


def rpms_dir(ctx: Context) -> Path:
    return ctx.rpmbuild_dir / "RPMS"


def srpms_dir(ctx: Context) -> Path:
    return ctx.rpmbuild_dir / "SRPMS"


def unit_tree(ctx: Context, unit: str) -> Path:
    """A unit's own rpmbuild tree (SOURCES, BUILD, BUILDROOT), made fresh for each build."""
    tree = ctx.rpmbuild_dir / unit
    shutil.rmtree(tree, ignore_errors=True)
    (tree / "SOURCES").mkdir(parents=True)
    # The shared output folders exist before parallel rpmbuilds, which would race to create them.
    for folder in (rpms_dir(ctx) / "x86_64", rpms_dir(ctx) / "noarch", srpms_dir(ctx)):
        folder.mkdir(parents=True, exist_ok=True)
    return tree


def _copy_sources(ctx: Context, driver: Driver, sources: Path) -> None:
    """The tarball and patches, under the names the spec gives them (validated names, never the pack's paths)."""
    names = (driver.source_name(), *driver.patch_names())
    for item, name in zip((driver.source, *driver.patches), names, strict=True):
        shutil.copyfile(ctx.loaded.resolve(item), sources / name)


def _pack_data(ctx: Context, driver: Driver, sources: Path) -> None:
    """The data folder as a plain tar (the SRPM's payload compresses it once)."""
    folder = ctx.loaded.data_folder(driver)  # only read; the tar and the spec know it by its fixed name
    write_tarball(sources / driver.data_source(), [(driver.data_dir_name, folder)], ctx.epoch)


def _build(ctx: Context, spec: Path, tree: Path, prebuilt: Path | None, what: str = "-ba") -> BuiltSpec:
    defines = {"_smp_mflags": f"-j{ctx.jobs}", "kernel_build_dir": macro_path(ctx.kernel.build_dir)}
    if prebuilt is not None:
        defines["driverpack_prebuilt"] = macro_path(prebuilt)
    log = ctx.logs_dir / f"{tree.name}.log"  # the unit's log: kmod-<driver>.log, data-<driver>.log
    return rpmbuild(
        spec,
        tree,
        epoch=ctx.epoch,
        log=log,
        defines=defines,
        what=what,
        rpmdir=rpms_dir(ctx),
        srcrpmdir=srpms_dir(ctx),
    )


def _checked(built: BuiltSpec, problems: list[str]) -> BuiltRpms:
    if problems:
        raise BuildError("\n".join(problems), hint="fix the spec or the pack; the RPMs above would fail on the host")
    return BuiltRpms(built.rpms, (built.srpm,) if built.srpm is not None else ())


def build_kmod_rpms(ctx: Context, driver: Driver, spec: Path, prebuilt: Path | None) -> BuiltRpms:
    """rpmbuild -ba the driver's kernel-module spec (reusing the compiled modules), then check each RPM."""
    which("rpmbuild")
    tree = unit_tree(ctx, f"kmod-{driver.name}")
    _copy_sources(ctx, driver, tree / "SOURCES")
    built = _build(ctx, spec, tree, prebuilt)
    problems: list[str] = []
    for rpm in built.rpms:
        info = read_rpm(rpm)
        problems += check_kmod_rpm(info, ctx.kernel.release, (ctx.kernel.module_dir,))
        problems += inbox.rpm_problems(info)
    if driver.spec:  # the pack's own spec made these RPMs: name the key to fix
        index = ctx.loaded.pack.drivers.index(driver)
        problems = [f"{ctx.loaded.file}: drivers[{index}].spec: {p}" for p in problems]
    return _checked(built, problems)


def build_data_rpms(ctx: Context, driver: Driver, spec: Path) -> BuiltRpms:
    """rpmbuild -ba the driver's data spec, then check each RPM."""
    which("rpmbuild")
    tree = unit_tree(ctx, f"data-{driver.name}")
    _pack_data(ctx, driver, tree / "SOURCES")
    built = _build(ctx, spec, tree, None)
    return _checked(built, [p for rpm in built.rpms for p in check_data_rpm(read_rpm(rpm))])


def build_driver_srpms(ctx: Context, driver: Driver, specs: Sequence[Path]) -> BuiltRpms:
    """rpmbuild -bs a driver's specs: the source RPMs that mock, Koji and COPR build from; nothing is compiled."""
    which("rpmbuild")
    tree = unit_tree(ctx, f"srpms-{driver.name}")
    _copy_sources(ctx, driver, tree / "SOURCES")
    if driver.data is not None:
        _pack_data(ctx, driver, tree / "SOURCES")
    srpms = [_build(ctx, spec, tree, None, "-bs").srpm for spec in specs]
    return BuiltRpms((), tuple(p for p in srpms if p is not None))


def check_carried(ctx: Context, extra: tuple[Path, ...]) -> tuple[Path, ...]:
    """[[rpms]] built elsewhere (Koji, COPR): payload and rpmlib checks, and module RPMs for the target kernel."""
    problems: list[str] = []
    for path in extra:
        info = read_rpm(path)
        carries_modules = any(f.path.startswith("/lib/modules/") for f in info.files)
        if carries_modules and ctx.kernel.release:
            problems += check_kmod_rpm(info, ctx.kernel.release)
            problems += inbox.rpm_problems(info)
        else:
            problems += check_common(info)
    if problems:
        raise BuildError("\n".join(problems), hint="rebuild or replace the RPMs listed under [[rpms]]")
    return extra
