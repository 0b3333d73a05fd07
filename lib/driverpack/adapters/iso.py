"""Supplemental pack ISOs with pycdlib: ISO 9660 + Rock Ridge 1.09 + Joliet 3, written reproducibly.

Rock Ridge carries the real names and modes; that is what the host (Linux isofs) reads.
ISO 9660 names follow the reference packs (interchange level 1: 8.3, upper case, like
genisoimage's default) and Joliet carries the real names up to 64 characters.
"""

from __future__ import annotations

import calendar
import hashlib
import io
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from types import ModuleType
from typing import Any

import pycdlib
import pycdlib.dates
import pycdlib.dr
import pycdlib.headervd
import pycdlib.pycdlib
import pycdlib.pycdlibexception

from driverpack.atomic import remove_stale_temps, temp_name
from driverpack.errors import BuildError

SYSTEM_ID = "LINUX"
VOLUME_ID_MAX = 16  # Joliet stores the volume id in 32 bytes of UCS-2
JOLIET_NAME_MAX = 64  # pycdlib's Joliet limit, counted in UTF-8 bytes
ROCK_RIDGE_NAME_MAX = 255  # what Linux accepts as one file name
MAX_DIR_DEPTH = 7  # ISO 9660 allows 8 levels including the root; deeper needs RR_MOVED
READ_FILE_MAX = 64 * 1024 * 1024

_INTERCHANGE_LEVEL = 1
_DIR_MODE = 0o755
_BLOCK_SIZE = 1024 * 1024
_D_CHARACTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_JOLIET_FORBIDDEN = frozenset("*/:;?\\")
# Every pycdlib module that reads the clock; each did `import time`.
_CLOCK_USERS: tuple[ModuleType, ...] = (pycdlib.pycdlib, pycdlib.headervd, pycdlib.dates)
_clock_lock = threading.Lock()
_EPOCH_LIMIT = calendar.timegm((2156, 1, 1, 0, 0, 0, 0, 0, 0))  # directory records end with 2155
_StructTime = time.struct_time  # the clock class below shadows `time` in its body


@dataclass(frozen=True)
class IsoEntry:
    """One file to put on the ISO."""

    path: str  # posix path inside the ISO, relative: "Packages/foo-1.0-1.x86_64.rpm"
    source: Path  # file on disk to copy in
    mode: int = 0o644  # Rock Ridge permission bits


@dataclass(frozen=True)
class IsoFile:
    """One file found on an ISO."""

    path: str  # Rock Ridge path, relative: "Packages/foo.rpm"
    size: int
    mode: int  # permission bits from Rock Ridge


@dataclass(frozen=True)
class IsoContents:
    """What an ISO holds, as read back."""

    volume_id: str
    application_id: str
    files: tuple[IsoFile, ...]
    has_joliet: bool
    has_rock_ridge: bool


@dataclass(frozen=True)
class _Names:
    """The names of one file or directory in the three namespaces, as absolute pycdlib paths."""

    iso_path: str
    joliet_path: str
    rr_name: str


def write_iso(
    out: Path,
    entries: Sequence[IsoEntry],
    *,
    volume_id: str,
    application_id: str,
    epoch: int,
    progress: Callable[[int, int], None] | None = None,
) -> None:
    """Write an ISO 9660 + Rock Ridge + Joliet image; directories are created as needed (mode 0755).

    Identical inputs give identical bytes: entries are added in sorted order and every
    timestamp is `epoch` (UTC). File data is streamed from the sources, never held in memory.
    """
    files = _validated(entries)
    label = fit_volume_id(volume_id)
    _check_application_id(application_id)
    _check_epoch(epoch)
    dirs, names = _plan_names([PurePosixPath(e.path).parts for e in files])

    tmp = temp_name(out)
    remove_stale_temps(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with _pinned_clock(epoch), _new_iso(label, application_id) as iso:
            for parts in dirs:
                n = names[parts]
                iso.add_directory(
                    iso_path=n.iso_path,
                    rr_name=n.rr_name,
                    joliet_path=n.joliet_path,
                    file_mode=stat.S_IFDIR | _DIR_MODE,
                )
            sizes: dict[Path, int] = {}
            for entry in files:
                n = names[PurePosixPath(entry.path).parts]
                sizes[entry.source] = entry.source.stat().st_size
                iso.add_file(
                    os.fspath(entry.source),
                    iso_path=n.iso_path,
                    rr_name=n.rr_name,
                    joliet_path=n.joliet_path,
                    file_mode=stat.S_IFREG | entry.mode,
                )
            with tmp.open("wb") as f:
                # No fsync: the rename keeps a killed run from leaving a partial ISO under its final
                # name, and the ISO is read back (md5, every file) right after; syncing 1 GiB to disk
                # would cost more than the whole write.
                iso.write_fp(f, blocksize=_BLOCK_SIZE, progress_cb=_progress_adapter(progress))
        _check_unchanged(sizes)
        os.replace(tmp, out)
    except pycdlib.pycdlibexception.PyCdlibException as e:
        raise BuildError(f"cannot write ISO {out}: {e}") from e
    except OSError as e:
        raise BuildError(f"cannot write ISO {out}: {e}") from e
    finally:
        tmp.unlink(missing_ok=True)


def read_iso(path: Path) -> IsoContents:
    """Volume and application id, the namespaces present and every file by its Rock Ridge path."""
    with _opened(path) as iso:
        pvd = iso.pvd
        return IsoContents(
            volume_id=pvd.volume_identifier.decode("utf-8", "replace").rstrip(" "),
            application_id=pvd.application_identifier.text.decode("utf-8", "replace").rstrip(" "),
            files=tuple(file for file, _ in _listing(iso, path)),
            has_joliet=bool(iso.has_joliet()),
            has_rock_ridge=bool(iso.has_rock_ridge()),
        )


class _HashSink:
    """A write-only file object that only hashes what it is given."""

    def __init__(self, algorithm: str) -> None:
        self.hash = hashlib.new(algorithm)

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        return len(data)


def file_digests(path: Path, inner_paths: Sequence[str], algorithm: str = "sha256") -> dict[str, str]:
    """Hex digests of files on the ISO (Rock Ridge paths), streamed: nothing is written or held in memory."""
    with _opened(path) as iso:
        key = _path_key(iso)
        wanted = set(inner_paths)
        digests: dict[str, str] = {}
        for file, inner in _listing(iso, path):
            if file.path not in wanted:
                continue
            sink = _HashSink(algorithm)
            try:
                iso.get_file_from_iso_fp(sink, blocksize=_BLOCK_SIZE, **{key: inner})  # type: ignore[arg-type]  # only write() is used
            except pycdlib.pycdlibexception.PyCdlibException as e:
                raise BuildError(f"cannot read '{file.path}' from ISO {path}: {e}") from e
            digests[file.path] = sink.hash.hexdigest()
    missing = sorted(set(inner_paths) - digests.keys())
    if missing:
        raise BuildError(f"ISO {path} has no file {', '.join(missing)}")
    return digests


def extract_iso(path: Path, dest: Path, include: Callable[[str], bool] | None = None) -> None:
    """Copy every file (or those `include` accepts) out to `dest` by its Rock Ridge path, with its mode."""
    with _opened(path) as iso:
        key = _path_key(iso)
        for file, inner in _listing(iso, path):
            if include is not None and not include(file.path):
                continue
            target = dest.joinpath(*PurePosixPath(file.path).parts)
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                with target.open("wb") as f:
                    iso.get_file_from_iso_fp(f, blocksize=_BLOCK_SIZE, **{key: inner})
                target.chmod(file.mode & 0o777)
            except pycdlib.pycdlibexception.PyCdlibException as e:
                raise BuildError(f"cannot extract '{file.path}' from ISO {path}: {e}") from e
            except OSError as e:
                raise BuildError(f"cannot extract '{file.path}' from ISO {path} to {dest}: {e}") from e


def read_iso_file(path: Path, inner: str) -> bytes:
    """The bytes of one small file on the ISO, by its Rock Ridge path ("repodata/repomd.xml")."""
    with _opened(path) as iso:
        key = _path_key(iso)
        iso_path = "/" + inner.strip("/")
        try:
            record = iso.get_record(**{key: iso_path})
        except pycdlib.pycdlibexception.PyCdlibException:
            raise BuildError(f"ISO {path} has no file '{inner}'") from None
        if not record.is_file():
            raise BuildError(f"'{inner}' on ISO {path} is not a file")
        size = record.get_data_length()
        if size > READ_FILE_MAX:
            raise BuildError(
                f"'{inner}' on ISO {path} is {size} bytes, too big to read into memory",
                "use extract_iso() for large files",
            )
        buf = io.BytesIO()
        try:
            iso.get_file_from_iso_fp(buf, **{key: iso_path})
        except pycdlib.pycdlibexception.PyCdlibException as e:
            raise BuildError(f"cannot read '{inner}' from ISO {path}: {e}") from e
        return buf.getvalue()


def fit_volume_id(label: str) -> str:
    """The label cut to what the volume id can hold: 16 characters, 32 bytes in both encodings."""
    text = label[:VOLUME_ID_MAX]
    while len(text.encode("utf-8")) > 32 or len(text.encode("utf-16-be")) > 32:
        text = text[:-1]
    return text


# --- validation -------------------------------------------------------------------------------


def _validated(entries: Sequence[IsoEntry]) -> list[IsoEntry]:
    """The entries sorted by path, after checking paths, modes and sources; all problems at once."""
    problems: list[str] = []
    seen: dict[tuple[str, ...], IsoEntry] = {}
    for entry in entries:
        problem = _path_problem(entry.path) or _source_problem(entry.source)
        if not 0 <= entry.mode <= 0o7777:
            problem = problem or f"mode {entry.mode:#o} is not a set of permission bits"
        if problem:
            problems.append(f"'{entry.path}' ({entry.source}): {problem}")
            continue
        parts = PurePosixPath(entry.path).parts
        if parts in seen:
            problems.append(f"'{entry.path}' is given twice: from {seen[parts].source} and {entry.source}")
            continue
        seen[parts] = entry
    dirs = {parts[:i] for parts in seen for i in range(1, len(parts))}
    problems += [f"'{'/'.join(p)}' is both a file and a directory" for p in sorted(dirs & seen.keys())]
    if problems:
        raise BuildError("cannot write ISO:\n" + "\n".join("  " + p for p in problems))
    return [seen[parts] for parts in sorted(seen)]


def _path_problem(path: str) -> str:
    if not path:
        return "the path is empty"
    if path.startswith("/"):
        return "the path must be relative"
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts):
        return "the path must not contain empty, '.' or '..' components"
    if len(parts) - 1 > MAX_DIR_DEPTH:
        return f"the path is more than {MAX_DIR_DEPTH} directories deep"
    if "\0" in path:
        return "the path contains a NUL character"
    try:
        too_long = [p for p in parts if len(p.encode("utf-8")) > ROCK_RIDGE_NAME_MAX]
    except UnicodeEncodeError:
        return "the path is not valid UTF-8"
    if too_long:
        return f"a name is longer than {ROCK_RIDGE_NAME_MAX} bytes"
    return ""


def _source_problem(source: Path) -> str:
    try:
        st = source.stat()
    except FileNotFoundError:
        return "the source file does not exist"
    except OSError as e:
        return f"the source file cannot be read: {e.strerror}"
    if not stat.S_ISREG(st.st_mode):
        return "the source is not a regular file"
    if not os.access(source, os.R_OK):
        return "the source file is not readable"
    return ""


def _check_unchanged(sizes: dict[Path, int]) -> None:
    """pycdlib copies as many bytes as a file had when it was added: a size change is corruption."""
    for source, size in sizes.items():
        if source.stat().st_size != size:
            raise BuildError(
                f"source file {source} changed size while the ISO was written",
                "do not modify the build's outputs while it runs",
            )


def _check_application_id(application_id: str) -> None:
    # 128 bytes in the primary volume descriptor, 128 bytes of UCS-2 in the Joliet one.
    if len(application_id.encode("utf-8")) > 128 or len(application_id.encode("utf-16-be")) > 128:
        raise BuildError(f"application id '{application_id}' is too long for an ISO (64 characters at most)")


def _check_epoch(epoch: int) -> None:
    if not 0 <= epoch < _EPOCH_LIMIT:
        raise BuildError(f"timestamp {epoch} (SOURCE_DATE_EPOCH) is outside what an ISO can record")


# --- names ------------------------------------------------------------------------------------


def _plan_names(
    files: Sequence[tuple[str, ...]],
) -> tuple[list[tuple[str, ...]], dict[tuple[str, ...], _Names]]:
    """Every directory (parents first) and the names of every file and directory in each namespace.

    Names are decided per directory from the sorted set of its entries, so they do not depend
    on the order of the input.
    """
    file_set = set(files)
    dirs = sorted({parts[:i] for parts in files for i in range(1, len(parts))})
    children: dict[tuple[str, ...], list[tuple[str, bool]]] = {}
    for parts in [*dirs, *files]:
        children.setdefault(parts[:-1], []).append((parts[-1], parts not in file_set))

    iso_names: dict[tuple[str, ...], str] = {}
    joliet_names: dict[tuple[str, ...], str] = {}
    for parent, kids in children.items():
        for name, key in _unique(kids, _iso9660_name, str.upper).items():
            # The key keeps the separator dot so that a directory and an extension-less file
            # of the same name collide; a directory identifier has no dot, a file one a version.
            is_file = (*parent, name) in file_set
            iso_names[(*parent, name)] = key + ";1" if is_file else key.rstrip(".")
        # Joliet readers (Windows) compare names without case.
        for name, joliet_name in _unique(kids, _joliet_name, str.casefold).items():
            joliet_names[(*parent, name)] = joliet_name

    names: dict[tuple[str, ...], _Names] = {}
    for parts in [*dirs, *files]:
        prefixes = [parts[:i] for i in range(1, len(parts) + 1)]
        names[parts] = _Names(
            iso_path="/" + "/".join(iso_names[p] for p in prefixes),
            joliet_path="/" + "/".join(joliet_names[p] for p in prefixes),
            rr_name=parts[-1],
        )
    return dirs, names


def _unique(
    kids: Sequence[tuple[str, bool]],
    mangle: Callable[[str, bool, int], str],
    fold: Callable[[str], str],
) -> dict[str, str]:
    """A unique mangled name for each (name, is_dir) of one directory.

    In sorted order, a name gets its plain form (number 0) when no earlier name took it, else
    the first numbered form that is nobody's plain form and not yet taken.
    """
    plain = {name: mangle(name, is_dir, 0) for name, is_dir in kids}
    taken = {fold(m) for m in plain.values()}
    claimed: set[str] = set()
    result: dict[str, str] = {}
    for name, is_dir in sorted(kids):
        candidate = plain[name]
        number = 0
        while fold(candidate) in claimed or (number and fold(candidate) in taken):
            number += 1
            candidate = mangle(name, is_dir, number)
        claimed.add(fold(candidate))
        taken.add(fold(candidate))
        result[name] = candidate
    return result


def _d_characters(text: str) -> str:
    return "".join(c if c in _D_CHARACTERS else "_" for c in text.upper())


def _iso9660_name(name: str, is_dir: bool, number: int) -> str:
    """Level 1: "STEM.EXT" with an 8-character stem and 3-character extension (the dot is kept).

    "update.xml.asc" -> "UPDATE_X.ASC" and "foo-1.0-1.x86_64.rpm" -> "FOO_1_0_.RPM", as
    genisoimage does. A number replaces the end of the stem: "FOO_1_01.RPM".
    """
    stem, dot, ext = name.rpartition(".")
    if is_dir or not dot or not stem:
        stem, ext = name, ""
    stem = _d_characters(stem)[:8] or "_"
    if number:
        stem = stem[: 8 - len(str(number))] + str(number)
    return f"{stem}.{_d_characters(ext)[:3]}"


def _joliet_name(name: str, is_dir: bool, number: int) -> str:
    """The real name with characters Joliet forbids replaced, cut to 64 bytes keeping the extension.

    A number goes before the extension: "name~1.rpm".
    """
    clean = "".join("_" if c in _JOLIET_FORBIDDEN or ord(c) < 0x20 or ord(c) > 0xFFFF else c for c in name)
    stem, dot, ext = clean.rpartition(".")
    if is_dir or not dot or not stem or len(ext) > 16:
        stem, ext = clean, ""
    tail = (f"~{number}" if number else "") + (f".{ext}" if ext else "")
    while len((stem + tail).encode("utf-8")) > JOLIET_NAME_MAX:
        stem = stem[:-1]
    return stem + tail


# --- pycdlib plumbing -------------------------------------------------------------------------


class _PinnedClock:
    """Stands in for the `time` module inside pycdlib: now is `epoch`, and local time is UTC."""

    def __init__(self, epoch: int) -> None:
        self._epoch = float(epoch)

    def time(self) -> float:
        return self._epoch

    def localtime(self, secs: float | None = None) -> _StructTime:
        return time.gmtime(self._epoch if secs is None else secs)

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


@contextmanager
def _pinned_clock(epoch: int) -> Iterator[None]:
    """pycdlib stamps time.time() in local time into descriptors and records: pin it for one write.

    The patch is on module globals, so writes are serialized; the real clock is restored after.
    """
    with _clock_lock:
        saved = [module.time for module in _CLOCK_USERS]
        clock = _PinnedClock(epoch)
        for module in _CLOCK_USERS:
            setattr(module, "time", clock)  # noqa: B010 - ModuleType has no typed `time`
        try:
            yield
        finally:
            for module, original in zip(_CLOCK_USERS, saved, strict=True):
                setattr(module, "time", original)  # noqa: B010


def _progress_adapter(
    progress: Callable[[int, int], None] | None,
) -> Callable[[int, int, Any], None] | None:
    # pycdlib counts the callback's parameters to decide how to call it; give it a plain function.
    if progress is None:
        return None
    report = progress

    def callback(done: int, total: int, opaque: Any) -> None:
        report(done, total)

    return callback


@contextmanager
def _new_iso(volume_id: str, application_id: str) -> Iterator[pycdlib.PyCdlib]:
    iso = pycdlib.PyCdlib()
    iso.new(
        interchange_level=_INTERCHANGE_LEVEL,
        sys_ident=SYSTEM_ID,
        vol_ident=volume_id,
        app_ident_str=application_id,
        joliet=3,
        rock_ridge="1.09",
    )
    try:
        _set_root_mode(iso, stat.S_IFDIR | _DIR_MODE)
        yield iso
    finally:
        iso.close()


def _set_root_mode(iso: pycdlib.PyCdlib, mode: int) -> None:
    """pycdlib gives the root directory 0555 with no way to choose; readers take it from '.'."""
    for record in iso.pvd.root_directory_record().children[:2]:  # '.' and '..'
        px = record.rock_ridge.dr_entries.px_record if record.rock_ridge is not None else None
        if px is None:
            raise BuildError("pycdlib changed: the root directory has no Rock Ridge mode to set")
        px.posix_file_mode = mode


@contextmanager
def _opened(path: Path) -> Iterator[pycdlib.PyCdlib]:
    iso = pycdlib.PyCdlib()
    try:
        iso.open(os.fspath(path))
    except FileNotFoundError:
        raise BuildError(f"ISO {path} does not exist") from None
    except OSError as e:
        raise BuildError(f"cannot read ISO {path}: {e}") from e
    except pycdlib.pycdlibexception.PyCdlibException as e:
        raise BuildError(f"{path} is not a readable ISO 9660 image: {e}") from e
    try:
        yield iso
    finally:
        iso.close()


def _path_key(iso: pycdlib.PyCdlib) -> str:
    """Which pycdlib namespace names the files: Rock Ridge when present, else Joliet, else ISO 9660."""
    if iso.has_rock_ridge():
        return "rr_path"
    if iso.has_joliet():
        return "joliet_path"
    return "iso_path"


def _listing(iso: pycdlib.PyCdlib, path: Path) -> list[tuple[IsoFile, str]]:
    """Every regular file and the path pycdlib knows it by, sorted; symbolic links are left out."""
    key = _path_key(iso)
    found: list[tuple[IsoFile, str]] = []
    try:
        for top, _dirs, names in iso.walk(**{key: "/"}):
            for name in names:
                full = top.rstrip("/") + "/" + name
                record = iso.get_record(**{key: full})
                if not isinstance(record, pycdlib.dr.DirectoryRecord):
                    continue  # only UDF paths give UDF entries
                if not record.is_file() or record.is_symlink():
                    continue
                mode = 0o444  # what pycdlib assumes without Rock Ridge
                if record.rock_ridge is not None:
                    mode = stat.S_IMODE(record.rock_ridge.get_file_mode())
                shown = full.lstrip("/")
                if key == "iso_path":
                    shown = shown.split(";")[0].removesuffix(".")
                if any(p in ("", ".", "..") for p in shown.split("/")):
                    raise BuildError(f"ISO {path} has a file with an unsafe name: '{shown}'")
                found.append((IsoFile(path=shown, size=record.get_data_length(), mode=mode), full))
    except pycdlib.pycdlibexception.PyCdlibException as e:
        raise BuildError(f"cannot list ISO {path}: {e}") from e
    return sorted(found, key=lambda pair: pair[0].path)
