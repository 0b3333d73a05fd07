"""inv verify --iso without a pack, on the two reference ISOs Citrix's build-update made.

Their signing key (sahmed_pub.crt, named in update.xml) is not shipped with them, so what is
decided and tested: every other check runs and is reported, the signatures are reported as not
checked with the way to give a key (--key FILE), and the exit code is non-zero; with --key, a key
that did not sign them fails on every signature. The kernel and key lookups are unit-tested in
tests/unit/test_verify_lookup.py.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from support import SHARED, run_inv

from driverpack.adapters.gpg import export_public_key, generate_test_key, load_key

pytestmark = pytest.mark.slow

BUILD_ERROR = 4


def reference(name: str) -> Path:
    iso = SHARED / "reference" / f"build-update-{name}.iso"
    if not iso.is_file():
        pytest.fail(f"reference ISO not found: {iso}; the tests expect the shared/ folder beside the repository")
    return iso


def show(proc: subprocess.CompletedProcess[str]) -> str:
    return f"exit {proc.returncode}\n--- stdout\n{proc.stdout}--- stderr\n{proc.stderr}"


@pytest.mark.parametrize("name", ["with-control", "no-control"])
def test_without_its_key_every_other_check_runs_and_signatures_are_unverified(tmp_path: Path, name: str) -> None:
    iso = reference(name)
    proc = run_inv(tmp_path, "verify", "--iso", str(iso))
    assert proc.returncode == BUILD_ERROR, show(proc)
    assert "Traceback" not in proc.stderr
    report, error = proc.stderr.split("error: ", 1)
    assert f"==> verify [{iso.name}]" in report
    for passed in (
        "read back with pycdlib",
        "repodata: 2 packages listed with matching sha256" if name == "no-control" else "repodata: 3 packages",
        "1 payload RPMs checked",
        "update.xml: ReLVHDoISCSISR 7.1.5 e4b9fe85-ffe6-4cbf-9fcb-1d88ecf5b102",
    ):
        assert passed in report, show(proc)
    assert "signatures verified" not in report
    assert "signatures not checked: update.xml names the key sahmed_pub.crt, which is not beside the ISO" in error
    assert "--key FILE" in error
    assert not [line for line in proc.stderr.splitlines() if line.startswith("+ ")], show(proc)
    # Nothing is written where it was run.
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def other_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A public key that did not sign the reference packs."""
    work = tmp_path_factory.mktemp("other-key")
    secret, _ = generate_test_key(work / "keys")
    public = work / "RPM-GPG-KEY-other"
    with load_key(secret) as key:
        export_public_key(key, public)
    return public


def test_with_a_key_that_did_not_sign_it_every_signature_fails(tmp_path: Path, other_key: Path) -> None:
    proc = run_inv(tmp_path, "verify", "--iso", str(reference("with-control")), "--key", str(other_key), "-v")
    assert proc.returncode == BUILD_ERROR, show(proc)
    error = proc.stderr.split("error: ", 1)[1]
    assert "update.xml.asc does not verify" in error and "repomd.xml.asc does not verify" in error
    assert "it was made by a key other than the one in RPM-GPG-KEY-other" in error
    assert "3 of 3 RPMs not signed by the key" in error
    # -v shows the gpg and rpmkeys command lines.
    plus = [line for line in proc.stderr.splitlines() if line.startswith("+ ")]
    assert any("--verify" in line for line in plus) and any("rpmkeys" in line for line in plus), show(proc)


def test_a_missing_key_file_or_iso_is_one_clear_error(tmp_path: Path) -> None:
    proc = run_inv(tmp_path, "verify", "--iso", str(reference("no-control")), "--key", str(tmp_path / "nokey"))
    assert proc.returncode == BUILD_ERROR, show(proc)
    assert f"signatures not checked: --key {tmp_path / 'nokey'}: no such file" in proc.stderr
    missing = run_inv(tmp_path, "verify", "--iso", str(tmp_path / "none.iso"))
    assert missing.returncode == BUILD_ERROR, show(missing)
    assert "none.iso: no such ISO" in missing.stderr and "Traceback" not in missing.stderr
