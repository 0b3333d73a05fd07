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
