"""check: the preflight. Everything that touches the disk or a tool, every problem listed at once."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from driverpack import inbox
from driverpack.adapters.rpminfo import check_common, holds_modules, read_rpm
from driverpack.adapters.tarball import inspect_tarball
from driverpack.context import KERNEL_HEADERS_HINT, resolve_kernel
from driverpack.errors import DriverpackError, PackError
from driverpack.load import LoadedPack, find_pack_folders, load_pack
from driverpack.run import tool_hint

# Tools the build needs, and why.
REQUIRED_TOOLS: dict[str, str] = {
    "rpmbuild": "builds the RPMs",
    "rpmspec": "checks the generated specs",
    "rpmsign": "signs the RPMs",
    "gpg": "signs update.xml and repomd.xml",
    "make": "runs Kbuild",
    "gcc": "compiles the modules",
    "patch": "applies the pack's patches",
}

_SOURCE_SUFFIXES = (".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".tar")


@dataclass(frozen=True)
class CheckResult:
    kernel: str
    build_dir: Path
    carries_modules: bool  # the pack has drivers, or a carried RPM holds kernel modules


def preflight(loaded: LoadedPack, root: Path) -> CheckResult:
    """Check tools, kernel, input files and uuid uniqueness; raise one PackError listing every problem."""
    where = loaded.file
    pack = loaded.pack
    problems: list[str] = []
    hints: list[str] = []

    for tool, why in REQUIRED_TOOLS.items():
        if shutil.which(tool) is None:
            problems.append(f"tool '{tool}' not found on PATH (it {why}); {tool_hint(tool)}")

    try:
        kernel = resolve_kernel(loaded, root)
    except DriverpackError as exc:
        problems.append(exc.message)
        hints.append(exc.hint)
        kernel = None
    if kernel is not None and pack.drivers and not (kernel.build_dir / "Makefile").is_file():
        problems.append(
            f"{where}: target: kernel build dir {kernel.build_dir} for kernel {kernel.release} not found "
            "(it must hold the kernel's Kbuild Makefile)"
        )
        hints.append(KERNEL_HEADERS_HINT)

    for i, driver in enumerate(pack.drivers):
        source = loaded.resolve(driver.source)
        if not source.is_file():
            problems.append(f"{where}: drivers[{i}].source: {source} not found")
        elif not source.name.endswith(_SOURCE_SUFFIXES):
            problems.append(
                f"{where}: drivers[{i}].source: {source.name} is not a tarball (.tar.gz, .tar.bz2, .tar.xz)"
            )
        elif not driver.spec:  # a hand-written spec may build without Kbuild: its tarball is its own business
            try:
                # Unsafe members, a broken archive, no Kbuild: found before anything runs.
                layout = inspect_tarball(source)
            except PackError as exc:
                problems += [f"{where}: drivers[{i}].source: {p}" for p in exc.problems]
            else:
                problems += inbox.module_problems(layout.modules, driver.rpm_name, f"{where}: drivers[{i}]")
        for j, patch in enumerate(driver.patches):
            if not loaded.resolve(patch).is_file():
                problems.append(f"{where}: drivers[{i}].patches[{j}]: {loaded.resolve(patch)} not found")
        if driver.spec and not loaded.resolve(driver.spec).is_file():
            problems.append(f"{where}: drivers[{i}].spec: {loaded.resolve(driver.spec)} not found")
        if driver.data is not None and not (loaded.folder / driver.data_folder()).is_dir():
            problems.append(
                f"{where}: drivers[{i}].data: folder {driver.data_folder()}/ not found next to pack.toml "
                "(lay out the files as they install: lib/firmware/..., etc/...)"
            )
    problems += inbox.replaces_problems(pack, str(where))
    carries_modules = bool(pack.drivers)
    for i, extra in enumerate(pack.rpms):
        found = extra_rpm_files(loaded, extra.path)
        if not found:
            problems.append(f"{where}: rpms[{i}].path: no RPM found at {loaded.resolve(extra.path)}")
        for path in found:
            # Refused now rather than after every driver has been compiled.
            try:
                info = read_rpm(path)
                problems += [f"{where}: rpms[{i}]: {p}" for p in (*check_common(info), *inbox.rpm_problems(info))]
                carries_modules = carries_modules or holds_modules(info)
            except DriverpackError as exc:
                problems.append(f"{where}: rpms[{i}]: {exc.message}")

    if pack.pack.signing_key and not loaded.resolve(pack.pack.signing_key).is_file():
        problems.append(f"{where}: pack.signing_key: {loaded.resolve(pack.pack.signing_key)} not found")

    problems += _uniqueness_problems(loaded, root)
    if problems:
        raise PackError(problems, hint="; ".join(dict.fromkeys(h for h in hints if h)))
    assert kernel is not None
    return CheckResult(kernel=kernel.release, build_dir=kernel.build_dir, carries_modules=carries_modules)


def extra_rpm_files(loaded: LoadedPack, pattern: str) -> list[Path]:
    """[[rpms]] path: a file, a folder of RPMs, or a glob."""
    path = loaded.resolve(pattern)
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(path.glob("*.rpm"))
    anchor = Path(path.anchor)
    return sorted(p for p in anchor.glob(str(path.relative_to(anchor))) if p.is_file())


def _uniqueness_problems(loaded: LoadedPack, root: Path) -> list[str]:
    problems = []
    for folder in find_pack_folders(root):
        if folder.resolve() == loaded.folder:
            continue
        try:
            other = load_pack(folder)
        except PackError:
            continue  # that pack's own check reports it
        if other.pack.pack.uuid == loaded.pack.pack.uuid:
            problems.append(
                f"{loaded.file}: pack.uuid: {loaded.pack.pack.uuid} is also the uuid of {other.file}; "
                "every pack needs its own (make one with 'python3 -c \"import uuid; print(uuid.uuid4())\"')"
            )
        if other.label == loaded.label:
            problems.append(f"{loaded.file}: pack.label: {loaded.label!r} is also the label of {other.file}")
    return problems
