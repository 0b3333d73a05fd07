"""Change one driver, rebuild one driver; the quick no-op check; runs on the same pack at once.

A three-driver pack (one with a patch, one with a data folder) is built once per module with the
real CLI. Each test then changes one input and asserts on the step lines (what ran, what was
reused), on the bytes of what was reused, and on the ISO the run ends with (read back by `inv
verify` inside the run). Concurrent runs are two real `inv release-zip` processes started together.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import support

from driverpack.adapters import gpg
from driverpack.adapters.iso import read_iso

pytestmark = pytest.mark.slow

LABEL = "trio"
DRIVERS = ("alpha", "beta", "gamma")
UUID = "0c5e2d8a-6f1b-4a37-9c2e-8b4d1f7a3e60"
INV = Path(sys.executable).parent / "inv"
RAN = re.compile(r"^==> (?P<step>\S+) \[(?P<label>[^\]]+)\]$", re.M)
SKIPPED = re.compile(r"^--- (?P<step>\S+) \[(?P<label>[^\]]+)\] up to date, skipped$", re.M)
QUICK = re.compile(r"^--- (?P<step>\S+) \[(?P<label>[^\]]+)\] up to date: no input or output changed$", re.M)
REUSED = re.compile(r"^    reused (?P<names>.+) \(unchanged\)$", re.M)


def module_source(name: str, greeting: str) -> str:
    return (
        "#include <linux/module.h>\n"
        f'static int __init m_init(void) {{ pr_info("{name}: {greeting}\\n"); return 0; }}\n'
        "static void __exit m_exit(void) {}\n"
        'module_init(m_init);\nmodule_exit(m_exit);\nMODULE_LICENSE("GPL");\n'
    )


def patch_text(name: str, old: str, new: str) -> str:
    """A -p1 patch replacing the greeting of <name>.c (the tarball's module source)."""
    before, after = module_source(name, old).splitlines(), module_source(name, new).splitlines()
    return f"--- a/{name}.c\n+++ b/{name}.c\n@@ -2 +2 @@\n-{before[1]}\n+{after[1]}\n"  # the pr_info line


def write_pack(root: Path) -> Path:
    pack = root / "packs" / LABEL
    pack.mkdir(parents=True)
    tables = []
    for name in DRIVERS:
        src = root / "src" / name / f"{name}-1.0"
        src.mkdir(parents=True)
        (src / f"{name}.c").write_text(module_source(name, "hello"))
        (src / "Kbuild").write_text(f"obj-m := {name}.o\n")
        support.make_tarball(src.parent, pack / f"{name}-1.0.tar.gz")
        table = (
            f'[[drivers]]\nname = "{name}"\nversion = "1.0"\nsource = "{name}-1.0.tar.gz"\nsummary = "{name} module"\n'
        )
        if name == "beta":
            (pack / "beta.patch").write_text(patch_text(name, "hello", "patched"))
            table += 'patches = ["beta.patch"]\n'
        if name == "gamma":
            firmware = pack / "gamma-data-1.0" / "lib" / "firmware" / "gamma"
            firmware.mkdir(parents=True)
            (firmware / "gamma.bin").write_bytes(b"gamma firmware 1\n")
            table += '[drivers.data]\nversion = "1.0"\n'
        tables.append(table)
    (pack / "pack.toml").write_text(
        f'[pack]\nlabel = "{LABEL}"\ntext = "three drivers"\nuuid = "{UUID}"\nversion = "1.0"\n'
        'after_apply = ["restartHost"]\n\n' + "\n".join(tables)
    )
    return pack


@dataclass(frozen=True)
class Result:
    code: int
    output: str

    def ok(self) -> Result:
        assert self.code == 0, self.output
        return self

    @property
    def ran(self) -> set[str]:
        return {m["step"] for m in RAN.finditer(self.output)}

    @property
    def skipped(self) -> set[str]:
        return {m["step"] for m in SKIPPED.finditer(self.output)}

    @property
    def reused(self) -> set[str]:
        return {name for m in REUSED.finditer(self.output) for name in m["names"].split(", ")}


def inv(root: Path, *args: str, timeout: int = 300) -> Result:
    proc = support.run_inv(root, *args, timeout=timeout)
    return Result(proc.returncode, proc.stdout + proc.stderr)


def digests(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("keys") / "keys"
    gpg.generate_test_key(folder)
    return folder


@pytest.fixture
def root(tmp_path: Path, keys: Path) -> Path:
    write_pack(tmp_path)
    shutil.copytree(keys, tmp_path / "keys")
    inv(tmp_path, "release-zip").ok()
    return tmp_path


def rpms(root: Path) -> dict[str, str]:
    return digests(root / "build" / LABEL / "rpmbuild" / "RPMS")


# --- one driver changed, one driver rebuilt -----------------------------------------------------


def test_changed_patch_rebuilds_that_driver_only(root: Path) -> None:
    before = rpms(root)
    modules = {name: (root / "build" / LABEL / "BUILD" / name / f"{name}-1.0" / f"{name}.ko") for name in DRIVERS}
    module_bytes = {name: path.read_bytes() for name, path in modules.items()}
    (root / "packs" / LABEL / "beta.patch").write_text(patch_text("beta", "hello", "patched again"))

    result = inv(root, "release-zip").ok()
    assert result.ran == {"check", "compile", "build-rpms", "iso", "verify", "release-zip"}, result.output
    assert result.skipped == {"specs"}, result.output  # the spec names the patch; its content is the compile's
    assert "    compiled beta (1/1)" in result.output.splitlines(), result.output
    assert result.reused == {"alpha", "gamma", "gamma-data"}, result.output  # build-rpms; compile reuses alpha, gamma
    assert re.search(r"^    reused alpha, gamma \(unchanged\)$", result.output, re.M), result.output
    after = rpms(root)
    changed = {name for name in before if before[name] != after.get(name)}
    assert changed == {"x86_64/beta-1.0-1.x86_64.rpm"}, changed
    assert b"patched again" in modules["beta"].read_bytes()
    for name in ("alpha", "gamma"):
        assert modules[name].read_bytes() == module_bytes[name]
    names = {f.path for f in read_iso(root / "dist" / f"{LABEL}.iso").files}
    assert "Packages/beta-1.0-1.x86_64.rpm" in names


def test_changed_firmware_rebuilds_the_data_rpm_only(root: Path) -> None:
    before = rpms(root)
    (root / "packs" / LABEL / "gamma-data-1.0" / "lib" / "firmware" / "gamma" / "gamma.bin").write_bytes(b"v2\n")
    result = inv(root, "release-zip").ok()
    assert "compile" in result.skipped, result.output
    assert result.reused == {"alpha", "beta", "gamma"}, result.output
    after = rpms(root)
    assert {name for name in before if before[name] != after[name]} == {"noarch/gamma-data-1.0-1.noarch.rpm"}


def test_removed_driver_leaves_nothing_behind(root: Path) -> None:
    toml = root / "packs" / LABEL / "pack.toml"
    text = toml.read_text()
    start = text.index('[[drivers]]\nname = "alpha"')
    toml.write_text(text[:start] + text[text.index("[[drivers]]", start + 1) :])
    result = inv(root, "release-zip").ok()
    assert "compile" in result.skipped and "build-rpms" in result.skipped, result.output
    work = root / "build" / LABEL
    leftovers = sorted(p.relative_to(work).as_posix() for p in work.rglob("*alpha*"))
    assert leftovers == [], leftovers
    names = {f.path for f in read_iso(root / "dist" / f"{LABEL}.iso").files}
    assert not any("alpha" in name for name in names), names


def test_status_names_the_changed_patch(root: Path) -> None:
    clean = inv(root, "status").ok()
    assert "nothing changed since it last succeeded" in clean.output, clean.output
    assert "would run" not in clean.output, clean.output
    (root / "packs" / LABEL / "beta.patch").write_text(patch_text("beta", "hello", "patched for status"))
    result = inv(root, "status").ok()
    lines = result.output.splitlines()
    assert any(re.fullmatch(r"\s+compile\s+alpha: up to date", line) for line in lines), result.output
    assert re.search(r"^\s+beta: would run: patches\[0\] changed", result.output, re.M), result.output
    assert re.search(r"^\s+iso\s+would run: kmod-beta changed", result.output, re.M), result.output
    assert f"{LABEL}/beta.patch changed" in result.output, result.output  # the quick check's first reason


# --- the quick no-op check ----------------------------------------------------------------------


def test_noop_answers_from_the_quick_check_and_writes_nothing(root: Path) -> None:
    before = digests(root / "dist"), digests(root / "build" / LABEL)
    result = inv(root, "release-zip").ok()
    assert [m["step"] for m in QUICK.finditer(result.output)] == ["release-zip"], result.output
    assert (digests(root / "dist"), digests(root / "build" / LABEL)) == before


def test_quick_check_sees_a_new_rpm_in_a_carried_folder_outside_the_pack(root: Path) -> None:
    """[[rpms]] is a glob over a folder beside the pack: a new RPM there is a changed input."""
    carried = root / "carried"
    make_noarch_rpm(root / "rpm-build", carried, "acme-tool")
    toml = root / "packs" / LABEL / "pack.toml"
    toml.write_text(toml.read_text().replace("[[drivers]]", '[[rpms]]\npath = "../../carried/*.rpm"\n\n[[drivers]]', 1))
    inv(root, "release-zip").ok()
    assert QUICK.search(inv(root, "release-zip").ok().output)

    make_noarch_rpm(root / "rpm-build", carried, "acme-extra")
    result = inv(root, "release-zip").ok()
    assert not QUICK.search(result.output), result.output
    assert {"specs", "compile"} <= result.skipped, result.output
    names = {f.path for f in read_iso(root / "dist" / f"{LABEL}.iso").files}
    assert {"Packages/acme-tool-1.0-1.noarch.rpm", "Packages/acme-extra-1.0-1.noarch.rpm"} <= names, names


def make_noarch_rpm(work: Path, dest: Path, name: str) -> None:
    spec = work / f"{name}.spec"
    work.mkdir(parents=True, exist_ok=True)
    spec.write_text(
        f"Name: {name}\nVersion: 1.0\nRelease: 1\nSummary: tool\nLicense: GPL\nBuildArch: noarch\n"
        "%define _binary_payload w9.gzdio\n%description\ntool\n%files\n"
    )
    subprocess.run(
        [
            "rpmbuild",
            "-bb",
            "--nodeps",
            "--define",
            f"_topdir {work}",
            "--define",
            f"_rpmdir {dest}",
            "--define",
            "_build_name_fmt %{NAME}-%{VERSION}-%{RELEASE}.%{ARCH}.rpm",
            str(spec),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )


# --- runs at once -------------------------------------------------------------------------------


def start(root: Path, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}
    return subprocess.Popen(
        [str(INV), "-r", str(support.REPO), *args],
        cwd=root,
        env={**env, "LC_ALL": "C"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: a kill reaches make and rpmbuild too
    )


def test_two_runs_on_one_pack_take_turns(root: Path) -> None:
    """Both runs rebuild after a change; the second waits for the first, names it, and both end with a pack
    that verifies."""
    (root / "packs" / LABEL / "beta.patch").write_text(patch_text("beta", "hello", "concurrent"))
    first, second = start(root, "release-zip"), start(root, "release-zip")
    outputs = [p.communicate(timeout=600)[0] for p in (first, second)]
    assert [p.returncode for p in (first, second)] == [0, 0], outputs
    waited = [o for o in outputs if "waiting for another driverpack run on this pack (pid " in o]
    assert len(waited) == 1, outputs
    assert re.search(r"\(pid (\d+)\)", waited[0])
    inv(root, "verify", "--pack", LABEL).ok()


def test_different_packs_build_at_the_same_time(root: Path) -> None:
    other = root / "packs" / "other"
    shutil.copytree(root / "packs" / LABEL, other)
    toml = other / "pack.toml"
    toml.write_text(toml.read_text().replace(f'label = "{LABEL}"', 'label = "other"').replace(UUID, UUID[:-2] + "99"))
    with held_lock(root, "other"):
        result = inv(root, "release-zip", "--pack", LABEL, "--wait", "0")
    assert result.code == 0 and "waiting" not in result.output, result.output


@contextlib.contextmanager
def held_lock(root: Path, label: str) -> Iterator[int]:
    """Hold a pack's lock from this process, as a run building it would; yields this process's pid."""
    path = root / "build" / ".locks" / f"{label}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.write(f"{os.getpid()}\n")
        f.flush()
        yield os.getpid()


def test_bounded_wait_fails_naming_the_holder(root: Path) -> None:
    (root / "packs" / LABEL / "beta.patch").write_text(patch_text("beta", "hello", "never built"))
    with held_lock(root, LABEL) as pid:
        started = time.monotonic()
        result = inv(root, "release-zip", "--wait", "1")
        waited = time.monotonic() - started
    assert result.code == 5, result.output
    assert (
        f"error: pack '{LABEL}' is busy: another driverpack run (pid {pid}) still builds it after 1s" in result.output
    )
    assert "Traceback" not in result.output
    assert waited >= 1


def test_lock_of_a_killed_run_is_taken_over(root: Path) -> None:
    (root / "packs" / LABEL / "beta.patch").write_text(patch_text("beta", "hello", "killed"))
    victim = start(root, "release-zip")
    assert victim.stdout is not None
    for line in victim.stdout:  # killed while it holds the lock, in the middle of the compile
        if line.startswith("==> compile"):
            break
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait(timeout=60)
    victim.stdout.close()
    result = inv(root, "release-zip", "--wait", "0").ok()
    assert "waiting" not in result.output, result.output
