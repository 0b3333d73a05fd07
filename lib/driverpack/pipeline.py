"""The order of the steps lives here, and only here. Tasks call these; steps never call each other."""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from driverpack.context import Context, make_context
from driverpack.errors import DriverpackError, PackError
from driverpack.load import LoadedPack, find_pack_folders, load_pack, pack_folder

if TYPE_CHECKING:
    from driverpack.steps.compile import CompileResult
    from driverpack.steps.iso import IsoResult
    from driverpack.steps.release import ReleaseResult
    from driverpack.steps.rpms import RpmsResult, SpecBuild
    from driverpack.steps.specs import SpecsResult
    from driverpack.steps.verify import VerifyReport
    from driverpack.uptodate import Digest

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


class Run:
    """One pack on its way through the steps; each step runs at most once and is skipped when up to date."""

    def __init__(self, loaded: LoadedPack, root: Path, jobs: int | None = None) -> None:
        self.loaded = loaded
        self.root = root
        self.jobs = jobs
        self._ctx: Context | None = None
        self._digests: dict[str, str] = {}
        self._results: dict[str, object] = {}
        self.outputs: list[Path] = []  # every file the steps produced or found up to date

    @property
    def ctx(self) -> Context:
        if self._ctx is None:
            from driverpack import guidance
            from driverpack.steps.check import preflight

            checked = timed("check", self.loaded.label, lambda: preflight(self.loaded, self.root))
            self._ctx = make_context(self.loaded, self.root, self.jobs)
            for line in guidance.messages(self.loaded, checked.carries_modules):
                say(line)
            if self.loaded.pack.drivers and not self._ctx.kernel.requires_kernel:
                say(
                    f"warning: kernel {self._ctx.kernel.release} is not usable as an rpm version, so the driver "
                    "RPMs get no 'Requires: kernel-uname-r' (fine for a test build, not for a Citrix Hypervisor pack)"
                )
        return self._ctx

    def _step(self, name: str, digest: Digest, outputs: Callable[[T], Iterable[Path]], work: Callable[[], T]) -> T:
        if name in self._results:
            return self._results[name]  # type: ignore[return-value]
        from driverpack.uptodate import cached

        ctx = self.ctx
        self._digests[name] = digest.hexdigest()
        result, _ = cached(
            ctx.work / "stamps" / f"{name}.stamp",
            self._digests[name],
            outputs,
            lambda: timed(name, ctx.label, lambda: _logged(ctx.logs_dir / f"{name}.log", work)),
            lambda: say(f"--- {name} [{ctx.label}] up to date, skipped"),
        )
        self._results[name] = result
        for path in outputs(result):
            say(f"    {_shown(path, self.root)}")
            self.outputs.append(path)
        self.outputs.append(ctx.work / "stamps" / f"{name}.stamp")
        return result

    def specs(self) -> SpecsResult:
        from driverpack.steps.specs import write_specs
        from driverpack.uptodate import Digest, code_digest

        ctx = self.ctx
        pack = ctx.loaded.pack
        digest = Digest("specs", code_digest(), pack.model_dump_json(), ctx.kernel.release, ctx.kernel.module_dir)
        digest.text(str(ctx.kernel.build_dir)).text(str(ctx.epoch))
        for driver in pack.drivers:
            digest.file(ctx.loaded.resolve(driver.source))
            if driver.spec:
                digest.file(ctx.loaded.resolve(driver.spec))
            if driver.data is not None:
                digest.tree(ctx.loaded.folder / driver.data_folder())
        result = self._step("specs", digest, _spec_paths, lambda: write_specs(ctx))
        return result

    def compile(self) -> CompileResult:
        from driverpack.steps.compile import compile_modules
        from driverpack.uptodate import Digest, code_digest, kernel_identity, tool_version

        ctx = self.ctx
        # Only what the modules depend on: a data file or the pack text changing does not recompile.
        digest = Digest("compile", code_digest(), kernel_identity(ctx.kernel.build_dir).hexdigest())
        digest.text(ctx.kernel.release).text(tool_version("gcc")).text(tool_version("make"))
        for driver in ctx.loaded.pack.drivers:
            digest.text(driver.model_dump_json(include={"name", "replaces", "source", "patches", "spec", "make_args"}))
            digest.file(ctx.loaded.resolve(driver.source))
            for patch in driver.patches:
                digest.file(ctx.loaded.resolve(patch))
        result = self._step(
            "compile",
            digest,
            lambda r: [m for d in r.drivers for m in d.modules],
            lambda: compile_modules(ctx, _compile_progress),
        )
        return result

    def build_rpms(self) -> RpmsResult:
        from driverpack.steps.check import extra_rpm_files
        from driverpack.steps.rpms import build_rpms
        from driverpack.uptodate import Digest, tool_version

        specs_result = self.specs()
        compiled = self.compile()
        ctx = self.ctx
        extra = tuple(p for item in ctx.loaded.pack.rpms for p in extra_rpm_files(ctx.loaded, item.path))
        digest = Digest("build-rpms", self._digests["specs"], self._digests["compile"], tool_version("rpmbuild"))
        for path in extra:
            digest.file(path)
        result = self._step(
            "build-rpms",
            digest,
            lambda r: (*r.payload, *r.srpms),
            lambda: build_rpms(ctx, _spec_builds(specs_result, compiled), extra),
        )
        return result

    def srpms(self) -> tuple[Path, ...]:
        from driverpack.steps.rpms import build_srpms
        from driverpack.uptodate import Digest, tool_version

        specs_result = self.specs()
        digest = Digest("srpms", self._digests["specs"], tool_version("rpmbuild"))
        for driver in self.ctx.loaded.pack.drivers:
            for patch in driver.patches:
                digest.file(self.ctx.loaded.resolve(patch))
        return self._step("srpms", digest, lambda r: r, lambda: build_srpms(self.ctx, _spec_paths(specs_result)))

    def iso(self) -> IsoResult:
        from driverpack.steps.iso import signing_key_file, write_iso_md5, write_pack_iso
        from driverpack.uptodate import Digest, tool_version

        rpms = self.build_rpms()
        ctx = self.ctx
        key_file, _ = signing_key_file(ctx, self.root)
        digest = Digest("iso", self._digests["build-rpms"], tool_version("gpg"), tool_version("rpmsign"))
        digest.file(key_file)

        def work() -> IsoResult:
            result = write_pack_iso(ctx, self.root, rpms.payload, progress=_progress_printer(ctx.label))
            report = _verify(ctx, result.iso, packages_dir=result.packages)
            write_iso_md5(result, report.iso_md5)
            return result

        result = self._step("iso", digest, lambda r: (r.iso, r.iso_md5, r.metadata_md5, r.public_key), work)
        if result.test_key_warning and "warned" not in self._results:
            self._results["warned"] = True
            say(f"warning: {result.test_key_warning}")
        return result

    def release_zip(self) -> ReleaseResult:
        from driverpack.steps.release import source_members, write_release_zip
        from driverpack.uptodate import Digest

        iso_result = self.iso()
        specs_result = self.specs()
        rpms = self.build_rpms()
        ctx = self.ctx
        specs = tuple(spec for d in specs_result.drivers for spec in (d.kmod_spec, d.data_spec) if spec is not None)
        digest = Digest("release-zip", self._digests["iso"])
        for name, path in source_members(ctx, specs, rpms.srpms):  # pack.toml as written, comments too
            digest.text(name)
            if path.is_dir():
                digest.tree(path)
            else:
                digest.file(path)
        result = self._step(
            "release-zip",
            digest,
            lambda r: (r.zip,),
            lambda: write_release_zip(
                ctx, iso_result.iso, (iso_result.iso_md5, iso_result.metadata_md5), specs, rpms.srpms
            ),
        )
        return result


def _logged(log: Path, work: Callable[[], T]) -> T:
    from driverpack.run import logging_to

    with logging_to(log):
        return work()


def _spec_builds(specs: SpecsResult, compiled: CompileResult) -> list[SpecBuild]:
    from driverpack.steps.rpms import SpecBuild

    prebuilt = {c.name: c.source_root for c in compiled.drivers}
    builds = []
    for item in specs.drivers:
        builds.append(SpecBuild(item.kmod_spec, prebuilt.get(item.driver.name), is_kmod=True))
        if item.data_spec is not None:
            builds.append(SpecBuild(item.data_spec, None, is_kmod=False))
    return builds


def _spec_paths(result: SpecsResult) -> list[Path]:
    return [spec for d in result.drivers for spec in (d.kmod_spec, d.data_spec) if spec is not None]


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


TASKS = {
    "specs": Run.specs,
    "compile": Run.compile,
    "build-rpms": Run.build_rpms,
    "srpms": Run.srpms,
    "iso": Run.iso,
    "release-zip": Run.release_zip,
}


def run_task(loaded: LoadedPack, root: Path, task: str, jobs: int | None = None) -> list[Path]:
    """Run one task's steps for a pack; return every output file (for the quick no-op check)."""
    from driverpack.uptodate import load_digest_cache, save_digest_cache

    load_digest_cache(root / "build" / ".file-digests.json")
    run = Run(loaded, root, jobs)
    try:
        TASKS[task](run)
    finally:
        save_digest_cache()
    return run.outputs


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


def verify(loaded: LoadedPack, root: Path, iso_path: Path | None = None) -> None:
    """Check an ISO without building anything (the kernel comes from the pack's target)."""
    ctx = make_context(loaded, root)
    _verify(ctx, iso_path or ctx.dist / f"{ctx.label}.iso")


def _verify(ctx: Context, iso_path: Path, packages_dir: Path | None = None) -> VerifyReport:
    from driverpack.steps.verify import verify_iso

    report = timed(
        "verify", ctx.label, lambda: verify_iso(iso_path, kernel=ctx.kernel.release or None, packages_dir=packages_dir)
    )
    for line in report.lines:
        say(f"    {line}")
    return report


def clean(loaded: LoadedPack, root: Path) -> None:
    """Remove build/<label>/ and dist/<label>* outputs of one pack."""
    import shutil

    work = root / "build" / loaded.label
    removed = []
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
    from driverpack import quick

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
