"""vermagic(): the .modinfo section of synthetic ELF files, and the plain-search fallback."""

from __future__ import annotations

import struct

import pytest

from driverpack.vermagic import vermagic, vermagic_matches

HOST_VERMAGIC = "4.19.0+1 SMP mod_unload modversions "
MODINFO = b"license=GPL\0vermagic=" + HOST_VERMAGIC.encode() + b"\0name=hello\0"


def elf(sections: dict[str, bytes], *, is_64: bool = True, big_endian: bool = False) -> bytes:
    """A relocatable ELF holding `sections` (plus the null section and .shstrtab), like a .ko."""
    order = ">" if big_endian else "<"
    names = [*sections, ".shstrtab"]
    shstrtab = b"\0" + b"".join(n.encode() + b"\0" for n in names)
    contents = [*sections.values(), shstrtab]
    header_size = 0x40 if is_64 else 0x34
    entry_format = order + ("IIQQQQIIQQ" if is_64 else "IIIIIIIIII")
    entry_size = struct.calcsize(entry_format)

    body = b""
    offsets = []
    for data in contents:
        offsets.append(header_size + len(body))
        body += data
    shoff = header_size + len(body)
    shnum = len(contents) + 1
    ident = b"\x7fELF" + bytes([2 if is_64 else 1, 2 if big_endian else 1, 1]) + bytes(9)
    if is_64:
        header = ident + struct.pack(
            order + "HHIQQQIHHHHHH", 1, 62, 1, 0, 0, shoff, 0, 0x40, 0, 0, 64, shnum, shnum - 1
        )
    else:
        header = ident + struct.pack(order + "HHIIIIIHHHHHH", 1, 3, 1, 0, 0, shoff, 0, 0x34, 0, 0, 40, shnum, shnum - 1)
    assert len(header) == header_size
    table = bytes(entry_size)  # the null section
    name_offset = 1
    for name, offset, data in zip(names, offsets, contents, strict=True):
        table += struct.pack(entry_format, name_offset, 1, 0, 0, offset, len(data), 0, 0, 1, 0)
        name_offset += len(name) + 1
    return header + body + table


@pytest.mark.parametrize(("is_64", "big_endian"), [(True, False), (False, False), (True, True), (False, True)])
def test_reads_modinfo_of_elf(is_64: bool, big_endian: bool) -> None:
    data = elf({".text": b"\x90" * 16, ".modinfo": MODINFO}, is_64=is_64, big_endian=big_endian)
    assert vermagic(data) == HOST_VERMAGIC


def test_ignores_vermagic_text_outside_modinfo() -> None:
    decoy = b"\0vermagic=decoy\0"
    data = elf({".rodata": decoy, ".modinfo": MODINFO})
    assert vermagic(data) == HOST_VERMAGIC


def test_elf_without_modinfo_has_none() -> None:
    assert vermagic(elf({".rodata": b"\0vermagic=decoy\0"})) is None


def test_modinfo_without_vermagic_has_none() -> None:
    assert vermagic(elf({".modinfo": b"license=GPL\0name=hello\0"})) is None


def test_damaged_elf_falls_back_to_search() -> None:
    data = elf({".modinfo": MODINFO})
    # cut off the section header table: the header now points past the end
    assert vermagic(data[: len(data) - 30]) == HOST_VERMAGIC


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"junk\0vermagic=6.1.0-56-amd64 SMP preempt \0more", "6.1.0-56-amd64 SMP preempt "),
        (b"vermagic=4.19.0+1 SMP\0", "4.19.0+1 SMP"),
        (b"xx\0vermagic=4.19.0+1 SMP", "4.19.0+1 SMP"),
        (b"xx\0myvermagic=4.19.0+1\0", None),
        (b"no module here", None),
        (b"", None),
    ],
)
def test_search_in_non_elf_bytes(data: bytes, expected: str | None) -> None:
    assert vermagic(data) == expected


@pytest.mark.parametrize(
    ("magic", "release", "expected"),
    [
        (HOST_VERMAGIC, "4.19.0+1", True),
        ("4.19.0+10 SMP mod_unload modversions ", "4.19.0+1", False),
        ("4.19.0+1 SMP mod_unload", "4.19.0+10", False),
        ("4.19.0+1", "4.19.0+1", True),
        ("6.1.0-56-amd64 SMP preempt mod_unload modversions ", "6.1.0-56-amd64", True),
        ("4.19.0 SMP", "4.19.0+1", False),
        ("", "4.19.0+1", False),
        ("   ", "", False),
    ],
)
def test_vermagic_matches(magic: str, release: str, expected: bool) -> None:
    assert vermagic_matches(magic, release) is expected
