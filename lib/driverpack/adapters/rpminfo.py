"""Read built RPMs back with rpmfile (header tags, streamed cpio payload) and check them for the host.

The Citrix Hypervisor 8.2 host installs packs with its own rpm 4.11, so what rpmbuild 4.14+ wrote
here is checked against what that rpm can install: payload compression, rpmlib() features,
file locations, and each kernel module's vermagic.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import stat
import struct
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import rpmfile
import rpmfile.errors

from driverpack.errors import BuildError
from driverpack.vermagic import debug_sections, vermagic, vermagic_matches

# The rpmlib() capabilities rpm 4.11 provides: the rpmlibProvides[] table in rpm 4.11.x
# lib/rpmds.c (rpm-software-management/rpm). It ends with TildeInVersions, which rpm 4.10.0
# added; LargeFiles and RichDependencies came with 4.12, PayloadIsZstd with 4.14, CaretInVersions
# and DynamicBuildRequires with 4.15. PayloadIsBzip2/Xz/Lzma, BuiltinLuaScripts and FileCaps sit
# behind build options (bzip2, lzma, lua, libcap) that the CentOS 7 rpm 4.11.3 in the host's
# dom0 was built with.
RPM411_RPMLIB_FEATURES: frozenset[str] = frozenset(
    {
        "rpmlib(VersionedDependencies)",  # 3.0.3-1
        "rpmlib(CompressedFileNames)",  # 3.0.4-1
        "rpmlib(PayloadIsBzip2)",  # 3.0.5-1
        "rpmlib(PayloadIsXz)",  # 5.2-1
        "rpmlib(PayloadIsLzma)",  # 4.4.2-1
        "rpmlib(PayloadFilesHavePrefix)",  # 4.0-1
        "rpmlib(ExplicitPackageProvide)",  # 4.0-1
        "rpmlib(HeaderLoadSortsTags)",  # 4.0.1-1
        "rpmlib(ScriptletInterpreterArgs)",  # 4.0.3-1
        "rpmlib(PartialHardlinkSets)",  # 4.0.4-1
        "rpmlib(ConcurrentAccess)",  # 4.1-1
        "rpmlib(BuiltinLuaScripts)",  # 4.2.2-1
        "rpmlib(FileDigests)",  # 4.6.0-1
        "rpmlib(FileCaps)",  # 4.6.1-1
        "rpmlib(ScriptletExpansion)",  # 4.9.0-1
        "rpmlib(TildeInVersions)",  # 4.10.0-1
    }
)

# How to get rid of an rpmlib() requirement that rpm 4.11 lacks, for the ones rpmbuild adds.
_RPMLIB_FIXES: dict[str, str] = {
    "rpmlib(PayloadIsZstd)": "rebuild with --define '_binary_payload w9.gzdio'",
    "rpmlib(CaretInVersions)": "remove '^' from Version and Release",
    "rpmlib(RichDependencies)": "replace boolean dependencies like '(a or b)' with plain ones",
    "rpmlib(LargeFiles)": "keep every file under 4 GiB (rpm 4.11 cannot install larger ones)",
    "rpmlib(DynamicBuildRequires)": "drop %generate_buildrequires from the spec",
}

PAYLOAD_COMPRESSORS_FOR_HOST = ("gzip", "xz")
_DOC_ROOTS = ("/usr/share/doc", "/usr/share/licenses")
DATA_ROOTS = ("/lib/firmware", "/etc", *_DOC_ROOTS)

_LEAD_MAGIC = b"\xed\xab\xee\xdb"
_LEAD_SIZE = 96
_RPMSENSE_LESS, _RPMSENSE_GREATER, _RPMSENSE_EQUAL = 0x02, 0x04, 0x08
_RPMFILE_CONFIG = 0x01
# (name in RpmInfo.scripts, body tag, interpreter tag) as rpmfile names the tags.
_SCRIPT_TAGS = (
    ("pretrans", "pretrans", "pretransprog"),
    ("pre", "prein", "preinprog"),
    ("post", "postin", "postinprog"),
    ("preun", "preun", "preunprog"),
    ("postun", "postun", "postunprog"),
    ("posttrans", "posttrans", "posttransprog"),
    ("preuntrans", "preuntrans", "preuntransprog"),
    ("postuntrans", "postuntrans", "postuntransprog"),
    ("verify", "verifyscript", "verifyscriptprog"),
)
_CPIO_HEADER_SIZE = 110
_CPIO_MAGICS = (b"070701", b"070702")
_CPIO_TRAILER = "TRAILER!!!"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class RpmFileEntry:
    """One file of an RPM's file list, as the header records it."""

    path: str
    mode: int
    size: int
    is_dir: bool
    is_config: bool


@dataclass(frozen=True)
class RpmInfo:
    """What the header of one RPM says, decoded."""

    path: Path
    name: str
    epoch: int | None
    version: str
    release: str
    arch: str  # "noarch" for noarch packages, "src" for source RPMs
    group: str
    summary: str
    license: str
    requires: tuple[str, ...]  # "name op version" (or "name"), rpmlib(...) ones included
    provides: tuple[str, ...]
    payload_compressor: str  # "gzip", "xz", "zstd", ...
    installed_size: int
    is_source: bool
    files: tuple[RpmFileEntry, ...]
    # "pre", "post", "postun", "posttrans", ... -> body; "" for a scriptlet that is only `-p <program>`
    scripts: dict[str, str] = field(hash=False)

    def nevra(self) -> str:
        epoch = f"{self.epoch}:" if self.epoch is not None else ""
        return f"{self.name}-{epoch}{self.version}-{self.release}.{self.arch}"


def read_rpm(path: Path) -> RpmInfo:
    """Decode an RPM's header; BuildError when the file is not a readable RPM."""
    headers, _ = _read_headers(path)
    is_source = "sourcerpm" not in headers
    installed_size = _first_int(path, headers, "size") or 0
    if "longsize" in headers:
        raise BuildError(f"{path.name}: installs over 4 GiB, which driverpack cannot read (nor rpm 4.11 install)")
    return RpmInfo(
        path=path,
        name=_text(headers, "name"),
        epoch=_first_int(path, headers, "serial"),
        version=_text(headers, "version"),
        release=_text(headers, "release"),
        arch="src" if is_source else _text(headers, "arch"),
        group=_text(headers, "group"),
        summary=_text(headers, "summary"),
        license=_text(headers, "copyright"),
        requires=_dependencies(path, headers, "requirename", "requireflags", "requireversion"),
        provides=_dependencies(path, headers, "provides", "provideflags", "provideversion"),
        payload_compressor=_text(headers, "archive_compression") or "gzip",
        installed_size=installed_size,
        is_source=is_source,
        files=_files(path, headers),
        scripts=_scripts(headers),
    )


def iter_payload(path: Path, suffix: str = "") -> Iterator[tuple[str, bytes]]:
    """(path, content) of each regular payload file whose path ends with suffix, one at a time.

    The payload is decompressed as a stream and other members are skipped, so a large RPM is
    never held in memory; only the contents handed out are read whole.
    """
    headers, data_offset = _read_headers(path)
    compressor = _text(headers, "archive_compression") or "gzip"
    with path.open("rb") as raw:
        raw.seek(data_offset)
        stream = _decompressed(path, compressor, raw)
        try:
            yield from _cpio_members(path, stream, suffix)
        except (OSError, EOFError, lzma.LZMAError, zlib.error) as e:
            raise BuildError(f"{path.name}: the {compressor} payload is damaged: {e}") from None
        finally:
            stream.close()


def holds_modules(info: RpmInfo) -> bool:
    """Whether the RPM installs anything under /lib/modules/ (a kernel-module RPM)."""
    return any(f.path.startswith("/lib/modules/") for f in info.files)


def check_common(info: RpmInfo) -> list[str]:
    """Problems any RPM in a pack has if the host's rpm 4.11 cannot install it."""
    problems: list[str] = []
    name = info.path.name
    if info.payload_compressor not in PAYLOAD_COMPRESSORS_FOR_HOST:
        problems.append(
            f"{name}: the payload is compressed with {info.payload_compressor}, but the host's rpm 4.11"
            " needs gzip or xz; rebuild with --define '_binary_payload w9.gzdio'"
        )
    for requirement in info.requires:
        capability = requirement.split(" ", 1)[0]
        if capability.startswith("rpmlib(") and capability not in RPM411_RPMLIB_FEATURES:
            fix = _RPMLIB_FIXES.get(capability, "remove what makes rpmbuild add it")
            problems.append(f"{name}: requires {requirement}, which the host's rpm 4.11 lacks; {fix}")
    return problems


def check_kmod_rpm(info: RpmInfo, kernel: str, module_dirs: Sequence[str] = ("extra", "updates")) -> list[str]:
    """Problems of a driver RPM: files other than modules and docs, wrong vermagic, Group, common checks."""
    problems: list[str] = []
    name = info.path.name
    module_roots = tuple(f"/lib/modules/{kernel}/{d.strip('/')}" for d in module_dirs)
    where = f"/lib/modules/{kernel}/{{{','.join(d.strip('/') for d in module_dirs)}}}/"
    modules: list[str] = []
    for entry in info.files:
        if entry.is_dir:
            allowed = _dir_allowed(entry.path, (*module_roots, *_DOC_ROOTS))
        elif _within(entry.path, _DOC_ROOTS):
            allowed = True
        elif entry.path.endswith(".ko") and _within(entry.path, module_roots) and stat.S_ISREG(entry.mode):
            allowed = True
            modules.append(entry.path)
        else:
            allowed = False
        if not allowed:
            problems.append(
                f"{name}: {entry.path} does not belong in a driver RPM, which holds only kernel modules"
                f" ({where}…/*.ko) and docs; install modules there and put other files in the data RPM"
            )
    if not modules:
        problems.append(f"{name}: holds no kernel module under {where}; check the spec's %install and %files")
    if not info.group.endswith("/Kernel"):
        problems.append(
            f"{name}: Group is '{info.group}', but a driver RPM's group must end in '/Kernel';"
            " set 'Group: System Environment/Kernel'"
        )
    if any(entry.path.endswith(".ko") for entry in info.files):
        problems.extend(_vermagic_problems(info, kernel))
    problems.extend(check_common(info))
    return problems


def check_data_rpm(info: RpmInfo) -> list[str]:
    """Problems of a data RPM: files outside /lib/firmware, /etc and the doc trees, common checks."""
    problems: list[str] = []
    name = info.path.name
    for entry in info.files:
        allowed = _dir_allowed(entry.path, DATA_ROOTS) if entry.is_dir else _within(entry.path, DATA_ROOTS)
        if not allowed:
            problems.append(
                f"{name}: {entry.path} is outside the trees a data RPM may install to"
                f" ({', '.join(DATA_ROOTS)}); move it under one of them in the data folder"
            )
    problems.extend(check_common(info))
    return problems


def _vermagic_problems(info: RpmInfo, kernel: str) -> list[str]:
    name = info.path.name
    problems: list[str] = []
    try:
        for module, content in iter_payload(info.path, ".ko"):
            found = vermagic(content)
            debug = debug_sections(content)
            if debug:
                # rpm 4.11 strips only executable files, so whether a .ko ships its debug info would
                # depend on the rpm that built it; the generated spec strips it in %install.
                problems.append(
                    f"{name}: {module} still has debug sections ({', '.join(debug[:3])}"
                    f"{', …' if len(debug) > 3 else ''}); strip it with 'strip --strip-debug' in %install"
                )
            if found is None:
                problems.append(f"{name}: {module} has no vermagic; it is not a kernel module built by Kbuild")
            elif not vermagic_matches(found, kernel):
                problems.append(
                    f"{name}: {module} has vermagic '{found.strip()}', which is not for kernel {kernel};"
                    f" build it against the kernel build dir of {kernel}"
                )
    except BuildError as e:
        problems.append(f"{e.message} (so the modules' vermagic was not checked)")
    return problems


def _within(path: str, roots: Sequence[str]) -> bool:
    return any(path == root or path.startswith(root + "/") for root in roots)


def _dir_allowed(path: str, roots: Sequence[str]) -> bool:
    """A directory inside an allowed tree, or one on the way to it (/lib, /lib/modules, ...)."""
    leading = path.rstrip("/") + "/"
    return _within(path, roots) or any(root.startswith(leading) for root in roots)


def _read_headers(path: Path) -> tuple[Mapping[Any, Any], int]:
    """rpmfile's merged signature + main header tags, and where the payload starts."""
    try:
        with path.open("rb") as f:
            lead = f.read(_LEAD_SIZE)
            if len(lead) < _LEAD_SIZE or not lead.startswith(_LEAD_MAGIC):
                raise BuildError(
                    f"{path.name}: not an RPM file (no RPM lead at its start)",
                    hint=f"check that {path} is a package that rpmbuild wrote",
                )
            f.seek(0)
            rpm = rpmfile.RPMFile(fileobj=f)
            data_offset = int(rpm.data_offset)
            if data_offset >= f.seek(0, io.SEEK_END):
                raise BuildError(f"{path.name}: not a readable RPM file (it ends where its payload should start)")
            return dict(rpm.headers), data_offset
    except OSError as e:
        raise BuildError(f"cannot read {path}: {e.strerror or e}") from None
    except (rpmfile.errors.RPMError, AssertionError, struct.error, ValueError, IndexError, TypeError):
        # rpmfile's own messages name its internals, not the problem
        raise BuildError(f"{path.name}: not a readable RPM file (damaged or truncated header)") from None


def _text(headers: Mapping[Any, Any], tag: str) -> str:
    value = headers.get(tag)
    if isinstance(value, list):
        value = value[0] if value else b""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return "" if value is None else str(value)


def _texts(path: Path, headers: Mapping[Any, Any], tag: str) -> tuple[str, ...]:
    value = headers.get(tag)
    if value is None:
        return ()
    if isinstance(value, bytes):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, bytes) for v in value):
        raise BuildError(f"{path.name}: header tag '{tag}' is not a string array (damaged RPM?)")
    return tuple(v.decode("utf-8", errors="replace") for v in value)


def _ints(path: Path, headers: Mapping[Any, Any], tag: str) -> tuple[int, ...]:
    value = headers.get(tag)
    if value is None:
        return ()
    if isinstance(value, int):
        return (value,)
    if isinstance(value, tuple) and all(isinstance(v, int) for v in value):
        return value
    raise BuildError(f"{path.name}: header tag '{tag}' is not an integer array (damaged RPM?)")


def _first_int(path: Path, headers: Mapping[Any, Any], tag: str) -> int | None:
    values = _ints(path, headers, tag)
    return values[0] if values else None


def _dependencies(
    path: Path, headers: Mapping[Any, Any], names_tag: str, flags_tag: str, versions_tag: str
) -> tuple[str, ...]:
    names = _texts(path, headers, names_tag)
    flags = _ints(path, headers, flags_tag) or (0,) * len(names)
    versions = _texts(path, headers, versions_tag) or ("",) * len(names)
    if not len(names) == len(flags) == len(versions):
        raise BuildError(f"{path.name}: the '{names_tag}' header arrays differ in length (damaged RPM?)")
    result = []
    for name, flag, version in zip(names, flags, versions, strict=True):
        op = (
            ("<" if flag & _RPMSENSE_LESS else "")
            + (">" if flag & _RPMSENSE_GREATER else "")
            + ("=" if flag & _RPMSENSE_EQUAL else "")
        )
        result.append(f"{name} {op} {version}" if op and version else name)
    return tuple(result)


def _files(path: Path, headers: Mapping[Any, Any]) -> tuple[RpmFileEntry, ...]:
    basenames = _texts(path, headers, "basenames")
    if basenames:
        dirnames = _texts(path, headers, "dirnames")
        dirindexes = _ints(path, headers, "dirindexes")
        if len(dirindexes) != len(basenames) or any(i >= len(dirnames) for i in dirindexes):
            raise BuildError(f"{path.name}: the file name arrays do not fit together (damaged RPM?)")
        paths = tuple(dirnames[i] + base for base, i in zip(basenames, dirindexes, strict=True))
    else:
        paths = _texts(path, headers, "oldfilenames")
    if not paths:
        return ()
    if "filesizes" not in headers and "longfilesizes" in headers:
        raise BuildError(f"{path.name}: holds a file over 4 GiB, which driverpack cannot read (nor rpm 4.11 install)")
    modes = _ints(path, headers, "filemodes")
    sizes = _ints(path, headers, "filesizes")
    flags = _ints(path, headers, "fileflags") or (0,) * len(paths)
    if not len(paths) == len(modes) == len(sizes) == len(flags):
        raise BuildError(f"{path.name}: the file list arrays differ in length (damaged RPM?)")
    return tuple(
        RpmFileEntry(
            path=p,
            mode=mode,
            size=size,
            is_dir=stat.S_ISDIR(mode),
            is_config=bool(flag & _RPMFILE_CONFIG),
        )
        for p, mode, size, flag in zip(paths, modes, sizes, flags, strict=True)
    )


def _scripts(headers: Mapping[Any, Any]) -> dict[str, str]:
    scripts: dict[str, str] = {}
    for name, body_tag, prog_tag in _SCRIPT_TAGS:
        if body_tag in headers or prog_tag in headers:
            scripts[name] = _text(headers, body_tag)
    return scripts


def _decompressed(path: Path, compressor: str, raw: io.BufferedReader) -> io.BufferedIOBase:
    if compressor == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if compressor in ("xz", "lzma"):
        return lzma.LZMAFile(raw)
    if compressor == "bzip2":
        return bz2.BZ2File(raw)
    raise BuildError(
        f"{path.name}: cannot read a {compressor} payload (driverpack reads gzip, xz, lzma and bzip2)",
        hint="rebuild with --define '_binary_payload w9.gzdio', which the host needs anyway",
    )


def _cpio_members(path: Path, stream: io.BufferedIOBase, suffix: str) -> Iterator[tuple[str, bytes]]:
    """Walk a newc cpio stream; hard-linked names are handed out with the one copy of their data."""
    waiting_links: dict[int, list[str]] = {}
    while True:
        header = _read_exact(path, stream, _CPIO_HEADER_SIZE)
        if header[:6] not in _CPIO_MAGICS:
            raise BuildError(
                f"{path.name}: the payload is not a cpio archive rpm 4.11 can read (magic {header[:6]!r})",
                hint="files over 4 GiB make rpmbuild write a payload format rpm 4.11 cannot read",
            )
        try:
            fields = [int(header[6 + 8 * i : 14 + 8 * i], 16) for i in range(13)]
        except ValueError:
            raise BuildError(f"{path.name}: damaged cpio header in the payload") from None
        ino, mode, nlink, filesize, namesize = fields[0], fields[1], fields[4], fields[6], fields[11]
        raw_name = _read_exact(path, stream, namesize)
        _skip(path, stream, _pad4(_CPIO_HEADER_SIZE + namesize))
        member = raw_name.rstrip(b"\0").decode("utf-8", errors="surrogateescape")
        if member == _CPIO_TRAILER:
            for names in waiting_links.values():
                yield from ((n, b"") for n in names)
            return
        member = "/" + member.removeprefix("./").lstrip("/")
        if not stat.S_ISREG(mode):
            _skip(path, stream, filesize + _pad4(filesize))
            continue
        if nlink > 1 and filesize == 0:
            # newc stores a hard-link set's data once, with the last name of the set.
            if member.endswith(suffix):
                waiting_links.setdefault(ino, []).append(member)
            continue
        names = [*waiting_links.pop(ino, []), member] if nlink > 1 else [member]
        names = [n for n in names if n.endswith(suffix)]
        if names:
            content = _read_exact(path, stream, filesize)
            _skip(path, stream, _pad4(filesize))
            yield from ((n, content) for n in names)
        else:
            _skip(path, stream, filesize + _pad4(filesize))


def _pad4(size: int) -> int:
    return (4 - size % 4) % 4


def _read_exact(path: Path, stream: io.BufferedIOBase, size: int) -> bytes:
    parts: list[bytes] = []
    left = size
    while left > 0:
        chunk = stream.read(min(left, _CHUNK))
        if not chunk:
            raise BuildError(f"{path.name}: the payload ends early (truncated RPM?)")
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def _skip(path: Path, stream: io.BufferedIOBase, size: int) -> None:
    left = size
    while left > 0:
        chunk = stream.read(min(left, _CHUNK))
        if not chunk:
            raise BuildError(f"{path.name}: the payload ends early (truncated RPM?)")
        left -= len(chunk)
