"""Hostile and broken input through the real command line: refused with a short message, nothing escapes.

Every case runs `inv <task> --pack <folder>` with a fresh root (tmp_path/root) as the current
directory, beside nothing but what the test put in tmp_path. A refused input must give a non-zero
exit, a message of a few lines naming the problem (the tarball and member, the pack file and key,
the patch, the tool) and no traceback. Accepted or not, nothing may be written under the root
except build/, dist/ and keys/, nothing may appear beside the root, and the temporary folder the
CLI is given must be empty again afterwards.

The drivers come from tests/data/corpus/<case>/source/; the hostile tarballs are made here with
tarfile, which writes `..` names, absolute names, links and device members without any privileges.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import stat
import subprocess
import sys
import tarfile
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import TARBALL_MTIME, add_tree, installed_kernel
from support import run_inv as inv

from driverpack.run import run, which

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "tests" / "data" / "corpus"

PACK_ERROR = 2
MAX_OUTPUT_LINES = 25  # the whole output, step banners included
MAX_ERROR_LINES = 6  # from the "error:" line to the end
WRITABLE = {"build", "dist", "keys"}  # the only names the CLI may create or change under its root

# The kbuild-only corpus driver: what every hostile tarball wraps its members around.
NAME = "ckbuild"
VERSION = "1.0"
TOP = f"{NAME}-{VERSION}"
# From the unpacked tree (build/<label>/BUILD/<name>/<top>/) up to beside the root.
UP = "../" * 6


@dataclass(frozen=True)
class Sandbox:
    """tmp_path/root is where inv runs, tmp_path/tmp its TMPDIR, tmp_path/home its HOME.

    Nothing may change in tmp_path but root/build, root/dist and root/keys; tmp must be empty afterwards.
    """

    parent: Path

    @property
    def root(self) -> Path:
        return self.parent / "root"

    @property
    def tmp(self) -> Path:
        return self.parent / "tmp"

    @property
    def home(self) -> Path:
        return self.parent / "home"


def new_sandbox(parent: Path) -> Sandbox:
    box = Sandbox(parent)
    for folder in (box.root, box.tmp, box.home):
        folder.mkdir()
    return box


@pytest.fixture
def sandbox(tmp_path: Path) -> Sandbox:
    return new_sandbox(tmp_path)


@pytest.fixture(scope="module")
def kernel() -> str:
    return installed_kernel()


# making packs and tarballs


def pack_toml(
    label: str,
    drivers: Sequence[Mapping[str, object]],
    changelog: tuple[str, str] = ("Example Corp", "Test build"),
    pack: Mapping[str, str] | None = None,
) -> str:
    """A pack.toml; values are written with json.dumps, whose strings and lists are valid TOML.

    Each driver gets one changelog entry (author, text) dated 2024-01-01.
    """
    keys = {
        "label": label,
        "text": f"Hostile input test {label}",
        "uuid": pack_uuid(label),
        "version": "1.0.0",
        "vendor": "Example Corp",
        **(pack or {}),
    }
    text = "[pack]\n" + "".join(f"{key} = {json.dumps(value)}\n" for key, value in keys.items())
    text += '\n[target]\nkernel = "auto"\n'
    for driver in drivers:
        table: dict[str, object] = {
            "name": NAME,
            "version": VERSION,
            "source": f"{TOP}.tar.gz",
            "summary": "Hostile test driver",
        }
        table.update(driver)
        text += "\n[[drivers]]\n" + "".join(f"{key} = {json.dumps(value)}\n" for key, value in table.items())
        author, entry = (json.dumps(value) for value in changelog)
        text += f"[[drivers.changelog]]\ndate = 2024-01-01\nauthor = {author}\ntext = {entry}\n"
    return text


def pack_uuid(label: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"driverpack-test:hostile:{label}"))


def write_pack(folder: Path, text: str, tarballs: Mapping[str, bytes]) -> Path:
    folder.mkdir(parents=True)
    (folder / "pack.toml").write_text(text)
    for name, data in tarballs.items():
        (folder / name).write_bytes(data)
    return folder


def tar_bytes(source: Path | None, extra: Callable[[tarfile.TarFile], None] | None = None) -> bytes:
    """A .tar.gz of source/'s contents (sorted, root-owned, fixed times), then whatever `extra` adds."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        if source is not None:
            add_tree(tar, source)
        if extra is not None:
            extra(tar)
    return gzip.compress(raw.getvalue(), mtime=0)


def good_tarball(case: str = "kbuild-only") -> bytes:
    return tar_bytes(CORPUS / case / "source")


def member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.mtime = TARBALL_MTIME
    info.mode = 0o644
    return info


def hostile_tarball(*members: tarfile.TarInfo) -> bytes:
    """The good driver plus the hostile members, after it (as an attacker appends them)."""

    def add(tar: tarfile.TarFile) -> None:
        for info in members:
            payload = b"/* escaped */\n" if info.type == tarfile.REGTYPE else b""
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload) if payload else None)

    return tar_bytes(CORPUS / "kbuild-only" / "source", add)


def device(name: str, kind: bytes, major: int, minor: int) -> tarfile.TarInfo:
    info = member(name, kind)
    info.devmajor, info.devminor = major, minor
    return info


# running the CLI and watching the disk


def tree(top: Path, skip: Callable[[Path], bool]) -> dict[str, str]:
    """Every path under top (not followed through links): kind, mode and content digest or link target."""
    found: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(top):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if not skip((here / d).relative_to(top))]
        for name in [*dirnames, *filenames]:
            path = here / name
            rel = path.relative_to(top).as_posix()
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                found[rel] = f"link -> {os.readlink(path)}"
            elif stat.S_ISREG(info.st_mode):
                found[rel] = f"file {oct(info.st_mode)} {hashlib.sha256(path.read_bytes()).hexdigest()}"
            else:
                found[rel] = f"{stat.filemode(info.st_mode)}"
    return found


@dataclass(frozen=True)
class Snapshot:
    inside: dict[str, str]  # the root, without build/ dist/ keys/
    beside: dict[str, str]  # the parent, without the root and HOME
    home: dict[str, str]

    @classmethod
    def take(cls, box: Sandbox) -> Snapshot:
        return cls(
            inside=tree(box.root, lambda rel: len(rel.parts) == 1 and rel.name in WRITABLE),
            beside=tree(box.parent, lambda rel: rel in (Path("root"), Path("home"))),
            home=tree(box.home, lambda rel: False),
        )


@dataclass(frozen=True)
class Ran:
    """One inv run in a sandbox and what it changed where it must not."""

    proc: subprocess.CompletedProcess[str]
    inside: list[str]
    beside: list[str]
    home: list[str]
    tmp_left: list[str]

    def assert_contained(self) -> None:
        text = output(self.proc)
        assert "Traceback" not in text, text
        assert not self.inside, f"written under the root outside build/ and dist/: {self.inside}\n{text}"
        assert not self.beside, f"written beside the root: {self.beside}\n{text}"
        assert not self.tmp_left, f"left in TMPDIR: {self.tmp_left}\n{text}"

    def assert_home_untouched(self) -> None:
        assert not self.home, f"written in HOME: {self.home}\n{output(self.proc)}"


def inv_watched(box: Sandbox, *args: str, env: Mapping[str, str] | None = None) -> Ran:
    before = Snapshot.take(box)
    proc = inv(box.root, *args, env={"TMPDIR": str(box.tmp), "HOME": str(box.home), **(env or {})})
    after = Snapshot.take(box)
    return Ran(
        proc=proc,
        inside=changes(before.inside, after.inside),
        beside=changes(before.beside, after.beside),
        home=changes(before.home, after.home),
        tmp_left=sorted(p.name for p in box.tmp.iterdir()),
    )


def inv_in(box: Sandbox, *args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """inv in the sandbox, checking that it wrote nothing but build/, dist/ and keys/ under the root."""
    ran = inv_watched(box, *args, env=env)
    ran.assert_contained()
    ran.assert_home_untouched()
    return ran.proc


def changes(before: Mapping[str, str], after: Mapping[str, str]) -> list[str]:
    return sorted(
        [f"+{p}" for p in after.keys() - before.keys()]
        + [f"-{p}" for p in before.keys() - after.keys()]
        + [f"~{p}" for p in before.keys() & after.keys() if before[p] != after[p]]
    )


def output(proc: subprocess.CompletedProcess[str]) -> str:
    return proc.stdout + proc.stderr


def refused(proc: subprocess.CompletedProcess[str], *fragments: str, code: int = PACK_ERROR) -> str:
    """Failed with `code` and a short error holding every fragment; returns the error text."""
    text = output(proc)
    assert proc.returncode == code, f"exit {proc.returncode}, expected {code}:\n{text}"
    lines = text.splitlines()
    assert len(lines) < MAX_OUTPUT_LINES, f"{len(lines)} lines:\n{text}"
    starts = [i for i, line in enumerate(lines) if line.startswith("error: ")]
    assert len(starts) == 1, text
    error = "\n".join(lines[starts[0] :])
    assert len(lines) - starts[0] <= MAX_ERROR_LINES, f"a long error:\n{error}"
    for fragment in fragments:
        assert fragment in error, f"{fragment!r} not in:\n{error}"
    return error


def no_build_outputs(root: Path) -> None:
    assert not list(root.glob("build/*/rpmbuild/RPMS/*/*.rpm"))
    assert not list(root.glob("dist/*.iso"))


# hostile tarballs


TARBALL_CASES: dict[str, Callable[[Sandbox], tuple[list[tarfile.TarInfo], tuple[str, ...]]]] = {
    "dotdot": lambda box: (
        [member(f"{TOP}/{UP}escaped.c")],
        (f"member '{TOP}/{UP}escaped.c'", "'..'"),
    ),
    "absolute-path": lambda box: (
        [member(str(box.parent / "escaped.c"))],
        (f"member '{box.parent / 'escaped.c'}'", "absolute path"),
    ),
    "symlink-up-and-through": lambda box: (
        [member(f"{TOP}/up", tarfile.SYMTYPE, UP), member(f"{TOP}/up/escaped.c")],
        (f"member '{TOP}/up'", f"member '{TOP}/up/escaped.c'", "symbolic link", f"outside {TOP}/"),
    ),
    "symlink-absolute": lambda box: (
        [member(f"{TOP}/victim", tarfile.SYMTYPE, str(box.parent / "victim.txt"))],
        (f"member '{TOP}/victim'", "symbolic link to the absolute path", str(box.parent / "victim.txt")),
    ),
    "symlink-sideways": lambda box: (
        [member(f"{TOP}/sideways", tarfile.SYMTYPE, f"../{TOP}-other/x")],
        (f"member '{TOP}/sideways'", "symbolic link", f"outside {TOP}/"),
    ),
    "hardlink-up": lambda box: (
        [member(f"{TOP}/hard", tarfile.LNKTYPE, f"{TOP}/{UP}escaped.c")],
        (f"member '{TOP}/hard'", "hard link", "outside the archive"),
    ),
    "hardlink-absolute": lambda box: (
        [member(f"{TOP}/hard", tarfile.LNKTYPE, str(box.parent / "victim.txt"))],
        (f"member '{TOP}/hard'", "hard link", str(box.parent / "victim.txt"), "outside the archive"),
    ),
    "character-device": lambda box: (
        [device(f"{TOP}/null", tarfile.CHRTYPE, 1, 3)],
        (f"member '{TOP}/null'", "character device"),
    ),
    "block-device": lambda box: (
        [device(f"{TOP}/sda", tarfile.BLKTYPE, 8, 0)],
        (f"member '{TOP}/sda'", "block device"),
    ),
    "fifo": lambda box: (
        [member(f"{TOP}/pipe", tarfile.FIFOTYPE)],
        (f"member '{TOP}/pipe'", "fifo"),
    ),
    # tar replaces a file by a later member of the same name; the link then leads where it likes.
    "file-replaced-by-symlink": lambda box: (
        [member(f"{TOP}/Kbuild", tarfile.SYMTYPE, "ckbuild.c")],
        (f"member '{TOP}/Kbuild'", "appears twice, as a file and as a symlink"),
    ),
}


@pytest.mark.parametrize("case", sorted(TARBALL_CASES))
def test_hostile_tarball_member(sandbox: Sandbox, kernel: str, case: str) -> None:
    (sandbox.parent / "victim.txt").write_text("must stay as it is\n")
    members, fragments = TARBALL_CASES[case](sandbox)
    tarball = hostile_tarball(*members)
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(tarball))) as written:
        assert {info.name for info in members} <= set(written.getnames())  # tarfile wrote them as given
    folder = write_pack(sandbox.root / "packs" / "hostile", pack_toml("hostile", [{}]), {f"{TOP}.tar.gz": tarball})
    proc = inv_in(sandbox, "build-rpms", "--pack", str(folder))
    refused(proc, f"{TOP}.tar.gz: member ", *fragments, "repack the tarball without it")
    no_build_outputs(sandbox.root)


def truncated_tarball() -> bytes:
    good = good_tarball()
    return good[: len(good) // 2]


BROKEN_TARBALLS: dict[str, tuple[Callable[[], bytes], str]] = {
    "garbage": (lambda: b"this is not a tarball\n" * 100, "not a readable tar archive"),
    "truncated": (truncated_tarball, "not a readable tar archive"),
    "bad-gzip-checksum": (
        lambda: good_tarball()[:-8] + bytes(8),  # the gzip trailer (crc32, size) zeroed
        "not a readable tar archive",
    ),
    "zero-bytes": (lambda: b"", "the archive is empty"),
    "no-members": (lambda: tar_bytes(None), "the archive is empty"),
}


@pytest.mark.parametrize("case", sorted(BROKEN_TARBALLS))
def test_broken_tarball(sandbox: Sandbox, kernel: str, case: str) -> None:
    make, fragment = BROKEN_TARBALLS[case]
    folder = write_pack(sandbox.root / "packs" / "broken", pack_toml("broken", [{}]), {f"{TOP}.tar.gz": make()})
    proc = inv_in(sandbox, "build-rpms", "--pack", str(folder))
    refused(proc, f"{TOP}.tar.gz: ", fragment)
    no_build_outputs(sandbox.root)


# patches


HOSTILE_PATCHES: dict[str, tuple[str, tuple[str, ...]]] = {
    # case: (the patch, fragments of the error)
    "dotdot": (
        f"--- a/{UP}escaped.c\n+++ b/{UP}escaped.c\n@@ -0,0 +1 @@\n+escaped\n",
        ("dangerous file name",),
    ),
    "symlink-then-through": (
        "diff --git a/up b/up\nnew file mode 120000\n--- /dev/null\n+++ b/up\n@@ -0,0 +1 @@\n"
        f"+{UP}\n\\ No newline at end of file\n"
        "diff --git a/up/escaped.c b/up/escaped.c\nnew file mode 100644\n--- /dev/null\n+++ b/up/escaped.c\n"
        "@@ -0,0 +1 @@\n+escaped\n",
        ("up/escaped.c",),
    ),
}


def patch_pack(box: Sandbox, patch_name: str, patch: bytes) -> Path:
    """The needs-patch corpus driver with one patch."""
    driver = {"name": "cpatch", "version": "1.0", "source": "cpatch-1.0.tar.gz", "patches": [patch_name]}
    folder = write_pack(
        box.root / "packs" / "patched",
        pack_toml("patched", [driver]),
        {"cpatch-1.0.tar.gz": good_tarball("needs-patch")},
    )
    (folder / patch_name).write_bytes(patch)
    return folder


def test_patch_that_does_not_apply(sandbox: Sandbox, kernel: str) -> None:
    patch = (CORPUS / "needs-patch" / "patches" / "does-not-apply.patch").read_bytes()
    folder = patch_pack(sandbox, "does-not-apply.patch", patch)
    proc = inv_in(sandbox, "build-rpms", "--pack", str(folder))
    refused(proc, "pack.toml: drivers[0].patches[0]", "does-not-apply.patch does not apply", "Hunk #1 FAILED")
    no_build_outputs(sandbox.root)


@pytest.mark.parametrize("case", sorted(HOSTILE_PATCHES))
def test_patch_that_writes_outside_the_tree(sandbox: Sandbox, kernel: str, case: str) -> None:
    patch, fragments = HOSTILE_PATCHES[case]
    folder = patch_pack(sandbox, f"{case}.patch", patch.encode())
    proc = inv_in(sandbox, "build-rpms", "--pack", str(folder))
    refused(proc, "pack.toml: drivers[0].patches[0]", f"{case}.patch does not apply", *fragments)
    assert not (sandbox.parent / "escaped.c").exists()
    no_build_outputs(sandbox.root)


@pytest.mark.parametrize(
    "task",
    [
        "check",
        "compile",
        "build-rpms",
    ],
)
@pytest.mark.parametrize("form", ["variable", "option"])
def test_make_args_that_run_commands_are_refused(sandbox: Sandbox, kernel: str, task: str, form: str) -> None:
    marker = sandbox.parent / "make-args-ran"
    arg = {"variable": f"CFLAG_VALUE=$(shell touch {marker})", "option": f"--eval=$(shell touch {marker})"}[form]
    driver = {"name": "cflag", "version": "1.0", "source": "cflag-1.0.tar.gz", "make_args": [arg]}
    folder = write_pack(
        sandbox.root / "packs" / "makeargs",
        pack_toml("makeargs", [driver]),
        {"cflag-1.0.tar.gz": good_tarball("make-args")},
    )
    ran = inv_watched(sandbox, task, "--pack", str(folder))
    assert not marker.exists(), f"make ran the command in make_args:\n{output(ran.proc)}"
    ran.assert_contained()
    refused(ran.proc, "pack.toml: drivers[0].make_args", f"{arg!r} is not a plain NAME=value make variable")
    no_build_outputs(sandbox.root)


# data folders


def link_out_of_the_pack(data: Path, box: Sandbox) -> None:
    (data / "etc" / "ckbuild.conf").symlink_to(box.parent / "victim.txt")


def file_outside_the_allowed_trees(data: Path, box: Sandbox) -> None:
    (data / "usr").mkdir()
    (data / "usr" / "evil").write_text("installs where a driver has no business\n")


DATA_CASES: dict[str, tuple[Callable[[Path, Sandbox], None], tuple[str, ...]]] = {
    # case: (adds to the data folder, fragments of the error)
    "symlink-out": (link_out_of_the_pack, ("ckbuild-data-1.0/etc/ckbuild.conf is not a regular file",)),
    "outside-the-allowed-trees": (
        file_outside_the_allowed_trees,
        ("ckbuild-data-1.0/usr/evil would install to /usr/evil", "outside the allowed trees"),
    ),
}


@pytest.mark.parametrize("case", sorted(DATA_CASES))
def test_data_folder_with_files_that_do_not_belong(sandbox: Sandbox, kernel: str, case: str) -> None:
    (sandbox.parent / "victim.txt").write_text("must stay as it is\n")
    fill, fragments = DATA_CASES[case]
    text = pack_toml("data", [{}]) + '[drivers.data]\nversion = "1.0"\n'
    folder = write_pack(sandbox.root / "packs" / "data", text, {f"{TOP}.tar.gz": good_tarball()})
    data = folder / f"{NAME}-data-1.0"
    (data / "etc").mkdir(parents=True)
    (data / "lib" / "firmware").mkdir(parents=True)
    (data / "lib" / "firmware" / "ckbuild.fw").write_bytes(b"firmware\n")
    fill(data, sandbox)
    proc = inv_in(sandbox, "build-rpms", "--pack", str(folder))
    refused(proc, "pack.toml: drivers[0].data.folder: ", *fragments)
    no_build_outputs(sandbox.root)


# text in the pack file


LINE_BREAK = ("one line", "remove the line break")


@pytest.mark.parametrize(
    ("key", "where", "fragments"),
    [
        pytest.param({"pack": {"text": "First line\nsecond line"}}, "pack.text", LINE_BREAK, id="pack-text"),
        pytest.param({"driver": {"summary": "First\nsecond"}}, "drivers[0].summary", LINE_BREAK, id="summary"),
        pytest.param({"driver": {"license": "GPL\r\nand more"}}, "drivers[0].license", LINE_BREAK, id="license-crlf"),
        pytest.param({"pack": {"vendor": "Example\u001b[31m"}}, "pack.vendor", ("control characters",), id="escape"),
    ],
)
def test_text_that_breaks_a_header_is_refused(
    sandbox: Sandbox, kernel: str, key: dict[str, dict[str, str]], where: str, fragments: tuple[str, ...]
) -> None:
    text = pack_toml("lines", [key.get("driver", {})], pack=key.get("pack"))
    folder = write_pack(sandbox.root / "packs" / "lines", text, {f"{TOP}.tar.gz": good_tarball()})
    proc = inv_in(sandbox, "iso", "--pack", str(folder))
    refused(proc, f"pack.toml: {where}: ", *fragments)
    assert not (sandbox.root / "build").exists()


def hostile_text(markers: Path, what: str) -> str:
    """One line with everything a shell, rpm or an XML writer might act on; each command would leave a file."""
    return (
        f"{what}: 100% %% %{{_topdir}} %{{?name}} %(touch {markers}/{what}-rpm-shell) "
        f"$(touch {markers}/{what}-dollar) `touch {markers}/{what}-backtick` ${{HOME}} $HOME "
        f"'single' \"double\" <tag> & </tag> &amp; \\n back\\slash ; touch {markers}/{what}-semicolon"
    )


@dataclass(frozen=True)
class Literal:
    box: Sandbox
    ran: Ran
    text: str  # [pack] text
    summary: str  # [[drivers]] summary
    author: str  # changelog author
    entry: str  # changelog text
    extracted: Path  # the ISO's files


@pytest.fixture(scope="module")
def literal(tmp_path_factory: pytest.TempPathFactory, kernel: str) -> Literal:
    """A pack whose text would run commands if anything expanded it, built to an ISO through the CLI once."""
    box = new_sandbox(tmp_path_factory.mktemp("literal"))
    markers = box.parent
    text, summary = hostile_text(markers, "text"), hostile_text(markers, "summary")
    author = f"Example $(touch {markers}/author-dollar) %(touch {markers}/author-rpm-shell) <drivers@example.com>"
    entry = hostile_text(markers, "changelog")
    folder = write_pack(
        box.root / "packs" / "literal",
        pack_toml("literal", [{"summary": summary}], changelog=(author, entry), pack={"text": text}),
        {f"{TOP}.tar.gz": good_tarball()},
    )
    ran = inv_watched(box, "iso", "--pack", str(folder))
    assert ran.proc.returncode == 0, output(ran.proc)
    extracted = box.parent / "extracted"
    xorriso: list[str | Path] = [which("xorriso"), "-osirrox", "on", "-indev", box.root / "dist" / "literal.iso"]
    run([*xorriso, "-extract", "/", extracted], quiet=True)
    return Literal(box, ran, text, summary, author, entry, extracted)


def test_text_is_carried_literally(literal: Literal) -> None:
    kmod = literal.extracted / "Packages" / f"{TOP}-1.x86_64.rpm"
    assert query(kmod, "%{SUMMARY}") == literal.summary
    assert query(kmod, "%{DESCRIPTION}") == literal.summary
    assert query(kmod, "[%{CHANGELOGNAME}\\n]") == f"{literal.author} - {VERSION}-1\n"
    assert query(kmod, "[%{CHANGELOGTEXT}\\n]") == f"- {literal.entry}\n"
    update = ET.parse(literal.extracted / "update.xml").getroot()
    assert update.findtext("name-description") == literal.text
    update_rpm = literal.extracted / "Packages" / "update-literal-1.0.0-1.noarch.rpm"
    assert query(update_rpm, "%{DESCRIPTION}") == literal.text


def test_text_starts_no_command(literal: Literal) -> None:
    """Neither the build nor the update package's %posttrans (run here, with the host's folder moved
    into tmp) runs what the text holds; %posttrans writes the ISO's update.xml as it is."""
    update_rpm = literal.extracted / "Packages" / "update-literal-1.0.0-1.noarch.rpm"
    host = literal.box.parent / "host"
    script = query(update_rpm, "%{POSTTRANS}").replace("/var/update/applied", str(host / "applied"))
    run([which("sh"), "-c", script], quiet=True)
    applied = host / "applied" / pack_uuid("literal")
    assert applied.read_bytes() == (literal.extracted / "update.xml").read_bytes()
    suffixes = ("-rpm-shell", "-dollar", "-backtick", "-semicolon")
    ran = sorted(p.name for p in literal.box.parent.iterdir() if p.name.endswith(suffixes))
    assert ran == [], f"commands in the pack text ran: {ran}"


def test_build_writes_only_build_and_dist(literal: Literal) -> None:
    literal.ran.assert_contained()


def test_build_leaves_home_alone(literal: Literal) -> None:
    # On Debian/Ubuntu rpm's database lives in ~/.rpmdb: the build must not create one there.
    literal.ran.assert_home_untouched()


def query(rpm: Path, fmt: str) -> str:
    return run([which("rpm"), "-qp", "--qf", fmt, rpm], quiet=True).stdout.decode()


# the pack file's identity


def test_duplicate_uuid_across_packs(sandbox: Sandbox, kernel: str) -> None:
    same = "5d0c8a8e-2f6b-4c1e-9a3d-7b4e1f0c2d95"
    for label in ("one", "two"):
        write_pack(
            sandbox.root / "packs" / label,
            pack_toml(label, [{}], pack={"uuid": same}),
            {f"{TOP}.tar.gz": good_tarball()},
        )
    proc = inv_in(sandbox, "build-rpms", "--pack", "packs/one")
    refused(proc, f"packs/one/pack.toml: pack.uuid: {same} is also the uuid of packs/two/pack.toml", "uuid4()")
    assert not (sandbox.root / "build").exists()


def test_label_that_is_no_yum_id(sandbox: Sandbox, kernel: str) -> None:
    folder = write_pack(
        sandbox.root / "packs" / "badlabel", pack_toml("bad label!", [{}]), {f"{TOP}.tar.gz": good_tarball()}
    )
    proc = inv_in(sandbox, "build-rpms", "--pack", str(folder))
    refused(proc, "pack.toml: pack.label: 'bad label!' is not a valid label", "letters, digits")
    assert not (sandbox.root / "build").exists()


# the build machine


def test_missing_kernel_build_dir(sandbox: Sandbox) -> None:
    text = pack_toml("nokernel", [{}]).replace('kernel = "auto"', 'kernel = "9.9.9-nonexistent"')
    folder = write_pack(sandbox.root / "packs" / "nokernel", text, {f"{TOP}.tar.gz": good_tarball()})
    proc = inv_in(sandbox, "build-rpms", "--pack", str(folder))
    refused(
        proc,
        "pack.toml: target.kernel: kernel build dir /lib/modules/9.9.9-nonexistent/build",
        "9.9.9-nonexistent",
        "linux-headers",  # Debian/Ubuntu
        "kernel-devel",  # Fedora/RHEL
    )
    assert not (sandbox.root / "build").exists()


def tools_without(folder: Path, missing: str) -> Path:
    """folder/ with a link to every program on PATH but `missing`, as a machine without its package."""
    folder.mkdir()
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        if not directory or not Path(directory).is_dir():
            continue
        for program in sorted(Path(directory).iterdir()):
            link = folder / program.name
            if program.name == missing or link.is_symlink() or not os.access(program, os.X_OK):
                continue
            if program.is_file():
                link.symlink_to(program)
    return folder


def test_missing_tool(sandbox: Sandbox, kernel: str) -> None:
    tools = tools_without(sandbox.parent / "tools", "rpmbuild")
    assert (tools / "gcc").exists() and not (tools / "rpmbuild").exists()
    folder = write_pack(sandbox.root / "packs" / "notool", pack_toml("notool", [{}]), {f"{TOP}.tar.gz": good_tarball()})
    path = os.pathsep.join([str(Path(sys.executable).parent), str(tools)])
    proc = inv_in(sandbox, "build-rpms", "--pack", str(folder), env={"PATH": path})
    refused(
        proc,
        "'rpmbuild' not found",
        "'apt-get install rpm'",  # Debian/Ubuntu
        "'dnf install rpm-build'",  # Fedora/RHEL
    )
    assert not (sandbox.root / "build").exists()
