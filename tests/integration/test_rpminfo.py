"""Build real RPMs with rpmbuild (one compiled hello-world module per session), read and check them."""

from __future__ import annotations

import textwrap
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from support import installed_kernel

from driverpack.adapters.rpminfo import (
    RPM411_RPMLIB_FEATURES,
    check_common,
    check_data_rpm,
    check_kmod_rpm,
    iter_payload,
    read_rpm,
)
from driverpack.errors import BuildError
from driverpack.run import run, which
from driverpack.vermagic import vermagic, vermagic_matches

HOST_KERNEL = "4.19.0+1"  # `uname -r` of Citrix Hypervisor 8.2

HELLO_C = """\
#include <linux/init.h>
#include <linux/module.h>

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("hello world test module");

static int __init hello_init(void)
{
	pr_info("hello\\n");
	return 0;
}

static void __exit hello_exit(void)
{
}

module_init(hello_init);
module_exit(hello_exit);
"""


@pytest.fixture(scope="session")
def kernel_release() -> str:
    return installed_kernel()


@pytest.fixture(scope="session")
def hello_ko(tmp_path_factory: pytest.TempPathFactory, kernel_release: str) -> Path:
    src = tmp_path_factory.mktemp("hello-module")
    (src / "hello.c").write_text(HELLO_C)
    (src / "Kbuild").write_text("obj-m := hello.o\n")
    which("gcc")
    run([which("make"), "-C", f"/lib/modules/{kernel_release}/build", f"M={src}", "modules"], quiet=True)
    return src / "hello.ko"


@dataclass
class Package:
    """A spec to build: payload files are written in %install from files next to the spec."""

    name: str
    group: str = "System Environment/Kernel"
    version: str = "1.0"
    noarch: bool = False
    headers: list[str] = field(default_factory=list)
    files: dict[str, bytes | Path] = field(default_factory=dict)  # install path -> content or file
    config_files: set[str] = field(default_factory=set)
    dirs: list[str] = field(default_factory=list)
    scripts: dict[str, str] = field(default_factory=dict)  # "post" -> body
    commands: list[str] = field(default_factory=list)  # more %install lines
    listed: list[str] = field(default_factory=list)  # more %files lines


def build(tmp: Path, package: Package, *defines: str, source: bool = False) -> Path:
    """rpmbuild the package under tmp; the binary RPM's path, or the SRPM's with `source`."""
    topdir = tmp / "rpmbuild"
    payload = tmp / "payload"
    install = []
    listed = []
    for number, (dest, content) in enumerate(sorted(package.files.items())):
        origin = content if isinstance(content, Path) else payload / str(number)
        if not isinstance(content, Path):
            origin.parent.mkdir(parents=True, exist_ok=True)
            origin.write_bytes(content)
        install.append(f"install -D -m 0644 '{origin}' '%{{buildroot}}{dest}'")
        listed.append(f"%config(noreplace) {dest}" if dest in package.config_files else dest)
    install += [f"mkdir -p '%{{buildroot}}{d}'" for d in package.dirs]
    listed += [f"%dir {d}" for d in package.dirs]
    install += package.commands
    listed += package.listed
    scripts = "".join(f"%{name}\n{body}\n\n" for name, body in package.scripts.items())
    spec = textwrap.dedent(
        """\
        Name: {name}
        Version: {version}
        Release: 1
        Summary: Test package {name}
        License: GPL-2.0-only
        Group: {group}
        {headers}

        %description
        Test package for driverpack.

        %install
        {install}

        {scripts}%files
        {files}
        """
    ).format(
        name=package.name,
        version=package.version,
        group=package.group,
        headers="\n".join([*(["BuildArch: noarch"] if package.noarch else []), *package.headers]),
        install="\n".join(install),
        scripts=scripts,
        files="\n".join(listed),
    )
    spec_path = tmp / f"{package.name}.spec"
    spec_path.write_text(spec)
    argv: list[str | Path] = [which("rpmbuild"), "-bs" if source else "-bb", "--nodeps"]
    for define in (
        f"_topdir {topdir}",
        "_binary_payload w9.gzdio",
        "_build_id_links none",
        "debug_package %{nil}",
        *defines,
    ):
        argv += ["--define", define]
    run([*argv, spec_path], log=tmp / "rpmbuild.log", quiet=True)
    built = sorted((topdir / ("SRPMS" if source else "RPMS")).rglob("*.rpm"))
    assert len(built) == 1, built
    return built[0]


def kmod_package(name: str, kernel: str, module: Path) -> Package:
    return Package(
        name=name,
        headers=["Requires: kmod", f"Provides: {name}-driver = 1.0"],
        files={
            f"/lib/modules/{kernel}/extra/hello/hello.ko": module,
            f"/usr/share/doc/{name}/README": b"read me\n",
        },
        dirs=[f"/lib/modules/{kernel}/extra/hello"],
        scripts={"post": f"depmod -a {kernel} || :", "postun": f"depmod -a {kernel} || :"},
    )


def data_package(name: str, **changes: object) -> Package:
    package = Package(
        name=name,
        group="System Environment/Base",
        noarch=True,
        files={"/lib/firmware/x.bin": b"\x00\x01firmware", "/etc/modprobe.d/x.conf": b"options hello x=1\n"},
        config_files={"/etc/modprobe.d/x.conf"},
        scripts={"posttrans": "echo applied"},
    )
    for key, value in changes.items():
        setattr(package, key, value)
    return package


@pytest.fixture(scope="session")
def kmod_rpm(tmp_path_factory: pytest.TempPathFactory, kernel_release: str, hello_ko: Path) -> Path:
    return build(tmp_path_factory.mktemp("kmod"), kmod_package("hello-kmod", kernel_release, hello_ko))


@pytest.fixture(scope="session")
def data_rpm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("data"), data_package("hello-data"))


def rpm_query(path: Path, *options: str) -> list[str]:
    """What the real rpm says about a package file, one line per item."""
    out = run([which("rpm"), "-qp", *options, path], quiet=True).stdout.decode()
    return [line.strip() for line in out.splitlines() if line.strip()]


# --- the module and vermagic -------------------------------------------------------------------


def test_compiled_module_has_the_kernel_vermagic(hello_ko: Path, kernel_release: str) -> None:
    magic = vermagic(hello_ko.read_bytes())
    assert magic is not None
    assert magic.startswith(kernel_release + " ")
    modinfo = run([which("modinfo"), "-F", "vermagic", hello_ko], quiet=True).stdout.decode()
    assert magic.strip() == modinfo.strip()
    assert vermagic_matches(magic, kernel_release)
    assert not vermagic_matches(magic, HOST_KERNEL)


# --- read_rpm / iter_payload ---------------------------------------------------------------------


def test_read_kmod_rpm(kmod_rpm: Path, kernel_release: str, hello_ko: Path) -> None:
    info = read_rpm(kmod_rpm)
    assert (info.name, info.version, info.release, info.arch, info.epoch) == ("hello-kmod", "1.0", "1", "x86_64", None)
    assert info.nevra() == "hello-kmod-1.0-1.x86_64" == kmod_rpm.name.removesuffix(".rpm")
    assert info.group == "System Environment/Kernel"
    assert info.summary == "Test package hello-kmod"
    assert info.license == "GPL-2.0-only"
    assert info.payload_compressor == "gzip"
    assert not info.is_source
    assert "kmod" in info.requires
    assert "rpmlib(CompressedFileNames) <= 3.0.4-1" in info.requires
    assert "hello-kmod-driver = 1.0" in info.provides
    assert "hello-kmod = 1.0-1" in info.provides
    assert info.requires == tuple(rpm_query(kmod_rpm, "--requires"))
    assert info.provides == tuple(rpm_query(kmod_rpm, "--provides"))
    assert info.scripts == {"post": f"depmod -a {kernel_release} || :", "postun": f"depmod -a {kernel_release} || :"}

    module_path = f"/lib/modules/{kernel_release}/extra/hello/hello.ko"
    files = {entry.path: entry for entry in info.files}
    assert sorted(files) == sorted(
        [module_path, f"/lib/modules/{kernel_release}/extra/hello", "/usr/share/doc/hello-kmod/README"]
    )
    # rpmbuild's brp-strip runs `strip -g` on the module, so only the header's size is comparable
    assert files[module_path].size == len(dict(iter_payload(kmod_rpm, ".ko"))[module_path])
    assert files[module_path].mode == 0o100644
    assert not files[module_path].is_dir and not files[module_path].is_config
    assert files[f"/lib/modules/{kernel_release}/extra/hello"].is_dir
    assert [e.path for e in info.files] == rpm_query(kmod_rpm, "--list")
    assert info.installed_size == int(rpm_query(kmod_rpm, "--queryformat", "%{SIZE}")[0])


def test_read_data_rpm(data_rpm: Path) -> None:
    info = read_rpm(data_rpm)
    assert info.nevra() == "hello-data-1.0-1.noarch"
    assert info.arch == "noarch"
    assert info.group == "System Environment/Base"
    assert info.scripts == {"posttrans": "echo applied"}
    config = {entry.path: entry.is_config for entry in info.files}
    assert config == {"/etc/modprobe.d/x.conf": True, "/lib/firmware/x.bin": False}
    assert info.installed_size == len(b"\x00\x01firmware") + len(b"options hello x=1\n")


def test_read_source_rpm(tmp_path: Path) -> None:
    srpm = build(tmp_path, data_package("hello-src"), source=True)
    info = read_rpm(srpm)
    assert info.is_source
    assert info.nevra() == "hello-src-1.0-1.src" == srpm.name.removesuffix(".rpm")
    assert [e.path for e in info.files] == ["hello-src.spec"]


def test_iter_payload_streams_matching_files(kmod_rpm: Path, kernel_release: str, hello_ko: Path) -> None:
    modules = list(iter_payload(kmod_rpm, ".ko"))
    assert [module for module, _ in modules] == [f"/lib/modules/{kernel_release}/extra/hello/hello.ko"]
    content = modules[0][1]
    assert content.startswith(b"\x7fELF")
    assert vermagic(content) == vermagic(hello_ko.read_bytes())
    everything = dict(iter_payload(kmod_rpm))
    assert sorted(everything) == sorted([modules[0][0], "/usr/share/doc/hello-kmod/README"])
    assert everything["/usr/share/doc/hello-kmod/README"] == b"read me\n"


def test_iter_payload_gives_each_hardlink_its_content(tmp_path: Path) -> None:
    package = data_package("hello-links")
    package.commands = ["ln %{buildroot}/lib/firmware/x.bin %{buildroot}/lib/firmware/y.bin"]
    package.listed = ["/lib/firmware/y.bin"]
    rpm = build(tmp_path, package)
    firmware = dict(iter_payload(rpm, ".bin"))
    assert firmware == {"/lib/firmware/x.bin": b"\x00\x01firmware", "/lib/firmware/y.bin": b"\x00\x01firmware"}
    assert dict(iter_payload(rpm, "y.bin")) == {"/lib/firmware/y.bin": b"\x00\x01firmware"}


def test_iter_payload_does_not_hold_the_payload_in_memory(tmp_path: Path) -> None:
    package = data_package("hello-big")
    big = 48 << 20
    package.commands = [f"head -c {big} /dev/zero > %{{buildroot}}/lib/firmware/big.bin"]
    package.listed = ["/lib/firmware/big.bin"]
    rpm = build(tmp_path, package)
    tracemalloc.start()
    try:
        found = dict(iter_payload(rpm, "x.bin"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert found == {"/lib/firmware/x.bin": b"\x00\x01firmware"}
    assert peak < big // 4, peak


def test_xz_payload_reads_and_passes(tmp_path: Path) -> None:
    rpm = build(tmp_path, data_package("hello-xz"), "_binary_payload w6.xzdio")
    info = read_rpm(rpm)
    assert info.payload_compressor == "xz"
    assert check_data_rpm(info) == []
    assert dict(iter_payload(rpm, ".bin")) == {"/lib/firmware/x.bin": b"\x00\x01firmware"}


@pytest.mark.parametrize(
    "content",
    [b"", b"not an rpm at all\n" * 20, b"\xed\xab\xee\xdb" + b"\0" * 200],
    ids=["empty", "text", "lead-only"],
)
def test_non_rpm_is_a_build_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "fake.rpm"
    path.write_bytes(content)
    with pytest.raises(BuildError, match=r"fake\.rpm"):
        read_rpm(path)
    with pytest.raises(BuildError, match=r"fake\.rpm"):
        list(iter_payload(path))


def test_truncated_rpm_is_a_build_error(tmp_path: Path, kmod_rpm: Path) -> None:
    data = kmod_rpm.read_bytes()
    head = tmp_path / "head.rpm"
    head.write_bytes(data[:300])
    with pytest.raises(BuildError, match=r"head\.rpm"):
        read_rpm(head)
    cut = tmp_path / "cut.rpm"
    cut.write_bytes(data[: len(data) - 500])
    with pytest.raises(BuildError, match=r"cut\.rpm"):
        list(iter_payload(cut))


def test_missing_file_is_a_build_error(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="cannot read"):
        read_rpm(tmp_path / "absent.rpm")


# --- checks --------------------------------------------------------------------------------------


def test_kmod_rpm_passes(kmod_rpm: Path, kernel_release: str) -> None:
    assert check_kmod_rpm(read_rpm(kmod_rpm), kernel_release) == []
    assert check_kmod_rpm(read_rpm(kmod_rpm), kernel_release, module_dirs=("updates",)) != []


def test_kmod_rpm_for_another_kernel(kmod_rpm: Path) -> None:
    problems = check_kmod_rpm(read_rpm(kmod_rpm), HOST_KERNEL)
    assert any("vermagic" in p and HOST_KERNEL in p and "hello.ko" in p for p in problems), problems
    assert all(p.startswith(kmod_rpm.name + ": ") for p in problems)


def test_module_built_against_the_wrong_kernel(tmp_path: Path, hello_ko: Path) -> None:
    # laid out for the host's kernel, but compiled against the local headers
    rpm = build(tmp_path, kmod_package("hello-wrong", HOST_KERNEL, hello_ko))
    problems = check_kmod_rpm(read_rpm(rpm), HOST_KERNEL)
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{rpm.name}: /lib/modules/{HOST_KERNEL}/extra/hello/hello.ko has vermagic")
    assert "build it against the kernel build dir" in problems[0]


def test_kmod_rpm_with_other_files(tmp_path: Path, kernel_release: str, hello_ko: Path) -> None:
    package = kmod_package("hello-extra", kernel_release, hello_ko)
    package.files["/usr/bin/x"] = b"#!/bin/sh\n"
    rpm = build(tmp_path, package)
    problems = check_kmod_rpm(read_rpm(rpm), kernel_release)
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{rpm.name}: /usr/bin/x does not belong in a driver RPM")


def test_kmod_rpm_group_and_no_module(tmp_path: Path, kernel_release: str) -> None:
    package = Package(name="hello-empty", group="Applications/System", files={"/usr/share/doc/x/README": b"x"})
    problems = check_kmod_rpm(read_rpm(build(tmp_path, package)), kernel_release)
    assert len(problems) == 2, problems
    assert "holds no kernel module" in problems[0]
    assert "Group is 'Applications/System'" in problems[1] and "System Environment/Kernel" in problems[1]


def test_data_rpm_passes(data_rpm: Path) -> None:
    assert check_data_rpm(read_rpm(data_rpm)) == []


def test_data_rpm_with_file_outside_allowed_trees(tmp_path: Path) -> None:
    package = data_package("hello-usrlib")
    package.files["/usr/lib/x"] = b"x"
    rpm = build(tmp_path, package)
    problems = check_data_rpm(read_rpm(rpm))
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{rpm.name}: /usr/lib/x is outside the trees a data RPM may install to")


def test_zstd_payload_is_a_problem(tmp_path: Path) -> None:
    showrc = run([which("rpm"), "--showrc"], quiet=True).stdout.decode()
    if "rpmlib(PayloadIsZstd)" not in showrc:
        pytest.skip("this rpm was built without zstd, so it cannot write a zstd payload")
    rpm = build(tmp_path, data_package("hello-zstd"), "_binary_payload w19.zstdio")
    info = read_rpm(rpm)
    assert info.payload_compressor == "zstd"
    problems = check_common(info)
    assert any("zstd" in p and "w9.gzdio" in p and p.startswith(rpm.name) for p in problems), problems
    assert any("rpmlib(PayloadIsZstd)" in p for p in problems), problems
    assert check_data_rpm(info) == problems
    with pytest.raises(BuildError, match="zstd"):
        list(iter_payload(rpm))


def test_rpmlib_feature_newer_than_rpm_4_11(tmp_path: Path) -> None:
    rpm = build(tmp_path, data_package("hello-caret", version="1.0^post1"))
    problems = check_common(read_rpm(rpm))
    assert len(problems) == 1, problems
    assert "rpmlib(CaretInVersions)" in problems[0] and "'^'" in problems[0]


def test_rpm_411_features_are_spelled_as_rpm_spells_them() -> None:
    showrc = run([which("rpm"), "--showrc"], quiet=True).stdout.decode()
    provided = {line.split()[0] for line in showrc.splitlines() if line.strip().startswith("rpmlib(")}
    assert provided >= RPM411_RPMLIB_FEATURES
    assert "rpmlib(TildeInVersions)" in RPM411_RPMLIB_FEATURES
    newer = {"rpmlib(LargeFiles)", "rpmlib(RichDependencies)", "rpmlib(PayloadIsZstd)", "rpmlib(CaretInVersions)"}
    assert not newer & RPM411_RPMLIB_FEATURES
