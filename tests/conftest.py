"""Fixtures shared by the test modules."""

from __future__ import annotations

from pathlib import Path

import pytest
import support


@pytest.fixture(scope="session")
def ch82_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A build/kernel-devel cache holding Citrix Hypervisor 8.2's kernel-devel RPM, unpacked once per session."""
    from driverpack.kerneldevel import unpack_kernel_devel

    cache = tmp_path_factory.mktemp("kernel-devel-cache")
    unpack_kernel_devel(support.ch82_kernel_devel(), cache)
    return cache


@pytest.fixture(scope="session")
def ch82_root(tmp_path_factory: pytest.TempPathFactory, ch82_cache: Path) -> Path:
    """A build root whose build/kernel-devel/ is the session's cache: packs built there with `kernel_devel` set
    to CH 8.2's RPM reuse the unpacked tree."""
    root = tmp_path_factory.mktemp("ch82")
    support.use_kernel_devel_cache(root, ch82_cache)
    return root


@pytest.fixture(scope="session")
def ch82_build_dir(ch82_cache: Path) -> Path:
    """CH 8.2's kernel build tree, as driverpack unpacked it."""
    from driverpack.kerneldevel import find_build_dirs

    (entry,) = (p for p in ch82_cache.iterdir() if not p.name.startswith("."))
    (tree,) = find_build_dirs(entry / "root").values()
    return tree
