"""Tarball inspection and extraction: layouts, and hostile or broken archives refused cleanly."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import stat
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from driverpack.adapters.tarball import TarballLayout, extract_tarball, inspect_tarball, parse_kbuild
from driverpack.errors import PackError

MODULE_MAKEFILE = "obj-m += hello.o\n"
RECURSING_MAKEFILE = "all:\n\t$(MAKE) -C src\n"

# (name, text) for a plain file, file(...) for one with attributes, a TarInfo for anything without data.
Member = tarfile.TarInfo | tuple[str, str] | tuple[tarfile.TarInfo, bytes]


def entry(name: str, kind: bytes, linkname: str = "", mode: int = 0o755) -> tarfile.TarInfo:
    """A member without data: directory, link, device or fifo."""
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.mode = mode
    return info


def file(name: str, text: str = "", mode: int = 0o644, uid: int = 0) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    data = text.encode()
    info.size = len(data)
    info.mode = mode
    info.uid = uid
    info.uname = "root" if uid == 0 else "builder"
    info.mtime = 1_600_000_000
    return info, data


def tar_bytes(*members: Member, pax_headers: dict[str, str] | None = None) -> bytes:
    """An uncompressed tar archive of members."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT, pax_headers=pax_headers) as tar:
        for member in members:
            if isinstance(member, tarfile.TarInfo):
                tar.addfile(member)
            elif isinstance(member[0], str) and isinstance(member[1], str):
                tar.addfile(*_with_stream(file(member[0], member[1])))
            elif isinstance(member[0], tarfile.TarInfo) and isinstance(member[1], bytes):
                tar.addfile(*_with_stream((member[0], member[1])))
    return buffer.getvalue()


COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    ".gz": gzip.compress,
    ".tgz": gzip.compress,
    ".bz2": bz2.compress,
    ".xz": lzma.compress,
}


def make_tarball(
    folder: Path, *members: Member, name: str = "src.tar.gz", pax_headers: dict[str, str] | None = None
) -> Path:
    """Write members into folder/name, compressed as the name says."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    plain = tar_bytes(*members, pax_headers=pax_headers)
    path.write_bytes(COMPRESSORS.get(path.suffix, bytes)(plain))
    return path


def _with_stream(member: tuple[tarfile.TarInfo, bytes]) -> tuple[tarfile.TarInfo, io.BytesIO]:
    return member[0], io.BytesIO(member[1])


def place(layout: TarballLayout) -> tuple[str | None, str, str, tuple[str, ...]]:
    """Where the build happens and which modules it makes."""
    return layout.top_dir, layout.build_dir, layout.build_file, layout.modules


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under root with its type and size, to prove nothing was written."""
    found = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            st = os.lstat(os.path.join(folder, name))
            found[os.path.relpath(os.path.join(folder, name), root)] = (stat.S_IFMT(st.st_mode), st.st_size)
    return found


# layouts


@pytest.mark.parametrize("name", ["src.tar.gz", "src.tgz", "src.tar.bz2", "src.tar.xz", "src.tar"])
def test_top_dir_with_module_makefile(tmp_path: Path, name: str) -> None:
    path = make_tarball(
        tmp_path,
        entry("foo-1.0", tarfile.DIRTYPE),
        ("foo-1.0/Makefile", MODULE_MAKEFILE),
        ("foo-1.0/hello.c", "int x;\n"),
        name=name,
    )
    assert place(inspect_tarball(path)) == ("foo-1.0", "", "Makefile", ("hello",))


def test_files_at_the_root_have_no_top_dir(tmp_path: Path) -> None:
    path = make_tarball(tmp_path, ("Makefile", MODULE_MAKEFILE), ("hello.c", ""))
    assert place(inspect_tarball(path)) == (None, "", "Makefile", ("hello",))


def test_a_single_file_is_not_a_top_dir(tmp_path: Path) -> None:
    path = make_tarball(tmp_path, ("Kbuild", "obj-m := hello.o\n"))
    assert inspect_tarball(path).top_dir is None


def test_makefile_in_src(tmp_path: Path) -> None:
    path = make_tarball(tmp_path, ("foo/README", "hi\n"), ("foo/src/Makefile", MODULE_MAKEFILE))
    assert place(inspect_tarball(path)) == ("foo", "src", "Makefile", ("hello",))


def test_kbuild_only(tmp_path: Path) -> None:
    path = make_tarball(tmp_path, ("foo/Kbuild", "obj-m := hello.o\n"), ("foo/hello.c", ""))
    assert place(inspect_tarball(path)) == ("foo", "", "Kbuild", ("hello",))


def test_kbuild_in_subdir_beats_a_recursing_top_makefile(tmp_path: Path) -> None:
    path = make_tarball(tmp_path, ("foo/Makefile", RECURSING_MAKEFILE), ("foo/src/Kbuild", "obj-m := hello.o\n"))
    assert place(inspect_tarball(path)) == ("foo", "src", "Kbuild", ("hello",))


def test_module_makefile_in_subdir_beats_a_recursing_top_makefile(tmp_path: Path) -> None:
    path = make_tarball(tmp_path, ("foo/GNUmakefile", RECURSING_MAKEFILE), ("foo/src/Makefile", MODULE_MAKEFILE))
    assert place(inspect_tarball(path)) == ("foo", "src", "Makefile", ("hello",))


def test_kbuild_beats_makefile_in_the_same_dir(tmp_path: Path) -> None:
    path = make_tarball(tmp_path, ("foo/Makefile", MODULE_MAKEFILE), ("foo/Kbuild", "obj-m := a.o\n"))
    assert inspect_tarball(path).build_file == "Kbuild"


def test_several_module_folders_shallowest_then_alphabetical(tmp_path: Path) -> None:
    members: list[Member] = [
        ("foo/a/deep/Kbuild", "obj-m := a.o\n"),
        ("foo/z/Makefile", MODULE_MAKEFILE),
        ("foo/m/Makefile", "obj-$(CONFIG_M) += m.o\n"),
        ("foo/b/Makefile", "# obj-m is only in a comment\n"),
    ]
    expected = ("foo", "m", "Makefile", ("m",))
    assert place(inspect_tarball(make_tarball(tmp_path / "one", *members))) == expected
    assert place(inspect_tarball(make_tarball(tmp_path / "two", *reversed(members)))) == expected


def test_dot_slash_prefixed_members(tmp_path: Path) -> None:
    path = make_tarball(
        tmp_path,
        entry("./", tarfile.DIRTYPE),
        entry("./foo-1.0/", tarfile.DIRTYPE),
        ("./foo-1.0/src/Makefile", MODULE_MAKEFILE),
    )
    assert place(inspect_tarball(path)) == ("foo-1.0", "src", "Makefile", ("hello",))


def test_pax_global_header_is_ignored(tmp_path: Path) -> None:
    path = make_tarball(
        tmp_path,
        ("foo/Makefile", MODULE_MAKEFILE),
        pax_headers={"comment": "0123abcd"},
    )
    assert inspect_tarball(path).top_dir == "foo"


def test_symlinked_makefile_is_read_through_the_link(tmp_path: Path) -> None:
    path = make_tarball(
        tmp_path,
        ("foo/Makefile.linux", MODULE_MAKEFILE),
        entry("foo/Makefile", tarfile.SYMTYPE, "Makefile.linux"),
    )
    assert place(inspect_tarball(path)) == ("foo", "", "Makefile", ("hello",))


@pytest.mark.parametrize(
    "members",
    [
        [("foo/Makefile", RECURSING_MAKEFILE), ("foo/src/Makefile", "all:\n\techo obj-mx\n")],
        [("foo/README", "obj-m\n")],
        [entry("foo", tarfile.DIRTYPE)],
    ],
    ids=["recursing-only", "no-makefile", "only-a-directory"],
)
def test_no_build_dir(tmp_path: Path, members: list[Member]) -> None:
    path = make_tarball(tmp_path, *members)
    with pytest.raises(PackError, match=r"no Kbuild or Makefile with obj-m found.*M=<dir>"):
        inspect_tarball(path)


def test_inspection_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = make_tarball(tmp_path / "in", ("foo/src/Makefile", MODULE_MAKEFILE), ("foo/a.c", ""))
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    inspect_tarball(path)
    assert snapshot(tmp_path) == before


# module names


@pytest.mark.parametrize(
    ("text", "modules", "subdirs"),
    [
        ("obj-m += hello.o\n", ("hello",), ()),
        ("obj-m := a.o b.o\n", ("a", "b"), ()),
        ("obj-$(CONFIG_IXGBE) += ixgbe.o\nixgbe-objs := ixgbe_main.o ixgbe_lib.o\n", ("ixgbe",), ()),
        ("DRIVER_NAME := i40e\nobj-m += $(DRIVER_NAME).o\n", ("i40e",), ()),
        ("DRV = ${NAME}\nNAME ?= bnxt_en\nobj-m += ${DRV}.o\n", ("bnxt_en",), ()),
        ("obj-m += $(shell echo x).o\n", (), ()),
        ("obj-m += net/ storage/\nobj-y += common/\n", (), ("net", "storage", "common")),
        ("obj-y += builtin.o\n", (), ()),
        ("# obj-m += commented.o\nobj-m += kept.o # trailing\n", ("kept",), ()),
        ("obj-m += first.o \\\n    second.o\n", ("first", "second"), ()),
        (
            "ifneq ($(KERNELRELEASE),)\nobj-m := lpfc.o\nelse\nall:\n\t$(MAKE) -C $(KDIR) M=$(PWD)\nendif\n",
            ("lpfc",),
            (),
        ),
        ("obj-m += ../escape/\n", (), ()),
    ],
)
def test_parse_kbuild(text: str, modules: tuple[str, ...], subdirs: tuple[str, ...]) -> None:
    assert parse_kbuild(text) == (modules, subdirs)


def test_modules_follow_obj_subfolders(tmp_path: Path) -> None:
    path = make_tarball(
        tmp_path,
        ("cmulti-1.0/Kbuild", "obj-m += net/ storage/\n"),
        ("cmulti-1.0/net/Kbuild", "obj-m := cmulti_net.o\n"),
        ("cmulti-1.0/storage/Kbuild", "obj-m := cmulti_storage.o\n"),
        ("cmulti-1.0/unused/Kbuild", "obj-m := unused.o\n"),
    )
    layout = inspect_tarball(path)
    assert place(layout) == ("cmulti-1.0", "", "Kbuild", ("cmulti_net", "cmulti_storage"))
    assert [(f.path, f.modules) for f in layout.folders] == [
        ("", ()),
        ("net", ("cmulti_net",)),
        ("storage", ("cmulti_storage",)),
        ("unused", ("unused",)),
    ]


# extraction


def test_extract_returns_the_top_dir_with_sane_modes(tmp_path: Path) -> None:
    path = make_tarball(
        tmp_path / "in",
        entry("foo-1.0", tarfile.DIRTYPE, mode=0o500),
        file("foo-1.0/Makefile", MODULE_MAKEFILE, mode=0o444),
        file("foo-1.0/setuid.sh", "#!/bin/sh\n", mode=0o6777),
        file("foo-1.0/src/a.c", "int a;\n", mode=0o600, uid=12345),
        entry("foo-1.0/include/linux", tarfile.SYMTYPE, "../compat"),
        entry("foo-1.0/copy.c", tarfile.LNKTYPE, "foo-1.0/src/a.c"),
    )
    dest = tmp_path / "out" / "work"
    root = extract_tarball(path, dest)

    assert root == dest / "foo-1.0"
    assert (root / "Makefile").read_text() == MODULE_MAKEFILE
    assert (root / "copy.c").read_text() == "int a;\n"
    assert os.readlink(root / "include" / "linux") == "../compat"

    def mode(relative: str) -> int:
        return stat.S_IMODE((root / relative).stat().st_mode)

    assert mode("Makefile") == 0o644
    assert mode("setuid.sh") == 0o755
    assert mode("src/a.c") == 0o600
    assert mode(".") == 0o700
    assert (root / "src" / "a.c").stat().st_uid == os.getuid()
    assert int((root / "Makefile").stat().st_mtime) == 1_600_000_000


def test_extract_without_top_dir_returns_dest(tmp_path: Path) -> None:
    path = make_tarball(tmp_path / "in", ("Makefile", MODULE_MAKEFILE), ("./src/a.c", ""))
    dest = tmp_path / "out"
    dest.mkdir()
    assert extract_tarball(path, dest) == dest
    assert sorted(p.name for p in dest.iterdir()) == ["Makefile", "src"]


def test_extract_refuses_a_non_empty_dest(tmp_path: Path) -> None:
    path = make_tarball(tmp_path / "in", ("Makefile", MODULE_MAKEFILE))
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "keep").write_text("mine\n")
    with pytest.raises(PackError, match="not empty"):
        extract_tarball(path, dest)
    assert [p.name for p in dest.iterdir()] == ["keep"]


# hostile and broken archives

HOSTILE: dict[str, tuple[list[Member], str]] = {
    "parent": ([("../evil", "x")], "../evil"),
    "absolute": ([("/abs", "x")], "/abs"),
    "climbing": ([("a/../../b", "x")], "a/../../b"),
    "symlink-absolute": (
        [("foo/Makefile", MODULE_MAKEFILE), entry("foo/pw", tarfile.SYMTYPE, "/etc/passwd")],
        "foo/pw",
    ),
    "symlink-up": ([("a/Makefile", MODULE_MAKEFILE), entry("a/x", tarfile.SYMTYPE, "../../x")], "a/x"),
    "symlink-above-top": (
        [("foo/Makefile", MODULE_MAKEFILE), entry("foo/up", tarfile.SYMTYPE, "..")],
        "foo/up",
    ),
    "symlink-chain": (
        [
            ("foo/Makefile", MODULE_MAKEFILE),
            entry("foo/sub/back", tarfile.SYMTYPE, ".."),
            entry("foo/out", tarfile.SYMTYPE, "sub/back/../.."),
        ],
        "foo/out",
    ),
    "symlink-loop": (
        [
            ("foo/Makefile", MODULE_MAKEFILE),
            entry("foo/a", tarfile.SYMTYPE, "b"),
            entry("foo/b", tarfile.SYMTYPE, "a"),
        ],
        "foo/a",
    ),
    "through-symlink": (
        [entry("l", tarfile.SYMTYPE, "/tmp"), ("l/evil", "x"), ("Makefile", MODULE_MAKEFILE)],
        "l",
    ),
    "hardlink-out": (
        [("foo/Makefile", MODULE_MAKEFILE), entry("foo/h", tarfile.LNKTYPE, "../../etc/passwd")],
        "foo/h",
    ),
    "hardlink-absolute": (
        [("foo/Makefile", MODULE_MAKEFILE), entry("foo/h", tarfile.LNKTYPE, "/etc/passwd")],
        "foo/h",
    ),
    "hardlink-missing": (
        [("foo/Makefile", MODULE_MAKEFILE), entry("foo/h", tarfile.LNKTYPE, "foo/nope")],
        "foo/h",
    ),
    "char-device": ([("foo/Makefile", MODULE_MAKEFILE), entry("foo/null", tarfile.CHRTYPE)], "foo/null"),
    "block-device": ([("foo/Makefile", MODULE_MAKEFILE), entry("foo/sda", tarfile.BLKTYPE)], "foo/sda"),
    "fifo": ([("foo/Makefile", MODULE_MAKEFILE), entry("foo/pipe", tarfile.FIFOTYPE)], "foo/pipe"),
    "file-and-symlink": (
        [("foo/Makefile", MODULE_MAKEFILE), ("foo/x", "x"), entry("foo/x", tarfile.SYMTYPE, "Makefile")],
        "foo/x",
    ),
}


@pytest.mark.parametrize(("members", "member"), list(HOSTILE.values()), ids=list(HOSTILE))
def test_hostile_members_are_refused(tmp_path: Path, members: list[Member], member: str) -> None:
    path = make_tarball(tmp_path / "in", *members)
    dest = tmp_path / "out" / "dest"
    dest.parent.mkdir()
    (dest.parent / "sentinel").write_text("x")
    before = snapshot(tmp_path)

    with pytest.raises(PackError) as inspected:
        inspect_tarball(path)
    with pytest.raises(PackError) as extracted:
        extract_tarball(path, dest)

    for error in (inspected.value, extracted.value):
        assert f"{path}: member {member!r}" in error.message
        assert "repack the tarball" in error.message
        assert error.exit_code == 2
    assert snapshot(tmp_path) == before
    assert not dest.exists()


def test_every_unsafe_member_is_listed(tmp_path: Path) -> None:
    path = make_tarball(tmp_path, ("../a", ""), ("/b", ""), entry("c", tarfile.FIFOTYPE))
    with pytest.raises(PackError) as caught:
        inspect_tarball(path)
    assert len(caught.value.problems) == 3


TWO_FILES = tar_bytes(("foo/Makefile", MODULE_MAKEFILE), ("foo/a.c", "x" * 3000))

BROKEN: dict[str, tuple[bytes, str]] = {
    "zero-bytes": (b"", "the archive is empty"),
    "no-members": (tar_bytes(), "the archive is empty"),
    "only-the-root": (tar_bytes(entry("./", tarfile.DIRTYPE)), "the archive is empty"),
    "random-bytes": (
        bytes(range(256)) * 20,
        "not a readable tar archive (not gzip, bzip2, xz or plain tar data)",
    ),
    "truncated-gzip": (gzip.compress(TWO_FILES)[:80], "not a readable tar archive ("),
    "gzip-without-trailer": (gzip.compress(TWO_FILES)[:-8], "not a readable tar archive ("),
    "truncated-data": (TWO_FILES[:1000], "not a readable tar archive ("),
    "truncated-header": (TWO_FILES[: 1024 + 100], "not a readable tar archive (truncated or damaged after"),
}


@pytest.mark.parametrize(("data", "message"), list(BROKEN.values()), ids=list(BROKEN))
def test_broken_archives_are_refused(tmp_path: Path, data: bytes, message: str) -> None:
    path = tmp_path / "in" / "src.tar.gz"
    path.parent.mkdir()
    path.write_bytes(data)
    dest = tmp_path / "out" / "dest"
    before = snapshot(tmp_path)

    with pytest.raises(PackError) as inspected:
        inspect_tarball(path)
    with pytest.raises(PackError) as extracted:
        extract_tarball(path, dest)

    for error in (inspected.value, extracted.value):
        assert error.message.startswith(f"{path}: {message}")
        assert "\n" not in error.message
    assert snapshot(tmp_path) == before


def test_missing_tarball(tmp_path: Path) -> None:
    with pytest.raises(PackError, match="no such file"):
        inspect_tarball(tmp_path / "nope.tar.gz")


def test_members_under_a_looping_symlink_are_refused(tmp_path: Path) -> None:
    path = make_tarball(
        tmp_path,
        ("foo/Makefile", MODULE_MAKEFILE),
        entry("foo/a", tarfile.SYMTYPE, "b"),
        entry("foo/b", tarfile.SYMTYPE, "a"),
        ("foo/a/x.c", ""),
    )
    with pytest.raises(PackError, match=r"member 'foo/a/x.c' lies under a symbolic link that leads outside foo/"):
        inspect_tarball(path)


def test_a_failed_extraction_leaves_dest_empty(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = make_tarball(
        tmp_path / "in", ("foo/Makefile", MODULE_MAKEFILE), entry("foo/link", tarfile.SYMTYPE, "Makefile")
    )
    dest = tmp_path / "out"
    dest.mkdir()

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError("symlinks not allowed here")

    monkeypatch.setattr(os, "symlink", refuse)
    with pytest.raises(PackError, match=r"cannot extract member 'foo/link' into .*symlinks not allowed here"):
        extract_tarball(path, dest)
    assert list(dest.iterdir()) == []
