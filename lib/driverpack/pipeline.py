"""The order of the steps lives here, and only here. Tasks call these; steps never call each other."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from driverpack.context import Context, make_context
from driverpack.errors import DriverpackError, PackError
from driverpack.load import LoadedPack, find_pack_folders, load_pack, pack_folder

if TYPE_CHECKING:
    from driverpack.steps.compile import CompileResult
    from driverpack.steps.iso import IsoResult
    from driverpack.steps.rpms import RpmsResult
    from driverpack.steps.specs import SpecsResult

T = TypeVar("T")


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def select_packs(selector: str | None, root: Path) -> list[LoadedPack]:
    """--pack LABEL|PATH, or every pack under packs/ (every problem of every pack reported)."""
    if selector:
        return [load_pack(pack_folder(selector, root))]
    folders = find_pack_folders(root)
    if not folders:
        raise PackError([f"no packs found under {root / 'packs'}/"], hint="create one with 'inv new LABEL'")
    loaded, problems = [], []
    for folder in folders:
        try:
            loaded.append(load_pack(folder))
        except DriverpackError as exc:
            problems.append(exc.message)
    if problems:
        raise PackError(problems)
    return loaded


def timed(name: str, label: str, fn: Callable[[], T]) -> T:
    """Run one step, printing a line when it starts and ends."""
    say(f"==> {name} [{label}]")
    start = time.monotonic()
    result = fn()
    say(f"<== {name} [{label}] done in {time.monotonic() - start:.1f}s")
    return result


def check(loaded: LoadedPack, root: Path) -> Context:
    from driverpack.steps.check import preflight

    timed("check", loaded.label, lambda: preflight(loaded, root))
    return make_context(loaded, root)


def specs(loaded: LoadedPack, root: Path) -> SpecsResult:
    return _specs(check(loaded, root), root)


def _specs(ctx: Context, root: Path) -> SpecsResult:
    from driverpack.steps.specs import write_specs

    result = timed("specs", ctx.label, lambda: write_specs(ctx))
    for driver in result.drivers:
        for spec in (driver.kmod_spec, driver.data_spec):
            if spec is not None:
                say(f"    {_shown(spec, root)}")
    return result


def compile(loaded: LoadedPack, root: Path) -> CompileResult:
    ctx = check(loaded, root)
    _specs(ctx, root)
    return _compile(ctx, root)


def _compile(ctx: Context, root: Path) -> CompileResult:
    from driverpack.steps.compile import compile_modules

    result = timed("compile", ctx.label, lambda: compile_modules(ctx))
    for driver in result.drivers:
        for module in driver.modules:
            say(f"    {_shown(module, root)} (vermagic {ctx.kernel.release})")
    return result


def build_rpms(loaded: LoadedPack, root: Path) -> RpmsResult:
    ctx = check(loaded, root)
    return _build_rpms(ctx, root)


def _build_rpms(ctx: Context, root: Path) -> RpmsResult:
    from driverpack.steps.check import extra_rpm_files
    from driverpack.steps.rpms import build_rpms as build

    specs_result = _specs(ctx, root)
    compiled = _compile(ctx, root)
    extra = tuple(p for item in ctx.loaded.pack.rpms for p in extra_rpm_files(ctx.loaded, item.path))
    result = timed("build-rpms", ctx.label, lambda: build(ctx, specs_result, compiled, extra))
    for path in (*result.kmod_rpms, *result.data_rpms, *result.srpms):
        say(f"    {_shown(path, root)}")
    return result


def iso(loaded: LoadedPack, root: Path) -> IsoResult:
    ctx = check(loaded, root)
    return _iso(ctx, root)


def _iso(ctx: Context, root: Path) -> IsoResult:
    from driverpack.steps.iso import write_pack_iso

    rpms = _build_rpms(ctx, root)
    result = timed("iso", ctx.label, lambda: write_pack_iso(ctx, root, rpms.payload))
    for path in (result.iso, result.iso_md5, result.metadata_md5, result.public_key):
        say(f"    {_shown(path, root)}")
    _verify(ctx, root, result.iso)
    if result.test_key_warning:
        say(f"warning: {result.test_key_warning}")
    return result


def verify(loaded: LoadedPack, root: Path, iso_path: Path | None = None) -> None:
    ctx = make_context(loaded, root)
    _verify(ctx, root, iso_path or ctx.dist / f"{ctx.label}.iso")


def _verify(ctx: Context, root: Path, iso_path: Path) -> None:
    from driverpack.steps.verify import verify_iso

    report = timed("verify", ctx.label, lambda: verify_iso(iso_path, kernel=ctx.kernel.release))
    for line in report.lines:
        say(f"    {line}")


def _shown(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root.resolve()))
    except ValueError:
        return str(path)


def clean(loaded: LoadedPack, root: Path) -> None:
    """Remove build/<label>/ and dist/<label>* outputs of one pack."""
    import shutil

    work = root / "build" / loaded.label
    removed = []
    if work.exists():
        shutil.rmtree(work)
        removed.append(work)
    dist = root / "dist"
    if dist.is_dir():
        for path in sorted(dist.glob(f"{loaded.label}[.-]*")) + sorted(dist.glob(f".{loaded.label}[.-]*")):
            path.unlink()
            removed.append(path)
    for path in removed:
        say(f"removed {_shown(path, root)}")
    if not removed:
        say(f"clean [{loaded.label}]: nothing to remove")
