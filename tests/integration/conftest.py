"""Fixtures shared by the integration tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import ch82_kernel_devel

from driverpack.context import kernel_devel_cache
from driverpack.kerneldevel import find_build_dirs, unpack_kernel_devel


@pytest.fixture(scope="session")
def ch82_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A build root whose build/kernel-devel/ holds CH 8.2's kernel-devel RPM, unpacked once per test session.

    Packs built from this root with `kernel_devel` set to that RPM reuse the unpacked tree.
    """
    root = tmp_path_factory.mktemp("ch82")
    unpack_kernel_devel(ch82_kernel_devel(), kernel_devel_cache(root))
    return root


@pytest.fixture(scope="session")
def ch82_build_dir(ch82_root: Path) -> Path:
    """CH 8.2's kernel build tree, as driverpack unpacked it."""
    (entry,) = kernel_devel_cache(ch82_root).iterdir()
    (tree,) = find_build_dirs(entry / "root").values()
    return tree
