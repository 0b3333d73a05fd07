"""release-zip end to end through the real CLI: the zip, reproducibility, up-to-date checks, interruptions, clean.

Every test copies packs/helloworld into its own root and runs `inv -r <repo> ...` there, as a user
would (one in-process run through driverpack.pipeline checks that both ways share their stamps).
A signing key is made once per module and copied into each root's keys/, so no build pays for it.
The step lines on stderr say what ran (`==> <step> [<label>]`) and what was skipped
(`--- <step> [<label>] up to date, skipped`, or one `--- <task> [<label>] up to date: no input or output
changed` when the quick check answers); the tests assert on those, not on the clock, except for one
wide ratio: a no-op run against a full build.

The interruption tests kill `inv` and everything it started (its own process group, SIGKILL) at
chosen moments, then check that dist/ holds only whole files whose checksums do not lie, and that a
plain rerun succeeds. inv runs with TMPDIR pointing at a scratch folder of this module, so what a
killed run leaves behind (gpg homedirs, verify scratch folders) is found and removed, and any gpg-agent
a killed run started is stopped.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import rpmfile

from driverpack import pipeline
from driverpack.adapters import gpg
from driverpack.adapters.iso import read_iso, read_iso_file
from driverpack.load import load_pack
from driverpack.run import which

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_PACK = REPO / "packs" / "helloworld"
INV = Path(sys.executable).parent / "inv"
LABEL = "helloworld"
ZIP_NAME = "helloworld-1.0.0.zip"
ISO_NAME = "helloworld.iso"
ISO_MD5 = "helloworld.iso.md5"
METADATA_MD5 = "helloworld.metadata.md5"
KEY_NAME = gpg.TEST_KEY_FILE  # the pack has no signing_key: the local test key, exported to dist/
ZIP_MEMBERS = ["helloworld-source.tar.gz", ISO_NAME, ISO_MD5, METADATA_MD5]
EPOCH = 1704067200  # 2024-01-01 00:00 UTC: the example pack's newest changelog date, its SOURCE_DATE_EPOCH
ZIP_DATE = (2024, 1, 1, 0, 0, 0)
DATA_FOLDER = "helloworld-data-1.0"
FIRMWARE = f"{DATA_FOLDER}/lib/firmware/helloworld/helloworld.bin"
TARBALL = "helloworld-1.0.tar.gz"
SOURCE_FILE = "helloworld-1.0/helloworld.c"
KMOD_SRPM = "helloworld-1.0-1.src.rpm"
DATA_SRPM = "helloworld-data-1.0-1.src.rpm"
BUILD_STEPS = {"specs", "compile", "build-rpms", "iso", "release-zip"}  # those with a stamp
DONE = re.compile(r"^<== (?P<step>\S+) \[(?P<label>[^\]]+)\] done in ", re.M)
QUICK = re.compile(r"^--- (?P<step>\S+) \[(?P<label>[^\]]+)\] up to date: no input or output changed$", re.M)
RAN = re.compile(r"^==> (?P<step>\S+) \[(?P<label>[^\]]+)\]$", re.M)
SKIPPED = re.compile(r"^--- (?P<step>\S+) \[(?P<label>[^\]]+)\] up to date, skipped$", re.M)
MD5_LINE = re.compile(r"^[0-9a-f]{32}  \S+\n$")
INV_TIMEOUT = 300


# --- running inv in a root ---------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    """One finished `inv` run."""

    argv: tuple[str, ...]
    code: int
    stderr: str
    seconds: float

    @property
    def ran(self) -> set[str]:
        return steps(RAN, self.stderr)

    @property
    def skipped(self) -> set[str]:
        return steps(SKIPPED, self.stderr)

    def ok(self) -> Result:
        assert self.code == 0, f"{' '.join(self.argv)} exited {self.code}:\n{self.stderr}"
        return self


def steps(pattern: re.Pattern[str], text: str) -> set[str]:
    found = [(m["step"], m["label"]) for m in pattern.finditer(text)]
    assert {label for _, label in found} <= {LABEL}, text
    return {step for step, _ in found}


@dataclass(frozen=True)
class Root:
    """A driverpack root: packs/helloworld, keys/, and the build/ and dist/ that inv makes there."""

    path: Path
    scratch: Path  # inv's TMPDIR

    @property
    def pack(self) -> Path:
        return self.path / "packs" / LABEL

    @property
    def work(self) -> Path:
        return self.path / "build" / LABEL

    @property
    def dist(self) -> Path:
        return self.path / "dist"

    @property
    def zip(self) -> Path:
        return self.dist / ZIP_NAME

    @property
    def iso(self) -> Path:
        return self.dist / ISO_NAME

    def argv(self, task: str, *args: str) -> list[str]:
        assert INV.is_file(), f"{INV} is missing: install the project into the venv (pip install -e '.[test]')"
        return [str(INV), "-r", str(REPO), task, *args]

    def env(self) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if key != "SOURCE_DATE_EPOCH"}
        return {**env, "LC_ALL": "C", "NO_COLOR": "1", "TMPDIR": str(self.scratch)}

    def inv(self, task: str = "release-zip", *args: str) -> Result:
        argv = self.argv(task, "--pack", LABEL, *args)
        start = time.monotonic()
        proc = subprocess.run(
            argv,
            cwd=self.path,
            env=self.env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=INV_TIMEOUT,
            check=False,
        )
        return Result(tuple(argv), proc.returncode, proc.stdout + proc.stderr, time.monotonic() - start)


def make_root(base: Path, scratch: Path, keys: Path) -> Root:
    """base/packs/helloworld (a copy of the example pack) and base/keys (the module's signing key)."""
    if not (EXAMPLE_PACK / "pack.toml").is_file():
        pytest.fail(f"the example pack is missing: {EXAMPLE_PACK}/pack.toml")
    base.mkdir(parents=True, exist_ok=True)
    shutil.copytree(EXAMPLE_PACK, base / "packs" / LABEL)
    shutil.copytree(keys, base / "keys")
    return Root(base, scratch)


def stop_agents(*folders: Path) -> None:
    """Stop the gpg-agent of every gpg homedir a killed run left in these folders (it outlives its run)."""
    gpgconf = which("gpgconf")
    for folder in folders:
        if not folder.is_dir():
            continue
        for home in folder.rglob("gpg-*"):
            if home.is_dir():
                subprocess.run(
                    [gpgconf, "--homedir", str(home), "--kill", "gpg-agent"],
                    capture_output=True,
                    timeout=30,
                    check=False,
                )


# --- reading what was built --------------------------------------------------------------------


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    """{relative path: (sha256, mtime in ns)} of every file under folder."""
    return {
        p.relative_to(folder).as_posix(): (sha256(p.read_bytes()), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def md5sum_check(folder: Path, md5_file: str) -> tuple[int, str]:
    proc = subprocess.run(
        [which("md5sum"), "-c", md5_file], cwd=folder, capture_output=True, text=True, timeout=60, check=False
    )
    return proc.returncode, proc.stdout + proc.stderr


def extract_iso(iso: Path, dest: Path) -> Path:
    """Extract with xorriso, a reader independent of the pycdlib that wrote the ISO."""
    subprocess.run(
        [which("xorriso"), "-osirrox", "on", "-indev", str(iso), "-extract", "/", str(dest)],
        capture_output=True,
        timeout=120,
        check=True,
    )
    return dest


def iso_volume_bytes(iso: Path) -> int:
    """The size the ISO's primary volume descriptor claims, from isoinfo."""
    proc = subprocess.run(
        [which("isoinfo"), "-d", "-i", str(iso)], capture_output=True, text=True, timeout=60, check=True
    )
    found = re.search(r"^Volume size is: (\d+)$", proc.stdout, re.M)
    assert found, proc.stdout
    return int(found[1]) * 2048


def update_text(iso: Path) -> str:
    found = re.search(rb"<name-description>(.*?)</name-description>", read_iso_file(iso, "update.xml"), re.S)
    assert found, f"{iso}: update.xml has no name-description"
    return found[1].decode()


def rpm_member(rpm: bytes, name: str) -> bytes:
    """One file of an RPM's payload ("/lib/..." in a binary RPM, the bare name in an SRPM)."""
    with rpmfile.open(fileobj=io.BytesIO(rpm)) as package:
        member = package.extractfile("." + name if name.startswith("/") else name)
        assert member is not None, name
        return bytes(member.read())


def source_archive(zip_path: Path) -> tarfile.TarFile:
    with zipfile.ZipFile(zip_path) as archive:
        data = archive.read("helloworld-source.tar.gz")
    return tarfile.open(fileobj=io.BytesIO(data), mode="r:gz")


def archived_file(zip_path: Path, name: str) -> bytes:
    with source_archive(zip_path) as tar:
        member = tar.extractfile(f"helloworld-source/{name}")
        assert member is not None, name
        return member.read()


# --- changing a pack's inputs ------------------------------------------------------------------


def set_text(root: Root, text: str) -> None:
    toml = root.pack / "pack.toml"
    old = toml.read_text(encoding="utf-8")
    new, count = re.subn(r'(?m)^text = ".*"$', f'text = "{text}"', old, count=1)
    assert count == 1, f"no [pack] text line in {toml}"
    toml.write_text(new, encoding="utf-8")


def flip_firmware_byte(root: Root) -> bytes:
    firmware = root.pack / FIRMWARE
    data = bytearray(firmware.read_bytes())
    data[-2] ^= 0x01
    firmware.write_bytes(bytes(data))
    return bytes(data)


def repack_tarball(root: Root, old: bytes, new: bytes) -> bytes:
    """Rewrite the driver tarball with `old` replaced by `new` in its .c file, every other byte kept."""
    tarball = root.pack / TARBALL
    out = io.BytesIO()
    with tarfile.open(tarball, "r:gz") as src, tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as dst:
        for info in src.getmembers():
            if not info.isreg():
                dst.addfile(info)
                continue
            reader = src.extractfile(info)
            assert reader is not None
            data = reader.read()
            if info.name == SOURCE_FILE:
                assert old in data, f"{SOURCE_FILE} in {tarball} has no {old!r}"
                data = data.replace(old, new)
                info.size = len(data)
            dst.addfile(info, io.BytesIO(data))
    packed = gzip.compress(out.getvalue(), mtime=0)
    tarball.write_bytes(packed)
    return packed


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    """A short TMPDIR for inv (gpg puts agent sockets in homedirs, whose paths must stay short)."""
    folder = Path(tempfile.mkdtemp(prefix="dpr-"))
    yield folder
    stop_agents(folder)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """keys/ holding the local test key, made once for the module."""
    folder = tmp_path_factory.mktemp("signing") / "keys"
    key, created = gpg.generate_test_key(folder)
    assert created and key.is_file()
    return folder


@dataclass(frozen=True)
class Released:
    """A root built twice from clean (build/ and dist/ removed between, keys/ kept)."""

    root: Root
    first: Result
    second: Result
    first_zip: bytes
    first_iso: bytes


@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory, scratch: Path, keys: Path) -> Released:
    root = make_root(tmp_path_factory.mktemp("released"), scratch, keys)
    first = root.inv().ok()
    first_zip, first_iso = root.zip.read_bytes(), root.iso.read_bytes()
    shutil.rmtree(root.path / "build")
    shutil.rmtree(root.dist)
    second = root.inv().ok()
    return Released(root, first, second, first_zip, first_iso)


# --- the zip -----------------------------------------------------------------------------------


def test_full_build_runs_every_step(released: Released) -> None:
    for result in (released.first, released.second):
        assert result.ran == {"check", *BUILD_STEPS, "verify"}, result.stderr
        assert result.skipped == set(), result.stderr
        assert f"    dist/{ZIP_NAME}" in result.stderr.splitlines()


def test_zip_members_sorted_dated_and_0644(released: Released) -> None:
    root = released.root
    with zipfile.ZipFile(root.zip) as archive:
        assert archive.testzip() is None
        infos = archive.infolist()
        assert [info.filename for info in infos] == ZIP_MEMBERS
        for info in infos:
            assert info.date_time == ZIP_DATE, info.filename
            assert info.create_system == 3, info.filename  # unix: the mode below is meant
            assert info.external_attr >> 16 == 0o100644, (info.filename, oct(info.external_attr >> 16))
        assert archive.read(ISO_NAME) == root.iso.read_bytes()
        assert archive.read(ISO_MD5) == (root.dist / ISO_MD5).read_bytes()
        assert archive.read(METADATA_MD5) == (root.dist / METADATA_MD5).read_bytes()
        assert archive.read("helloworld-source.tar.gz") == (root.work / "helloworld-source.tar.gz").read_bytes()


def test_source_archive_holds_the_gpl_sources(released: Released) -> None:
    """Each byte once: the driver's SRPM (tarball, patches, spec) and the pack file; the firmware is in the ISO
    and not GPL source, so the data folder and its SRPM stay out (the pack does not ask for them)."""
    root = released.root
    top = "helloworld-source"
    files = {
        f"{top}/pack.toml": root.pack / "pack.toml",
        f"{top}/SRPMS/{KMOD_SRPM}": root.work / "rpmbuild" / "SRPMS" / KMOD_SRPM,
    }
    raw = (root.work / "helloworld-source.tar.gz").read_bytes()
    assert raw[4:8] == b"\0\0\0\0", "the gzip header carries a time"
    with source_archive(root.zip) as tar:
        members = tar.getmembers()
        names = [m.name for m in members]
        assert names == sorted(names)
        assert {m.name for m in members if m.isreg()} == set(files)
        assert {m.name for m in members if m.isdir()} == set()
        for member in members:
            assert (member.mtime, member.uid, member.gid) == (EPOCH, 0, 0), member.name
            assert (member.uname, member.gname) == ("root", "root"), member.name
            assert member.mode == 0o644, (member.name, oct(member.mode))
            reader = tar.extractfile(member)
            assert reader is not None
            assert reader.read() == files[member.name].read_bytes(), member.name

    listed = subprocess.run(
        [which("rpm"), "-qpl", str(files[f"{top}/SRPMS/{KMOD_SRPM}"])],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.split()
    assert sorted(listed) == [TARBALL, "helloworld.spec"]


def test_source_archive_data_puts_the_data_srpm_in(tmp_path: Path, scratch: Path, keys: Path) -> None:
    """source_archive_data = true: the data SRPM joins the driver's; the zip still holds each byte once."""
    root = make_root(tmp_path, scratch, keys)
    toml = root.pack / "pack.toml"
    toml.write_text(toml.read_text(encoding="utf-8").replace("[target]", "source_archive_data = true\n\n[target]", 1))
    root.inv().ok()
    with source_archive(root.zip) as tar:
        names = sorted(m.name for m in tar.getmembers())
    assert names == [
        "helloworld-source/SRPMS/" + KMOD_SRPM,
        "helloworld-source/SRPMS/" + DATA_SRPM,
        "helloworld-source/pack.toml",
    ]


def test_md5_files_check_after_unzip(released: Released, tmp_path: Path) -> None:
    unzipped = tmp_path / "unzipped"
    with zipfile.ZipFile(released.root.zip) as archive:
        archive.extractall(unzipped)
    code, output = md5sum_check(unzipped, ISO_MD5)
    assert code == 0 and output.strip() == f"{ISO_NAME}: OK", output
    tree = extract_iso(unzipped / ISO_NAME, tmp_path / "iso")
    shutil.copyfile(unzipped / METADATA_MD5, tree / METADATA_MD5)
    code, output = md5sum_check(tree, METADATA_MD5)
    assert code == 0, output
    assert output.split() == ["update.xml:", "OK", "repodata/repomd.xml:", "OK"], output


def test_two_clean_builds_give_the_same_zip(released: Released) -> None:
    assert released.root.iso.read_bytes() == released.first_iso
    assert released.root.zip.read_bytes() == released.first_zip


def test_in_process_run_shares_the_stamps(released: Released, capsys: pytest.CaptureFixture[str]) -> None:
    """pipeline.release_zip in this process sees the CLI's builds as up to date, and names the zip."""
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("SOURCE_DATE_EPOCH", raising=False)
        result = pipeline.release_zip(load_pack(released.root.pack), released.root.path)
    stderr = capsys.readouterr().err
    assert steps(SKIPPED, stderr) == BUILD_STEPS, stderr
    assert steps(RAN, stderr) == {"check"}, stderr
    assert result.zip == released.root.zip
    assert list(result.members) == ZIP_MEMBERS
    assert result.source_archive == released.root.work / "helloworld-source.tar.gz"


# --- up to date --------------------------------------------------------------------------------


def test_noop_rerun_changes_nothing_and_is_fast(released: Released) -> None:
    """A rerun answers from the quick check (nothing's size or time changed); a touched input with the same
    bytes goes through every step's digest, and each step says it is up to date. Neither writes anything."""
    root = released.root
    before_dist, before_build = snapshot(root.dist), snapshot(root.work)
    full = min(released.first.seconds, released.second.seconds)

    again = root.inv().ok()
    assert again.ran <= {"check"}, again.stderr
    assert steps(QUICK, again.stderr) == {"release-zip"} or again.skipped == BUILD_STEPS, again.stderr
    assert again.seconds < 0.5 * full, f"no-op {again.seconds:.2f}s, full build {full:.2f}s"

    firmware = root.pack / FIRMWARE
    os.utime(firmware, ns=(firmware.stat().st_atime_ns, firmware.stat().st_mtime_ns + 1_000_000_000))
    touched = root.inv().ok()
    assert touched.ran == {"check"}, touched.stderr
    assert touched.skipped == BUILD_STEPS, touched.stderr
    assert touched.seconds < 0.5 * full, f"no-op after a touch {touched.seconds:.2f}s, full build {full:.2f}s"

    assert snapshot(root.dist) == before_dist
    assert snapshot(root.work) == before_build


@pytest.fixture(scope="module")
def edited(tmp_path_factory: pytest.TempPathFactory, scratch: Path, keys: Path) -> Root:
    """A built root whose inputs the tests below change one at a time."""
    root = make_root(tmp_path_factory.mktemp("edited"), scratch, keys)
    root.inv().ok()
    return root


def rebuild_after(root: Root, change: Callable[[], object]) -> Result:
    """Bring the root up to date (whatever an earlier test left), apply `change`, rebuild; the rebuild's result."""
    root.inv().ok()
    change()
    return root.inv().ok()


def test_changed_firmware_byte_rebuilds_the_data_rpm_only(edited: Root) -> None:
    """The data RPM is rebuilt; the driver's module and kernel-module RPM are reused as they are."""
    before = edited.iso.read_bytes()
    kmod_rpm = edited.work / "rpmbuild" / "RPMS" / "x86_64" / "helloworld-1.0-1.x86_64.rpm"
    kmod_before = kmod_rpm.read_bytes()
    firmware: list[bytes] = []
    result = rebuild_after(edited, lambda: firmware.append(flip_firmware_byte(edited)))
    assert result.ran == {"check", "specs", "build-rpms", "iso", "verify", "release-zip"}, result.stderr
    assert result.skipped == {"compile"}, result.stderr
    assert "    reused helloworld (unchanged)" in result.stderr.splitlines(), result.stderr
    assert kmod_rpm.read_bytes() == kmod_before
    assert edited.iso.read_bytes() != before
    data_rpm = edited.work / "rpmbuild" / "RPMS" / "noarch" / "helloworld-data-1.0-1.noarch.rpm"
    assert rpm_member(data_rpm.read_bytes(), "/lib/firmware/helloworld/helloworld.bin") == firmware[0]
    code, output = md5sum_check(edited.dist, ISO_MD5)
    assert code == 0, output


def test_changed_driver_source_recompiles(edited: Root) -> None:
    marker = f"helloworld: loaded, rebuilt {time.time_ns()}".encode()
    tarball: list[bytes] = []
    result = rebuild_after(edited, lambda: tarball.append(repack_tarball(edited, b"helloworld: loaded", marker)))
    assert result.ran == {"check", *BUILD_STEPS, "verify"}, result.stderr
    assert result.skipped == set(), result.stderr
    (module,) = (edited.work / "BUILD").rglob("helloworld.ko")
    assert marker in module.read_bytes()
    assert rpm_member(archived_file(edited.zip, f"SRPMS/{KMOD_SRPM}"), TARBALL) == tarball[0]


def test_changed_pack_text_rebuilds_the_iso_not_the_driver_rpms(edited: Root) -> None:
    text = f"Hello world example driver, edited {time.time_ns()}"
    result = rebuild_after(edited, lambda: set_text(edited, text))
    assert result.ran == {"check", "iso", "verify", "release-zip"}, result.stderr
    assert result.skipped == {"specs", "compile", "build-rpms"}, result.stderr
    assert update_text(edited.iso) == text
    with zipfile.ZipFile(edited.zip) as archive:
        assert archive.read(ISO_NAME) == edited.iso.read_bytes()


def test_changed_pack_file_comment_reaches_the_source_archive(edited: Root) -> None:
    toml = edited.pack / "pack.toml"
    comment = f"# edited by test_release {time.time_ns()}\n"
    result = rebuild_after(edited, lambda: toml.write_text(comment + toml.read_text(encoding="utf-8")))
    assert "compile" in result.skipped, result.stderr
    assert archived_file(edited.zip, "pack.toml") == toml.read_bytes()


# --- interrupted runs --------------------------------------------------------------------------


@dataclass(frozen=True)
class Kill:
    """When to SIGKILL a run: a delay, a step line on stderr, or the ISO's temporary file appearing."""

    task: str = "iso"
    clean: bool = False  # remove build/<label>/ first, so compile and rpmbuild are in flight
    after: float | None = None  # seconds after the start
    line: str | None = None  # as soon as stderr shows this line
    iso_temp: bool = False  # as soon as dist/.helloworld.iso.tmp-<pid> exists


@dataclass(frozen=True)
class Interrupted:
    killed: bool  # False: the run had finished before the kill
    in_flight: frozenset[str]  # steps that had started and not said they were done (verify runs inside iso)
    stderr: str
    pid: int


KILLS = [
    pytest.param(Kill(after=0.3), id="0.3s"),
    pytest.param(Kill(clean=True, after=0.8), id="0.8s-from-clean"),
    pytest.param(Kill(clean=True, after=1.5), id="1.5s-from-clean"),
    pytest.param(Kill(clean=True, line=f"==> compile [{LABEL}]"), id="compile"),
    pytest.param(Kill(clean=True, line=f"==> build-rpms [{LABEL}]"), id="build-rpms"),
    pytest.param(Kill(line=f"==> iso [{LABEL}]"), id="iso-staging"),
    pytest.param(Kill(iso_temp=True), id="iso-write"),
    pytest.param(Kill(line=f"==> verify [{LABEL}]"), id="verify"),
    pytest.param(Kill(task="release-zip", line=f"==> release-zip [{LABEL}]"), id="release-zip"),
]
ISO_WRITE_ATTEMPTS = 6
BIG_FIRMWARE = 2 * 1024 * 1024  # incompressible bytes: the ISO takes long enough to write to be caught


def interrupt(root: Root, kill: Kill) -> Interrupted:
    """Start `inv <task>` in its own process group and SIGKILL the whole group at the chosen moment."""
    lines: list[str] = []
    seen = threading.Event()
    with subprocess.Popen(
        root.argv(kill.task, "--pack", LABEL),
        cwd=root.path,
        env=root.env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as proc:

        def read() -> None:
            assert proc.stderr is not None
            for line in proc.stderr:
                lines.append(line)
                if line.rstrip("\n") == kill.line:
                    seen.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        temp = root.dist / f".{ISO_NAME}.tmp-{proc.pid}"
        start = time.monotonic()
        try:
            while proc.poll() is None:
                if (
                    (kill.after is not None and time.monotonic() - start >= kill.after)
                    or seen.is_set()
                    or (kill.iso_temp and temp.exists())
                ):
                    kill_group(proc.pid)
                    break
                if time.monotonic() - start > INV_TIMEOUT:
                    pytest.fail(f"inv {kill.task} did not finish in {INV_TIMEOUT}s")
                time.sleep(0.0005)
        finally:
            if proc.poll() is None:
                kill_group(proc.pid)
            proc.wait(timeout=60)
            reader.join(timeout=30)
    stderr = "".join(lines)
    in_flight = frozenset(steps(RAN, stderr) - steps(DONE, stderr))
    return Interrupted(proc.returncode == -signal.SIGKILL, in_flight, stderr, proc.pid)


def kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # the run ended meanwhile
        os.killpg(pgid, signal.SIGKILL)


def assert_whole_outputs(root: Root) -> None:
    """dist/ holds whole files only, and no checksum lies about the ISO beside it."""
    if not root.dist.is_dir():
        return
    names = {p.name for p in root.dist.iterdir() if not p.name.startswith(".")}
    assert names <= {ISO_NAME, ISO_MD5, METADATA_MD5, ZIP_NAME, KEY_NAME}, names
    iso, iso_md5, metadata_md5 = root.iso, root.dist / ISO_MD5, root.dist / METADATA_MD5
    for md5_file in (iso_md5, metadata_md5):
        if md5_file.exists():
            lines = md5_file.read_text().splitlines(keepends=True)
            assert lines and all(MD5_LINE.match(line) for line in lines), f"{md5_file.name}: {lines}"
    if iso_md5.exists():
        assert iso.exists(), f"{ISO_MD5} without {ISO_NAME}"
    if iso.exists():
        assert iso.stat().st_size == iso_volume_bytes(iso), f"{ISO_NAME} is shorter or longer than its volume"
        contents = read_iso(iso)
        assert contents.volume_id == LABEL
        assert {"update.xml", "repodata/repomd.xml"} <= {f.path for f in contents.files}
        if iso_md5.exists():
            code, output = md5sum_check(root.dist, ISO_MD5)
            assert code == 0, f"{ISO_MD5} lies about {ISO_NAME}: {output}"
            # The ISO's checksum is written last: when it holds, the metadata checksum is of this ISO too.
            expected = [
                f"{md5(read_iso_file(iso, 'update.xml'))}  update.xml\n",
                f"{md5(read_iso_file(iso, 'repodata/repomd.xml'))}  repodata/repomd.xml\n",
            ]
            assert metadata_md5.read_text().splitlines(keepends=True) == expected
    if root.zip.exists():
        with zipfile.ZipFile(root.zip) as archive:
            assert archive.testzip() is None
            assert archive.namelist() == ZIP_MEMBERS
    key = root.dist / KEY_NAME
    if key.exists():
        assert key.read_text().endswith("-----END PGP PUBLIC KEY BLOCK-----\n")


@pytest.fixture(scope="module")
def killed_root(tmp_path_factory: pytest.TempPathFactory, scratch: Path, keys: Path) -> Iterator[Root]:
    """A released root with a bigger firmware file; the kill tests run on it one after another."""
    root = make_root(tmp_path_factory.mktemp("killed"), scratch, keys)
    big = root.pack / DATA_FOLDER / "lib" / "firmware" / "helloworld" / "big.bin"
    big.write_bytes(random.Random(LABEL).randbytes(BIG_FIRMWARE))
    root.inv().ok()
    yield root
    stop_agents(root.work, root.scratch)


@pytest.mark.parametrize("kill", KILLS)
def test_killed_run_leaves_whole_outputs_and_reruns(
    killed_root: Root, kill: Kill, request: pytest.FixtureRequest
) -> None:
    root = killed_root
    attempts = ISO_WRITE_ATTEMPTS if kill.iso_temp else 1
    for attempt in range(attempts):
        if kill.clean:
            stop_agents(root.work)
            shutil.rmtree(root.work, ignore_errors=True)
        # A new text each time: the ISO the run makes differs from the one in dist/, so a stale checksum shows.
        text = f"Interrupted at {request.node.callspec.id}, attempt {attempt}"
        set_text(root, text)
        run = interrupt(root, kill)
        stop_agents(root.work, root.scratch)
        assert_whole_outputs(root)
        temp = root.dist / f".{ISO_NAME}.tmp-{run.pid}"
        landed = run.killed and (temp.exists() if kill.iso_temp else True)
        if landed:
            break
    if kill.line is not None or kill.iso_temp:
        assert run.killed, f"the run finished before the kill:\n{run.stderr}"
        assert landed, f"no kill landed while the ISO was written in {attempts} attempts"
        expected_step = kill.line.split()[1] if kill.line else "iso"
        assert expected_step in run.in_flight, run.stderr

    again = root.inv(kill.task).ok()
    if run.killed:
        # An interrupted step is never taken for a finished one.
        assert run.in_flight <= again.ran, again.stderr
    assert_whole_outputs(root)
    code, output = md5sum_check(root.dist, ISO_MD5)
    assert code == 0, output
    assert update_text(root.iso) == text
    if kill.task == "release-zip":
        with zipfile.ZipFile(root.zip) as archive:
            assert archive.read(ISO_NAME) == root.iso.read_bytes()


# --- clean -------------------------------------------------------------------------------------


def test_clean_removes_the_packs_build_and_dist_files(
    tmp_path: Path, scratch: Path, keys: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_root(tmp_path / "root", scratch, keys)
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    pipeline.release_zip(load_pack(root.pack), root.path)
    leftover = root.dist / f".{ISO_NAME}.tmp-999999"  # what a killed run leaves
    leftover.write_bytes(b"partial")
    theirs = root.path / "build" / "other"
    theirs.mkdir()
    pack_before, keys_before = snapshot(root.pack), snapshot(root.path / "keys")
    assert {ISO_NAME, ISO_MD5, METADATA_MD5, ZIP_NAME} <= {p.name for p in root.dist.iterdir()}

    result = root.inv("clean").ok()
    assert not root.work.exists()
    assert theirs.is_dir()
    assert not [p.name for p in root.dist.iterdir() if p.name.startswith((LABEL, f".{LABEL}"))]
    assert {p.name for p in root.dist.iterdir()} <= {KEY_NAME}
    removed = {line.removeprefix("removed ") for line in result.stderr.splitlines() if line.startswith("removed ")}
    assert removed == {
        f"build/{LABEL}",
        *(f"dist/{name}" for name in (ISO_NAME, ISO_MD5, METADATA_MD5, ZIP_NAME, leftover.name)),
    }, result.stderr
    assert snapshot(root.pack) == pack_before
    assert snapshot(root.path / "keys") == keys_before

    again = root.inv("clean").ok()
    assert f"clean [{LABEL}]: nothing to remove" in again.stderr


def test_clean_leaves_other_packs_alone(tmp_path: Path, scratch: Path, keys: Path) -> None:
    root = make_root(tmp_path / "root", scratch, keys)
    other = root.path / "packs" / "helloworld-ctl"
    shutil.copytree(root.pack, other)
    toml = other / "pack.toml"
    text = toml.read_text(encoding="utf-8").replace('label = "helloworld"', 'label = "helloworld-ctl"')
    toml.write_text(text.replace("7a1b4bfe-3ac5-4c3f-9a3e-2b0f6d1c5e01", "3f9c2d7e-8b41-4a6f-9e0d-5c7a1b2e4f60"))
    assert load_pack(other).label == "helloworld-ctl"
    theirs = ["helloworld-ctl.iso", "helloworld-ctl.iso.md5", "helloworld-ctl.metadata.md5", "helloworld-ctl-1.0.0.zip"]
    root.dist.mkdir()
    for name in theirs:
        (root.dist / name).write_bytes(b"another pack's deliverable\n")
    (root.path / "build" / "helloworld-ctl").mkdir(parents=True)

    root.inv("clean").ok()
    assert sorted(p.name for p in root.dist.iterdir()) == sorted(theirs)
    assert (root.path / "build" / "helloworld-ctl").is_dir()
