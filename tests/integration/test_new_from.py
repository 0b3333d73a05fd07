"""From tarballs (and specs) to built RPMs with the real CLI: inv new --from / --from-spec, inv check, inv build-rpms.

The driver sources are the corpus layouts of tests/data/corpus/ (top directory named otherwise,
no top directory, Kbuild in a subfolder, several modules), packed as a vendor would ship them;
one pack is made from one tarball, another from three (--from repeated), a third from the DDK
example spec of tests/data/specs/. One `inv build-rpms` then builds every pack. The screen shows
no tool command lines unless -v is given, and a failing tool still shows its command, output and log.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import REPO, make_tarball, run_inv

from driverpack.load import load_pack

pytestmark = pytest.mark.slow

CORPUS = REPO / "tests" / "data" / "corpus"
SPECS = REPO / "tests" / "data" / "specs"


@dataclass(frozen=True)
class Layout:
    case: str  # tests/data/corpus/<case>/source
    tarball: str  # the file name a vendor gives it
    name: str  # what inv new must call the driver
    version: str
    why: str  # a fragment of the reason inv new gives for the name


LAYOUTS = {
    "other-top-dir": Layout("other-top-dir", "vendor-driver-2.3.tar.gz", "cother", "2.3", "module its Kbuild builds"),
    "no-top-dir": Layout("no-top-dir", "cflat-1.0.tar.xz", "cflat", "1.0", "module its Kbuild builds"),
    # Also: a version rpm refuses as it is, a data folder, and a description behind a macro.
    "kbuild-in-subfolder": Layout(
        "makefile-in-src", "csrc-1.0-rc1.tar.bz2", "csrc", "1.0_rc1", "module its Kbuild builds"
    ),
    "several-modules": Layout(
        "multi-module", "cmulti-1.0.tar.gz", "cmulti", "1.0", "tarball's name; it builds 2 modules"
    ),
}
DESCRIPTION = "Corpus driver whose Kbuild sits in src/"


@dataclass(frozen=True)
class Session:
    root: Path
    downloads: Path
    new_one: subprocess.CompletedProcess[str]
    new_many: subprocess.CompletedProcess[str]
    new_spec: subprocess.CompletedProcess[str]
    check: subprocess.CompletedProcess[str]
    build: subprocess.CompletedProcess[str]


def vendor_tarball(layout: Layout, downloads: Path, scratch: Path) -> Path:
    """The corpus source as its vendor ships it (csrc gets a data folder and a MODULE_DESCRIPTION macro)."""
    source = scratch / layout.case
    shutil.copytree(CORPUS / layout.case / "source", source)
    if layout.case == "makefile-in-src":
        top = source / "csrc-1.0"
        firmware = top / "csrc-data-1.0" / "lib" / "firmware" / "csrc"
        firmware.mkdir(parents=True)
        (firmware / "csrc.fw").write_bytes(b"\x00firmware\x01")
        with (top / "src" / "csrc.c").open("a") as c:
            c.write(f'#define CSRC_DESCRIPTION "{DESCRIPTION}"\nMODULE_DESCRIPTION(CSRC_DESCRIPTION);\n')
    out = downloads / layout.tarball
    make_tarball(source, out)
    return out


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Session:
    root = tmp_path_factory.mktemp("new-from")
    downloads = root / "downloads"
    downloads.mkdir()
    scratch = root / "scratch"
    tarballs = {key: vendor_tarball(layout, downloads, scratch) for key, layout in LAYOUTS.items()}
    new_one = run_inv(root, "new", "one", "--from", str(tarballs["other-top-dir"]))
    new_many = run_inv(
        root,
        "new",
        "many",
        "--from",
        str(tarballs["no-top-dir"]),
        "--from",
        str(tarballs["kbuild-in-subfolder"]),
        "--from",
        str(tarballs["several-modules"]),
    )
    spec_dir = downloads / "ddk"
    shutil.copytree(SPECS / "ddk-example", spec_dir)
    make_tarball(CORPUS / "kbuild-only" / "source", spec_dir / "hello-world-1.0.tar.gz")
    new_spec = run_inv(root, "new", "hello", "--from-spec", str(spec_dir / "hello-world.spec"))
    check = run_inv(root, "check")
    build = run_inv(root, "build-rpms")
    return Session(root, downloads, new_one, new_many, new_spec, check, build)


def show(proc: subprocess.CompletedProcess[str]) -> str:
    return f"exit {proc.returncode}\n--- stdout\n{proc.stdout}--- stderr\n{proc.stderr}"


def test_new_from_reads_name_version_and_why(session: Session) -> None:
    assert session.new_one.returncode == 0, show(session.new_one)
    assert session.new_many.returncode == 0, show(session.new_many)
    report = session.new_one.stdout + session.new_many.stdout
    for layout in LAYOUTS.values():
        assert f"name {layout.name}: the {layout.why}" in report or f"name {layout.name}: {layout.why}" in report
        assert f"version {layout.version}: from" in report
    assert "made rpm-safe from '1.0-rc1'" in report
    assert "version 2.3: from the tarball's name vendor-driver-2.3.tar.gz" in report
    assert "summary: MODULE_DESCRIPTION in src/csrc.c" in report
    assert "data RPM csrc-data 1.0: csrc-data-1.0/ from the tarball" in report
    for must in ("still to decide", "target.kernel", "pack.text", "pack.uuid: fresh"):
        assert must in session.new_one.stdout
    assert "Traceback" not in session.new_one.stderr + session.new_many.stderr


def test_the_packs_hold_what_was_read(session: Session) -> None:
    one = load_pack(session.root / "packs" / "one")
    many = load_pack(session.root / "packs" / "many")
    assert one.pack.target.kernel == "auto"
    drivers = {d.name: d for d in (*one.pack.drivers, *many.pack.drivers)}
    for layout in LAYOUTS.values():
        driver = drivers[layout.name]
        assert driver.version == layout.version
        assert driver.source == layout.tarball
        assert (
            session.root / "packs" / ("one" if layout.case == "other-top-dir" else "many") / layout.tarball
        ).is_file()
        assert driver.changelog and driver.changelog[0].author
    assert drivers["csrc"].summary == DESCRIPTION
    assert drivers["csrc"].license == "GPL"
    assert drivers["csrc"].data is not None and drivers["csrc"].data.version == "1.0"
    assert (session.root / "packs" / "many" / "csrc-data-1.0" / "lib" / "firmware" / "csrc" / "csrc.fw").is_file()
    assert many.pack.pack.text == "cflat kernel module"  # no MODULE_DESCRIPTION in cflat.c: said so
    assert "drivers[0].summary: no MODULE_DESCRIPTION found" in session.new_many.stdout
    # The comments that explain each key are there, and the CH 8.2 target is one edit away.
    text = (session.root / "packs" / "one" / "pack.toml").read_text()
    assert '#   kernel = "4.19.0+1"' in text and "# UUID:" in text and "# Source0:" in text


def test_new_from_spec_carries_the_spec_over(session: Session) -> None:
    assert session.new_spec.returncode == 0, show(session.new_spec)
    driver = load_pack(session.root / "packs" / "hello").pack.drivers[0]
    assert (driver.name, driver.version, driver.release) == ("hello-world", "1.0", "1")
    assert len(driver.changelog) == 2
    assert "Provides: vendor-driver" in session.new_spec.stdout


def test_check_passes_and_build_rpms_builds_every_pack(session: Session) -> None:
    assert session.check.returncode == 0, show(session.check)
    assert session.build.returncode == 0, show(session.build)
    rpms = session.root / "build"
    built = {p.name for p in rpms.rglob("*.rpm")}
    for layout in LAYOUTS.values():
        assert f"{layout.name}-{layout.version}-1.x86_64.rpm" in built, sorted(built)
    assert "csrc-data-1.0-1.noarch.rpm" in built
    assert "hello-world-1.0-1.x86_64.rpm" in built


def test_no_tool_command_lines_on_screen_without_verbose(session: Session) -> None:
    for proc in (session.new_one, session.new_many, session.check, session.build):
        plus = [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("+ ")]
        assert plus == [], show(proc)
    assert "==> build-rpms [many]" in session.build.stderr
    # They are in the steps' logs.
    logs = (session.root / "build" / "many" / "logs").glob("*.log")
    assert any(line.startswith("+ ") for log in logs for line in log.read_text().splitlines())


def test_verbose_shows_tool_command_lines(session: Session) -> None:
    proc = run_inv(session.root, "build-rpms", "--pack", "one", "--srpms-only", "-v")
    assert proc.returncode == 0, show(proc)
    plus = [line for line in proc.stderr.splitlines() if line.startswith("+ ")]
    assert any("rpmbuild -bs" in line for line in plus), show(proc)
    quiet = run_inv(session.root, "build-rpms", "--pack", "many", "--srpms-only")
    assert quiet.returncode == 0, show(quiet)
    assert not [line for line in quiet.stderr.splitlines() if line.startswith("+ ")], show(quiet)


def test_a_failing_tool_shows_its_command_output_and_log(session: Session) -> None:
    folder = session.downloads / "failing"
    folder.mkdir()
    make_tarball(CORPUS / "kbuild-only" / "source", folder / "failing-1.0.tar.gz")
    (folder / "failing.spec").write_text(
        "Name: failing\nVersion: 1.0\nRelease: 1\nSummary: fails\nLicense: GPL\nSource0: failing-1.0.tar.gz\n"
        "%description\nfails\n%prep\n%setup -q -n ckbuild-1.0\n"
        "%build\necho 'the vendor build says no' >&2\nexit 3\n%files\n"
    )
    new = run_inv(session.root, "new", "failing", "--from-spec", str(folder / "failing.spec"))
    assert new.returncode == 0, show(new)
    assert "spec failing.spec: kept" in new.stdout
    proc = run_inv(session.root, "build-rpms", "--pack", "failing")
    assert proc.returncode != 0, show(proc)
    assert "Traceback" not in proc.stderr
    error = proc.stderr[proc.stderr.index("error:") :]
    assert "'rpmbuild' failed with exit code 1: " in error and "rpmbuild -ba" in error, show(proc)
    assert "the vendor build says no" in error
    assert "full log: " in error and "logs/kmod-failing.log" in error
