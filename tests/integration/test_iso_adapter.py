"""The pycdlib ISO adapter, checked with the tools that read ISOs elsewhere: isoinfo and xorriso."""

from __future__ import annotations

import itertools
import os
import re
import stat
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pycdlib.pycdlib
import pytest

from driverpack.adapters.iso import (
    IsoEntry,
    IsoFile,
    extract_iso,
    read_iso,
    read_iso_file,
    write_iso,
)
from driverpack.errors import BuildError
from driverpack.run import run, which

UUID = "e4b9fe85-ffe6-4cbf-9fcb-1d88ecf5b102"
EPOCH = 1700000000  # 2023-11-14 22:13:20 UTC
LONG_RPM = "kmod-mellanox-connectx-firmware-loader-4.19.0+1-2.3.4-10.xs8.x86_64.rpm"  # 70 chars
RPM_60 = "update-mellanox-connectx-firmware-loader-2.3.4-1.noarch.rpm"  # 59 chars

# path inside the ISO -> (content, mode)
SAMPLE: dict[str, tuple[bytes, int]] = {
    "update.xml": (b'<update name-label="demo" uuid="' + UUID.encode() + b'"/>\n', 0o644),
    "update.xml.asc": (b"-----BEGIN PGP SIGNATURE-----\n...\n", 0o644),
    f"Packages/{LONG_RPM}": (os.urandom(300_000), 0o644),
    f"Packages/{RPM_60}": (os.urandom(5000), 0o644),
    # These two share "UPDATE_D.RPM" in 8.3 form.
    "Packages/update-demo-1.0-1.noarch.rpm": (b"one", 0o644),
    "Packages/update-demo-1.0-2.noarch.rpm": (b"two", 0o600),
    "repodata/repomd.xml": (b"<repomd/>\n", 0o644),
    "repodata/repomd.xml.asc": (b"sig\n", 0o644),
    # Same 8.3 form, and the same Joliet name for a case-blind reader.
    "repodata/primary.xml.gz": (b"\x1f\x8b primary", 0o644),
    "repodata/Primary.xml.gz": (b"\x1f\x8b Primary", 0o644),
    "tools/bin/deep/install.sh": (b"#!/bin/sh\necho hi\n", 0o755),
    "empty": (b"", 0o444),
}

ISO_NAME = re.compile(r"^[A-Z0-9_]{1,8}\.[A-Z0-9_]{0,3};1$")
ISO_DIR = re.compile(r"^[A-Z0-9_]{1,8}$")
LISTING = re.compile(
    r"^(?P<perm>[-dl][-rwxsStT]{9})\s+\d+\s+\d+\s+\d+\s+(?P<size>\d+)\s+"
    r"(?P<date>\w{3}\s+\d+\s+\d{4})\s+\[\s*\d+\s+\d+\]\s\s(?P<name>.*?)\s*$"
)


def make_sources(root: Path, sample: dict[str, tuple[bytes, int]] = SAMPLE) -> list[IsoEntry]:
    entries = []
    for i, (inner, (content, mode)) in enumerate(sample.items()):
        source = root / f"src-{i}"
        source.write_bytes(content)
        entries.append(IsoEntry(path=inner, source=source, mode=mode))
    return entries


def write_sample(
    tmp_path: Path,
    *,
    volume_id: str = "demo",
    application_id: str = UUID,
    epoch: int = EPOCH,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    sources = tmp_path / "sources"
    sources.mkdir(exist_ok=True)
    out = tmp_path / "pack.iso"
    write_iso(
        out,
        make_sources(sources),
        volume_id=volume_id,
        application_id=application_id,
        epoch=epoch,
        progress=progress,
    )
    return out


def tool(*argv: str) -> str:
    return run([which(argv[0]), *argv[1:]], quiet=True).stdout.decode("utf-8", "replace")


def isoinfo_listing(iso: Path, *flags: str) -> dict[str, tuple[str, int, str]]:
    """`isoinfo -l`: path -> (permissions, size, date); a directory's own entry is "<dir>/."."""
    entries: dict[str, tuple[str, int, str]] = {}
    directory = ""
    for line in tool("isoinfo", *flags, "-l", "-i", str(iso)).splitlines():
        if line.startswith("Directory listing of "):
            directory = line.removeprefix("Directory listing of ").rstrip()
            continue
        m = LISTING.match(line)
        if m and m["name"] != "..":
            entries[directory + m["name"]] = (m["perm"], int(m["size"]), m["date"])
    return entries


@pytest.fixture
def sample_iso(tmp_path: Path) -> Path:
    return write_sample(tmp_path)


def test_isoinfo_sees_volume_application_joliet_and_rock_ridge(sample_iso: Path) -> None:
    info = tool("isoinfo", "-d", "-i", str(sample_iso))
    assert "System id: LINUX\n" in info
    assert "Volume id: demo\n" in info
    assert f"Application id: {UUID}\n" in info
    assert "Joliet with UCS level 3 found" in info
    assert "Rock Ridge signatures version 1 found" in info


def test_rock_ridge_has_the_real_names_modes_and_the_pinned_date(sample_iso: Path) -> None:
    listing = isoinfo_listing(sample_iso, "-R")
    files = {path: perm for path, (perm, _, _) in listing.items() if not perm.startswith("d")}
    assert files == {
        "/update.xml": "-rw-r--r--",
        "/update.xml.asc": "-rw-r--r--",
        f"/Packages/{LONG_RPM}": "-rw-r--r--",
        f"/Packages/{RPM_60}": "-rw-r--r--",
        "/Packages/update-demo-1.0-1.noarch.rpm": "-rw-r--r--",
        "/Packages/update-demo-1.0-2.noarch.rpm": "-rw-------",
        "/repodata/repomd.xml": "-rw-r--r--",
        "/repodata/repomd.xml.asc": "-rw-r--r--",
        "/repodata/primary.xml.gz": "-rw-r--r--",
        "/repodata/Primary.xml.gz": "-rw-r--r--",
        "/tools/bin/deep/install.sh": "-rwxr-xr-x",
        "/empty": "-r--r--r--",
    }
    dirs = {path for path, (perm, _, _) in listing.items() if perm.startswith("d")}
    assert dirs == {
        "/.",
        "/Packages",
        "/Packages/.",
        "/repodata",
        "/repodata/.",
        "/tools",
        "/tools/.",
        "/tools/bin",
        "/tools/bin/.",
        "/tools/bin/deep",
        "/tools/bin/deep/.",
    }
    assert {listing[d][0] for d in dirs} == {"drwxr-xr-x"}
    assert listing[f"/Packages/{LONG_RPM}"][1] == 300_000
    assert {date for _, _, date in listing.values()} == {"Nov 14 2023"}


def test_iso9660_names_are_level_1_and_unique(sample_iso: Path) -> None:
    listing = isoinfo_listing(sample_iso)
    names = [p for p in listing if not p.endswith("/.")]
    assert len(names) == len(SAMPLE) + 5  # five directories
    assert len(set(names)) == len(names)
    for path in names:
        *parents, name = path.strip("/").split("/")
        assert all(ISO_DIR.match(d) for d in parents), path
        assert (ISO_DIR if listing[path][0].startswith("d") else ISO_NAME).match(name), path
    # genisoimage's forms, as in the reference packs.
    assert {"/UPDATE.XML;1", "/UPDATE_X.ASC;1", "/REPODATA/REPOMD.XML;1", "/REPODATA/REPOMD_X.ASC;1"} <= set(names)
    packages = sorted(p for p in names if p.startswith("/PACKAGES/"))
    assert packages == [
        "/PACKAGES/KMOD_MEL.RPM;1",
        "/PACKAGES/UPDATE_1.RPM;1",  # update-demo-1.0-2: the second one to want UPDATE_D
        "/PACKAGES/UPDATE_D.RPM;1",
        "/PACKAGES/UPDATE_M.RPM;1",
    ]


def test_iso9660_names_match_the_reference_packs(tmp_path: Path) -> None:
    digest = "0b59a357b289f45158dbf3f94d1652de90805b44428d6c4b5ec8677443cb00b9"
    sample = {
        "Packages/ReLVHDoISCSISR-1.0-5.x86_64.rpm": (b"a", 0o644),
        "Packages/update-ReLVHDoISCSISR-7.1.5-1.noarch.rpm": (b"b", 0o644),
        f"repodata/{digest}-filelists.sqlite.bz2": (b"c", 0o644),
        "repodata/repomd.xml": (b"d", 0o644),
        "update.xml.asc": (b"e", 0o644),
    }
    out = tmp_path / "ref.iso"
    write_iso(out, make_sources(tmp_path, sample), volume_id="ReLVHDoISCSISR", application_id=UUID, epoch=EPOCH)
    assert {p for p in isoinfo_listing(out) if not p.endswith("/.")} == {
        "/PACKAGES",
        "/PACKAGES/RELVHDOI.RPM;1",
        "/PACKAGES/UPDATE_R.RPM;1",
        "/REPODATA",
        "/REPODATA/0B59A357.BZ2;1",
        "/REPODATA/REPOMD.XML;1",
        "/UPDATE_X.ASC;1",
    }


def test_joliet_has_the_real_names_up_to_64_characters(sample_iso: Path) -> None:
    paths = set(tool("isoinfo", "-J", "-f", "-i", str(sample_iso)).splitlines())
    expected = {"/" + p for p in SAMPLE if p not in (f"Packages/{LONG_RPM}", "repodata/primary.xml.gz")}
    expected |= {"/Packages", "/repodata", "/tools", "/tools/bin", "/tools/bin/deep"}
    assert expected <= paths
    # "Primary" sorts first and keeps its name.
    assert "/repodata/primary.xml~1.gz" in paths
    (cut,) = paths - expected - {"/repodata/primary.xml~1.gz"}
    assert cut.startswith("/Packages/kmod-mellanox-")
    assert cut.endswith(".rpm")
    assert len(cut.removeprefix("/Packages/")) == 64


def test_xorriso_extracts_the_sources(sample_iso: Path, tmp_path: Path) -> None:
    dest = tmp_path / "xorriso"
    tool("xorriso", "-osirrox", "on", "-indev", str(sample_iso), "-extract", "/", str(dest))
    found = {p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()}
    assert found == set(SAMPLE)
    for inner, (content, _) in SAMPLE.items():
        assert (dest / inner).read_bytes() == content
    lsdl = tool("xorriso", "-indev", str(sample_iso), "-find", "/", "-exec", "lsdl")
    assert re.search(r"^-rwxr-xr-x .* '/tools/bin/deep/install.sh'$", lsdl, re.MULTILINE)


def test_read_iso_and_extract_iso(sample_iso: Path, tmp_path: Path) -> None:
    contents = read_iso(sample_iso)
    assert contents.volume_id == "demo"
    assert contents.application_id == UUID
    assert contents.has_joliet
    assert contents.has_rock_ridge
    assert contents.files == tuple(
        IsoFile(path=p, size=len(content), mode=mode) for p, (content, mode) in sorted(SAMPLE.items())
    )

    dest = tmp_path / "extracted"
    extract_iso(sample_iso, dest)
    for inner, (content, mode) in SAMPLE.items():
        assert (dest / inner).read_bytes() == content
        assert stat.S_IMODE((dest / inner).stat().st_mode) == mode

    assert read_iso_file(sample_iso, "update.xml") == SAMPLE["update.xml"][0]
    assert read_iso_file(sample_iso, "repodata/Primary.xml.gz") == SAMPLE["repodata/Primary.xml.gz"][0]
    assert read_iso_file(sample_iso, "empty") == b""


def test_read_iso_of_an_iso_made_by_xorriso(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "Packages").mkdir(parents=True)
    (tree / "Packages" / RPM_60).write_bytes(b"rpm")
    (tree / "update.xml").write_bytes(b"<update/>")
    (tree / "update.xml").chmod(0o640)
    out = tmp_path / "xorriso.iso"
    tool(
        "xorriso", "-as", "mkisofs", "-quiet", "-R", "-J", "-V", "some-label", "-A", UUID,
        "-o", str(out), str(tree),
    )  # fmt: skip
    contents = read_iso(out)
    # xorriso writes the application id in upper case.
    assert (contents.volume_id, contents.application_id.lower()) == ("some-label", UUID)
    assert contents.has_joliet
    assert contents.has_rock_ridge
    assert [(f.path, f.size, f.mode) for f in contents.files] == [
        (f"Packages/{RPM_60}", 3, 0o644),
        ("update.xml", 9, 0o640),
    ]
    assert read_iso_file(out, "update.xml") == b"<update/>"


def test_same_epoch_same_bytes_whatever_the_order_and_time_zone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sources = tmp_path / "sources"
    sources.mkdir()
    entries = make_sources(sources)
    first, second, later = tmp_path / "first.iso", tmp_path / "second.iso", tmp_path / "later.iso"
    write_iso(first, entries, volume_id="demo", application_id=UUID, epoch=EPOCH)
    # Copies elsewhere, with other times and modes, given in reverse order, in another time zone.
    copies = tmp_path / "copies"
    copies.mkdir()
    moved = []
    for entry in reversed(entries):
        copy = copies / entry.source.name
        copy.write_bytes(entry.source.read_bytes())
        copy.chmod(0o600)
        os.utime(copy, (EPOCH + 12345, EPOCH + 12345))
        moved.append(IsoEntry(entry.path, copy, entry.mode))
    with tz("America/New_York", monkeypatch):
        write_iso(second, moved, volume_id="demo", application_id=UUID, epoch=EPOCH)
    write_iso(later, entries, volume_id="demo", application_id=UUID, epoch=EPOCH + 1)
    assert first.read_bytes() == second.read_bytes()
    assert first.read_bytes() != later.read_bytes()
    assert vars(pycdlib.pycdlib)["time"] is time  # the real clock is back


@contextmanager
def tz(zone: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Run with another local time zone; pycdlib would otherwise stamp local time."""
    monkeypatch.setenv("TZ", zone)
    time.tzset()
    try:
        yield
    finally:
        monkeypatch.undo()
        time.tzset()


def test_long_label_is_cut_to_16_characters(tmp_path: Path) -> None:
    out = write_sample(tmp_path, volume_id="mellanox-connectx-5-driver-update")
    assert "Volume id: mellanox-connect\n" in tool("isoinfo", "-d", "-i", str(out))
    assert read_iso(out).volume_id == "mellanox-connect"


def test_progress_runs_from_zero_to_the_image_size(tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    out = write_sample(tmp_path, progress=lambda done, total: calls.append((done, total)))
    size = out.stat().st_size
    assert calls[0] == (0, size)
    assert calls[-1] == (size, size)
    assert all(a[0] <= b[0] for a, b in itertools.pairwise(calls))


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name != "sources")


def test_an_exception_during_the_write_leaves_no_file(tmp_path: Path) -> None:
    def fail(done: int, total: int) -> None:
        if done > 0:
            raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        write_sample(tmp_path, progress=fail)
    assert leftovers(tmp_path) == []
    assert vars(pycdlib.pycdlib)["time"] is time


def test_a_failed_write_keeps_the_previous_image(tmp_path: Path) -> None:
    out = tmp_path / "pack.iso"
    out.write_bytes(b"previous")
    sources = tmp_path / "sources"
    sources.mkdir()
    entries = make_sources(sources)
    victim = next(e.source for e in entries if e.path == "repodata/repomd.xml")

    def remove_a_source(done: int, total: int) -> None:
        victim.unlink(missing_ok=True)

    with pytest.raises(BuildError, match=victim.name):
        write_iso(out, entries, volume_id="demo", application_id=UUID, epoch=EPOCH, progress=remove_a_source)
    assert out.read_bytes() == b"previous"
    assert leftovers(tmp_path) == ["pack.iso"]


def test_a_source_that_grows_during_the_write_is_an_error(tmp_path: Path) -> None:
    sources = tmp_path / "sources"
    sources.mkdir()
    entries = make_sources(sources)
    log = next(e.source for e in entries if e.path == "update.xml")

    def append(done: int, total: int) -> None:
        if done == 0:
            with log.open("ab") as f:
                f.write(b"more")

    with pytest.raises(BuildError, match="changed size while the ISO was written"):
        write_iso(tmp_path / "x.iso", entries, volume_id="d", application_id=UUID, epoch=EPOCH, progress=append)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("", "empty"),
        ("/update.xml", "relative"),
        ("Packages//a.rpm", "'..'"),
        ("Packages/../a.rpm", "'..'"),
        ("./a.rpm", "'..'"),
        ("Packages/", "'..'"),
        ("a/b/c/d/e/f/g/h/file", "7 directories deep"),
        ("a/" + "x" * 256, "255 bytes"),
        ("a\0b", "NUL"),
    ],
)
def test_an_invalid_path_is_refused(tmp_path: Path, path: str, message: str) -> None:
    source = tmp_path / "source"
    source.write_bytes(b"x")
    with pytest.raises(BuildError, match=message):
        write_iso(tmp_path / "x.iso", [IsoEntry(path, source)], volume_id="v", application_id=UUID, epoch=EPOCH)
    assert leftovers(tmp_path) == ["source"]


def test_missing_source_duplicates_and_conflicts_are_all_reported(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.write_bytes(b"x")
    entries = [
        IsoEntry("update.xml", tmp_path / "missing"),
        IsoEntry("Packages/a.rpm", source),
        IsoEntry("Packages/a.rpm", source),
        IsoEntry("Packages", source),
        IsoEntry("dir", tmp_path),
        IsoEntry("b.rpm", source, mode=0o100644),
    ]
    with pytest.raises(BuildError) as caught:
        write_iso(tmp_path / "x.iso", entries, volume_id="v", application_id=UUID, epoch=EPOCH)
    message = caught.value.message
    assert f"'update.xml' ({tmp_path / 'missing'}): the source file does not exist" in message
    assert "'Packages/a.rpm' is given twice" in message
    assert "'Packages' is both a file and a directory" in message
    assert "'dir'" in message and "not a regular file" in message
    assert "mode 0o100644 is not a set of permission bits" in message
    assert not (tmp_path / "x.iso").exists()


@pytest.mark.parametrize("epoch", [-1, 2**40])
def test_a_time_an_iso_cannot_record_is_refused(tmp_path: Path, epoch: int) -> None:
    with pytest.raises(BuildError, match="SOURCE_DATE_EPOCH"):
        write_sample(tmp_path, epoch=epoch)
    assert leftovers(tmp_path) == []


def test_an_application_id_too_long_for_joliet_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="application id"):
        write_sample(tmp_path, application_id="u" * 65)
    assert leftovers(tmp_path) == []


def test_reading_errors_are_build_errors(sample_iso: Path, tmp_path: Path) -> None:
    with pytest.raises(BuildError, match=r"has no file 'nothing\.xml'"):
        read_iso_file(sample_iso, "nothing.xml")
    with pytest.raises(BuildError, match="not a file"):
        read_iso_file(sample_iso, "Packages")
    with pytest.raises(BuildError, match="does not exist"):
        read_iso(tmp_path / "missing.iso")
    not_iso = tmp_path / "not.iso"
    not_iso.write_bytes(b"\0" * 70000)
    with pytest.raises(BuildError, match="not a readable ISO"):
        read_iso(not_iso)
