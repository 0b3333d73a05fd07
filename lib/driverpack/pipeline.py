"""The order of the steps lives here, and only here. Tasks call these; steps never call each other.

A step is made of units of work: one per driver where drivers are independent (its specs, its
compile, its kernel-module RPM, its data RPM), one for the ISO, one for the zip. Each unit declares
what it reads once (`driverpack.inputs`); from that declaration come its digest (is it up to date?),
the reasons it reruns (`inv status`), and the record the quick no-op check reads next time. A unit
whose inputs and outputs are unchanged is reused as it is; the others run, in parallel where they can.
"""

from __future__ import annotations

import contextlib
import functools
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from driverpack.context import MODULES_ROOT, Context, make_context
from driverpack.errors import DriverpackError, PackError
from driverpack.inputs import Inputs, Stat
from driverpack.load import PACK_FILE, PACKS_DIR, LoadedPack, find_pack_folders, load_pack, pack_folder

if TYPE_CHECKING:
    from driverpack.steps.compile import CompiledDriver, CompileResult
    from driverpack.steps.iso import IsoResult
    from driverpack.steps.release import ReleaseResult
    from driverpack.steps.rpms import BuiltRpms, RpmsResult
    from driverpack.steps.specs import SpecsResult
    from driverpack.steps.verify import VerifyReport
    from driverpack.uptodate import UnitState

T = TypeVar("T")

# Keys of [[drivers]] that do not reach the compiled modules: changing them repackages, never recompiles.
_NOT_COMPILED = {"version", "release", "summary", "license", "description", "changelog", "data"}
# Keys of [pack] that only the ISO and the zip read: changing them never rebuilds a driver's RPMs.
_PACK_ONLY = {"label", "text", "uuid", "version", "build", "base_requires", "after_apply", "source_archive_data"}
_PACK_ONLY |= {"signing_key", "signing_fingerprint", "gnupghome"}
# Units that belong to one driver: <kind>-<driver name>.
_DRIVER_UNITS = ("specs", "compile", "kmod", "data", "srpms")
_STEP_STAMPS = ("specs", "compile", "build-rpms", "srpms")


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


@dataclass(frozen=True)
class Unit(Generic[T]):
    """One unit of work: its stamp name, how the step lines name it, what it reads, what it writes, the work."""

    name: str
    shown: str
    inputs: Inputs
    outputs: Callable[[T], Iterable[Path]]
    work: Callable[[int], T]  # takes its share of the jobs


@dataclass(frozen=True)
class UnitReport:
    """`inv status` for one unit."""

    step: str
    unit: str
    shown: str
    fresh: bool
    reasons: tuple[str, ...]


class Run:
    """One pack on its way through the steps; each step runs at most once, each unit only when it must."""

    def __init__(
        self,
        loaded: LoadedPack,
        root: Path,
        jobs: int | None = None,
        *,
        dry: bool = False,
        hold: Callable[[], object] | None = None,
    ) -> None:
        self.loaded = loaded
        self.hold = hold  # takes the pack's lock once the checks pass (a failing check writes nothing)
        self.root = root
        self.jobs = jobs
        self.dry = dry  # judge every unit, run none (inv status)
        self._ctx: Context | None = None
        self._results: dict[str, object] = {}
        self.digests: dict[str, str] = {}  # unit -> input digest
        self.watched: dict[str, Stat | None] = {}  # every path read, as it was when declared
        self.tools: dict[str, str] = {}
        self.variables: dict[str, str] = {}
        self.outputs: list[Path] = []  # every file the steps produced or found up to date
        self.reports: list[UnitReport] = []

    # --- the context ---------------------------------------------------------------------------

    @property
    def ctx(self) -> Context:
        if self._ctx is None:
            from driverpack import guidance
            from driverpack.steps.check import preflight

            if self.dry:
                checked = preflight(self.loaded, self.root)
            else:
                checked = timed("check", self.loaded.label, lambda: preflight(self.loaded, self.root))
            if self.hold is not None:
                self.hold()
            self._ctx = make_context(self.loaded, self.root, self.jobs)
            self._declare(self._context_inputs(self._ctx))
            for line in guidance.messages(self.loaded, checked.carries_modules) if not self.dry else ():
                say(line)
            if self.loaded.pack.drivers and not self._ctx.kernel.requires_kernel and not self.dry:
                say(
                    f"warning: kernel {self._ctx.kernel.release} is not usable as an rpm version, so the driver "
                    "RPMs get no 'Requires: kernel-uname-r' (fine for a test build, not for a Citrix Hypervisor pack)"
                )
        return self._ctx

    def _context_inputs(self, ctx: Context) -> Inputs:
        """What check and the context read: the pack file, the other packs, the tools, how the kernel was found."""
        from driverpack.steps.check import REQUIRED_TOOLS

        loaded = self.loaded
        inputs = Inputs("context").file(PACK_FILE, loaded.folder / PACK_FILE).code().env("SOURCE_DATE_EPOCH")
        for tool in REQUIRED_TOOLS:
            inputs.tool(tool)
        packs = self.root / PACKS_DIR
        inputs.listing(PACKS_DIR, packs)
        for folder in find_pack_folders(self.root):  # uuid and label must stay unique across them
            inputs.file(f"{folder.name}/{PACK_FILE}", folder / PACK_FILE)
        target = loaded.pack.target
        if target.kernel_devel:
            inputs.file("target.kernel_devel", loaded.resolve(target.kernel_devel))
        elif target.kernel == "auto":
            inputs.listing("installed kernels", MODULES_ROOT)
        return inputs

    def _declare(self, inputs: Inputs) -> None:
        self.watched.update(inputs.watched())
        self.tools.update(inputs.tools())
        self.variables.update(inputs.variables())

    # --- running units -------------------------------------------------------------------------

    def _step(
        self, step: str, units: Sequence[Unit[T]], progress: Callable[[str, int, int], None] | None = None
    ) -> list[T]:
        """Judge every unit of a step, reuse the fresh ones, run the rest; print the step lines."""
        if step in self._results:
            return self._results[step]  # type: ignore[return-value]
        from driverpack.uptodate import unit_state

        ctx = self.ctx
        states = []
        for unit in units:
            self._declare(unit.inputs)  # stat before reading: a change meanwhile shows next time
            state = unit_state(ctx.work / "stamps" / f"{unit.name}.stamp", unit.inputs)
            self.digests[unit.name] = state.digest
            states.append(state)
            self.reports.append(UnitReport(step, unit.name, unit.shown, state.fresh, state.reasons))
        results: dict[str, T] = {u.name: s.result for u, s in zip(units, states, strict=True) if s.fresh}
        stale = [(u, s) for u, s in zip(units, states, strict=True) if not s.fresh]
        if self.dry:  # a unit that would run is taken to give what it gave last time
            self._results[step] = [results.get(u.name, s.last) for u, s in zip(units, states, strict=True)]
            return self._results[step]  # type: ignore[return-value]
        if units and not stale:
            say(f"--- {step} [{ctx.label}] up to date, skipped")
        elif stale:
            say(f"==> {step} [{ctx.label}]")
            start = time.monotonic()
            reused = [u.shown for u in units if u.name in results]
            if reused:
                say(f"    reused {', '.join(reused)} (unchanged)")
            results.update(self._run_units(stale, progress))
            say(f"<== {step} [{ctx.label}] done in {time.monotonic() - start:.1f}s")
        ordered = [results[u.name] for u in units]
        for unit, result in zip(units, ordered, strict=True):
            for path in unit.outputs(result):
                say(f"    {_shown(path, self.root)}")
                self.outputs.append(path)
            self.outputs.append(ctx.work / "stamps" / f"{unit.name}.stamp")
        self._results[step] = ordered
        return ordered

    def _run_units(
        self, stale: list[tuple[Unit[T], UnitState]], progress: Callable[[str, int, int], None] | None
    ) -> dict[str, T]:
        """Run the stale units, several at once when there are jobs for them; the first failure is raised
        once every started unit has ended (so each finished one keeps its stamp)."""
        from driverpack.run import logging_to
        from driverpack.uptodate import forget, record

        ctx = self.ctx
        workers = max(1, min(len(stale), ctx.jobs))
        jobs_each = max(1, ctx.jobs // workers)

        def one(unit: Unit[T], state: UnitState) -> T:
            with logging_to(ctx.logs_dir / f"{unit.name}.log"):
                for old in forget(state.stamp):  # what this unit wrote last time, e.g. an RPM of an old version
                    if ctx.work in old.parents and old.is_file():
                        old.unlink()
                result = unit.work(jobs_each)
            record(state, unit.outputs(result), result)
            return result

        results: dict[str, T] = {}
        errors: list[BaseException] = []
        if workers == 1:
            for done, (unit, state) in enumerate(stale, start=1):
                results[unit.name] = one(unit, state)
                if progress is not None:
                    progress(unit.shown, done, len(stale))
            return results
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures: dict[Future[T], Unit[T]] = {pool.submit(one, u, s): u for u, s in stale}
            for done, future in enumerate(as_completed(futures), start=1):
                unit = futures[future]
                try:
                    results[unit.name] = future.result()
                except BaseException as exc:
                    errors.append(exc)
                    continue
                if progress is not None:
                    progress(unit.shown, done, len(stale))
        if errors:
            raise errors[0]
        return results

    # --- the steps -----------------------------------------------------------------------------

    def specs(self) -> SpecsResult:
        from driverpack.steps.specs import SpecsResult, write_driver_specs, written

        ctx = self.ctx
        if not self.dry:
            self._prune()
        units = [
            Unit(f"specs-{d.name}", d.name, self._specs_inputs(i), written, _call(write_driver_specs, ctx, i))
            for i, d in enumerate(ctx.loaded.pack.drivers)
        ]
        return SpecsResult(tuple(self._step("specs", units)))

    def _specs_inputs(self, index: int) -> Inputs:
        ctx = self.ctx
        pack = ctx.loaded.pack
        driver = pack.drivers[index]
        inputs = (
            Inputs(f"specs-{driver.name}")
            .code()
            .value("its [[drivers]] keys", driver.model_dump_json())
            .value("pack", pack.pack.model_dump_json(exclude=_PACK_ONLY))
            .value("target", f"{pack.target.model_dump_json()} {ctx.kernel}")
            .value("SOURCE_DATE_EPOCH", str(ctx.epoch))
            .value("pack folder name", ctx.loaded.folder.name)
            .file("source", ctx.loaded.resolve(driver.source))
        )
        if driver.spec:
            inputs.file("spec", ctx.loaded.resolve(driver.spec))
        if driver.data is not None:
            inputs.tree("data", ctx.loaded.data_folder(driver))
        return inputs

    def compile(self) -> CompileResult:
        from driverpack.steps.compile import CompileResult, compilable, compile_driver

        ctx = self.ctx
        units = [
            Unit(
                f"compile-{d.name}",
                d.name,
                self._compile_inputs(i),
                lambda r: r.modules,
                functools.partial(compile_driver, ctx, d),
            )
            for i, d in enumerate(ctx.loaded.pack.drivers)
            if compilable(d)
        ]
        return CompileResult(tuple(self._step("compile", units, _compile_progress)))

    def _compile_inputs(self, index: int) -> Inputs:
        from driverpack.uptodate import KERNEL_TREE_FILES

        ctx = self.ctx
        driver = ctx.loaded.pack.drivers[index]
        inputs = (
            Inputs(f"compile-{driver.name}")
            .code()
            .value("its [[drivers]] keys", driver.model_dump_json(exclude=_NOT_COMPILED))
            .value("target kernel", f"{ctx.kernel.release} {ctx.kernel.build_dir}")
            .tool("gcc")
            .tool("make")
            .tool("patch")
            .file("source", ctx.loaded.resolve(driver.source))
        )
        for j, patch in enumerate(driver.patches):
            inputs.file(f"patches[{j}]", ctx.loaded.resolve(patch))
        for name in KERNEL_TREE_FILES:
            inputs.file(f"kernel tree {name}", ctx.kernel.build_dir / name)
        return inputs

    def build_rpms(self) -> RpmsResult:
        from driverpack.steps.rpms import RpmsResult, build_data_rpms, build_kmod_rpms, check_carried

        self.specs()
        compiled = {c.name: c for c in self.compile().drivers if c is not None}
        ctx = self.ctx
        units: list[Unit[Any]] = []
        for i, d in enumerate(ctx.loaded.pack.drivers):
            prebuilt = compiled.get(d.name)
            units.append(
                Unit(
                    f"kmod-{d.name}",
                    d.name,
                    self._kmod_inputs(i),
                    _built_files,
                    _call(build_kmod_rpms, ctx, d, self._kmod_spec(i), _tree(prebuilt)),
                )
            )
            if d.data is not None:
                spec = ctx.specs_dir / f"{d.data_name}.spec"
                units.append(
                    Unit(
                        f"data-{d.name}",
                        d.data_name,
                        self._data_inputs(i),
                        _built_files,
                        _call(build_data_rpms, ctx, d, spec),
                    )
                )
        extra = self._carried_files()
        if extra:
            units.append(
                Unit(
                    "carried",
                    "[[rpms]]",
                    self._carried_inputs(extra),
                    lambda _: (),
                    lambda _: check_carried(ctx, extra),
                )
            )
        results = self._step("build-rpms", units)
        built = dict(zip((u.name for u in units), results, strict=True))
        kmod = [r for u, r in built.items() if u.startswith("kmod-") and r is not None]
        data = [r for u, r in built.items() if u.startswith("data-") and r is not None]
        return RpmsResult(
            kmod_rpms=tuple(p for r in kmod for p in r.rpms),
            data_rpms=tuple(p for r in data for p in r.rpms),
            srpms=tuple(p for r in (*kmod, *data) for p in r.srpms),
            extra_rpms=extra,
        )

    def _kmod_spec(self, index: int) -> Path:
        """The kernel-module spec rpmbuild runs: the generated one, or the pack's own copied under the driver's name."""
        return self.ctx.specs_dir / f"{self.ctx.loaded.pack.drivers[index].name}.spec"

    def _kmod_inputs(self, index: int) -> Inputs:
        ctx = self.ctx
        driver = ctx.loaded.pack.drivers[index]
        spec = self._kmod_spec(index)
        inputs = (
            Inputs(f"kmod-{driver.name}")
            .code()
            .file(f"SPECS/{spec.name}", spec)
            .file("source", ctx.loaded.resolve(driver.source))
            .value("kernel build dir", str(ctx.kernel.build_dir))
            .value("SOURCE_DATE_EPOCH", str(ctx.epoch))
            .tool("rpmbuild")
        )
        for j, patch in enumerate(driver.patches):
            inputs.file(f"patches[{j}]", ctx.loaded.resolve(patch))
        compiled = self.digests.get(f"compile-{driver.name}")
        if compiled is not None:
            inputs.unit_digest(f"the compile of {driver.name}", compiled)
        return inputs

    def _data_inputs(self, index: int) -> Inputs:
        ctx = self.ctx
        driver = ctx.loaded.pack.drivers[index]
        spec = ctx.specs_dir / f"{driver.data_name}.spec"
        return (
            Inputs(f"data-{driver.name}")
            .code()
            .file(f"SPECS/{spec.name}", spec)
            .tree("data", ctx.loaded.data_folder(driver))
            .value("SOURCE_DATE_EPOCH", str(ctx.epoch))
            .tool("rpmbuild")
        )

    def _carried_files(self) -> tuple[Path, ...]:
        from driverpack.steps.check import extra_rpm_files

        loaded = self.ctx.loaded
        return tuple(p for item in loaded.pack.rpms for p in extra_rpm_files(loaded, item.path))

    def _carried_inputs(self, extra: tuple[Path, ...]) -> Inputs:
        from driverpack.steps.check import extra_rpm_folder

        ctx = self.ctx
        inputs = Inputs("carried").code().value("target kernel", ctx.kernel.release)
        for i, item in enumerate(ctx.loaded.pack.rpms):
            inputs.value(f"rpms[{i}].path", item.path).listing(
                f"rpms[{i}] folder", extra_rpm_folder(ctx.loaded, item.path)
            )
        for path in extra:
            inputs.file(f"[[rpms]] {path.name}", path)
        return inputs

    def srpms(self) -> tuple[Path, ...]:
        from driverpack.steps.rpms import build_driver_srpms

        specs = self.specs()
        ctx = self.ctx
        units = []
        for i, item in enumerate(specs.drivers):
            d = ctx.loaded.pack.drivers[i]
            files = tuple(s for s in (self._kmod_spec(i), item.data_spec) if s is not None)
            inputs = Inputs(f"srpms-{d.name}").code().value("SOURCE_DATE_EPOCH", str(ctx.epoch)).tool("rpmbuild")
            inputs.file("source", ctx.loaded.resolve(d.source))
            for spec in files:
                inputs.file(f"SPECS/{spec.name}", spec)
            for j, patch in enumerate(d.patches):
                inputs.file(f"patches[{j}]", ctx.loaded.resolve(patch))
            if d.data is not None:
                inputs.tree("data", ctx.loaded.data_folder(d))
            units.append(
                Unit(f"srpms-{d.name}", d.name, inputs, _built_files, _call(build_driver_srpms, ctx, d, files))
            )
        return tuple(p for r in self._step("srpms", units) if r is not None for p in r.srpms)

    def iso(self) -> IsoResult:
        from driverpack.steps.iso import write_iso_md5, write_pack_iso

        rpms = self.build_rpms()
        ctx = self.ctx
        inputs = (
            Inputs("iso")
            .code()
            .value("pack", ctx.loaded.pack.pack.model_dump_json(exclude={"source_archive_data"}))
            .value("label", ctx.label)
            .value("target kernel", ctx.kernel.release)
            .value("SOURCE_DATE_EPOCH", str(ctx.epoch))
            .tool("gpg")
            .tool("rpmsign")
            .tool("rpmbuild")
        )
        self._declare_signing_key(inputs)
        for unit, digest in self.digests.items():
            if unit.startswith(("kmod-", "data-")) or unit == "carried":
                inputs.unit_digest(unit, digest)

        def work(_: int) -> IsoResult:
            result = write_pack_iso(ctx, self.root, rpms.payload, progress=_progress_printer(ctx.label))
            report = _verify(ctx, result.iso, packages_dir=result.packages)
            write_iso_md5(result, report.iso_md5)
            return result

        (result,) = self._step(
            "iso", [Unit("iso", ctx.label, inputs, lambda r: (r.iso, r.iso_md5, r.metadata_md5, r.public_key), work)]
        )
        if result is not None and result.test_key_warning and "warned" not in self._results and not self.dry:
            self._results["warned"] = True
            say(f"warning: {result.test_key_warning}")
        return result

    def _declare_signing_key(self, inputs: Inputs) -> None:
        """The key as an input: a key file's bytes; a keyring key's fingerprint, public key and keyring files
        (never a secret key). The local test key is made once in keys/, one run at a time."""
        from driverpack.adapters import gpg
        from driverpack.locks import file_lock, locks_dir
        from driverpack.steps.iso import signing_choice, signing_key_input

        info = self.ctx.loaded.pack.pack
        if self.dry and not (info.signing_key or info.signing_fingerprint):
            inputs.file("signing key", self.root / "keys" / gpg.TEST_KEY_FILE)  # status names it; a build makes it
            return
        with file_lock(locks_dir(self.root) / "keys.lock"):
            choice = signing_choice(self.ctx, self.root)
        if choice.key_file is not None:
            inputs.file("signing key", choice.key_file)
            return
        inputs.value("signing key", signing_key_input(self.ctx, self.root)).env("GNUPGHOME")
        home = gpg.keyring_homedir(choice.gnupghome)
        for name in ("pubring.kbx", "pubring.gpg"):
            if (home / name).is_file():
                inputs.file(f"keyring {name}", home / name)

    def release_zip(self) -> ReleaseResult:
        from driverpack.steps.release import write_release_zip

        iso_result = self.iso()
        rpms = self.build_rpms()
        ctx = self.ctx
        with_data = ctx.loaded.pack.pack.source_archive_data
        data_srpms = {
            p for p in rpms.srpms if any(p.name.startswith(f"{d.data_name}-") for d in ctx.loaded.pack.drivers)
        }
        srpms = tuple(p for p in rpms.srpms if with_data or p not in data_srpms)
        inputs = (
            Inputs("release-zip")
            .code()
            .unit_digest("iso", self.digests["iso"])
            .file(PACK_FILE, ctx.loaded.folder / PACK_FILE)  # as written, comments too
            .value("pack.version", ctx.loaded.pack.pack.version)
            .value("SOURCE_DATE_EPOCH", str(ctx.epoch))
        )
        for srpm in srpms:
            inputs.file(f"SRPMS/{srpm.name}", srpm)

        def work(_: int) -> ReleaseResult:
            assert iso_result is not None
            return write_release_zip(ctx, iso_result.iso, (iso_result.iso_md5, iso_result.metadata_md5), srpms)

        (result,) = self._step("release-zip", [Unit("release-zip", ctx.label, inputs, lambda r: (r.zip,), work)])
        return result

    # --- removed drivers -----------------------------------------------------------------------

    def _prune(self) -> None:
        """Remove what drivers no longer in the pack left under build/<label>/ (their stamps and outputs)."""
        from driverpack.uptodate import forget

        ctx = self.ctx
        names = {d.name for d in ctx.loaded.pack.drivers}
        stamps = ctx.work / "stamps"
        for stamp in sorted(stamps.glob("*.stamp")) if stamps.is_dir() else []:
            if stamp.stem in _STEP_STAMPS:  # an older driverpack's stamp of a whole step: its units start anew
                stamp.unlink()
                continue
            kind, _, name = stamp.stem.partition("-")
            if kind not in _DRIVER_UNITS or name in names:
                continue
            for old in forget(stamp):
                if ctx.work in old.parents and old.is_file():
                    old.unlink()
            for leftover in (ctx.work / "BUILD" / name, ctx.rpmbuild_dir / f"{kind}-{name}"):
                shutil.rmtree(leftover, ignore_errors=True)
            (ctx.logs_dir / f"{kind}-{name}.log").unlink(missing_ok=True)


def _call(fn: Callable[..., T], *args: Any) -> Callable[[int], T]:
    """Work that has no use for its share of the jobs."""
    return lambda _jobs: fn(*args)


def _tree(compiled: CompiledDriver | None) -> Path | None:
    return None if compiled is None else compiled.source_root


def _built_files(result: BuiltRpms) -> tuple[Path, ...]:
    return result.files


def _bar(what: str, done: int, total: int) -> None:
    """A progress bar on a terminal (rewritten in place); nothing otherwise."""
    percent = 100 * done // total if total else 100
    print(f"\r    {what} [{'#' * (percent // 4):<25}] {percent:3d}%", end="", file=sys.stderr, flush=True)
    if done >= total:
        print(file=sys.stderr)


def _compile_progress(name: str, done: int, total: int) -> None:
    """Each finished driver: a bar on a terminal, a plain line otherwise."""
    if sys.stderr.isatty():
        _bar(f"compiling {done}/{total}", done, total)
    else:
        say(f"    compiled {name} ({done}/{total})")


def _progress_printer(label: str) -> Callable[[int, int], None]:
    """ISO write progress: a bar on a terminal, a few plain lines otherwise."""
    is_tty = sys.stderr.isatty()
    last = [-1]

    def report(done: int, total: int) -> None:
        percent = 100 * done // total if total else 100
        if is_tty:
            _bar("writing ISO", done, total)
        elif percent // 25 != last[0] // 25 or (done >= total and last[0] != 100):
            say(f"    writing ISO: {percent}%")
        last[0] = percent

    return report


TASKS: dict[str, Callable[[Run], object]] = {
    "specs": Run.specs,
    "compile": Run.compile,
    "build-rpms": Run.build_rpms,
    "srpms": Run.srpms,
    "iso": Run.iso,
    "release-zip": Run.release_zip,
}


def run_task(loaded: LoadedPack, root: Path, task: str, jobs: int | None = None, wait: float | None = None) -> None:
    """Run one task's steps for a pack, holding the pack's lock; then remember what it read and wrote, so an
    unchanged rerun answers from the quick check."""
    from driverpack import quick
    from driverpack.locks import pack_lock
    from driverpack.uptodate import load_digest_cache, save_digest_cache

    with contextlib.ExitStack() as held:
        load_digest_cache(root / "build" / ".file-digests.json")
        run = Run(loaded, root, jobs, hold=lambda: held.enter_context(pack_lock(root, loaded.label, wait, say)))
        try:
            TASKS[task](run)
        finally:
            save_digest_cache()
        quick.record(root, loaded.folder, task, loaded.label, run.watched, run.tools, run.variables, run.outputs)


def check(loaded: LoadedPack, root: Path) -> Context:
    return Run(loaded, root).ctx


def check_all(packs: list[LoadedPack], root: Path) -> None:
    """Preflight every pack, reporting the problems of all of them at once."""
    problems: list[str] = []
    hints: list[str] = []
    for loaded in packs:
        try:
            check(loaded, root)
        except PackError as exc:
            problems += exc.problems
            hints.append(exc.hint)
    if problems:
        raise PackError(problems, hint="; ".join(dict.fromkeys(h for h in hints if h)))


def specs(loaded: LoadedPack, root: Path) -> SpecsResult:
    return Run(loaded, root).specs()


def compile(loaded: LoadedPack, root: Path) -> CompileResult:
    return Run(loaded, root).compile()


def build_rpms(loaded: LoadedPack, root: Path) -> RpmsResult:
    return Run(loaded, root).build_rpms()


def srpms(loaded: LoadedPack, root: Path) -> tuple[Path, ...]:
    return Run(loaded, root).srpms()


def iso(loaded: LoadedPack, root: Path) -> IsoResult:
    return Run(loaded, root).iso()


def release_zip(loaded: LoadedPack, root: Path) -> ReleaseResult:
    return Run(loaded, root).release_zip()


def status(loaded: LoadedPack, root: Path) -> list[UnitReport]:
    """Every unit of a full release-zip, judged without running anything: up to date, or why it would run."""
    from driverpack.uptodate import load_digest_cache

    load_digest_cache(root / "build" / ".file-digests.json")
    run = Run(loaded, root, dry=True)
    run.release_zip()
    return run.reports


def _upstream(unit: str, units: Sequence[str]) -> list[str]:
    """The units whose outputs `unit` reads as files (a change of their inputs may or may not change them)."""
    kind, _, name = unit.partition("-")
    if kind in ("kmod", "data", "srpms") and name:
        return [f"specs-{name}"]
    if unit == "iso":
        return [u for u in units if u.startswith(("kmod-", "data-")) or u == "carried"]
    if unit == "release-zip":
        return ["iso", *(u for u in units if u.startswith(("kmod-", "data-")))]
    return []


def print_status(loaded: LoadedPack, root: Path) -> None:
    """`inv status`: one line per step, what each unit would do and why."""
    from driverpack import quick
    from driverpack.load import display_path

    reports = status(loaded, root)
    names = [r.unit for r in reports]
    maybe = {r.unit for r in reports if not r.fresh}
    lines: dict[str, list[str]] = {}
    for report in reports:
        if not report.fresh:
            text = f"would run: {'; '.join(report.reasons)}"
        else:
            after = [u for u in _upstream(report.unit, names) if u in maybe]
            if after:
                maybe.add(report.unit)
            text = f"may run, after {', '.join(after)}" if after else "up to date"
        shown = "" if report.unit == report.step else f"{report.shown}: "
        lines.setdefault(report.step, []).append(shown + text)
    print(f"{loaded.label} ({display_path(loaded.folder)})")
    print(f"    quick check of release-zip: {quick.explain(root, loaded.folder, 'release-zip')}")
    for step, parts in lines.items():
        print(f"    {step:<12} " + f"\n    {'':<12} ".join(parts))


def verify(
    loaded: LoadedPack, root: Path, iso_path: Path | None = None, key: Path | None = None, kernel: str | None = None
) -> None:
    """Check an ISO without building anything (the kernel comes from the pack's target unless given)."""
    ctx = make_context(loaded, root)
    _verify(ctx, iso_path or ctx.dist / f"{ctx.label}.iso", key=key, kernel=kernel)


def verify_file(iso_path: Path, key: Path | None = None, kernel: str | None = None) -> None:
    """Check any pack ISO without a pack file; the key and kernel are given or read from the ISO."""
    from driverpack.steps.verify import verify_iso

    _reported(iso_path.name, lambda: verify_iso(iso_path, kernel=kernel, public_key=key))


def _verify(
    ctx: Context,
    iso_path: Path,
    packages_dir: Path | None = None,
    key: Path | None = None,
    kernel: str | None = None,
) -> VerifyReport:
    from driverpack.steps.verify import verify_iso

    target = kernel or ctx.kernel.release or None
    return _reported(
        ctx.label,
        lambda: verify_iso(
            iso_path,
            kernel=target,
            kernel_origin="--kernel" if kernel else "the pack's target",
            public_key=key,
            packages_dir=packages_dir,
        ),
    )


def _reported(label: str, check: Callable[[], VerifyReport]) -> VerifyReport:
    """Run verify as a step; the checks that held are listed even when others failed."""
    from driverpack.steps.verify import VerifyFailed

    try:
        report = timed("verify", label, check)
    except VerifyFailed as exc:
        for line in exc.passed:
            say(f"    {line}")
        raise
    for line in report.lines:
        say(f"    {line}")
    return report


def clean(loaded: LoadedPack, root: Path, wait: float | None = None) -> None:
    """Remove build/<label>/ and dist/<label>* outputs of one pack (after any run building it has ended)."""
    from driverpack import quick
    from driverpack.locks import pack_lock

    work = root / "build" / loaded.label
    removed = []
    with pack_lock(root, loaded.label, wait, say):
        if work.exists():
            shutil.rmtree(work)
            removed.append(work)
        dist = root / "dist"
        # Exactly this pack's deliverables (and their temporary names): not those of a pack named <label>-x.
        mine = re.compile(rf"\.?{re.escape(loaded.label)}(\.iso|\.iso\.md5|\.metadata\.md5|-[^-/]+\.zip)(\.tmp-\d+)?")
        if dist.is_dir():
            for path in sorted(p for p in dist.iterdir() if mine.fullmatch(p.name)):
                path.unlink()
                removed.append(path)
        quick.forget(root, loaded.folder)
    for path in removed:
        say(f"removed {_shown(path, root)}")
    if not removed:
        say(f"clean [{loaded.label}]: nothing to remove")


def _shown(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root.resolve()))
    except ValueError:
        return str(path)
