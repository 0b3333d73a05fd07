"""The build context every step takes: the validated pack, the target kernel, and where to write."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from driverpack.errors import PackError
from driverpack.load import LoadedPack
from driverpack.models import is_rpm_version

MODULES_ROOT = Path("/lib/modules")

KERNEL_HEADERS_HINT = (
    "install the target kernel's build files: 'apt-get install linux-headers-<release>' "
    "(Debian/Ubuntu, e.g. linux-headers-amd64) or 'dnf install kernel-devel-<release>' (Fedora/RHEL); "
    "for Citrix Hypervisor 8.2 point [target] build_dir at the DDK's kernel build dir, or "
    "kernel_devel at its kernel-devel RPM"
)


@dataclass(frozen=True)
class KernelTarget:
    """The kernel the modules are built for."""

    release: str  # uname -r of the target host
    build_dir: Path  # the Kbuild tree: make -C <build_dir> M=<src>
    module_dir: str  # extra | updates

    @property
    def requires_kernel(self) -> bool:
        return is_rpm_version(self.release)


@dataclass(frozen=True)
class Context:
    """One pack being built: inputs, target and output folders."""

    loaded: LoadedPack
    kernel: KernelTarget
    work: Path  # build/<label>/ (absolute)
    dist: Path  # dist/ (absolute)
    epoch: int  # SOURCE_DATE_EPOCH
    jobs: int

    @property
    def label(self) -> str:
        return self.loaded.label

    @property
    def specs_dir(self) -> Path:
        return self.work / "SPECS"

    @property
    def logs_dir(self) -> Path:
        return self.work / "logs"

    @property
    def rpmbuild_dir(self) -> Path:
        return self.work / "rpmbuild"


def installed_kernels(modules_root: Path = MODULES_ROOT) -> list[str]:
    """Kernel releases that have a build dir here."""
    if not modules_root.is_dir():
        return []
    return sorted(p.name for p in modules_root.iterdir() if (p / "build" / "Makefile").is_file())


def kernel_devel_cache(root: Path) -> Path:
    return root / "build" / "kernel-devel"


def resolve_kernel(loaded: LoadedPack, root: Path, modules_root: Path = MODULES_ROOT) -> KernelTarget:
    """The target kernel from [target]; 'auto' means the one kernel build dir installed here."""
    target = loaded.pack.target
    release = target.kernel
    if not loaded.pack.drivers and release == "auto" and not target.kernel_devel:
        # A pack of prebuilt RPMs compiles nothing: its modules say which kernel they are for.
        return KernelTarget(release="", build_dir=Path(), module_dir=target.module_dir)
    if target.kernel_devel:
        from driverpack.kerneldevel import kernel_devel_build_dir

        release, tree = kernel_devel_build_dir(
            loaded.resolve(target.kernel_devel), kernel_devel_cache(root), release, str(loaded.file)
        )
        return KernelTarget(release=release, build_dir=tree, module_dir=target.module_dir)
    if release == "auto":
        found = installed_kernels(modules_root)
        if len(found) != 1:
            what = "found none" if not found else f"found {len(found)} ({', '.join(found)})"
            raise PackError(
                [f"{loaded.file}: target.kernel: 'auto' needs exactly one kernel build dir in {modules_root}, {what}"],
                hint=(
                    "set [target] kernel to the target's 'uname -r' (4.19.0+1 for Citrix Hypervisor 8.2)"
                    if found
                    else KERNEL_HEADERS_HINT
                ),
            )
        release = found[0]
    build_dir = loaded.resolve(target.build_dir) if target.build_dir else modules_root / release / "build"
    return KernelTarget(release=release, build_dir=build_dir, module_dir=target.module_dir)


def make_context(loaded: LoadedPack, root: Path, jobs: int | None = None) -> Context:
    epoch_env = os.environ.get("SOURCE_DATE_EPOCH", "")
    epoch = int(epoch_env) if epoch_env.isdigit() else loaded.pack.source_date_epoch()
    return Context(
        loaded=loaded,
        kernel=resolve_kernel(loaded, root),
        work=(root / "build" / loaded.label).resolve(),
        dist=(root / "dist").resolve(),
        epoch=epoch,
        jobs=jobs or os.cpu_count() or 1,
    )
