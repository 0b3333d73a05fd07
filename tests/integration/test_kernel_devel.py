"""[target] kernel_devel: build against a kernel-devel RPM, unpacked once into build/kernel-devel/.

No Citrix Hypervisor kernel-devel RPM is at hand, so the module fixture makes one from the
installed kernel headers, laid out like CentOS's kernel-devel: one self-contained build tree at
/usr/src/kernels/<release>/. Debian splits its headers in two trees (linux-headers-<rel>/, whose
Makefile includes linux-headers-<rel-common>/Makefile by absolute path) with `scripts` and `tools`
linking into /usr/lib/linux-kbuild-X.Y/; the copy merges them (the common tree, then the
arch tree over it without its one-line Makefile) and copies those links' targets for real.

The copy's kernel release is renamed to RELEASE, which no kernel here has, so a module whose
vermagic is RELEASE can only have been built against the RPM's tree.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import textwrap
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
MODULES = Path("/lib/modules")
# Citrix Hypervisor 8.2 style: a release rpm can use as a version, so the driver RPM requires it.
RELEASE_SUFFIX = "+1"
MARKER = ".driverpack-unpacked"  # what kerneldevel writes once an RPM is fully unpacked
# Files of a kernel build tree that hold its release.
RELEASE_FILES = ("include/generated/utsrelease.h", "include/config/kernel.release", ".kernelvariables")
DEBIAN_INCLUDE = re.compile(r"include (/\S+)/Makefile\s*")


@dataclass(frozen=True)
class KernelDevelRpm:
    path: Path
    release: str  # the release of the build tree it holds


@dataclass(frozen=True)
class Built:
    root: Path
    loaded: LoadedPack
    result: RpmsResult


# the kernel-devel RPM


def kernel_layers(build_dir: Path) -> list[Path]:
    """The trees that make up a kernel build dir: Debian's common tree then its arch tree, or the one tree."""
    build_dir = build_dir.resolve()
    included = DEBIAN_INCLUDE.fullmatch((build_dir / "Makefile").read_text())
    return [Path(included.group(1)).resolve(), build_dir] if included else [build_dir]


def copy_tree(layer: Path, dest: Path, *, skip: set[str], only_arches: set[str] | None) -> None:
    """cp -a each top-level entry of layer into dest, merging folders; links leaving layer become copies."""
    for entry in sorted(layer.iterdir()):
        if entry.name in skip:
            continue
        if entry.is_symlink() and not entry.resolve().is_relative_to(layer):
            if not (dest / entry.name).exists():
                run([which("cp"), "-a", entry.resolve(), dest / entry.name], quiet=True)
        elif entry.name == "arch" and only_arches is not None:
            (dest / "arch").mkdir(exist_ok=True)
            run([which("cp"), "-a", *(entry / a for a in sorted(only_arches)), dest / "arch"], quiet=True)
        else:
            run([which("cp"), "-a", entry, dest], quiet=True)


def self_contained_tree(build_dir: Path, dest: Path, release: str) -> None:
    """A merged copy of the kernel build tree at dest, its release renamed to `release`."""
    layers = kernel_layers(build_dir)
    arch_tree = layers[-1]
    dest.mkdir(parents=True)
    for i, layer in enumerate(layers):
        is_common = i < len(layers) - 1
        copy_tree(
            layer,
            dest,
            # The arch tree's Makefile only includes the common one, which is already here.
            skip={"Makefile"} if i > 0 else set(),
            # Like CentOS's x86_64 kernel-devel: only the arch this tree is built for.
            only_arches={p.name for p in (arch_tree / "arch").iterdir()} if is_common else None,
        )
    old = kernel_release(dest)
    for name in RELEASE_FILES:
        path = dest / name
        if path.is_file():
            path.write_text(path.read_text().replace(old, release))


def kernel_release(tree: Path) -> str:
    found = re.search(r'UTS_RELEASE\s+"([^"]+)"', (tree / "include/generated/utsrelease.h").read_text())
    assert found, tree
    return found.group(1)


def build_kernel_devel_rpm(tree: Path, release: str, work: Path) -> Path:
    """rpmbuild a kernel-devel RPM whose payload is `tree` at /usr/src/kernels/<release>/ (tree is moved)."""
    version = release.split("+")[0].split("-")[0]
    spec = work / "kernel-devel.spec"
    spec.write_text(
        textwrap.dedent(f"""\
            Name: kernel-devel
            Version: {version}
            Release: 1
            Summary: Kernel build tree for {release}, made from the installed headers
            License: GPL-2.0-only
            AutoReqProv: no

            %description
            The kernel build tree a driver compiles against, as CentOS's kernel-devel lays it out.

            %install
            mkdir -p %{{buildroot}}/usr/src/kernels
            mv '{tree}' '%{{buildroot}}/usr/src/kernels/{release}'

            %files
            /usr/src/kernels/{release}
            """)
    )
    top = work / "rpmbuild"
    defines = {
        "_topdir": str(top),
        "_binary_payload": "w1.gzdio",  # fast: the tree is tens of megabytes
        "_build_id_links": "none",
        "debug_package": "%{nil}",
        "__os_install_post": "%{nil}",  # no stripping or compressing of the tree's files
        "__spec_install_post": "%{nil}",
    }
    argv: list[str | Path] = [which("rpmbuild"), "-bb"]
    for key, value in defines.items():
        argv += ["--define", f"{key} {value}"]
    run([*argv, spec], log=work / "rpmbuild.log", quiet=True)
    (rpm,) = (top / "RPMS").glob("*/kernel-devel-*.rpm")
    return rpm


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
def kernel_devel_rpm(tmp_path_factory: pytest.TempPathFactory, installed_kernel: str) -> KernelDevelRpm:
    work = tmp_path_factory.mktemp("kernel-devel-rpm")
    release = installed_kernel.split("-")[0] + RELEASE_SUFFIX
    assert release not in installed_kernels()
    tree = work / "tree" / release
    self_contained_tree(MODULES / installed_kernel / "build", tree, release)
    return KernelDevelRpm(build_kernel_devel_rpm(tree, release, work), release)


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
    tree = f"/usr/src/kernels/{kernel_devel_rpm.release}"
    assert {f"{tree}/Makefile", f"{tree}/.config", f"{tree}/include/generated/utsrelease.h"} <= files
    assert all(f == tree or f.startswith(f"{tree}/") for f in files)
    assert rpm_lines(kernel_devel_rpm.path, "--queryformat", "%{PAYLOADCOMPRESSOR}") == ["gzip"]


def test_unpacked_tree_is_self_contained(built: Built, kernel_devel_rpm: KernelDevelRpm) -> None:
    tree = unpacked(built.root) / "root" / "usr" / "src" / "kernels" / kernel_devel_rpm.release
    assert (tree / "Makefile").is_file() and (tree / ".config").is_file()
    assert not DEBIAN_INCLUDE.fullmatch((tree / "Makefile").read_text()), "the Makefile only includes another"
    assert (tree / "scripts").is_dir() and not (tree / "scripts").is_symlink()
    assert symlinks_leaving(tree) == []
    assert makefile_lines_naming(tree, "/usr/src") == []


# building with it


def test_builds_against_the_unpacked_tree(built: Built, kernel_devel_rpm: KernelDevelRpm) -> None:
    ctx = pipeline.check(built.loaded, built.root)
    tree = unpacked(built.root) / "root" / "usr" / "src" / "kernels" / kernel_devel_rpm.release
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
    path = f"/lib/modules/{release}/extra/helloworld.ko"
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
    assert rpm_lines(rpm, "--list") == [f"/lib/modules/{kernel_devel_rpm.release}/extra/helloworld.ko"]
    after = marker.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert cache_entries(built.root) == [marker.parent], "no second unpack, no leftovers"


# mistakes


def test_kernel_the_rpm_does_not_hold(built: Built, kernel_devel_rpm: KernelDevelRpm) -> None:
    loaded = kernel_devel_pack(built.root, "kerneldevel-other", "4.19.0+1", str(kernel_devel_rpm.path))
    with pytest.raises(PackError) as caught:
        pipeline.build_rpms(loaded, root=built.root)
    (problem,) = caught.value.problems
    assert "target.kernel_devel" in problem
    assert kernel_devel_rpm.path.name in problem
    assert "kernel 4.19.0+1" in problem
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
