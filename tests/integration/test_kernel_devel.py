"""[target] kernel_devel: build against a kernel-devel RPM, unpacked once into build/kernel-devel/.

The RPM is Citrix Hypervisor 8.2's own (../shared/ch82/, rebuilt from CH's kernel sources, see
its README): one build tree at /usr/src/kernels/4.19.0+1-x86_64/ with /lib/modules/4.19.0+1/build
linking to it, as CentOS's kernel-devel lays it out. Its release, 4.19.0+1, is no kernel installed
here, so a module whose vermagic is 4.19.0+1 can only have been built against the RPM's tree.
These tests unpack it into their own build/ (that is what they check); the other modules share
one unpacked copy per session.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import support

from driverpack import pipeline
from driverpack.context import installed_kernels, kernel_devel_cache
from driverpack.errors import PackError
from driverpack.load import LoadedPack, load_pack
from driverpack.run import run, which
from driverpack.steps.rpms import RpmsResult
from driverpack.vermagic import vermagic, vermagic_matches

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
HELLOWORLD = REPO / "packs" / "helloworld"
MARKER = ".driverpack-unpacked"  # what kerneldevel writes once an RPM is fully unpacked
DEBIAN_INCLUDE = re.compile(r"include (/\S+)/Makefile\s*")


@dataclass(frozen=True)
class KernelDevelRpm:
    path: Path
    release: str  # the release of the build tree it holds

    @property
    def tree(self) -> str:
        return f"/usr/src/kernels/{self.release}-x86_64"


@dataclass(frozen=True)
class Built:
    root: Path
    loaded: LoadedPack
    result: RpmsResult


# packs


def kernel_devel_pack(root: Path, label: str, kernel: str, kernel_devel: str) -> LoadedPack:
    """packs/helloworld copied to root/packs/<label>, targeting `kernel` with the given kernel_devel."""
    folder = root / "packs" / label
    shutil.copytree(HELLOWORLD, folder)
    toml = folder / "pack.toml"
    text = toml.read_text()
    replacements = {
        'label = "helloworld"': f'label = "{label}"',
        'uuid = "7a1b4bfe-3ac5-4c3f-9a3e-2b0f6d1c5e01"': (
            f'uuid = "{uuid.uuid5(uuid.NAMESPACE_URL, f"driverpack-test:{label}")}"'
        ),
        'kernel = "auto"': f"kernel = {json.dumps(kernel)}\nkernel_devel = {json.dumps(kernel_devel)}",
    }
    for old, new in replacements.items():
        assert text.count(f"\n{old}\n") == 1, f"packs/helloworld/pack.toml has no line {old!r}"
        text = text.replace(f"\n{old}\n", f"\n{new}\n")
    toml.write_text(text)
    return load_pack(folder)


def symlinks_leaving(tree: Path) -> list[str]:
    tree = tree.resolve()
    found = []
    for dirpath, dirnames, filenames in os.walk(tree):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            if path.is_symlink() and not path.resolve().is_relative_to(tree):
                found.append(f"{path.relative_to(tree)} -> {os.readlink(path)}")
    return found


def makefile_lines_naming(tree: Path, text: str) -> list[str]:
    """Lines (not comments) of the tree's Makefile*, Kbuild* and .kernelvariables that contain text."""
    found = []
    for dirpath, _, filenames in os.walk(tree):
        for name in filenames:
            if name.startswith(("Makefile", "Kbuild")) or name == ".kernelvariables":
                path = Path(dirpath) / name
                for line in path.read_text(errors="replace").splitlines():
                    if text in line and not line.lstrip().startswith("#"):
                        found.append(f"{path.relative_to(tree)}: {line.strip()}")
    return found


def rpm_lines(path: Path, *options: str) -> list[str]:
    out = run([which("rpm"), "-qp", *options, path], quiet=True).stdout.decode()
    return [line for line in out.splitlines() if line.strip()]


# fixtures


@pytest.fixture(scope="module")
def installed_kernel() -> str:
    return support.installed_kernel()


@pytest.fixture(scope="module")
def kernel_devel_rpm(installed_kernel: str) -> KernelDevelRpm:
    assert support.CH82_RELEASE not in installed_kernels()
    return KernelDevelRpm(support.ch82_kernel_devel(), support.CH82_RELEASE)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("root")


@pytest.fixture(scope="module")
def built(root: Path, kernel_devel_rpm: KernelDevelRpm) -> Built:
    loaded = kernel_devel_pack(root, "kerneldevel", "auto", str(kernel_devel_rpm.path))
    return Built(root, loaded, pipeline.build_rpms(loaded, root=root))


def cache_entries(root: Path) -> list[Path]:
    return sorted(kernel_devel_cache(root).iterdir())


def unpacked(root: Path) -> Path:
    """The one unpacked RPM in root's cache."""
    (entry,) = cache_entries(root)
    assert (entry / MARKER).is_file()
    return entry


# the RPM and its unpacked tree


def test_rpm_holds_one_build_tree(kernel_devel_rpm: KernelDevelRpm) -> None:
    files = set(rpm_lines(kernel_devel_rpm.path, "--list"))
    tree = kernel_devel_rpm.tree
    assert {f"{tree}/Makefile", f"{tree}/.config", f"{tree}/include/generated/utsrelease.h"} <= files
    assert f"/lib/modules/{kernel_devel_rpm.release}/build" in files
    assert f"kernel-devel-uname-r = {kernel_devel_rpm.release}" in rpm_lines(kernel_devel_rpm.path, "--provides")
    assert rpm_lines(kernel_devel_rpm.path, "--queryformat", "%{PAYLOADCOMPRESSOR}") == ["gzip"]


def test_unpacked_tree_is_self_contained(built: Built, kernel_devel_rpm: KernelDevelRpm) -> None:
    tree = unpacked(built.root) / "root" / kernel_devel_rpm.tree.lstrip("/")
    assert (tree / "Makefile").is_file() and (tree / ".config").is_file()
    assert not DEBIAN_INCLUDE.fullmatch((tree / "Makefile").read_text()), "the Makefile only includes another"
    assert (tree / "scripts").is_dir() and not (tree / "scripts").is_symlink()
    assert symlinks_leaving(tree) == []
    # Other arches' boot Makefiles (sparc's names /usr/src/root.img) are never read for x86_64.
    lines = makefile_lines_naming(tree, "/usr/src")
    assert [line for line in lines if not line.startswith("arch/") or line.startswith("arch/x86/")] == []


# building with it


def test_builds_against_the_unpacked_tree(built: Built, kernel_devel_rpm: KernelDevelRpm) -> None:
    ctx = pipeline.check(built.loaded, built.root)
    tree = unpacked(built.root) / "root" / kernel_devel_rpm.tree.lstrip("/")
    assert ctx.kernel.release == kernel_devel_rpm.release
    assert ctx.kernel.build_dir == tree
    assert ctx.kernel.build_dir.is_relative_to(built.root / "build" / "kernel-devel")
    log = (ctx.logs_dir / "compile-helloworld.log").read_text()
    assert f"Entering directory '{tree}'" in log, log


def test_module_vermagic_is_the_rpm_release(
    built: Built, kernel_devel_rpm: KernelDevelRpm, installed_kernel: str, tmp_path: Path
) -> None:
    release = kernel_devel_rpm.release
    (rpm,) = built.result.kmod_rpms
    path = f"/lib/modules/{release}/updates/helloworld.ko"
    assert rpm_lines(rpm, "--list") == [path]
    assert f"kernel-uname-r = {release}" in rpm_lines(rpm, "--requires")
    payload = run([which("rpm2cpio"), rpm], quiet=True).stdout
    tmp_path.joinpath("payload").mkdir()
    run(
        [which("cpio"), "-idm", "--quiet", "--no-absolute-filenames"],
        cwd=tmp_path / "payload",
        input=payload,
        quiet=True,
    )
    magic = vermagic((tmp_path / "payload" / path.lstrip("/")).read_bytes())
    assert magic is not None and vermagic_matches(magic, release), magic
    assert not vermagic_matches(magic, installed_kernel)


def test_second_build_reuses_the_unpacked_rpm(built: Built, kernel_devel_rpm: KernelDevelRpm) -> None:
    marker = unpacked(built.root) / MARKER
    before = marker.stat()
    again = kernel_devel_pack(built.root, "kerneldevel-again", kernel_devel_rpm.release, str(kernel_devel_rpm.path))
    (rpm,) = pipeline.build_rpms(again, root=built.root).kmod_rpms
    assert rpm_lines(rpm, "--list") == [f"/lib/modules/{kernel_devel_rpm.release}/updates/helloworld.ko"]
    after = marker.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert cache_entries(built.root) == [marker.parent], "no second unpack, no leftovers"


# mistakes


def test_kernel_the_rpm_does_not_hold(built: Built, kernel_devel_rpm: KernelDevelRpm) -> None:
    loaded = kernel_devel_pack(built.root, "kerneldevel-other", "4.19.0+2", str(kernel_devel_rpm.path))
    with pytest.raises(PackError) as caught:
        pipeline.build_rpms(loaded, root=built.root)
    (problem,) = caught.value.problems
    assert "target.kernel_devel" in problem
    assert kernel_devel_rpm.path.name in problem
    assert "kernel 4.19.0+2" in problem
    assert f"(it has: {kernel_devel_rpm.release})" in problem
    assert "[target] kernel" in caught.value.hint
    assert not (built.root / "build" / "kerneldevel-other").exists()


def test_missing_kernel_devel_file(tmp_path: Path) -> None:
    loaded = kernel_devel_pack(tmp_path, "nodevel", "auto", "rpms/kernel-devel-4.19.19.rpm")
    with pytest.raises(PackError) as caught:
        pipeline.build_rpms(loaded, root=tmp_path)
    (problem,) = caught.value.problems
    assert "target.kernel_devel" in problem
    assert f"{loaded.folder / 'rpms' / 'kernel-devel-4.19.19.rpm'} not found" in problem
    assert not (tmp_path / "build").exists()
