"""Helpers shared by the test modules: the repository, the real `inv` CLI, reproducible tarballs."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import subprocess
import sys
import tarfile
from collections.abc import Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The shared material beside the checkout (CH 8.2's kernel-devel RPM, reference pack ISOs).
SHARED = REPO.parent / "shared"
INV = Path(sys.executable).with_name("inv")
TARBALL_MTIME = 1704067200  # 2024-01-01 00:00 UTC: the test tarballs are the same bytes every run


def run_inv(
    cwd: Path, *args: str, env: Mapping[str, str] | None = None, timeout: int = 300
) -> subprocess.CompletedProcess[str]:
    """The real CLI, as a user runs it from `cwd` (build/ and dist/ land there)."""
    assert INV.is_file(), f"invoke's 'inv' not found next to {sys.executable}: pip install -e '.[test]'"
    base = {key: value for key, value in os.environ.items() if key != "SOURCE_DATE_EPOCH"}
    return subprocess.run(
        [str(INV), "-r", str(REPO), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**base, "LC_ALL": "C", "NO_COLOR": "1", **(env or {})},
        timeout=timeout,
        check=False,
    )


def add_tree(tar: tarfile.TarFile, source: Path) -> None:
    """Add source/'s contents to `tar`: sorted, root-owned, fixed times and modes."""
    for path in sorted(source.rglob("*")):
        info = tar.gettarinfo(str(path), arcname=path.relative_to(source).as_posix())
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        info.mtime = TARBALL_MTIME
        info.mode = 0o755 if info.isdir() else 0o644
        if info.isreg():
            with path.open("rb") as f:
                tar.addfile(info, f)
        else:
            tar.addfile(info)


def make_tarball(source: Path, dest: Path) -> None:
    """Archive source/'s contents (sorted, root-owned, fixed times) as dest, compressed by its suffix."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        add_tree(tar, source)
    data = raw.getvalue()
    if dest.name.endswith(".tar.gz"):
        data = gzip.compress(data, mtime=0)
    elif dest.name.endswith(".tar.bz2"):
        data = bz2.compress(data)
    elif dest.name.endswith(".tar.xz"):
        data = lzma.compress(data)
    dest.write_bytes(data)


def installed_kernel() -> str:
    """The one installed kernel build dir, which `kernel = "auto"` targets; fails the test otherwise."""
    import pytest

    from driverpack.context import installed_kernels

    found = installed_kernels()
    if len(found) != 1:
        pytest.fail(
            f"these tests need exactly one kernel build dir /lib/modules/*/build, found {found or 'none'};"
            " install the kernel headers (linux-headers-<flavour> or kernel-devel)"
        )
    return found[0]


CH82_RELEASE = "4.19.0+1"  # Citrix Hypervisor 8.2's uname -r


def ch82_kernel_devel() -> Path:
    """Citrix Hypervisor 8.2's kernel-devel RPM from <repo>/../shared/ch82/; fails the test when absent."""
    import pytest

    found = sorted((SHARED / "ch82").glob("kernel-devel-*.rpm"))
    if len(found) != 1:
        pytest.fail(f"these tests need the one Citrix Hypervisor 8.2 kernel-devel RPM in {SHARED / 'ch82'}/")
    return found[0]


def use_kernel_devel_cache(root: Path, cache: Path) -> None:
    """Make root's build/kernel-devel the session's cache, so the RPM is unpacked once per test session."""
    (root / "build").mkdir(parents=True, exist_ok=True)
    link = root / "build" / "kernel-devel"
    if not link.exists():
        link.symlink_to(cache, target_is_directory=True)
