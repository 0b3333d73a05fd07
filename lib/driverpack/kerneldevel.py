"""Build against a kernel-devel RPM (e.g. Citrix Hypervisor 8.2's) without the DDK VM: unpack it once into a cache."""

from __future__ import annotations

import functools
import os
import re
import shutil
from pathlib import Path

from driverpack.errors import PackError, ToolError
from driverpack.run import run, which
from driverpack.uptodate import file_digest

_UTS_RELEASE = re.compile(rb'#define\s+UTS_RELEASE\s+"([^"]+)"')
_DONE = ".driverpack-unpacked"


def unpack_kernel_devel(rpm: Path, cache: Path) -> Path:
    """Unpack `rpm` into cache/<digest>/ once (later calls reuse it); return that folder.

    Runs that need the same RPM at once (two packs, two terminals) unpack it one at a time: the
    second finds it done.
    """
    from driverpack.locks import file_lock

    dest = cache / file_digest(rpm)[:20]
    if (dest / _DONE).is_file():
        return dest
    with file_lock(cache.parent / ".locks" / f"kernel-devel-{dest.name}.lock"):
        if (dest / _DONE).is_file():
            return dest
        which("rpm2cpio")
        which("cpio")
        tmp = cache / f".{dest.name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        (tmp / "root").mkdir(parents=True)
        try:
            payload = tmp / "payload.cpio"
            run(["rpm2cpio", str(rpm)], quiet=True, stdout_to=payload)
            run(
                ["cpio", "-idm", "--quiet", "--no-absolute-filenames", "-F", str(payload)],
                cwd=tmp / "root",
                quiet=True,
            )
            payload.unlink()
            (tmp / _DONE).write_text(str(rpm) + "\n")
            shutil.rmtree(dest, ignore_errors=True)  # what a killed unpack left (the lock says none is running)
            os.replace(tmp, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return dest


def kernel_release_of(build_dir: Path) -> str | None:
    """The release modules built in this tree get as vermagic: UTS_RELEASE (include/config/kernel.release
    may differ, e.g. on Debian)."""
    header = build_dir / "include" / "generated" / "utsrelease.h"
    if header.is_file():
        match = _UTS_RELEASE.search(header.read_bytes())
        if match:
            return match.group(1).decode()
    release_file = build_dir / "include" / "config" / "kernel.release"
    if release_file.is_file():
        return release_file.read_text().strip() or None
    return None


@functools.cache
def find_build_dirs(root: Path) -> dict[str, Path]:
    """Kernel build trees inside an unpacked kernel-devel RPM, by release."""
    found: dict[str, Path] = {}
    candidates = sorted(p.parent for p in root.rglob("Makefile") if (p.parent / ".config").is_file())
    for folder in candidates:
        release = kernel_release_of(folder)
        if release and release not in found:
            found[release] = folder
    return found


def kernel_devel_build_dir(rpm: Path, cache: Path, kernel: str, where: str) -> tuple[str, Path]:
    """(release, build dir) of the kernel-devel RPM; `kernel` 'auto' takes the one release it holds."""
    if not rpm.is_file():
        raise PackError(
            [f"{where}: target.kernel_devel: {rpm} not found"],
            hint="point it at the target's kernel-devel RPM (relative to pack.toml, or absolute)",
        )
    try:
        trees = find_build_dirs(unpack_kernel_devel(rpm, cache) / "root")
    except ToolError as exc:
        raise PackError(
            [f"{where}: target.kernel_devel: {rpm.name} could not be unpacked: {exc.message.splitlines()[-1]}"],
            hint="is it an RPM? use the kernel-devel RPM of the target kernel",
        ) from None
    if not trees:
        raise PackError(
            [f"{where}: target.kernel_devel: {rpm.name} holds no kernel build tree (Makefile and .config)"],
            hint="is this the kernel-devel RPM? (not the kernel or kernel-headers RPM)",
        )
    if kernel != "auto":
        if kernel not in trees:
            held = ", ".join(sorted(trees)) or "none"
            raise PackError(
                [f"{where}: target.kernel_devel: {rpm.name} holds no build tree for kernel {kernel} (it has: {held})"],
                hint="set [target] kernel to the release the kernel-devel RPM is for, or 'auto'",
            )
        return kernel, trees[kernel]
    if len(trees) != 1:
        raise PackError(
            [f"{where}: target.kernel_devel: {rpm.name} holds {len(trees)} kernel build trees; set [target] kernel"]
        )
    return next(iter(trees.items()))
