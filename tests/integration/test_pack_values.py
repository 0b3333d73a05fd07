"""Hostile values for every key that becomes a path, a file name, a macro, a spec line, a shell word or XML.

For each key, hypothesis generates values holding '..', absolute paths, '~', symbolic links leaving
the pack, spaces, quotes, '%', '$(...)', newlines, bytes that are not UTF-8 and very long names. Path
keys get a file made where the value points (a valid one, a broken one, or none). Each example runs
the real `inv check`, and `inv release-zip` when the check passes, in a sentinel tree
(tests/sentinel.py), and asserts that:

  (a) nothing outside build/, dist/ and keys/ of the checkout was created, changed or deleted
      (TMPDIR is empty again, and every command hidden in a value would have left a file);
  (b) there is no traceback;
  (c) the run succeeds, or fails with a message naming the key.

The examples are derandomized, so CI always runs the same ones: a few generated per key, plus a
handful written out. More locally: DRIVERPACK_HYPOTHESIS=thorough (or any count, e.g. =50).
Not covered here: a kernel_devel RPM that unpacks (test_kernel_devel.py builds against the real one;
here only broken and missing ones, which stop before anything is compiled).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import string
import subprocess
import textwrap
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, seed, settings
from hypothesis import strategies as st
from sentinel import SentinelTree, changes, new_sentinel_tree
from support import installed_kernel, run_inv

from driverpack.run import run, which

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "packs" / "helloworld"
UUID = "0f6f1f4e-9c1e-4d8e-8a37-52c9d1b7e0a4"

PROFILE = os.environ.get("DRIVERPACK_HYPOTHESIS", "ci")
EXAMPLES = {"ci": 3, "thorough": 30}.get(PROFILE) or int(PROFILE)


def run_examples(test: Callable[[], None], key: str) -> None:
    """Run a @given test; in CI with a seed of its own per key, so every run tries the same values."""
    configured = settings(
        max_examples=EXAMPLES,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )(test)
    if PROFILE == "ci":
        configured = seed(zlib.crc32(key.encode()))(configured)
    configured()


# the pack file, written byte by byte (so that a value can hold bytes that are not UTF-8)


@dataclass(frozen=True)
class Raw:
    """A TOML string value given as raw bytes, e.g. not UTF-8."""

    data: bytes


def toml_string(text: str) -> str:
    out = []
    for c in text:
        if c in '"\\':
            out.append("\\" + c)
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def toml_value(value: object) -> bytes:
    if isinstance(value, Raw):
        return b'"' + value.data + b'"'
    if isinstance(value, str):
        return toml_string(value).encode()
    if isinstance(value, dt.date):
        return value.isoformat().encode()
    if isinstance(value, list):
        return b"[" + b", ".join(toml_value(v) for v in value) + b"]"
    if isinstance(value, dict):
        return b"{ " + b", ".join(k.encode() + b" = " + toml_value(v) for k, v in value.items()) + b" }"
    raise TypeError(value)


def toml_table(header: str, table: dict[str, Any]) -> bytes:
    lines = [f"{header}\n".encode()]
    subtables = []
    for key, value in table.items():
        if isinstance(value, dict) and key == "data":
            subtables.append((key, value))
        else:
            lines.append(key.encode() + b" = " + toml_value(value) + b"\n")
    for key, value in subtables:
        lines.append(b"\n" + toml_table(f"[drivers.{key}]", value))
    return b"".join(lines)


def toml_document(doc: dict[str, Any]) -> bytes:
    parts = [toml_table("[pack]", doc["pack"]), toml_table("[target]", doc["target"])]
    parts += [toml_table("[[drivers]]", driver) for driver in doc["drivers"]]
    parts += [toml_table("[[rpms]]", rpm) for rpm in doc.get("rpms", [])]
    return b"\n".join(parts)


def base_pack() -> dict[str, Any]:
    """The example pack (with its tarball and data folder) under the label 'values'."""
    return {
        "pack": {"label": "values", "text": "Pack values test", "uuid": UUID, "version": "1.0.0", "vendor": "Example"},
        "target": {"kernel": "auto"},
        "drivers": [
            {
                "name": "helloworld",
                "version": "1.0",
                "release": "1",
                "source": "helloworld-1.0.tar.gz",
                "summary": "Hello world kernel module",
                "license": "GPL",
                "description": "The example driver.",
                "changelog": [{"date": dt.date(2024, 1, 1), "author": "Example <e@example.com>", "text": "First"}],
                "data": {"version": "1.0", "release": "1"},
            }
        ],
    }


def set_key(doc: dict[str, Any], key: tuple[str | int, ...], value: object) -> None:
    target: Any = doc
    for part in key[:-1]:
        if isinstance(part, str) and part not in target:
            target[part] = [{}] if part in ("rpms", "patches") else {}
        target = target[part]
    target[key[-1]] = value


def key_name(key: tuple[str | int, ...]) -> str:
    text = ""
    for part in key:
        text += f"[{part}]" if isinstance(part, int) else ("." if text else "") + part
    return text


# the tree, the files a value points at, and one run


@dataclass(frozen=True)
class Material:
    """What the tests build once: a patch, a hand-written spec, a signing key and a prebuilt RPM."""

    patch: bytes
    spec: bytes
    signing_key: bytes
    rpm: bytes


@dataclass
class Run:
    tree: SentinelTree
    material: Material
    made: list[Path] = field(default_factory=list)

    def make(self, path: Path, content: Callable[[Path], None]) -> None:
        """Create `path` (and its folders) for one example, unless something is there; removed afterwards."""
        if path.exists() or path.is_symlink():
            return  # never replace a sentinel: the value then names what is there
        top = path
        while not top.parent.exists():
            top = top.parent
        self.made.append(top)
        path.parent.mkdir(parents=True, exist_ok=True)
        content(path)

    def clean(self) -> None:
        for path in reversed(self.made):
            if path.is_symlink() or path.is_file():
                path.unlink()
            elif path.is_dir():
                shutil.rmtree(path)
        self.made.clear()


def reset_pack(tree: SentinelTree) -> None:
    """The pack folder as the example ships it, without pack.toml."""
    if tree.pack.exists():
        shutil.rmtree(tree.pack)
    tree.pack.mkdir()
    shutil.copyfile(EXAMPLE / "helloworld-1.0.tar.gz", tree.pack / "helloworld-1.0.tar.gz")
    shutil.copytree(EXAMPLE / "helloworld-data-1.0", tree.pack / "helloworld-data-1.0")


def output(proc: subprocess.CompletedProcess[str]) -> str:
    return proc.stdout + proc.stderr


def assert_outcome(proc: subprocess.CompletedProcess[str], needles: tuple[str, ...]) -> None:
    """(b) no traceback; (c) success, or an error naming the key."""
    text = output(proc)
    assert "Traceback" not in text, text
    if proc.returncode == 0:
        return
    assert "error: " in text, text
    error = text[text.index("error: ") :]
    assert any(needle in error for needle in needles), f"the error does not name {needles}:\n{error}"


def attempt(run_: Run, doc: dict[str, Any], needles: tuple[str, ...]) -> None:
    """One example: check, then release-zip when the check passes; (a), (b), (c) on both."""
    tree = run_.tree
    (tree.pack / "pack.toml").write_bytes(toml_document(doc))
    before = tree.snapshot()
    try:
        checked = run_inv(tree.work, "check", "--pack", str(tree.pack), env=tree.env)
        assert_outcome(checked, needles)
        if checked.returncode == 0:
            built = run_inv(tree.work, "release-zip", "--pack", str(tree.pack), env=tree.env)
            assert_outcome(built, needles)
        assert changes(before, tree.snapshot()) == [], "written outside build/, dist/ and keys/"
    finally:
        run_.clean()


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> SentinelTree:
    """One tree for every example: build/ stays, so an unchanged driver is not compiled again."""
    tree = new_sentinel_tree(tmp_path_factory.mktemp("values"))
    reset_pack(tree)
    (tree.pack / "pack.toml").write_bytes(toml_document(base_pack()))
    proc = run_inv(tree.work, "release-zip", "--pack", str(tree.pack), env=tree.env)
    assert proc.returncode == 0, output(proc)
    return tree


@pytest.fixture(scope="module")
def material(tree: SentinelTree, tmp_path_factory: pytest.TempPathFactory) -> Material:
    return Material(
        patch=PATCH.encode(),
        spec=HANDWRITTEN_SPEC.replace("KERNEL", installed_kernel()).encode(),
        # The first build made the local test key: signing_key examples sign with a copy of it.
        signing_key=(tree.work / "keys" / "RPM-GPG-KEY-driverpack-test").read_bytes(),
        rpm=prebuilt_rpm(tmp_path_factory.mktemp("prebuilt")),
    )


PATCH = """\
--- a/helloworld.c
+++ b/helloworld.c
@@ -1,4 +1,5 @@
 // SPDX-License-Identifier: GPL-2.0
 /* helloworld: the smallest kernel module, the example driver of driverpack. */
+/* patched */
 #include <linux/init.h>
 #include <linux/module.h>
"""

HANDWRITTEN_SPEC = textwrap.dedent("""\
    %global debug_package %{nil}
    Name: helloworld
    Version: 1.0
    Release: 1
    Summary: Hello world, from a hand-written spec
    License: GPL
    Group: System Environment/Kernel
    Source0: helloworld-1.0.tar.gz

    %description
    A hand-written spec: it runs as written.

    %prep
    %setup -q -n helloworld-1.0

    %build
    %{__make} -C %{kernel_build_dir} M="$(pwd)" modules

    %install
    install -D -m 0644 helloworld.ko %{buildroot}/lib/modules/KERNEL/updates/helloworld.ko

    %files
    /lib/modules/KERNEL/updates/helloworld.ko
    """)


def prebuilt_rpm(work: Path) -> bytes:
    spec = work / "carried.spec"
    spec.write_text(
        "Name: carried\nVersion: 2.0\nRelease: 1\nSummary: Carried\nLicense: GPL\nBuildArch: noarch\n"
        "%description\nA prebuilt RPM.\n%install\nmkdir -p %{buildroot}/usr/share/doc/carried\n"
        "echo doc > %{buildroot}/usr/share/doc/carried/README\n%files\n/usr/share/doc/carried/README\n"
    )
    top = work / "top"
    run(
        [
            which("rpmbuild"),
            "-bb",
            "--nodeps",
            *("--define", f"_topdir {top}", "--define", f"_tmppath {work}", "--define", "_binary_payload w9.gzdio"),
            spec,
        ],
        quiet=True,
    )
    return (top / "RPMS" / "noarch" / "carried-2.0-1.noarch.rpm").read_bytes()


# strategies


def markers(tree_root: Path) -> list[str]:
    """Commands that leave a file beside the checkout if anything runs them."""
    ran = tree_root / "ran"
    return [f"$(touch {ran})", f"`touch {ran}`", f"%(touch {ran})", f";touch {ran};", f"${{HOME}}{ran}"]


FRAGMENTS = [
    "..",
    "../",
    "/",
    "~",
    "~/",
    " ",
    "'",
    '"',
    "%",
    "%%",
    "%{_topdir}",
    "%{?name}",
    "$HOME",
    "\\",
    "\n",
    "\r",
    "\t",
    "\x00",
    "\x1b[31m",
    "*",
    "?",
    "[",
    "-",
    "--",
    "&",
    "<x>",
    "é",
    "\u2028",
    "\U0001f600",
    "#",
    "=",
    ":",
]
# Put "ran" markers in with a placeholder: the tree's path is known only in the test.
MARK = "@MARK@"
WORD = st.text(alphabet=string.ascii_letters + string.digits + "._+-", min_size=1, max_size=8)
PIECE = st.one_of(st.sampled_from([*FRAGMENTS, MARK]), WORD)


def hostile_text(min_pieces: int = 1) -> st.SearchStrategy[str | Raw]:
    joined = st.lists(PIECE, min_size=min_pieces, max_size=6).map("".join)
    long = st.integers(min_value=65, max_value=600).map(lambda n: "n" * n)
    # Bytes that are not UTF-8 inside an otherwise well-formed TOML string.
    raw = st.binary(min_size=1, max_size=6).map(
        lambda b: Raw(b"v" + bytes(c for c in b if c >= 0x20 and c not in b'"\\\x7f') + b"\xff")
    )
    return st.one_of(joined, joined, joined, long, raw)


def with_markers(value: str | Raw, tree_root: Path, n: int = 0) -> str | Raw:
    if isinstance(value, str) and MARK in value:
        return value.replace(MARK, markers(tree_root)[n % 5])
    return value


# path keys: where the value points, what the file's name is, and what is there


@dataclass(frozen=True)
class PathCase:
    location: str  # pack | subdir | dotdot | deep-dotdot | absolute | home | symlink | raw
    name: str | Raw  # the file's name (for raw: the value itself)
    kind: str  # valid | broken | missing


NAME_PIECE = st.one_of(
    st.sampled_from([" ", "'", '"', "%", "%{_topdir}", MARK, "..", "~", "*", "?", "[x]", "&", ";", "é", "-", "#"]),
    WORD,
)
FILE_NAME = st.one_of(
    WORD,
    st.lists(NAME_PIECE, min_size=1, max_size=5).map("".join),
    st.integers(min_value=100, max_value=240).map(lambda n: "f" * n),
)


def file_name(text: str) -> str:
    """One name a file can have ('.' and '..' are folders that exist already)."""
    name = text.replace("/", "_")
    return "x" + name if name in ("", ".", "..") else name


def path_cases(suffix: str, kinds: tuple[str, ...]) -> st.SearchStrategy[PathCase]:
    located = st.builds(
        PathCase,
        location=st.sampled_from(["pack", "subdir", "dotdot", "deep-dotdot", "absolute", "home", "symlink"]),
        name=FILE_NAME.map(lambda n: file_name(n) + suffix),
        kind=st.sampled_from(kinds),
    )
    raw = st.builds(PathCase, location=st.just("raw"), name=hostile_text(), kind=st.just("missing"))
    return st.one_of(located, located, located, located, raw)


def place(run_: Run, case: PathCase, content: Callable[[Path], None] | None) -> str | Raw:
    """The pack value for `case`, with the file it names made (when content is given)."""
    tree = run_.tree
    name = with_markers(case.name, tree.root)
    if case.location == "raw" or isinstance(name, Raw):
        return name
    value, path = {
        "pack": (name, tree.pack / name),
        "subdir": (f"sub dir/{name}", tree.pack / "sub dir" / name),
        "dotdot": (f"../../../outside/{name}", tree.beside_work / name),
        "deep-dotdot": (
            "../" * 30 + str(tree.beside_work / "deep" / name).lstrip("/"),
            tree.beside_work / "deep" / name,
        ),
        "absolute": (str(tree.beside_work / "abs" / name), tree.beside_work / "abs" / name),
        "home": (f"~/{name}", tree.home / name),
        "symlink": (f"link/{name}", tree.beside_work / "linked" / name),
    }[case.location]
    if case.location == "symlink":
        run_.make(tree.pack / "link", lambda p: p.symlink_to(tree.beside_work / "linked", target_is_directory=True))
    if content is not None and case.kind != "missing":
        with contextlib.suppress(OSError):  # a name the file system refuses: the value names a missing file
            run_.make(path, content)
    return value


def writer(data: bytes) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        path.write_bytes(data)

    return write


def data_folder(kind: str) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        (path / "lib" / "firmware").mkdir(parents=True)
        (path / "lib" / "firmware" / "x.bin").write_bytes(b"firmware\n")
        if kind == "broken":
            (path / "usr" / "bin").mkdir(parents=True)
            (path / "usr" / "bin" / "tool").write_bytes(b"#!/bin/sh\n")

    return make


def kernel_tree(kind: str) -> Callable[[Path], None]:
    real = Path("/lib/modules") / installed_kernel() / "build"
    return (lambda path: path.symlink_to(real)) if kind == "valid" else (lambda path: path.mkdir())


@dataclass(frozen=True)
class PathKey:
    key: tuple[str | int, ...]
    suffix: str
    kinds: tuple[str, ...]
    content: Callable[[Material, str], Callable[[Path], None]]
    needles: tuple[str, ...] = ()


PATH_KEYS = [
    PathKey(
        ("drivers", 0, "source"),
        ".tar.gz",
        ("valid", "broken", "missing"),
        lambda m, kind: writer((EXAMPLE / "helloworld-1.0.tar.gz").read_bytes() if kind == "valid" else b"not gz"),
    ),
    PathKey(
        ("drivers", 0, "patches", 0),
        ".patch",
        ("valid", "broken", "missing"),
        lambda m, kind: writer(m.patch if kind == "valid" else b"--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n"),
    ),
    PathKey(("drivers", 0, "spec"), ".spec", ("valid", "missing"), lambda m, kind: writer(m.spec)),
    PathKey(("drivers", 0, "data", "folder"), "", ("valid", "broken", "missing"), lambda m, kind: data_folder(kind)),
    PathKey(
        ("pack", "signing_key"),
        ".asc",
        ("valid", "broken", "missing"),
        lambda m, kind: writer(m.signing_key if kind == "valid" else b"not a key\n"),
        needles=("signing_key",),
    ),
    PathKey(("target", "kernel_devel"), ".rpm", ("broken", "missing"), lambda m, kind: writer(b"not an rpm\n" * 10)),
    PathKey(("target", "build_dir"), "", ("valid", "broken", "missing"), lambda m, kind: kernel_tree(kind)),
    PathKey(
        ("rpms", 0, "path"),
        ".rpm",
        ("valid", "broken", "missing"),
        lambda m, kind: writer(m.rpm if kind == "valid" else b"not an rpm\n"),
    ),
]

# Written out, whatever the generator picks: the reported case (more '../' than there are folders above
# the pack, then a path from /), with a name a shell and rpm would read as commands.
PATH_EXAMPLES = [PathCase("deep-dotdot", f"lib {MARK} 100%", "valid")]


@pytest.mark.parametrize("spec", PATH_KEYS, ids=[key_name(k.key) for k in PATH_KEYS])
def test_path_keys(tree: SentinelTree, material: Material, spec: PathKey) -> None:
    needles = spec.needles or (key_name(spec.key),)

    def check(case: PathCase) -> None:
        run_ = Run(tree, material)
        doc = base_pack()
        reset_pack(tree)
        value = place(run_, case, spec.content(material, case.kind))
        set_key(doc, spec.key, value)
        attempt(run_, doc, needles)

    test = given(case=path_cases(spec.suffix, spec.kinds))(check)
    for case in PATH_EXAMPLES:
        test = example(case=PathCase(case.location, f"{case.name}{spec.suffix}", spec.kinds[0]))(test)
    run_examples(test, key_name(spec.key))


# names and text: values only


NAME_KEYS = [
    ("pack", "label"),
    ("pack", "version"),
    ("drivers", 0, "name"),
    ("drivers", 0, "version"),
    ("drivers", 0, "release"),
    ("drivers", 0, "data", "version"),
    ("target", "kernel"),
    ("drivers", 0, "make_args", 0),
    ("pack", "base_requires"),
]


# Written out: a value that must build, with every character its rule allows (the kernel: the one installed).
UNUSUAL_BUT_VALID = {
    "pack.label": "a_-Z9",
    "pack.version": "1.0+git~rc1",
    "drivers[0].name": "_hello.world+2-x",
    "drivers[0].version": "2.0_rc1+x",
    "drivers[0].release": "0.1.x_y",
    "drivers[0].data.version": "1.0~b",
    "target.kernel": "",
    "drivers[0].make_args[0]": "CFLAGS_MODULE=-DDRIVERPACK_TEST=1,2/x:y",
    "pack.base_requires": "product-version >= 8.2.1, /usr/bin/sh",
}


@pytest.mark.parametrize("key", NAME_KEYS, ids=[key_name(k) for k in NAME_KEYS])
def test_name_keys(tree: SentinelTree, material: Material, key: tuple[str | int, ...]) -> None:
    def check(value: str | Raw) -> None:
        doc = base_pack()
        # Named, so that a new name or version does not also move where the data files are read from.
        doc["drivers"][0]["data"]["folder"] = "helloworld-data-1.0"
        if key[-2:] == ("make_args", 0):
            doc["drivers"][0]["make_args"] = [""]
        set_key(doc, key, with_markers(value, tree.root))
        reset_pack(tree)
        attempt(Run(tree, material), doc, (key_name(key),))

    test = given(value=hostile_text())(check)
    test = example(value="../../x y")(test)
    test = example(value=UNUSUAL_BUT_VALID[key_name(key)] or installed_kernel())(test)
    run_examples(test, key_name(key))


TEXT_KEYS = [
    ("pack", "text"),
    ("pack", "vendor"),
    ("drivers", 0, "summary"),
    ("drivers", 0, "license"),
    ("drivers", 0, "description"),
    ("drivers", 0, "changelog", 0, "author"),
    ("drivers", 0, "changelog", 0, "text"),
    ("drivers", 0, "data", "summary"),
    ("drivers", 0, "data", "license"),
]
MULTI_LINE = {("drivers", 0, "description"), ("drivers", 0, "changelog", 0, "text")}
PRINTABLE = [f for f in FRAGMENTS if f.isprintable()] + [MARK]


def test_text_keys(tree: SentinelTree, material: Material) -> None:
    """Every text key at once, so most examples build (text is escaped, never interpreted); now and then one
    key gets any hostile value, and the run must then succeed or name that key."""

    def check(values: list[str], hostile: tuple[int, str | Raw] | None) -> None:
        doc = base_pack()
        for n, (key, value) in enumerate(zip(TEXT_KEYS, values, strict=True)):
            set_key(doc, key, with_markers(value, tree.root, n))
        needles = tuple(key_name(k) for k in TEXT_KEYS)
        if hostile is not None:
            key = TEXT_KEYS[hostile[0]]
            set_key(doc, key, with_markers(hostile[1], tree.root))
            needles = (key_name(key),)
        reset_pack(tree)
        attempt(Run(tree, material), doc, needles)

    def text(key: tuple[str | int, ...]) -> st.SearchStrategy[str]:
        pieces = [*PRINTABLE, "\n", "\n%prep\n", "\n* Mon Jan 01 2024 x\n"] if key in MULTI_LINE else PRINTABLE
        return st.lists(st.one_of(st.sampled_from(pieces), WORD), min_size=2, max_size=8).map("".join)

    test = given(
        values=st.tuples(*(text(key) for key in TEXT_KEYS)).map(list),
        hostile=st.none() | st.tuples(st.integers(0, len(TEXT_KEYS) - 1), hostile_text()),
    )(check)
    everything = f"{MARK} 100% %{{_topdir}} %(echo x) '\"<&> $HOME `id` ${{x}} \\ é \U0001f600"
    test = example(values=[everything] * len(TEXT_KEYS), hostile=None)(test)
    test = example(values=["plain"] * len(TEXT_KEYS), hostile=(2, "First line\n%install\nrm -rf ~"))(test)
    run_examples(test, "text")
