"""The one up-to-date mechanism: declarations, unit stamps, the quick record, the pack lock."""

from __future__ import annotations

import ast
import fcntl
import os
from pathlib import Path

import pytest

from driverpack import quick
from driverpack.errors import BusyError
from driverpack.inputs import Inputs
from driverpack.locks import pack_lock
from driverpack.uptodate import record, unit_state


def declaration(tmp_path: Path, patch_text: str = "fix\n", value: str = "a") -> Inputs:
    (tmp_path / "fix.patch").write_text(patch_text)
    (tmp_path / "data").mkdir(exist_ok=True)
    (tmp_path / "data" / "fw.bin").write_bytes(b"\x00\x01")
    return (
        Inputs("compile-x")
        .value("its [[drivers]] keys", value)
        .file("patches[0]", tmp_path / "fix.patch")
        .tree("data", tmp_path / "data")
        .env("SOURCE_DATE_EPOCH")
    )


def test_digest_follows_content_not_times(tmp_path: Path) -> None:
    first = declaration(tmp_path).digest()
    os.utime(tmp_path / "fix.patch", ns=(1, 1))
    assert declaration(tmp_path).digest() == first
    assert declaration(tmp_path, patch_text="other\n").digest() != first
    assert declaration(tmp_path, value="b").digest() != first


def test_stamp_names_the_changed_input_and_the_missing_output(tmp_path: Path) -> None:
    stamp = tmp_path / "stamps" / "compile-x.stamp"
    output = tmp_path / "x.ko"
    output.write_bytes(b"module")
    state = unit_state(stamp, declaration(tmp_path))
    assert state.reasons == ("not built yet",)
    record(state, [output], "result")

    again = unit_state(stamp, declaration(tmp_path))
    assert again.fresh and again.result == "result"
    changed = unit_state(stamp, declaration(tmp_path, patch_text="new\n"))
    assert changed.reasons == ("patches[0] changed",)
    (tmp_path / "data" / "new.bin").write_bytes(b"")
    assert unit_state(stamp, declaration(tmp_path)).reasons == ("data changed",)
    (tmp_path / "data" / "new.bin").unlink()
    output.unlink()
    assert unit_state(stamp, declaration(tmp_path)).reasons == (f"output {output} is missing",)


def test_watched_paths_cover_trees_and_tools(tmp_path: Path) -> None:
    inputs = declaration(tmp_path).tool("make")
    watched = inputs.watched()
    assert {str(tmp_path / "fix.patch"), str(tmp_path / "data"), str(tmp_path / "data" / "fw.bin")} <= set(watched)
    assert inputs.tools()["make"].endswith("/make")
    assert inputs.variables() == {"SOURCE_DATE_EPOCH": os.environ.get("SOURCE_DATE_EPOCH", "")}


def quick_record(tmp_path: Path, output: Path) -> Inputs:
    inputs = declaration(tmp_path).tool("make")
    quick.record(tmp_path, tmp_path, "iso", "lab", inputs.watched(), inputs.tools(), inputs.variables(), [output])
    return inputs


def test_quick_record_answers_until_something_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    output = tmp_path / "lab.iso"
    output.write_bytes(b"iso")
    quick_record(tmp_path, output)
    assert quick.up_to_date(tmp_path, tmp_path, "iso") == "lab"
    assert quick.up_to_date(tmp_path, tmp_path, "release-zip") is None

    (tmp_path / "data" / "more.bin").write_bytes(b"")  # a new file: its folder's time changes
    assert quick.explain(tmp_path, tmp_path, "iso") == f"{tmp_path / 'data'} changed"
    quick_record(tmp_path, output)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "12345")
    assert quick.explain(tmp_path, tmp_path, "iso") == "$SOURCE_DATE_EPOCH changed"
    monkeypatch.delenv("SOURCE_DATE_EPOCH")
    monkeypatch.setenv("PATH", str(tmp_path))
    assert quick.explain(tmp_path, tmp_path, "iso") == "tool make is now missing"
    monkeypatch.undo()
    output.write_bytes(b"iso, edited")
    assert quick.explain(tmp_path, tmp_path, "iso") == f"output {output} was changed or removed"


def test_quick_check_knows_nothing_of_the_pack_format() -> None:
    """It reads the record of what was read; pack.toml is one path among them, never parsed here."""
    source = Path(quick.__file__).read_text()
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")])
    }
    assert imported <= {"__future__", "hashlib", "json", "os", "shutil", "collections", "pathlib", "typing"}
    assert "tomllib" not in source and "drivers" not in source


def test_pack_lock_waits_a_bounded_time_naming_the_holder(tmp_path: Path) -> None:
    lock = tmp_path / "build" / ".locks" / "lab.lock"
    lock.parent.mkdir(parents=True)
    said: list[str] = []
    with lock.open("w") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)
        holder.write("4242\n")
        holder.flush()
        busy = pytest.raises(BusyError, match=r"another driverpack run \(pid 4242\) still builds it after 0.3s")
        with busy, pack_lock(tmp_path, "lab", 0.3, said.append):
            pass
    assert said == [
        "... [lab] waiting for another driverpack run on this pack (pid 4242) to end (at most 0.3s: --wait)"
    ]
    with pack_lock(tmp_path, "lab", 0, said.append):
        assert lock.read_text() == f"{os.getpid()}\n"
    assert len(said) == 1
