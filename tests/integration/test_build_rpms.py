"""build-rpms end to end: the real rpmbuild, gcc, make and patch against the installed kernel headers.

Each case under tests/data/drivers/<case>/ is a plain folder: source/ holds what the driver's
tarball holds (one top directory, or files at its root), patches/ the case's patches, and
<name>-data-<version>/ its data folder. The tests make the tarball and pack.toml in tmp_path.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import installed_kernel, make_tarball

from driverpack import pipeline
from driverpack.errors import BuildError, PackError
from driverpack.load import LoadedPack, load_pack
from driverpack.models import is_rpm_version
from driverpack.run import run, which
from driverpack.steps.rpms import RpmsResult
from driverpack.vermagic import vermagic, vermagic_matches

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
DRIVERS = REPO / "tests" / "data" / "drivers"
EXAMPLE_PACK = REPO / "packs" / "helloworld"
CHANGELOG = '[{ date = "2024-01-01", author = "Example Corp <drivers@example.com>", text = "Test build" }]'
HOST_PAYLOADS = ("gzip", "xz")  # what the host's rpm 4.11 can unpack


@dataclass(frozen=True)
class Driver:
    """One [[drivers]] table of a test pack, made from tests/data/drivers/<case>/."""

    case: str
    name: str
    version: str
    suffix: str = ".tar.gz"
    patches: tuple[str, ...] = ()
    data_version: str | None = None

    @property
    def tarball(self) -> str:
        return f"{self.name}-{self.version}{self.suffix}"


@dataclass(frozen=True)
class Built:
    root: Path  # where build/ goes
    loaded: LoadedPack
    result: RpmsResult

    @property
    def rpmbuild(self) -> Path:
        return self.root.resolve() / "build" / self.loaded.label / "rpmbuild"


# making packs


def make_pack(
    folder: Path,
    label: str,
    drivers: Sequence[Driver],
    rpms: Sequence[str] = (),
    files: Mapping[str, Path] | None = None,
) -> LoadedPack:
    """Write folder/pack.toml (kernel = "auto") with the drivers' tarballs, patches and data folders.

    rpms are [[rpms]] paths; files are copied into the pack folder (relative path -> source).
    """
    folder.mkdir(parents=True)
    for rel, source in (files or {}).items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, folder / rel)
    pack_uuid = uuid.uuid5(uuid.NAMESPACE_URL, f"driverpack-test:{label}")
    text = textwrap.dedent(f"""\
        [pack]
        label = "{label}"
        text = "Test pack {label}"
        uuid = "{pack_uuid}"
        version = "1.0.0"
        vendor = "Example Corp"

        [target]
        kernel = "auto"
        """)
    for driver in drivers:
        case = DRIVERS / driver.case
        make_tarball(case / "source", folder / driver.tarball)
        for patch in driver.patches:
            shutil.copyfile(case / "patches" / patch, folder / patch)
        text += textwrap.dedent(f"""
            [[drivers]]
            name = "{driver.name}"
            version = "{driver.version}"
            release = "1"
            source = "{driver.tarball}"
            summary = "Test driver {driver.name}"
            patches = {json.dumps(list(driver.patches))}
            changelog = {CHANGELOG}
            """)
        if driver.data_version is not None:
            data_folder = f"{driver.name}-data-{driver.data_version}"
            shutil.copytree(case / data_folder, folder / data_folder)
            text += f'\n[drivers.data]\nversion = "{driver.data_version}"\n'
    for path in rpms:
        text += f'\n[[rpms]]\npath = "{path}"\n'
    (folder / "pack.toml").write_text(text)
    return load_pack(folder)


def build(root: Path, loaded: LoadedPack) -> Built:
    return Built(root=root, loaded=loaded, result=pipeline.build_rpms(loaded, root=root))


def build_noarch_rpm(work: Path, name: str, payload: str) -> Path:
    """A tiny prebuilt noarch RPM for [[rpms]], with the given _binary_payload."""
    spec = work / f"{name}.spec"
    spec.write_text(
        textwrap.dedent(f"""\
            Name: {name}
            Version: 2.0
            Release: 1
            Summary: A prebuilt tool a pack carries
            License: GPL
            BuildArch: noarch

            %description
            A prebuilt tool a pack carries.

            %install
            install -d %{{buildroot}}/usr/share/doc/{name}
            echo '{name} documentation' > %{{buildroot}}/usr/share/doc/{name}/README

            %files
            /usr/share/doc/{name}/README
            """)
    )
    top = work / "rpmbuild"
    run(
        [
            which("rpmbuild"),
            "-bb",
            "--define",
            f"_topdir {top}",
            "--define",
            f"_binary_payload {payload}",
            "--define",
            "_build_id_links none",
            spec,
        ],
        quiet=True,
    )
    return top / "RPMS" / "noarch" / f"{name}-2.0-1.noarch.rpm"


# reading RPMs with rpm itself


def rpm_query(path: Path, *options: str) -> str:
    return run([which("rpm"), "-qp", *options, path], quiet=True).stdout.decode()


def rpm_lines(path: Path, *options: str) -> list[str]:
    return [line for line in rpm_query(path, *options).splitlines() if line.strip()]


def unpack_rpm(path: Path, dest: Path) -> Path:
    """Extract an RPM's payload with rpm2cpio and cpio into dest."""
    archive = run([which("rpm2cpio"), path], quiet=True).stdout
    dest.mkdir(parents=True)
    run([which("cpio"), "-idm", "--quiet", "--no-absolute-filenames"], cwd=dest, input=archive, quiet=True)
    return dest


def module_bytes(rpm: Path, kernel: str, name: str, work: Path) -> bytes:
    unpacked = unpack_rpm(rpm, work / f"unpacked-{rpm.name}")
    return (unpacked / "lib" / "modules" / kernel / "updates" / f"{name}.ko").read_bytes()


def assert_holds_module(rpm: Path, kernel: str, name: str, work: Path) -> None:
    """The RPM installs exactly /lib/modules/<kernel>/updates/<name>.ko, built for that kernel."""
    assert rpm_lines(rpm, "--list") == [f"/lib/modules/{kernel}/updates/{name}.ko"]
    magic = vermagic(module_bytes(rpm, kernel, name, work))
    assert magic is not None and vermagic_matches(magic, kernel), magic


def assert_installable_on_host(rpm: Path) -> None:
    """The host's rpm 4.11 can unpack it: gzip or xz payload, no zstd rpmlib() requirement."""
    assert rpm_query(rpm, "--queryformat", "%{PAYLOADCOMPRESSOR}") in HOST_PAYLOADS
    assert not [r for r in rpm_lines(rpm, "--requires") if r.startswith("rpmlib(PayloadIsZstd)")]


def digests(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*.rpm"))
    }


def source_line(path: Path, marker: str) -> int:
    """The 1-based line of the one line of path holding marker."""
    lines = [i for i, line in enumerate(path.read_text().splitlines(), start=1) if marker in line]
    assert len(lines) == 1, (path, marker, lines)
    return lines[0]


# fixtures


@pytest.fixture(scope="session")
def kernel() -> str:
    """The one installed kernel build dir, which `kernel = "auto"` targets."""
    release = installed_kernel()
    which("gcc")
    which("patch")
    return release


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory, kernel: str) -> Built:
    """The shipped helloworld pack, built once."""
    root = tmp_path_factory.mktemp("example")
    shutil.copytree(EXAMPLE_PACK, root / "helloworld")
    return build(root, load_pack(root / "helloworld"))


@pytest.fixture(scope="module")
def extra_rpm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_noarch_rpm(tmp_path_factory.mktemp("extra-rpm"), "extra-tool", "w9.gzdio")


@pytest.fixture(scope="module")
def two_drivers(tmp_path_factory: pytest.TempPathFactory, kernel: str, extra_rpm: Path) -> Built:
    """alpha (with a data RPM) and beta (without, built from two objects) in one run, plus a prebuilt RPM."""
    root = tmp_path_factory.mktemp("two-drivers")
    folder = root / "pair"
    loaded = make_pack(
        folder,
        "pair",
        [Driver("alpha", "alpha", "1.0", data_version="1.0"), Driver("beta", "beta", "2.1")],
        rpms=[f"extra/{extra_rpm.name}"],  # relative to pack.toml, as in the pack file reference
        files={f"extra/{extra_rpm.name}": extra_rpm},
    )
    return build(root, loaded)


LAYOUTS = {
    "no-top-dir": Driver("no-top-dir", "flat", "1.0"),
    "makefile-in-src": Driver("makefile-in-src", "nested", "1.0", suffix=".tar.bz2"),
    "kbuild-only": Driver("kbuild-only", "kbonly", "1.0", suffix=".tar.xz"),
}


@pytest.fixture(scope="module", params=sorted(LAYOUTS))
def layout(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, kernel: str) -> Built:
    driver = LAYOUTS[request.param]
    root = tmp_path_factory.mktemp(request.param)
    return build(root, make_pack(root / driver.name, driver.name, [driver]))


# the example pack


def test_example_kmod_rpm_holds_the_module_for_the_target_kernel(example: Built, kernel: str, tmp_path: Path) -> None:
    (rpm,) = example.result.kmod_rpms
    assert rpm == example.rpmbuild / "RPMS" / "x86_64" / "helloworld-1.0-1.x86_64.rpm"
    assert rpm.is_file()
    assert_holds_module(rpm, kernel, "helloworld", tmp_path)


def test_example_kmod_rpm_header_and_scripts(example: Built, kernel: str) -> None:
    (rpm,) = example.result.kmod_rpms
    assert rpm_query(rpm, "--queryformat", "%{GROUP}").endswith("/Kernel")
    assert_installable_on_host(rpm)
    scripts = rpm_query(rpm, "--scripts")
    assert "postinstall scriptlet" in scripts and "postuninstall scriptlet" in scripts
    assert scripts.count(f"depmod {kernel}") == 2, scripts
    requires_kernel = [r for r in rpm_lines(rpm, "--requires") if r.startswith("kernel-uname-r")]
    if is_rpm_version(kernel):
        assert requires_kernel == [f"kernel-uname-r = {kernel}"]
    else:
        # Debian's release (6.1.0-NN-amd64) is no rpm version: no such Requires in test builds.
        assert requires_kernel == []


def test_example_data_rpm_installs_the_data_folder(example: Built) -> None:
    (rpm,) = example.result.data_rpms
    assert rpm == example.rpmbuild / "RPMS" / "noarch" / "helloworld-data-1.0-1.noarch.rpm"
    folder = EXAMPLE_PACK / "helloworld-data-1.0"
    expected = sorted("/" + p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert any(p.startswith("/lib/firmware/") for p in expected)
    assert any(p.startswith("/etc/modprobe.d/") for p in expected)
    flags = dict(line.split(" ", 1) for line in rpm_lines(rpm, "--queryformat", "[%{FILENAMES} %{FILEFLAGS:fflags}\n]"))
    assert sorted(flags) == expected
    for path, flag in flags.items():
        # %config(noreplace): rpm shows c (config) and n (noreplace)
        assert ("c" in flag and "n" in flag) == path.startswith("/etc/"), (path, flag)
    assert_installable_on_host(rpm)


def test_example_srpms(example: Built) -> None:
    srpms = example.rpmbuild / "SRPMS"
    names = {"helloworld-1.0-1.src.rpm", "helloworld-data-1.0-1.src.rpm"}
    assert {p.name for p in srpms.iterdir()} == names
    assert sorted(example.result.srpms) == sorted(srpms / n for n in names)
    assert set(rpm_lines(srpms / "helloworld-1.0-1.src.rpm", "--list")) == {
        "helloworld-1.0.tar.gz",
        "helloworld.spec",
    }
    for srpm in example.result.srpms:
        assert_installable_on_host(srpm)


def test_example_through_the_command_line(tmp_path: Path, kernel: str) -> None:
    shutil.copytree(EXAMPLE_PACK, tmp_path / "helloworld")
    proc = subprocess.run(
        [inv_program(), "-r", str(REPO), "build-rpms", "--pack", str(tmp_path / "helloworld")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    rpms = tmp_path / "build" / "helloworld" / "rpmbuild"
    for rel in (
        "RPMS/x86_64/helloworld-1.0-1.x86_64.rpm",
        "RPMS/noarch/helloworld-data-1.0-1.noarch.rpm",
        "SRPMS/helloworld-1.0-1.src.rpm",
        "SRPMS/helloworld-data-1.0-1.src.rpm",
    ):
        assert (rpms / rel).is_file(), rel
    assert_holds_module(rpms / "RPMS/x86_64/helloworld-1.0-1.x86_64.rpm", kernel, "helloworld", tmp_path)


def test_command_line_failure_is_one_message_and_an_exit_code(tmp_path: Path, kernel: str) -> None:
    make_pack(tmp_path / "typo", "typo", [Driver("syntax-error", "typo", "1.0")])
    proc = subprocess.run(
        [inv_program(), "-r", str(REPO), "build-rpms", "--pack", str(tmp_path / "typo")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == BuildError.exit_code, proc.stderr
    assert "Traceback" not in proc.stderr
    line = source_line(DRIVERS / "syntax-error" / "source" / "typo-1.0" / "typo.c", "(1 + ;")
    assert f"error: typo: compiling against kernel {kernel} failed: " in proc.stderr
    assert f"typo.c:{line}:" in proc.stderr


def inv_program() -> Path:
    """invoke's `inv` from the environment running the tests."""
    program = Path(sys.executable).with_name("inv")
    assert program.is_file(), f"invoke's 'inv' not found next to {sys.executable}"
    return program


# several drivers, tarball layouts


def test_two_drivers_in_one_run(two_drivers: Built, kernel: str, tmp_path: Path) -> None:
    result = two_drivers.result
    x86_64 = two_drivers.rpmbuild / "RPMS" / "x86_64"
    assert sorted(result.kmod_rpms) == [x86_64 / "alpha-1.0-1.x86_64.rpm", x86_64 / "beta-2.1-1.x86_64.rpm"]
    for rpm, name in zip(sorted(result.kmod_rpms), ("alpha", "beta"), strict=True):
        assert_holds_module(rpm, kernel, name, tmp_path)
        assert_installable_on_host(rpm)
    (data,) = result.data_rpms
    assert data == two_drivers.rpmbuild / "RPMS" / "noarch" / "alpha-data-1.0-1.noarch.rpm"
    assert rpm_lines(data, "--list") == ["/etc/modprobe.d/alpha.conf", "/lib/firmware/alpha/alpha.fw"]
    assert rpm_lines(data, "--configfiles") == ["/etc/modprobe.d/alpha.conf"]
    assert sorted(p.name for p in result.srpms) == [
        "alpha-1.0-1.src.rpm",
        "alpha-data-1.0-1.src.rpm",
        "beta-2.1-1.src.rpm",
    ]


def test_prebuilt_rpm_is_checked_and_listed(two_drivers: Built, extra_rpm: Path) -> None:
    carried = two_drivers.loaded.folder / "extra" / extra_rpm.name
    assert two_drivers.result.extra_rpms == (carried,)
    assert carried in two_drivers.result.payload


def test_prebuilt_zstd_rpm_is_refused(tmp_path: Path, kernel: str) -> None:
    zstd_rpm = build_noarch_rpm(tmp_path, "zstd-tool", "w19.zstdio")
    assert rpm_query(zstd_rpm, "--queryformat", "%{PAYLOADCOMPRESSOR}") == "zstd"
    loaded = make_pack(tmp_path / "kbonly", "kbonly", [LAYOUTS["kbuild-only"]], rpms=[str(zstd_rpm)])
    with pytest.raises(PackError) as caught:  # refused by the preflight, before anything is compiled
        pipeline.build_rpms(loaded, root=tmp_path)
    message = caught.value.message
    assert "rpms[0]" in message
    assert not (tmp_path / "build" / "kbonly" / "BUILD").exists()
    assert "zstd-tool-2.0-1.noarch.rpm" in message
    assert "compressed with zstd" in message and "gzip or xz" in message


def test_tarball_layout(layout: Built, kernel: str, tmp_path: Path) -> None:
    (driver,) = layout.loaded.pack.drivers
    (rpm,) = layout.result.kmod_rpms
    assert rpm == layout.rpmbuild / "RPMS" / "x86_64" / f"{driver.name}-1.0-1.x86_64.rpm"
    assert_holds_module(rpm, kernel, driver.name, tmp_path)
    assert layout.result.data_rpms == ()
    assert [p.name for p in layout.result.srpms] == [f"{driver.name}-1.0-1.src.rpm"]


def test_srpm_rebuilds_from_source(layout: Built, kernel: str, tmp_path: Path) -> None:
    """What Koji or COPR does with the SRPM: %prep, %build (Kbuild itself) and %install, no prebuilt modules."""
    (driver,) = layout.loaded.pack.drivers
    (srpm,) = layout.result.srpms
    top = tmp_path / "rpmbuild"
    argv: list[str | Path] = [which("rpmbuild"), "--rebuild", "--define", f"_topdir {top}"]
    if run([which("rpm"), "-q", "--quiet", "rpm"], check=False, quiet=True).returncode != 0:
        argv.append("--nodeps")  # no rpm database (Debian): BuildRequires cannot be checked
    run([*argv, srpm], log=tmp_path / "rebuild.log", quiet=True)
    assert_holds_module(top / "RPMS" / "x86_64" / f"{driver.name}-1.0-1.x86_64.rpm", kernel, driver.name, tmp_path)


# patches


def test_patch_makes_the_driver_build(tmp_path: Path, kernel: str) -> None:
    loaded = make_pack(
        tmp_path / "patchme", "patchme", [Driver("needs-patch", "patchme", "1.0", patches=("fix-build.patch",))]
    )
    built = build(tmp_path, loaded)
    (rpm,) = built.result.kmod_rpms
    assert_holds_module(rpm, kernel, "patchme", tmp_path)
    module = module_bytes(rpm, kernel, "patchme", tmp_path / "again")
    assert b"patchme: built with fix-build.patch" in module
    assert b"unpatched" not in module
    (srpm,) = built.result.srpms
    assert "fix-build.patch" in rpm_lines(srpm, "--list")


def test_unpatched_driver_does_not_build(tmp_path: Path, kernel: str) -> None:
    loaded = make_pack(tmp_path / "patchme", "patchme", [Driver("needs-patch", "patchme", "1.0")])
    with pytest.raises(BuildError) as caught:
        pipeline.build_rpms(loaded, root=tmp_path)
    line = source_line(DRIVERS / "needs-patch" / "source" / "patchme-1.0" / "patchme.c", "#error")
    assert f"patchme.c:{line}:" in caught.value.message


def test_patch_that_does_not_apply(tmp_path: Path, kernel: str) -> None:
    driver = Driver("needs-patch", "patchme", "1.0", patches=("fix-build.patch", "stale.patch"))
    loaded = make_pack(tmp_path / "patchme", "patchme", [driver])
    with pytest.raises(PackError) as caught:
        pipeline.build_rpms(loaded, root=tmp_path)
    (problem,) = caught.value.problems
    assert "drivers[0].patches[1]" in problem
    assert "stale.patch does not apply" in problem
    assert "Hunk #1 FAILED" in problem
    assert "fix-build.patch" not in problem


# compile failures


@pytest.mark.parametrize(
    ("case", "name", "marker", "is_api_change"),
    [
        pytest.param("api-undeclared-function", "apifunc", "kernel_api_that_does_not_exist()", True, id="function"),
        pytest.param("api-missing-member", "apimember", "member_that_does_not_exist", True, id="member"),
        pytest.param("syntax-error", "typo", "(1 + ;", False, id="syntax"),
    ],
)
def test_compile_failure_diagnosis(
    tmp_path: Path, kernel: str, case: str, name: str, marker: str, is_api_change: bool
) -> None:
    loaded = make_pack(tmp_path / name, name, [Driver(case, name, "1.0")])
    with pytest.raises(BuildError) as caught:
        pipeline.build_rpms(loaded, root=tmp_path)
    first_line = caught.value.message.splitlines()[0]
    line = source_line(DRIVERS / case / "source" / f"{name}-1.0" / f"{name}.c", marker)
    assert f"{name}: compiling against kernel {kernel} failed: " in first_line
    assert f"{name}.c:{line}:" in first_line
    assert "error:" in first_line
    incompatible = f"probably not compatible with kernel {kernel}"
    assert (incompatible in caught.value.message) == is_api_change, caught.value.message
    log = tmp_path / "build" / name / "logs" / f"compile-{name}.log"
    assert str(log.resolve()) in caught.value.hint
    assert log.is_file()
    assert not list((tmp_path / "build" / name).glob("rpmbuild/RPMS/*/*.rpm"))


def test_missing_kernel_symbol_diagnosis(tmp_path: Path, kernel: str) -> None:
    """A symbol the kernel does not export fails at modpost, which gives no file:line but the symbol."""
    loaded = make_pack(tmp_path / "apisym", "apisym", [Driver("api-missing-symbol", "apisym", "1.0")])
    with pytest.raises(BuildError) as caught:
        pipeline.build_rpms(loaded, root=tmp_path)
    message = caught.value.message
    first_line = message.splitlines()[0]
    assert f"apisym: compiling against kernel {kernel} failed: " in first_line
    assert '"kernel_symbol_that_is_not_exported"' in first_line and "undefined" in first_line
    assert f"probably not compatible with kernel {kernel}" in message


# reproducibility


def test_two_clean_builds_are_byte_identical(tmp_path: Path, kernel: str) -> None:
    """Same pack, same path, build/ removed between: the same RPM and SRPM bytes."""
    shutil.copytree(EXAMPLE_PACK, tmp_path / "helloworld")
    rpmbuild = tmp_path / "build" / "helloworld" / "rpmbuild"
    build(tmp_path, load_pack(tmp_path / "helloworld"))
    first = digests(rpmbuild)
    shutil.rmtree(tmp_path / "build")
    build(tmp_path, load_pack(tmp_path / "helloworld"))
    second = digests(rpmbuild)
    assert sorted(first) == [
        "RPMS/noarch/helloworld-data-1.0-1.noarch.rpm",
        "RPMS/x86_64/helloworld-1.0-1.x86_64.rpm",
        "SRPMS/helloworld-1.0-1.src.rpm",
        "SRPMS/helloworld-data-1.0-1.src.rpm",
    ]
    assert second == first
