"""check: the preflight. Everything that touches the disk or a tool, every problem listed at once."""

from __future__ import annotations

import glob
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from driverpack.adapters import gpg
from driverpack.adapters.rpminfo import check_common, read_rpm
from driverpack.adapters.tarball import inspect_tarball
from driverpack.context import KERNEL_HEADERS_HINT, resolve_kernel
from driverpack.errors import DriverpackError, PackError
from driverpack.load import LoadedPack, find_pack_folders, load_pack
from driverpack.proposal import dkms_disagreements, read_markers, route_problems
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


def preflight(loaded: LoadedPack, root: Path) -> CheckResult:
    """Check tools, kernel, input files and uuid uniqueness; raise one PackError listing every problem."""
    where = loaded.file
    pack = loaded.pack
    problems: list[str] = []
    hints: list[str] = []
    warnings: list[str] = []

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
                tree = read_markers(source)
            except PackError as exc:
                problems += [f"{where}: drivers[{i}].source: {p}" for p in exc.problems]
            else:
                problems += [f"{where}: drivers[{i}].{p}" for p in route_problems(driver, tree, layout)]
                warnings += [f"{where}: drivers[{i}]: {w}" for w in dkms_disagreements(driver, tree, layout)]
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
    for i, extra in enumerate(pack.rpms):
        found = extra_rpm_files(loaded, extra.path)
        if not found:
            problems.append(f"{where}: rpms[{i}].path: no RPM found at {loaded.resolve(extra.path)}")
        for path in found:
            # Refused now rather than after every driver has been compiled.
            try:
                problems += [f"{where}: rpms[{i}]: {p}" for p in check_common(read_rpm(path))]
            except DriverpackError as exc:
                problems.append(f"{where}: rpms[{i}]: {exc.message}")

    signing, signing_hints = _signing_problems(loaded)
    problems += signing
    hints += signing_hints

    problems += _uniqueness_problems(loaded, root)
    for warning in warnings:  # printed whether or not the pack has problems: they may explain one
        print(f"warning: {warning}", file=sys.stderr, flush=True)
    if problems:
        raise PackError(problems, hint="; ".join(dict.fromkeys(h for h in hints if h)))
    assert kernel is not None
    return CheckResult(kernel=kernel.release, build_dir=kernel.build_dir)


def _signing_problems(loaded: LoadedPack) -> tuple[list[str], list[str]]:
    """The pack's signing key is there and can sign; the environment's passphrase source is usable (not read)."""
    info, where = loaded.pack.pack, loaded.file
    problems: list[str] = []
    hints: list[str] = []
    if info.signing_key:
        key_file = loaded.resolve(info.signing_key)
        if not key_file.is_file():
            problems.append(f"{where}: pack.signing_key: {key_file} not found")
        for i, driver in enumerate(loaded.pack.drivers):
            data = loaded.folder / driver.data_folder() if driver.data is not None else None
            if data is not None and key_file.resolve().is_relative_to(data.resolve()):
                problems.append(
                    f"{where}: pack.signing_key: {key_file} is inside drivers[{i}].data's folder, which ships in "
                    "the data RPM and the release zip; keep the secret key elsewhere (e.g. keys/ beside pack.toml)"
                )
    if info.signing_fingerprint:
        home = gpg.keyring_homedir(loaded.resolve(info.gnupghome) if info.gnupghome else None)
        try:
            gpg.check_keyring_key(info.signing_fingerprint, home)
        except PackError as exc:
            problems += [f"{where}: pack.{p}" for p in exc.problems]
            hints.append(exc.hint)
    if info.signing_key or info.signing_fingerprint:
        problems += gpg.passphrase_problems(os.environ)
    return problems, hints


def extra_rpm_files(loaded: LoadedPack, pattern: str) -> list[Path]:
    """[[rpms]] path: a file, a folder of RPMs, or a glob."""
    path = loaded.resolve(pattern)
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(path.glob("*.rpm"))
    anchor = Path(path.anchor)
    return sorted(p for p in anchor.glob(str(path.relative_to(anchor))) if p.is_file())


def extra_rpm_folder(loaded: LoadedPack, pattern: str) -> Path:
    """The folder whose listing decides what an [[rpms]] path finds (a new RPM there changes a glob's result)."""
    path = loaded.resolve(pattern)
    if path.is_dir():
        return path
    while glob.has_magic(str(path)) or not path.exists():
        if path.parent == path:
            break
        path = path.parent
    return path if path.is_dir() else path.parent


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
