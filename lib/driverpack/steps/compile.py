"""compile: unpack, patch and build each driver's modules with Kbuild against the target kernel."""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from driverpack import inbox
from driverpack.adapters.tarball import extract_tarball, inspect_tarball
from driverpack.context import Context
from driverpack.errors import BuildError, PackError, ToolError
from driverpack.models import Driver
from driverpack.proposal import read_markers, route_advice
from driverpack.routes import Placeholder, RoutePlan, command_env, plan_route, resolve
from driverpack.run import run, which
from driverpack.vermagic import vermagic, vermagic_matches


@dataclass(frozen=True)
class CompiledDriver:
    name: str
    source_root: Path  # the unpacked, patched tree's top directory (rpmbuild's prebuilt dir)
    modules: tuple[Path, ...]  # the .ko files, sorted


@dataclass(frozen=True)
class CompileResult:
    drivers: tuple[CompiledDriver, ...]  # the drivers with a generated spec, in pack order


# Compiler/modpost messages that mean "this source does not fit this kernel's API".
_API_PATTERNS = (
    re.compile(r"implicit declaration of function"),
    re.compile(r"has no member named"),
    re.compile(r"incompatible pointer type"),
    re.compile(r"undefined symbol|\"[A-Za-z0-9_]+\" \[.*\] undefined"),
    re.compile(r"too (many|few) arguments to function"),
    re.compile(r"unknown type name|storage size of .* isn't known|dereferencing pointer to incomplete type"),
    re.compile(r"invalid use of undefined type|initialization of .* from incompatible"),
    re.compile(r"unknown field .* specified in initializer"),
)
_FIRST_ERROR = re.compile(r"^(?P<where>[^\s:]+:\d+(?::\d+)?): (?:fatal )?error: (?P<what>.*)$")
_MODPOST_ERROR = re.compile(r"^(?:ERROR|FATAL): (?:modpost: )?(?P<what>.*)$")
# Kernels before 5.x only warn about undefined symbols in external modules (modpost -w), and the
# module would then fail to load on the host with "Unknown symbol".
_MODPOST_UNDEFINED_WARNING = re.compile(
    r'^WARNING: (?:modpost: )?"(?P<symbol>[^"]+)" \[(?P<module>.+?\.ko)\] undefined!$'
)


def compilable(driver: Driver) -> bool:
    """Drivers with a hand-written spec are compiled by that spec's own %build."""
    return not driver.spec


def refuse_inbox_modules(ctx: Context, results: list[CompiledDriver]) -> None:
    """Before any RPM is made: no built module may be one an in-box driver package owns (unless replaced)."""
    drivers = {d.name: (i, d) for i, d in enumerate(ctx.loaded.pack.drivers)}
    problems = []
    for result in results:
        index, driver = drivers[result.name]
        where = f"{ctx.loaded.file}: drivers[{index}]"
        problems += inbox.module_problems((m.name for m in result.modules), driver.rpm_name, where)
    if problems:
        raise PackError(problems, hint="no RPM was built; see 'Targeting Citrix Hypervisor 8.2' in the README")


def compile_driver(ctx: Context, driver: Driver, jobs: int) -> CompiledDriver:
    """Unpack, patch and build one driver with `make -j<jobs>`, then check every module's vermagic."""
    which("make")
    index = ctx.loaded.pack.drivers.index(driver)
    tarball = ctx.loaded.resolve(driver.source)
    layout = inspect_tarball(tarball)
    unpack_dir = ctx.work / "BUILD" / driver.name
    if unpack_dir.exists():
        shutil.rmtree(unpack_dir)
    root = extract_tarball(tarball, unpack_dir)
    log = ctx.logs_dir / f"compile-{driver.name}.log"
    log.unlink(missing_ok=True)
    for j, patch in enumerate(driver.patches):
        apply_patch(root, ctx.loaded.resolve(patch), f"{ctx.loaded.file}: drivers[{index}].patches[{j}]", log)
    plan = plan_route(driver, layout)
    values = {
        Placeholder.KERNEL: ctx.kernel.release,
        Placeholder.KERNEL_BUILD_DIR: str(ctx.kernel.build_dir),
        Placeholder.JOBS: str(jobs),
        Placeholder.SOURCE_DIR: str(root),
    }
    for command in plan.commands:
        try:
            run(
                [resolve(word, values) for word in command.argv],
                cwd=root / command.folder,
                env=command_env(plan, command, values),
                log=log,
                source_date_epoch=ctx.epoch,
            )
        except ToolError:
            shown = " ".join(resolve(word, values) for word in command.argv)
            step = "" if command in plan.build else f"{command.what} ({shown})"
            raise BuildError(
                diagnose(log, driver.name, ctx.kernel.release, step) + _route_advice(driver, plan, tarball, index, ctx),
                hint=f"the command: {shown} (in {root / command.folder}); full log: {log}",
            ) from None
    undefined = undefined_symbols(log)
    if undefined:
        raise BuildError(
            f"{driver.name}: modules built against kernel {ctx.kernel.release} use symbols that kernel does not "
            f"export: {', '.join(undefined)}\n  this looks like a kernel API change: the driver source is probably "
            f"not compatible with kernel {ctx.kernel.release}; ask the driver's author for a version that supports it",
            hint=f"full log: {log}",
        )
    modules = tuple(sorted({ko for folder in plan.module_folders for ko in (root / folder).rglob("*.ko")}))
    check_modules(modules, driver.name, ctx.kernel.release, log)
    compiled = CompiledDriver(name=driver.name, source_root=root, modules=modules)
    refuse_inbox_modules(ctx, [compiled])
    return compiled


def _route_advice(driver: Driver, plan: RoutePlan, tarball: Path, index: int, ctx: Context) -> str:
    """What the tree itself says about how it builds: vendor route markers, and the folders that were candidates."""
    where = f"{ctx.loaded.file}: drivers[{index}]"
    lines = [f"\n  {where}: {advice}" for advice in route_advice(driver, read_markers(tarball))]
    if plan.choice.is_guess:
        lines.append(
            f"\n  {where}: {plan.choice.describe()}; if that is the wrong folder, name the right one with "
            'module_folders = ["<folder>"]'
        )
    return "".join(lines)


def apply_patch(root: Path, patch: Path, where: str, log: Path) -> None:
    """patch -p1; a patch that does not apply names itself and the failing hunk."""
    proc = run(
        # --fuzz=0 as rpm's %patch has it: a patch that applies here applies in the SRPM's %prep too.
        ["patch", "-p1", "--fuzz=0", "--batch", "--forward", "--no-backup-if-mismatch", "-i", str(patch)],
        cwd=root,
        log=log,
        check=False,
    )
    if proc.returncode != 0:
        output = proc.stdout.decode(errors="replace") + proc.stderr.decode(errors="replace")
        raise PackError(
            [f"{where}: {patch.name} does not apply: {_failed_hunk(output)}"],
            hint="regenerate the patch against this tarball (diff -ruN from its top directory, applied with -p1)",
        )


def _failed_hunk(output: str) -> str:
    for line in output.splitlines():
        if "dangerous file name" in line:  # GNU patch refusing a path that leaves the tree
            return line.strip()
    current = ""
    for line in output.splitlines():
        if line.startswith("patching file "):
            current = line.removeprefix("patching file ").strip("'")
        if "FAILED" in line or "can't find file" in line or "Reversed" in line or "malformed" in line:
            return f"{line.strip()}" + (f" (file {current})" if current and current not in line else "")
    lines = [ln for ln in output.splitlines() if ln.strip()]
    return lines[-1].strip() if lines else "patch failed"


def undefined_symbols(log: Path) -> list[str]:
    text = log.read_text(errors="replace") if log.exists() else ""
    found = (_MODPOST_UNDEFINED_WARNING.match(line.strip()) for line in text.splitlines())
    return sorted({m.group("symbol") for m in found if m})


def diagnose(log: Path, name: str, kernel: str, step: str = "") -> str:
    """The first compiler error with file:line, and whether it looks like a kernel API mismatch.

    `step` names a command before the build (a prepare step) when that is what failed.
    """
    text = log.read_text(errors="replace") if log.exists() else ""
    doing = f"{step} for kernel {kernel}" if step else f"compiling against kernel {kernel}"
    first = ""
    for line in text.splitlines():
        match = _FIRST_ERROR.match(line.strip()) or _MODPOST_ERROR.match(line.strip())
        if match:
            first = line.strip()
            break
    if not first:
        tail = [ln for ln in text.splitlines() if ln.strip()][-5:]
        return f"{name}: {doing} failed:\n" + "\n".join("  | " + t for t in tail)
    message = f"{name}: {doing} failed: {first}"
    if any(p.search(first) for p in _API_PATTERNS):
        message += (
            f"\n  this looks like a kernel API change: the driver source is probably not compatible with "
            f"kernel {kernel}; ask the driver's author for a version that supports it"
        )
    return message


def check_modules(modules: tuple[Path, ...], name: str, kernel: str, log: Path) -> None:
    if not modules:
        raise BuildError(
            f"{name}: Kbuild finished but produced no .ko file",
            hint=f"check that the Makefile/Kbuild sets obj-m; full log: {log}",
        )
    problems = []
    seen: dict[str, Path] = {}
    for module in modules:
        if module.name in seen:
            problems.append(f"{name}: two modules named {module.name} ({seen[module.name]} and {module})")
        seen[module.name] = module
        magic = vermagic(module.read_bytes())
        if magic is None:
            problems.append(f"{name}: {module.name} has no vermagic (not a kernel module?)")
        elif not vermagic_matches(magic, kernel):
            problems.append(f"{name}: {module.name} has vermagic '{magic.strip()}', not for kernel {kernel}")
    if problems:
        raise BuildError("\n".join(problems), hint="the kernel build dir must belong to the target kernel")
