"""The vermagic string of a kernel module (.ko) and whether it fits a kernel release.

The kernel refuses a module whose vermagic does not start with its own `uname -r`; reading it
here lets a build fail before the pack reaches a host.
"""

from __future__ import annotations

import struct

_ELF_MAGIC = b"\x7fELF"
_SHT_NOBITS = 8
_SHN_XINDEX = 0xFFFF
_KEY = b"vermagic="


class _MalformedElf(Exception):
    """The bytes are not an ELF file this reader understands; fall back to a plain search."""


def vermagic(data: bytes) -> str | None:
    """The `vermagic=` value of a kernel module's .modinfo section, or None when it has none."""
    try:
        modinfo = _elf_section(data, b".modinfo")
    except _MalformedElf:
        # Not an ELF (or one with extended section numbering): .modinfo is still a run of
        # NUL-separated key=value strings somewhere in the file.
        return _search(data)
    if modinfo is None:
        return None
    for entry in modinfo.split(b"\0"):
        if entry.startswith(_KEY):
            return entry[len(_KEY) :].decode("utf-8", errors="replace")
    return None


def vermagic_matches(vermagic: str, kernel_release: str) -> bool:
    """True when the vermagic's first word is exactly the kernel release (`uname -r`)."""
    words = vermagic.split()
    return bool(words) and words[0] == kernel_release


def _search(data: bytes) -> str | None:
    if data.startswith(_KEY):
        start = len(_KEY)
    else:
        at = data.find(b"\0" + _KEY)
        if at < 0:
            return None
        start = at + 1 + len(_KEY)
    end = data.find(b"\0", start)
    value = data[start:] if end < 0 else data[start:end]
    return value.decode("utf-8", errors="replace")


def _elf_section(data: bytes, wanted: bytes, seen: list[bytes] | None = None) -> bytes | None:
    """The contents of the section named `wanted`, None if absent; _MalformedElf if unreadable.

    `seen`, when given, collects every section's name (and the whole table is read).
    """
    if len(data) < 16 or not data.startswith(_ELF_MAGIC):
        raise _MalformedElf
    elf_class, encoding = data[4], data[5]
    if encoding not in (1, 2) or elf_class not in (1, 2):
        raise _MalformedElf
    order = "<" if encoding == 1 else ">"
    is_64 = elf_class == 2
    # e_shoff, then e_shentsize, e_shnum, e_shstrndx (ELF32 and ELF64 differ in offsets and widths)
    if is_64:
        shoff = _unpack(order + "Q", data, 0x28)
        shentsize, shnum, shstrndx = _unpack3(order + "HHH", data, 0x3A)
        section_format, min_entsize = order + "IIQQQQ", 0x40
    else:
        shoff = _unpack(order + "I", data, 0x20)
        shentsize, shnum, shstrndx = _unpack3(order + "HHH", data, 0x2E)
        section_format, min_entsize = order + "IIIIII", 0x28
    if shoff == 0 or shnum == 0 or shstrndx >= shnum or shstrndx == _SHN_XINDEX or shentsize < min_entsize:
        raise _MalformedElf

    def section(index: int) -> tuple[int, bytes]:
        sh_name, sh_type, _flags, _addr, sh_offset, sh_size = struct.unpack_from(
            section_format, data, _bounded(data, shoff + index * shentsize, struct.calcsize(section_format))
        )
        if sh_type == _SHT_NOBITS:
            return sh_name, b""
        return sh_name, data[_bounded(data, sh_offset, sh_size) : sh_offset + sh_size]

    _, names = section(shstrndx)
    found = None
    for index in range(shnum):
        name_offset, contents = section(index)
        end = names.find(b"\0", name_offset)
        name = names[name_offset:end] if name_offset < len(names) and end >= 0 else b""
        if seen is not None:
            seen.append(name)
        if name == wanted and found is None:
            found = contents
            if seen is None:
                break
    return found


def debug_sections(data: bytes) -> list[str]:
    """Names of the .debug_* sections of an ELF file (a module not stripped of debug info has them)."""
    seen: list[bytes] = []
    try:
        _elf_section(data, b"", seen)
    except _MalformedElf:
        return []
    return sorted({n.decode("ascii", errors="replace") for n in seen if n.startswith(b".debug_")})


def _bounded(data: bytes, offset: int, size: int) -> int:
    if offset < 0 or size < 0 or offset + size > len(data):
        raise _MalformedElf
    return offset


def _unpack(fmt: str, data: bytes, offset: int) -> int:
    (value,) = struct.unpack_from(fmt, data, _bounded(data, offset, struct.calcsize(fmt)))
    return int(value)


def _unpack3(fmt: str, data: bytes, offset: int) -> tuple[int, int, int]:
    a, b, c = struct.unpack_from(fmt, data, _bounded(data, offset, struct.calcsize(fmt)))
    return int(a), int(b), int(c)
