"""The real CLI: `inv check` on broken packs fails with one clear message, exit code 2, no traceback.

Each case is a folder under tests/data/check/<case>/, copied to tmp_path/packs/ together with the
helloworld source tarball; inv runs with tmp_path as the current directory, so packs/ there is
what it scans. The cases use a stand-in kernel build dir (`kbuild/Makefile`), so only the
missing-kernel case and the shipped helloworld pack (kernel "auto") look at installed kernels.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from support import run_inv

from driverpack.load import load_pack

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data" / "check"
TARBALL = REPO / "packs" / "helloworld" / "helloworld-1.0.tar.gz"
MAX_LINES = 25
PACK_ERROR = 2


def add_pack(root: Path, case: str, label: str | None = None) -> Path:
    """Copy tests/data/check/<case> to root/packs/<label> with the helloworld tarball beside it."""
    folder = root / "packs" / (label or Path(case).name)
    shutil.copytree(DATA / case, folder)
    shutil.copy(TARBALL, folder)
    return folder


def output(proc: subprocess.CompletedProcess[str]) -> str:
    return proc.stdout + proc.stderr


def assert_clean_failure(proc: subprocess.CompletedProcess[str], code: int = PACK_ERROR) -> str:
    """Failed with `code`, one short message, no traceback; returns the error text."""
    text = output(proc)
    assert proc.returncode == code, f"exit {proc.returncode}, expected {code}:\n{text}"
    assert "Traceback" not in proc.stderr, text
    assert len(text.splitlines()) < MAX_LINES, f"{len(text.splitlines())} lines:\n{text}"
    assert "error: " in proc.stderr, text
    return proc.stderr


# one broken pack each

CASES = {
    # case: (fragments the error must hold)
    "bad-uuid": ("packs/bad-uuid/pack.toml", "pack.uuid", "'not-a-uuid'", "uuid.uuid4()"),
    "unknown-key": ("packs/unknown-key/pack.toml", "pack.lable", "unknown key 'lable'"),
    "version-dash": ("packs/version-dash/pack.toml", "drivers[0].version", "'1.0-1' contains '-'"),
    "missing-source": ("packs/missing-source/pack.toml", "drivers[0].source", "nosuch-1.0.tar.gz not found"),
    "missing-kernel": (
        "packs/missing-kernel/pack.toml",
        "target",
        "/lib/modules/9.9.9/build",
        "linux-headers",  # Debian/Ubuntu
        "kernel-devel",  # Fedora/RHEL
    ),
}


@pytest.mark.parametrize(("case", "fragments"), CASES.items(), ids=CASES.keys())
def test_check_refuses_a_broken_pack(tmp_path: Path, case: str, fragments: tuple[str, ...]) -> None:
    add_pack(tmp_path, case)
    stderr = assert_clean_failure(inv(tmp_path, "check", "--pack", case))
    for fragment in fragments:
        assert fragment in stderr, f"{fragment!r} not in:\n{stderr}"
    assert "check: ok" not in stderr


@pytest.mark.parametrize("selector", ["bad-uuid", "packs/bad-uuid", "./packs/bad-uuid/pack.toml"])
def test_pack_selected_by_label_or_path(tmp_path: Path, selector: str) -> None:
    add_pack(tmp_path, "bad-uuid")
    assert "pack.uuid" in assert_clean_failure(inv(tmp_path, "check", "--pack", selector))


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    add_pack(tmp_path, "bad-uuid")
    proc = inv(tmp_path, "check", "--pack", "bad-uuid", "--debug")
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr and "PackError" in proc.stderr


def test_duplicate_uuid_across_packs(tmp_path: Path) -> None:
    add_pack(tmp_path, "duplicate-uuid/one")
    add_pack(tmp_path, "duplicate-uuid/two")
    stderr = assert_clean_failure(inv(tmp_path, "check", "--pack", "one"))
    assert "packs/one/pack.toml: pack.uuid: 3c9e4f7a-1d2b-4e8f-a6c5-0b7d9e2f4a61" in stderr
    assert "is also the uuid of packs/two/pack.toml" in stderr
    assert "pack.uuid" in assert_clean_failure(inv(tmp_path, "check"))


def test_duplicate_uuid_of_a_broken_pack_is_not_reported(tmp_path: Path) -> None:
    """A pack that does not load is that pack's own problem: the other one still checks."""
    add_pack(tmp_path, "duplicate-uuid/one")
    two = add_pack(tmp_path, "duplicate-uuid/two")
    text = (two / "pack.toml").read_text()
    (two / "pack.toml").write_text(text.replace('version = "1.0"\n', 'version = "1.0-1"\n'))
    proc = inv(tmp_path, "check", "--pack", "one")
    assert proc.returncode == 0, output(proc)


def test_good_pack_passes(tmp_path: Path) -> None:
    add_pack(tmp_path, "good")
    proc = inv(tmp_path, "check", "--pack", "good")
    assert proc.returncode == 0, output(proc)
    assert "check: ok" in proc.stdout


def test_helloworld_passes(tmp_path: Path) -> None:
    """The shipped example, kernel "auto": needs exactly one kernel build dir installed (CI has one)."""
    shutil.copytree(REPO / "packs" / "helloworld", tmp_path / "packs" / "helloworld")
    proc = inv(tmp_path, "check", "--pack", "helloworld")
    assert proc.returncode == 0, output(proc)
    assert "check: ok" in proc.stdout
    assert "Traceback" not in proc.stderr
    # check writes nothing.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["packs"]


def test_check_without_packs(tmp_path: Path) -> None:
    stderr = assert_clean_failure(inv(tmp_path, "check"))
    assert "no packs found" in stderr
    assert "inv new" in stderr


def test_check_unknown_pack(tmp_path: Path) -> None:
    add_pack(tmp_path, "good")
    stderr = assert_clean_failure(inv(tmp_path, "check", "--pack", "nosuch"))
    assert "--pack nosuch: no pack found" in stderr
    assert "good" in stderr  # the packs that do exist are listed


# the task list and scaffolding


LISTED_TASKS = ["check", "specs", "new", "clean", "test", "compile", "build-rpms"]


def test_list_shows_tasks_with_help(tmp_path: Path) -> None:
    proc = inv(tmp_path, "--list")
    assert proc.returncode == 0, output(proc)
    helps = dict(re.findall(r"^  (\S+)\s+(\S.*)$", proc.stdout, re.M))
    for name in LISTED_TASKS:
        assert name in helps, f"task {name!r} missing from inv --list:\n{proc.stdout}"
        assert len(helps[name]) > 10, f"task {name!r} has no help text:\n{proc.stdout}"


def test_task_help_describes_pack_flag(tmp_path: Path) -> None:
    proc = inv(tmp_path, "--help", "check")
    assert proc.returncode == 0, output(proc)
    assert "--pack" in proc.stdout and "--debug" in proc.stdout


def test_new_creates_a_pack_that_loads(tmp_path: Path) -> None:
    proc = inv(tmp_path, "new", "demo")
    assert proc.returncode == 0, output(proc)
    path = tmp_path / "packs" / "demo" / "pack.toml"
    assert path.is_file()
    assert "packs/demo/pack.toml" in proc.stdout
    content = path.read_text()
    loaded = load_pack(path.parent)
    assert loaded.label == "demo"
    assert str(uuid.UUID(loaded.pack.pack.uuid)) == loaded.pack.pack.uuid
    assert loaded.pack.pack.uuid not in (REPO / "packs" / "helloworld" / "pack.toml").read_text()

    again = inv(tmp_path, "new", "demo")
    stderr = assert_clean_failure(again)
    assert "packs/demo/pack.toml already exists" in stderr
    assert path.read_text() == content


def test_new_packs_get_different_uuids(tmp_path: Path) -> None:
    for label in ("first", "second"):
        assert inv(tmp_path, "new", label).returncode == 0
    first, second = (load_pack(tmp_path / "packs" / label).pack.pack.uuid for label in ("first", "second"))
    assert first != second


@pytest.mark.parametrize("label", ["bad label", "a.b", "../escape"])
def test_new_refuses_a_bad_label(tmp_path: Path, label: str) -> None:
    stderr = assert_clean_failure(inv(tmp_path, "new", label))
    assert "is not a valid label" in stderr
    assert not (tmp_path / "packs").exists() or not any((tmp_path / "packs").iterdir())


def inv(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_inv(cwd, *args, timeout=120)
