"""build-rpms: rpmbuild each spec with settings the host's rpm 4.11 accepts, then read every RPM back."""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from driverpack.adapters.rpminfo import check_common, check_data_rpm, check_kmod_rpm, read_rpm
from driverpack.archive import write_tar_gz
from driverpack.context import Context
from driverpack.errors import BuildError, ToolError
from driverpack.models import Driver
from driverpack.run import run, which
from driverpack.steps.compile import CompileResult
from driverpack.steps.specs import SpecsResult, data_source_name

BUILDHOST = "driverpack"


@dataclass(frozen=True)
class BuiltSpec:
    spec: Path
    rpms: tuple[Path, ...]
    srpm: Path | None


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


def has_rpm_database() -> bool:
    """Debian has rpm but no rpm database of installed packages: BuildRequires cannot be checked there."""
    return run(["rpm", "-q", "--quiet", "rpm"], check=False, quiet=True).returncode == 0


def rpmbuild_argv(ctx: Context, spec: Path, *, prebuilt: Path | None, what: str = "-ba") -> list[str]:
    top = ctx.rpmbuild_dir
    defines = {
        "_topdir": str(top),
        "_sourcedir": str(top / "SOURCES"),
        "_buildhost": BUILDHOST,
        "use_source_date_epoch_as_buildtime": "1",
        "clamp_mtime_to_source_date_epoch": "1",
        "_build_id_links": "none",
        "debug_package": "%{nil}",
        "_binary_payload": "w9.gzdio",
        "_source_payload": "w9.gzdio",
        "_smp_mflags": f"-j{ctx.jobs}",
        "kernel_build_dir": str(ctx.kernel.build_dir),
    }
    if prebuilt is not None:
        defines["driverpack_prebuilt"] = str(prebuilt)
    argv = ["rpmbuild", what]
    for key, value in defines.items():
        argv += ["--define", f"{key} {value}"]
    if not has_rpm_database():
        argv.append("--nodeps")
    return [*argv, str(spec)]


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
            write_tar_gz(sources / data_source_name(driver), [(driver.data_folder(), folder)], ctx.epoch)


def _copy_if_changed(src: Path, dest: Path) -> None:
    if dest.exists() and dest.stat().st_size == src.stat().st_size and dest.read_bytes() == src.read_bytes():
        return
    shutil.copyfile(src, dest)


def build_spec(ctx: Context, spec: Path, prebuilt: Path | None, log_name: str) -> BuiltSpec:
    log = ctx.logs_dir / f"rpmbuild-{log_name}.log"
    log.unlink(missing_ok=True)
    try:
        proc = run(rpmbuild_argv(ctx, spec, prebuilt=prebuilt), log=log, source_date_epoch=ctx.epoch)
    except ToolError as exc:
        raise BuildError(f"rpmbuild of {spec.name} failed", hint=exc.message) from None
    written = [
        Path(line.split(":", 1)[1].strip())
        for line in (proc.stdout + proc.stderr).decode(errors="replace").splitlines()
        if line.startswith("Wrote:")
    ]
    return BuiltSpec(
        spec=spec,
        rpms=tuple(p for p in written if not p.name.endswith(".src.rpm")),
        srpm=next((p for p in written if p.name.endswith(".src.rpm")), None),
    )


def build_rpms(ctx: Context, specs: SpecsResult, compiled: CompileResult, extra: tuple[Path, ...]) -> RpmsResult:
    """rpmbuild -ba every spec (in parallel), then check each RPM the way the host will need it."""
    which("rpmbuild")
    for sub in ("RPMS", "SRPMS", "BUILD", "BUILDROOT"):
        # Made fresh before the parallel rpmbuilds, which would race to create them.
        shutil.rmtree(ctx.rpmbuild_dir / sub, ignore_errors=True)
        (ctx.rpmbuild_dir / sub).mkdir(parents=True)
    prepare_sources(ctx)
    prebuilt = {c.name: c.source_root for c in compiled.drivers}
    jobs: list[tuple[Driver, Path, Path | None, bool]] = []
    for item in specs.drivers:
        jobs.append((item.driver, item.kmod_spec, prebuilt.get(item.driver.name), True))
        if item.data_spec is not None:
            jobs.append((item.driver, item.data_spec, None, False))
    with ThreadPoolExecutor(max_workers=max(1, min(len(jobs), ctx.jobs))) as pool:
        futures = [pool.submit(build_spec, ctx, spec, pre, spec.stem) for _, spec, pre, _ in jobs]
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
        problems += check_common(read_rpm(path))
    if problems:
        raise BuildError("\n".join(problems), hint="fix the spec or the pack; the RPMs above would fail on the host")
    return RpmsResult(
        kmod_rpms=tuple(kmod),
        data_rpms=tuple(data),
        srpms=tuple(r.srpm for r in built if r.srpm is not None),
        extra_rpms=extra,
    )
