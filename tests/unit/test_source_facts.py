"""read_source_facts: MODULE_DESCRIPTION/MODULE_LICENSE and the member listing, read without extracting."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import make_tarball

from driverpack.adapters import tarball
from driverpack.adapters.tarball import ModuleTags, read_source_facts


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def tarball_of(tmp_path: Path, files: dict[str, str], name: str = "drv-1.0.tar.gz") -> Path:
    source = tmp_path / "source"
    write(source, files)
    out = tmp_path / name
    make_tarball(source, out)
    return out


def test_string_literals_macros_and_concatenation(tmp_path: Path) -> None:
    path = tarball_of(
        tmp_path,
        {
            "drv-1.0/src/Kbuild": "obj-m := drv.o\n",
            "drv-1.0/src/drv.h": '#define DRV_NAME "Acme"\n#define DRV_DESC DRV_NAME " 10G \\"fast\\" NIC"\n',
            "drv-1.0/src/drv_main.c": (
                '#include "drv.h"\n'
                '/* MODULE_DESCRIPTION("commented out"); */\n'
                '// MODULE_LICENSE("Proprietary");\n'
                "MODULE_DESCRIPTION(DRV_DESC);\n"
                'MODULE_LICENSE("GPL"\n               " v2");\n'
            ),
            "drv-1.0/src/other.c": 'MODULE_LICENSE(LICENSE_FROM_ELSEWHERE);\nMODULE_DESCRIPTION("helper");\n',
            "drv-1.0/tools/tool.c": 'MODULE_DESCRIPTION("not in a build folder");\n',
        },
    )
    facts = read_source_facts(path, ["src"])
    assert facts.tags == (
        ModuleTags("src/drv_main.c", 'Acme 10G "fast" NIC', "GPL v2"),
        ModuleTags("src/other.c", "helper", None),
    )
    assert facts.directories == ("src", "tools")
    assert facts.files == ("src/Kbuild", "src/drv.h", "src/drv_main.c", "src/other.c", "tools/tool.c")
    assert facts.symlinks == ()


def test_files_at_the_root(tmp_path: Path) -> None:
    path = tarball_of(tmp_path, {"Makefile": "obj-m := flat.o\n", "flat.c": 'MODULE_LICENSE("GPL");\n'})
    facts = read_source_facts(path, [""])
    assert facts.tags == (ModuleTags("flat.c", None, "GPL"),)
    assert facts.directories == ()


def test_reads_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = {f"d-1/f{i:02}.c": f'MODULE_DESCRIPTION("file {i}");\n' for i in range(5)}
    files["d-1/late.c"] = "/*" + "x" * 4000 + '*/\nMODULE_LICENSE("GPL");\n'
    path = tarball_of(tmp_path, files)
    monkeypatch.setattr(tarball, "SOURCE_READ_CAP", 1000)
    # Per file: the license past the first 1000 bytes of late.c is not read.
    facts = read_source_facts(path, [""])
    assert [t.file for t in facts.tags] == [f"f{i:02}.c" for i in range(5)]
    # In number of files.
    monkeypatch.setattr(tarball, "SOURCE_FILES_CAP", 3)
    facts = read_source_facts(path, [""])
    assert [t.file for t in facts.tags] == ["f00.c", "f01.c", "f02.c"]
    # In total bytes.
    monkeypatch.setattr(tarball, "SOURCE_FILES_CAP", 100)
    monkeypatch.setattr(tarball, "SOURCE_TOTAL_CAP", 50)
    facts = read_source_facts(path, [""])
    assert [t.file for t in facts.tags] == ["f00.c", "f01.c"]


def test_a_broken_tarball_is_a_pack_error(tmp_path: Path) -> None:
    from driverpack.errors import PackError

    bad = tmp_path / "bad-1.0.tar.gz"
    bad.write_bytes(b"not a tarball")
    with pytest.raises(PackError, match="not a readable tar archive"):
        read_source_facts(bad, [""])
