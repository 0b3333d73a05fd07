"""Safe inspection and extraction of driver source tarballs, with tarfile only (no processes).

Every member is checked before anything is written: a hostile or broken tarball is refused with
one line per problem naming the tarball and the member. Extraction writes each member itself
(no tarfile.extract), so the same rules hold on Pythons without tarfile's extraction filters.
"""

from __future__ import annotations

import contextlib
import functools
import lzma
import os
import re
import shutil
import tarfile
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from driverpack.errors import PackError

# kbuild reads <dir>/Kbuild, else <dir>/Makefile; the other spellings are accepted for make users.
BUILD_FILE_NAMES = ("Kbuild", "Makefile", "GNUmakefile", "makefile")
MAKEFILE_READ_CAP = 256 * 1024
_MODULE_LINE = re.compile(r"\bobj-(?:m\b|\$[({])")
_MAX_LINK_HOPS = 40
_MAX_PROBLEMS = 20
_READ_ERRORS = (tarfile.TarError, OSError, EOFError, zlib.error, lzma.LZMAError)
_REPACK = "repack the tarball without it"
# Python's own extraction filters are a second opinion where present (not in every 3.11).
_FILTER_ERRORS: tuple[type[Exception], ...] = tuple(
    error for error in (getattr(tarfile, "FilterError", None),) if isinstance(error, type)
)

_Kind = Literal["directory", "file", "symlink"]
_Parts = tuple[str, ...]


@dataclass(frozen=True)
class KbuildFolder:
    """A folder whose Kbuild or Makefile has obj- lines, as read from the tarball."""

    path: str
    """Relative to the top directory (or the root): "" for the top itself."""
    build_file: str
    """The file that Kbuild reads there: "Kbuild", else the Makefile spelling that mentions obj-m."""
    modules: tuple[str, ...]
    """Module names its obj-m / obj-$(CONFIG_...) lines build ("foo" for foo.o), sorted."""
    subdirs: tuple[str, ...]
    """Folders its obj- lines descend into ("net" for net/), in order."""


@dataclass(frozen=True)
class TarballLayout:
    """Where the sources sit inside a tarball, for `%setup` and for `make M=`."""

    top_dir: str | None
    """The one top-level directory holding every member (`%setup -n`), None for files at the root."""
    build_dir: str
    """The Kbuild directory relative to top_dir (or the root): "" for the top itself."""
    build_file: str
    """The file found there: "Kbuild", else the Makefile spelling that mentions obj-m."""
    modules: tuple[str, ...] = ()
    """Module names a Kbuild run in build_dir builds, following its obj- subfolders; sorted."""
    folders: tuple[KbuildFolder, ...] = ()
    """Every folder with obj- lines, shallowest first: the candidates for build_dir."""


@dataclass(frozen=True)
class _Entry:
    parts: _Parts
    kind: _Kind
    info: tarfile.TarInfo
    data: tarfile.TarInfo | None
    """For files and hard links: the member whose bytes the file gets."""


@dataclass(frozen=True)
class _Archive:
    entries: list[_Entry]
    top: _Parts
    links: Mapping[_Parts, str]


class _LinkLoop(Exception):
    """Symbolic links in the archive point at each other without end."""


def inspect_tarball(path: Path) -> TarballLayout:
    """Read a tarball's layout without writing anything to disk (remembered while the file is unchanged)."""
    try:
        info = path.stat()
    except OSError:
        return _inspect(path)
    return _inspect_cached(path, info.st_size, info.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _inspect_cached(path: Path, size: int, mtime_ns: int) -> TarballLayout:
    return _inspect(path)


def _inspect(path: Path) -> TarballLayout:
    with _open(path) as tar:
        archive = _scan(path, tar)
        folders = _kbuild_folders(path, tar, archive)
    if not folders:
        raise PackError(
            [
                f"{path}: no Kbuild or Makefile with obj-m found; driverpack builds modules with Kbuild"
                " (make -C <kernel build dir> M=<dir>)"
            ]
        )
    chosen = folders[0]
    top = archive.top[0] if archive.top else None
    return TarballLayout(
        top_dir=top,
        build_dir=chosen.path,
        build_file=chosen.build_file,
        modules=modules_built_from(chosen, folders),
        folders=folders,
    )


@dataclass(frozen=True)
class SourceTree:
    """A tarball's file names and the text of a few small files, read without extracting anything."""

    files: tuple[str, ...]
    """Every regular file, relative to the top directory (or the root), in archive order."""
    texts: Mapping[str, str]
    """The first TREE_READ_CAP bytes of each file `wanted` picked, as text."""


TREE_READ_CAP = 64 * 1024
_TREE_MAX_TEXTS = 32


def read_tree(path: Path, wanted: Callable[[str], bool]) -> SourceTree:
    """The file names of a checked tarball and the start of the files `wanted(relative path)` picks (at most 32)."""
    with _open(path) as tar:
        archive = _scan(path, tar)
        top = len(archive.top)
        files = tuple(
            "/".join(entry.parts[top:]) for entry in archive.entries if entry.kind == "file" and entry.data is not None
        )
        picked = {
            entry.parts: entry.data
            for entry in archive.entries
            if entry.kind == "file" and entry.data is not None and wanted("/".join(entry.parts[top:]))
        }
        chosen = dict(sorted(picked.items())[:_TREE_MAX_TEXTS])
        texts = _read_texts(path, tar, chosen, cap=TREE_READ_CAP)
    return SourceTree(files=files, texts={"/".join(parts[top:]): text for parts, text in texts.items()})


def modules_built_from(start: KbuildFolder, folders: Sequence[KbuildFolder]) -> tuple[str, ...]:
    """The module names a Kbuild run in `start` builds: its own and those of the obj- subfolders it enters."""
    by_path = {folder.path: folder for folder in folders}
    found: set[str] = set()
    pending, seen = [start], set()
    while pending:
        folder = pending.pop()
        if folder.path in seen:
            continue
        seen.add(folder.path)
        found.update(folder.modules)
        for sub in folder.subdirs:
            child = by_path.get("/".join(p for p in (folder.path, sub) if p))
            if child is not None:
                pending.append(child)
    return tuple(sorted(found))


def extract_tarball(path: Path, dest: Path) -> Path:
    """Extract a checked tarball into dest (empty or absent); return the source root in it."""
    if dest.is_symlink() or (dest.exists() and not dest.is_dir()):
        raise PackError([f"{dest}: cannot extract {path} here: it is not a directory"])
    if dest.is_dir() and any(dest.iterdir()):
        raise PackError([f"{dest}: cannot extract {path} here: the directory is not empty"])
    with _open(path) as tar:
        archive = _scan(path, tar)
        created = not dest.exists()
        dest.mkdir(parents=True, exist_ok=True)
        try:
            _write_members(path, tar, archive, dest.resolve())
        except BaseException:
            _remove_contents(dest, remove_dest=created)
            raise
    return dest.joinpath(*archive.top)


# reading


@contextlib.contextmanager
def _reading(path: Path) -> Iterator[None]:
    """Turn any decompression or tar format failure into one readable user error."""
    try:
        yield
    except _READ_ERRORS as exc:
        raise PackError([f"{path}: not a readable tar archive ({_describe(exc)})"]) from exc


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    if isinstance(exc, FileNotFoundError):
        return "no such file"
    if text.startswith("file could not be opened successfully"):
        return "not gzip, bzip2, xz or plain tar data"
    return text.splitlines()[0] if text else type(exc).__name__


def _open(path: Path) -> tarfile.TarFile:
    """Open for reading, whatever the compression; the caller closes it with `with`."""
    if path.is_file() and path.stat().st_size == 0:
        raise PackError([f"{path}: the archive is empty"])
    with _reading(path):
        return tarfile.open(path, mode="r:*")


def _scan(path: Path, tar: tarfile.TarFile) -> _Archive:
    """Read every header, refuse unsafe members, and find the top directory."""
    with _reading(path):
        infos = tar.getmembers()
        _check_end(path, tar, infos)

    problems: list[str] = []
    entries: list[_Entry] = []
    kinds: dict[_Parts, _Kind] = {}
    links: dict[_Parts, str] = {}
    data: dict[_Parts, tarfile.TarInfo] = {}

    def refuse(info: tarfile.TarInfo, why: str) -> None:
        problems.append(f"{path}: member {info.name!r} {why}; {_REPACK}")

    for info in infos:
        if info.type in (tarfile.XGLTYPE, tarfile.XHDTYPE, tarfile.SOLARIS_XHDTYPE):
            continue
        if info.name.startswith("/"):
            refuse(info, "has an absolute path")
            continue
        parts = _split(info.name)
        if ".." in parts:
            refuse(info, "has a '..' component")
            continue
        if not parts:  # the archive root itself, "./"
            continue
        kind = _kind(info)
        if kind is None:
            refuse(info, f"is a {_type_name(info)}, which a source tarball has no use for")
            continue
        if kinds.get(parts, kind) != kind:
            refuse(info, f"appears twice, as a {kinds[parts]} and as a {kind}")
            continue
        kinds[parts] = kind
        held: tarfile.TarInfo | None = None
        if info.issym():
            if info.linkname.startswith("/"):
                refuse(info, f"is a symbolic link to the absolute path {info.linkname!r}")
                continue
            links[parts] = info.linkname
        elif info.islnk():
            target = _split(info.linkname)
            if info.linkname.startswith("/") or ".." in target:
                refuse(info, f"is a hard link to {info.linkname!r}, outside the archive")
                continue
            held = data.get(target)
            if held is None:
                refuse(info, f"is a hard link to {info.linkname!r}, which is not a file before it")
                continue
        elif info.isreg():
            held = info
        if held is not None:
            data[parts] = held
        entries.append(_Entry(parts, kind, info, held))
    _raise_if(problems)
    if not entries:
        raise PackError([f"{path}: the archive is empty"])

    top = _top_dir(entries)
    where = f"{top[0]}/" if top else "the archive"
    for entry in entries:
        parent = entry.parts[:-1]
        for depth in range(1, len(parent) + 1):
            if kinds.get(parent[:depth]) == "file":
                refuse(entry.info, f"lies under {'/'.join(parent[:depth])!r}, which is a file")
                break
        else:
            if entry.parts != top and not _stays_in(parent, top, links):
                refuse(entry.info, f"lies under a symbolic link that leads outside {where}")
            elif entry.kind == "symlink" and not _stays_in(parent + tuple(entry.info.linkname.split("/")), top, links):
                refuse(entry.info, f"is a symbolic link to {entry.info.linkname!r}, outside {where}")
    _raise_if(problems)
    return _Archive(entries, top, links)


def _check_end(path: Path, tar: tarfile.TarFile, infos: Sequence[tarfile.TarInfo]) -> None:
    """tarfile stops quietly at a damaged header; tar (and so rpmbuild) would fail there."""
    tar.fileobj.seek(tar.offset)
    block = tar.fileobj.read(tarfile.BLOCKSIZE)
    if block.strip(b"\0"):
        after = f" after member {infos[-1].name!r}" if infos else ""
        raise PackError([f"{path}: not a readable tar archive (truncated or damaged{after})"])
    # Reading to the end makes gzip, bzip2 and xz check their trailers and checksums.
    while tar.fileobj.read(1 << 20):
        pass


def _split(name: str) -> _Parts:
    return tuple(part for part in name.split("/") if part not in ("", "."))


def _kind(info: tarfile.TarInfo) -> _Kind | None:
    if info.isdir():
        return "directory"
    if info.isreg() or info.islnk():
        return "file"
    if info.issym():
        return "symlink"
    return None


def _type_name(info: tarfile.TarInfo) -> str:
    if info.ischr():
        return "character device"
    if info.isblk():
        return "block device"
    if info.isfifo():
        return "fifo"
    return f"member of unsupported tar type {info.type!r}"


def _top_dir(entries: Sequence[_Entry]) -> _Parts:
    firsts = {entry.parts[0] for entry in entries}
    if len(firsts) != 1:
        return ()
    if any(len(entry.parts) == 1 and entry.kind != "directory" for entry in entries):
        return ()
    return (firsts.pop(),)


def _resolve(parts: Sequence[str], links: Mapping[_Parts, str]) -> _Parts | None:
    """Where a path leads inside the archive, following its symbolic links; None above the root."""
    pending = list(reversed(parts))
    out: list[str] = []
    hops = 0
    while pending:
        part = pending.pop()
        if part in ("", "."):
            continue
        if part == "..":
            if not out:
                return None
            out.pop()
            continue
        out.append(part)
        target = links.get(tuple(out))
        if target is None:
            continue
        hops += 1
        if hops > _MAX_LINK_HOPS:
            raise _LinkLoop
        out.pop()
        if target.startswith("/"):
            return None
        pending.extend(reversed(target.split("/")))
    return tuple(out)


def _stays_in(parts: Sequence[str], top: _Parts, links: Mapping[_Parts, str]) -> bool:
    try:
        resolved = _resolve(parts, links)
    except _LinkLoop:
        return False
    return resolved is not None and resolved[: len(top)] == top


def _raise_if(problems: list[str]) -> None:
    if len(problems) > _MAX_PROBLEMS:
        problems = [*problems[:_MAX_PROBLEMS], f"... and {len(problems) - _MAX_PROBLEMS} more"]
    if problems:
        raise PackError(problems)


# the build directory


def _kbuild_folders(path: Path, tar: tarfile.TarFile, archive: _Archive) -> tuple[KbuildFolder, ...]:
    """Each folder Kbuild could build in (a Kbuild, or a Makefile that mentions obj-m), shallowest first.

    Kbuild reads <dir>/Kbuild when there is one, else <dir>/Makefile; every build file is read once,
    in archive order (a compressed stream reads forwards cheaply).
    """
    by_dir: dict[_Parts, dict[str, _Entry]] = {}
    for entry in archive.entries:
        if entry.parts[-1] in BUILD_FILE_NAMES and entry.kind != "directory":
            by_dir.setdefault(entry.parts[:-1], {})[entry.parts[-1]] = entry
    data = {entry.parts: entry.data for entry in archive.entries if entry.data is not None}
    wanted: dict[_Parts, tarfile.TarInfo] = {}
    for files in by_dir.values():
        for entry in files.values():
            member = _file_data(entry, data, archive.links)
            if member is not None:
                wanted[entry.parts] = member
    texts = _read_texts(path, tar, wanted)
    top = archive.top
    folders = []
    for folder in sorted(by_dir, key=lambda folder: (len(folder), folder)):
        for name in BUILD_FILE_NAMES:
            text = texts.get((*folder, name)) if name in by_dir[folder] else None
            if text is None:
                continue
            if name == "Kbuild" or _MODULE_LINE.search(_without_comments(text)):
                modules, subdirs = parse_kbuild(text)
                folders.append(KbuildFolder("/".join(folder[len(top) :]), name, modules, subdirs))
                break
    return tuple(folders)


def _read_texts(
    path: Path, tar: tarfile.TarFile, members: Mapping[_Parts, tarfile.TarInfo], cap: int = MAKEFILE_READ_CAP
) -> dict[_Parts, str]:
    texts: dict[_Parts, str] = {}
    with _reading(path):
        for parts, member in sorted(members.items(), key=lambda item: item[1].offset_data):
            source = tar.extractfile(member)
            raw = b"" if source is None else source.read(cap)
            texts[parts] = raw.decode("utf-8", errors="replace")
    return texts


# what a driver's sources say about themselves (for inv new --from)

# Bounds that keep a large vendor tarball fast: MODULE_* lines sit in the build folders' C files.
SOURCE_READ_CAP = 1024 * 1024
SOURCE_FILES_CAP = 200
SOURCE_TOTAL_CAP = 16 * 1024 * 1024
_C_SUFFIXES = (".c", ".h")
_STRING = r'"(?:[^"\\\n]|\\.)*"'
_MODULE_TAG = re.compile(rf"\bMODULE_(DESCRIPTION|LICENSE)\s*\(\s*((?:{_STRING}|[A-Za-z_]\w*+|\s)+)\)")
_DEFINE = re.compile(rf"^[ \t]*#[ \t]*define[ \t]+([A-Za-z_]\w*)[ \t]+((?:{_STRING}|[A-Za-z_]\w*+|[ \t])+)$", re.M)
_TOKEN = re.compile(rf"{_STRING}|[A-Za-z_]\w*")
_C_COMMENT = re.compile(r"/\*.*?\*/|//[^\n]*", re.S)
_ESCAPES = {"n": " ", "t": " ", '"': '"', "\\": "\\", "'": "'"}


@dataclass(frozen=True)
class ModuleTags:
    """MODULE_DESCRIPTION and MODULE_LICENSE as one C file of the tarball states them."""

    file: str
    """Relative to the top directory (or the root)."""
    description: str | None
    license: str | None


@dataclass(frozen=True)
class SourceFacts:
    """What a tarball's files say beyond its layout: module tags and the directories it holds."""

    tags: tuple[ModuleTags, ...]
    """One per C file that states a tag, in folder order, then file name."""
    directories: tuple[str, ...]
    """Every directory, relative to the top directory (or the root), sorted."""
    files: tuple[str, ...]
    """Every file (hard links included), relative to the top directory (or the root), sorted."""
    symlinks: tuple[str, ...]
    """Every symbolic link, likewise."""


def read_source_facts(path: Path, folders: Sequence[str]) -> SourceFacts:
    """MODULE_DESCRIPTION/MODULE_LICENSE of the C files directly in `folders`, read without extracting.

    `folders` are relative to the top directory, like KbuildFolder.path. Reads are bounded (per
    file, file count, total) so a large vendor tarball stays fast; a tag whose value is a macro is
    resolved from `#define NAME "text"` in the files read.
    """
    with _open(path) as tar:
        archive = _scan(path, tar)
        top = len(archive.top)
        wanted_dirs = {tuple(p for p in folder.split("/") if p) for folder in folders}
        members: dict[_Parts, tarfile.TarInfo] = {}
        total = 0
        candidates = sorted(
            (e for e in archive.entries if e.kind == "file" and e.data is not None),
            key=lambda e: (not e.parts[-1].endswith(".c"), e.parts),
        )
        for entry in candidates:
            if entry.parts[top:-1] not in wanted_dirs or not entry.parts[-1].endswith(_C_SUFFIXES):
                continue
            assert entry.data is not None
            if len(members) >= SOURCE_FILES_CAP or total >= SOURCE_TOTAL_CAP:
                break
            members[entry.parts] = entry.data
            total += min(entry.data.size, SOURCE_READ_CAP)
        texts = _read_texts(path, tar, members, cap=SOURCE_READ_CAP)
    listed: dict[str, list[str]] = {"directory": [], "file": [], "symlink": []}
    for entry in archive.entries:
        if len(entry.parts) > top:
            listed[entry.kind].append("/".join(entry.parts[top:]))
    return SourceFacts(
        _module_tags(texts, top),
        tuple(sorted(listed["directory"])),
        tuple(sorted(listed["file"])),
        tuple(sorted(listed["symlink"])),
    )


def _module_tags(texts: Mapping[_Parts, str], top: int) -> tuple[ModuleTags, ...]:
    code = {parts: _C_COMMENT.sub(" ", text) for parts, text in texts.items()}
    defines: dict[str, str] = {}
    for text in code.values():
        for match in _DEFINE.finditer(text):
            defines.setdefault(match.group(1), match.group(2))
    found = []
    for parts in sorted(code, key=lambda p: (len(p), p)):
        values: dict[str, str | None] = {"DESCRIPTION": None, "LICENSE": None}
        for match in _MODULE_TAG.finditer(code[parts]):
            if values[match.group(1)] is None:
                values[match.group(1)] = _c_string(match.group(2), defines)
        if any(values.values()):
            found.append(ModuleTags("/".join(parts[top:]), values["DESCRIPTION"], values["LICENSE"]))
    return tuple(found)


def _c_string(expression: str, defines: Mapping[str, str], depth: int = 0) -> str | None:
    """The text of adjacent C string literals and macros that expand to them; None when not that simple."""
    text = ""
    for token in _TOKEN.findall(expression):
        if token.startswith('"'):
            text += re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), token[1:-1])
        elif token in defines and depth < 8:
            value = _c_string(defines[token], defines, depth + 1)
            if value is None:
                return None
            text += value
        else:
            return None
    text = " ".join(text.split())
    return text or None


def _file_data(
    entry: _Entry, data: Mapping[_Parts, tarfile.TarInfo], links: Mapping[_Parts, str]
) -> tarfile.TarInfo | None:
    if entry.kind == "file":
        return entry.data
    try:
        resolved = _resolve(entry.parts, links)
    except _LinkLoop:
        return None
    return None if resolved is None else data.get(resolved)


_ASSIGNMENT = re.compile(r"^\s*(?:export\s+|override\s+)?([A-Za-z_][A-Za-z0-9_.-]*)\s*(\?=|:=|::=|\+=|=)\s*(.*)$")
_OBJ_LINE = re.compile(r"^\s*obj-(m|y|\$\([A-Za-z0-9_]+\)|\$\{[A-Za-z0-9_]+\})\s*(?::=|\+=|=)\s*(.*)$")
_REFERENCE = re.compile(r"\$[({]([A-Za-z_][A-Za-z0-9_.-]*)[)}]")


def _without_comments(text: str) -> str:
    return "\n".join(line.split("#", 1)[0] for line in text.splitlines())


def parse_kbuild(text: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(module names, subfolders) named by a Kbuild file's obj- lines.

    Plain variables assigned in the same file are expanded ("obj-m += $(DRV).o" with "DRV := i40e");
    a name that still holds a reference after that is left out. Conditionals are not evaluated:
    every branch counts, which is what a reader of the file would list.
    """
    lines = _without_comments(text.replace("\\\n", " ")).splitlines()
    variables: dict[str, str] = {}
    for line in lines:
        match = _ASSIGNMENT.match(line)
        if match and not match.group(1).startswith("obj-"):
            name, op, value = match.groups()
            if op == "+=":
                variables[name] = f"{variables.get(name, '')} {value}".strip()
            elif op != "?=" or name not in variables:
                variables[name] = value.strip()
    modules: set[str] = set()
    subdirs: list[str] = []
    for line in lines:
        match = _OBJ_LINE.match(line)
        if not match:
            continue
        for word in _words(_expand(match.group(2), variables)):
            if word.endswith("/") and "$" not in word:
                sub = word.strip("/")
                if sub and sub not in subdirs and ".." not in sub.split("/"):
                    subdirs.append(sub)
            elif word.endswith(".o") and "$" not in word and match.group(1) != "y":
                modules.add(word.removesuffix(".o").rsplit("/", 1)[-1])
    return tuple(sorted(modules)), tuple(subdirs)


def _words(value: str) -> list[str]:
    """Split on blanks outside $(...) and ${...}, as make does."""
    words, current, depth = [], "", 0
    for char in value:
        if char in "({":
            depth += 1
        elif char in ")}":
            depth = max(0, depth - 1)
        if char.isspace() and depth == 0:
            if current:
                words.append(current)
            current = ""
        else:
            current += char
    return [*words, current] if current else words


def _expand(value: str, variables: Mapping[str, str], depth: int = 0) -> str:
    if depth > 8 or "$" not in value:
        return value
    expanded = _REFERENCE.sub(lambda m: variables.get(m.group(1), m.group(0)), value)
    return value if expanded == value else _expand(expanded, variables, depth + 1)


# writing


def _write_members(path: Path, tar: tarfile.TarFile, archive: _Archive, root: Path) -> None:
    """Write every member below root; ownership is never kept, modes are made safe."""
    check = getattr(tarfile, "data_filter", None)
    directories: list[tuple[Path, tarfile.TarInfo]] = []
    for entry in archive.entries:
        target = root.joinpath(*entry.parts)
        try:
            if check is not None:
                check(entry.info, str(root))
            _inside(root, Path(os.path.realpath(target.parent)))
            target.parent.mkdir(parents=True, exist_ok=True)
            if entry.kind == "directory":
                if not target.is_dir():
                    target.mkdir()
                _inside(root, target.resolve())
                if not target.is_symlink():
                    directories.append((target, entry.info))
            elif entry.kind == "symlink":
                _unlink(target)
                os.symlink(entry.info.linkname, target)
            elif entry.data is not None:
                _unlink(target)
                _write_file(path, tar, entry.data, target)
        except _Outside as exc:
            raise PackError([f"{path}: member {entry.info.name!r} would be written outside {root}"]) from exc
        except _FILTER_ERRORS as exc:
            raise PackError([f"{path}: member {entry.info.name!r} is unsafe ({exc}); {_REPACK}"]) from exc
        except OSError as exc:
            raise PackError([f"{path}: cannot extract member {entry.info.name!r} into {root} ({exc})"]) from exc
    # Deepest first, so a read-only directory does not stop its children from being written.
    for target, info in sorted(directories, key=lambda item: len(item[0].parts), reverse=True):
        os.chmod(target, (info.mode & 0o755) | 0o700)
        _set_mtime(target, info)


class _Outside(Exception):
    pass


def _inside(root: Path, real: Path) -> None:
    if real != root and root not in real.parents:
        raise _Outside(str(real))


def _unlink(target: Path) -> None:
    if target.is_symlink() or target.exists():
        if target.is_dir() and not target.is_symlink():
            raise IsADirectoryError(f"a directory {target.name!r} is already there")
        target.unlink()


def _write_file(path: Path, tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_BINARY", 0)
    fd = os.open(target, flags, 0o600)
    with open(fd, "wb") as out:
        with _reading(path):
            source = tar.extractfile(member)
        if source is not None:
            while True:
                with _reading(path):
                    chunk = source.read(1 << 20)
                if not chunk:
                    break
                out.write(chunk)
        os.fchmod(out.fileno(), (member.mode & 0o755) | 0o600)
    _set_mtime(target, member)


def _set_mtime(target: Path, info: tarfile.TarInfo) -> None:
    with contextlib.suppress(OverflowError, OSError, ValueError):
        os.utime(target, (info.mtime, info.mtime), follow_symlinks=False)


def _remove_contents(dest: Path, *, remove_dest: bool) -> None:
    """Undo a failed extraction; dest held nothing of ours before it began."""
    if remove_dest:
        shutil.rmtree(dest, ignore_errors=True)
        return
    for child in dest.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)
