"""check: the preflight. Everything that touches the disk or a tool, every problem listed at once."""

from __future__ import annotations

import glob
import os
import re
import shutil
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

from driverpack import inbox
from driverpack.adapters import gpg
from driverpack.adapters.rpminfo import check_common, holds_modules, read_rpm
from driverpack.adapters.tarball import inspect_tarball
from driverpack.context import KERNEL_HEADERS_HINT, KernelTarget, resolve_kernel
from driverpack.datafiles import printable, scan_data_folder
from driverpack.errors import DriverpackError, PackError
from driverpack.load import LoadedPack, find_pack_folders, load_pack
from driverpack.models import (
    SOURCE_SUFFIXES,
    Driver,
    is_kernel_release,
    is_plain_file_name,
    is_spec_safe_path,
    shown,
)
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

# Kbuild refuses a tree whose path has spaces or colons, and the spec's %build puts it in a shell
# command unquoted (%{kernel_build_dir}): only these characters.
_KERNEL_TREE_PATH = re.compile(r"/[A-Za-z0-9._+/@,=~-]*")


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
    warnings: list[str] = []

    for tool, why in REQUIRED_TOOLS.items():
        if shutil.which(tool) is None:
            problems.append(f"tool '{tool}' not found on PATH (it {why}); {tool_hint(tool)}")

    work = root.resolve() / "build" / loaded.label
    kernel, kernel_problems = _kernel(loaded, root, hints)
    problems += kernel_problems

    for i, driver in enumerate(pack.drivers):
        key = f"{where}: drivers[{i}]"
        source = loaded.resolve(driver.source)
        problem = _input_problem(source, work)
        if problem:
            problems.append(f"{key}.source: {problem}")
        elif not source.name.endswith(SOURCE_SUFFIXES):
            problems.append(f"{key}.source: {source.name} is not a tarball (.tar.gz, .tar.bz2, .tar.xz)")
        elif not driver.spec:  # a hand-written spec may build without Kbuild: its tarball is its own business
            tarball_problems = _tarball_problems(source)
            problems += [f"{key}.source: {p}" for p in tarball_problems]
            if not tarball_problems:
                try:
                    layout = inspect_tarball(source)
                    tree = read_markers(source)
                except PackError as exc:
                    problems += [f"{key}.source: {p}" for p in exc.problems]
                else:
                    problems += [f"{key}.{p}" for p in route_problems(driver, tree, layout)]
                    problems += inbox.module_problems(layout.modules, driver.rpm_name, key)
                    warnings += [f"{key}: {w}" for w in dkms_disagreements(driver, tree, layout)]
        for j, patch in enumerate(driver.patches):
            problem = _input_problem(loaded.resolve(patch), work)
            if problem:
                problems.append(f"{key}.patches[{j}]: {problem}")
        if driver.spec:
            problem = _input_problem(loaded.resolve(driver.spec), work)
            if problem:
                problems.append(f"{key}.spec: {problem}")
        if driver.data is not None:
            problems += [f"{key}.data.folder: {p}" for p in _data_folder_problems(loaded, driver, root, work)]
    problems += inbox.replaces_problems(pack, str(where))
    carries_modules = bool(pack.drivers)
    for i, extra in enumerate(pack.rpms):
        try:
            found = extra_rpm_files(loaded, extra.path)
        except (OSError, ValueError) as exc:
            problems.append(f"{where}: rpms[{i}].path: {shown(extra.path)} cannot be searched: {exc}")
            continue
        if not found:
            problems.append(f"{where}: rpms[{i}].path: no RPM found at {loaded.resolve(extra.path)}")
        for path in found:
            # A prebuilt RPM keeps its file name on the ISO and in the repodata.
            if not (is_plain_file_name(path.name) and path.name.endswith(".rpm")):
                problems.append(
                    f"{where}: rpms[{i}].path: {printable(path.name)}: rename it to name-version-release.arch.rpm "
                    "(letters, digits and . _ + - only); it keeps its file name in the pack"
                )
                continue
            # Refused now rather than after every driver has been compiled.
            try:
                info = read_rpm(path)
                problems += [f"{where}: rpms[{i}].path: {p}" for p in (*check_common(info), *inbox.rpm_problems(info))]
                carries_modules = carries_modules or holds_modules(info)
            except DriverpackError as exc:
                problems.append(f"{where}: rpms[{i}].path: {exc.message}")

    signing, signing_hints = _signing_problems(loaded, work)
    problems += signing
    hints += signing_hints

    problems += _uniqueness_problems(loaded, root)
    for warning in warnings:  # printed whether or not the pack has problems: they may explain one
        print(f"warning: {warning}", file=sys.stderr, flush=True)
    if problems:
        raise PackError(problems, hint="; ".join(dict.fromkeys(h for h in hints if h)))
    assert kernel is not None
    return CheckResult(kernel=kernel.release, build_dir=kernel.build_dir, carries_modules=carries_modules)


def _signing_problems(loaded: LoadedPack, work: Path) -> tuple[list[str], list[str]]:
    """The pack's signing key is there and can sign; the environment's passphrase source is usable (not read)."""
    info, where = loaded.pack.pack, loaded.file
    problems: list[str] = []
    hints: list[str] = []
    if info.signing_key:
        key_file = loaded.resolve(info.signing_key)
        problem = _input_problem(key_file, work)
        if not problem and not is_plain_file_name(key_file.name):
            # Its name, less .asc/.gpg, names the public key in dist/ and update.xml's key attribute.
            problem = (
                f"{printable(key_file.name)}: name the key file with letters, digits and . _ + - only "
                "(less .asc or .gpg, its name is the public key's file name in dist/ and in update.xml)"
            )
        elif not problem and gpg.public_key_name(key_file).endswith(gpg.DIST_OUTPUT_SUFFIXES):
            problem = (
                f"{printable(key_file.name)}: the public key would be written to dist/"
                f"{gpg.public_key_name(key_file)}, a name like a pack's ISO, checksum or zip; rename the key file"
            )
        if problem:
            problems.append(f"{where}: pack.signing_key: {problem}")
        for i, driver in enumerate(loaded.pack.drivers):
            data = loaded.data_folder(driver) if driver.data is not None else None
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


def _input_problem(path: Path, work: Path, *, folder: bool = False) -> str:
    """Why `path` cannot be one of the pack's input files (or folders), or "" when it can."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return f"{path} not found"
    except OSError as exc:
        return f"{path}: {exc.strerror or exc}"
    except ValueError:  # a NUL in a value no model rule has checked (signing_key)
        return f"{shown(str(path))} is not a usable file path"
    if folder and not stat.S_ISDIR(info.st_mode):
        return f"{path} is not a folder"
    if not folder and not stat.S_ISREG(info.st_mode):
        return f"{path} is not a file" + (" (a folder)" if stat.S_ISDIR(info.st_mode) else "")
    if path.resolve().is_relative_to(work):
        return f"{path} is inside {work}, which driverpack rewrites on every build; keep the pack's files elsewhere"
    return ""


def _tarball_problems(source: Path) -> list[str]:
    """Unsafe members, a broken archive, no Kbuild, folder names a spec cannot hold: before anything runs."""
    try:
        layout = inspect_tarball(source)
    except PackError as exc:
        return exc.problems
    names = [("the tarball's top directory", layout.top_dir or ""), ("the Makefile's directory", layout.build_dir)]
    return [
        f"{source.name}: {what} {printable(name)!r} has characters driverpack does not put in a spec; "
        "repack it with a folder named with letters, digits and . _ + - only"
        for what, name in names
        if name and not is_spec_safe_path(name)
    ]


def _data_folder_problems(loaded: LoadedPack, driver: Driver, root: Path, work: Path) -> list[str]:
    """The data folder: read from anywhere, but it must be a folder of plain files that install where allowed."""
    folder = loaded.data_folder(driver)
    problem = _input_problem(folder, work, folder=True)
    if problem:
        hint = " (lay out the files as they install: lib/firmware/..., etc/...)" if "not found" in problem else ""
        return [problem + hint]
    real = folder.resolve()
    for output in ("build", "dist", "keys"):
        if (root.resolve() / output).is_relative_to(real):
            return [
                f"{folder} holds driverpack's {output}/ folder (it would pack its own outputs); "
                "point it at a folder holding only the data files"
            ]
    return scan_data_folder(folder, driver.data_folder())[1]


def _kernel(loaded: LoadedPack, root: Path, hints: list[str]) -> tuple[KernelTarget | None, list[str]]:
    """The target kernel, and why it cannot be built against: not resolvable, a release or build dir a spec
    cannot hold, no Kbuild tree."""
    where = loaded.file
    target = loaded.pack.target
    if target.kernel_devel:
        problem = _input_problem(loaded.resolve(target.kernel_devel), root.resolve() / "build" / loaded.label)
        if problem:
            return None, [f"{where}: target.kernel_devel: {problem}"]
    try:
        kernel = resolve_kernel(loaded, root)
    except DriverpackError as exc:
        hints.append(exc.hint)
        return None, [exc.message]
    if not loaded.pack.drivers:
        return kernel, []
    key = "target.kernel_devel" if target.kernel_devel else "target.kernel"
    if not is_kernel_release(kernel.release):
        return None, [f"{where}: {key}: the kernel release found, {shown(kernel.release)}, is not a usable release"]
    if target.build_dir and not _KERNEL_TREE_PATH.fullmatch(str(kernel.build_dir)):
        return None, [
            f"{where}: target.build_dir: {shown(str(kernel.build_dir))} has characters Kbuild and a spec's shell "
            "cannot take (spaces, quotes, ':', '$', ...); use a path (or a symbolic link) of letters, digits and "
            ". _ + - / only"
        ]
    try:
        has_makefile = (kernel.build_dir / "Makefile").is_file()
    except OSError:
        has_makefile = False
    if not has_makefile:
        hints.append(KERNEL_HEADERS_HINT)
        return None, [
            f"{where}: target.{'build_dir' if target.build_dir else 'kernel'}: kernel build dir {kernel.build_dir} "
            f"for kernel {kernel.release} not found (it must hold the kernel's Kbuild Makefile)"
        ]
    return kernel, []


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
