"""The gpg adapter with real gpg, rpmbuild, rpmsign and rpmkeys: keys, detached signatures, signed RPMs."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from driverpack.adapters.gpg import (
    TEST_KEY_CREATED,
    TEST_KEY_FILE,
    TEST_KEY_NAME,
    Passphrase,
    SigningKey,
    check_keyring_key,
    check_rpm_signatures,
    detach_sign,
    export_public_key,
    generate_test_key,
    load_key,
    release_key,
    sign_rpms,
    verify_detached,
)
from driverpack.errors import BuildError, PackError
from driverpack.run import run

pytestmark = pytest.mark.slow

EPOCH = 1700000000
TOOLS = ("gpg", "gpgconf", "rpmbuild", "rpmsign", "rpmkeys", "rpm")

SPEC = """\
Name: dptest
Version: 1.0
Release: 1
Summary: driverpack signing test package
License: MIT
BuildArch: noarch

%description
A package to sign.

%install
mkdir -p %{buildroot}/usr/share/dptest
echo hello > %{buildroot}/usr/share/dptest/hello

%files
/usr/share/dptest/hello
"""

UPDATE_XML = '<update name="demo" version="1.0">\n  <description>demo</description>\n</update>\n'


# --- helpers ---------------------------------------------------------------------------------


def make_key(
    dest: Path,
    uid: str,
    *,
    algo: str = "rsa1024",  # small keys: these only need to be refused or to differ, not to be strong
    passphrase: str = "",
    expire: str = "never",
    faked_time: int | None = None,
    public_only: bool = False,
) -> Path:
    """A key made directly with gpg in a throwaway short GNUPGHOME, exported to `dest`."""
    home = Path(tempfile.mkdtemp(prefix="dpt-"))
    # A low S2K count only makes signing with the protected key fast; driverpack keeps whatever the file has.
    (home / "gpg-agent.conf").write_text("s2k-count 65536\n")
    gpg = ["gpg", "--homedir", str(home), "--batch", "--no-tty", "--pinentry-mode", "loopback"]
    gpg += ["--passphrase", passphrase]
    try:
        clock = ["--faked-system-time", f"{faked_time}!"] if faked_time else []
        run([*gpg, *clock, "--quick-gen-key", uid, algo, "sign", expire])
        data = run([*gpg, "--armor", "--export" if public_only else "--export-secret-keys"]).stdout
    finally:
        run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], check=False)
        shutil.rmtree(home, ignore_errors=True)
    dest.write_bytes(data)
    return dest


def gpg_verify_status(public_key: Path, file: Path, signature: Path, base: Path) -> str:
    """`gpg --verify` in a fresh homedir knowing only `public_key`, independent of the adapter."""
    home = Path(tempfile.mkdtemp(prefix="verify-", dir=base))
    gpg = ["gpg", "--homedir", str(home), "--batch", "--no-tty", "--no-autostart"]
    run([*gpg, "--import", str(public_key)])
    proc = run([*gpg, "--status-fd", "1", "--verify", str(signature), str(file)])
    shutil.rmtree(home)
    return proc.stdout.decode()


def processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line contains `text` (zombies have none)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and text.encode() in (proc / "cmdline").read_bytes():
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def signed_copy(rpm: Path, dest_dir: Path) -> Path:
    dest_dir.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy2(rpm, dest_dir / rpm.name))


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def keys_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("repo") / "keys"


@pytest.fixture(scope="session")
def key_file(keys_dir: Path) -> Path:
    path, created_now = generate_test_key(keys_dir)
    assert created_now
    return path


@pytest.fixture(scope="session")
def key(key_file: Path) -> Iterator[SigningKey]:
    with load_key(key_file) as loaded:
        yield loaded


@pytest.fixture(scope="session")
def public_key(key: SigningKey, tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("pub") / "RPM-GPG-KEY-driverpack-test.pub"
    export_public_key(key, dest)
    return dest


@pytest.fixture(scope="session")
def other_keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Keys the adapter must refuse, and one valid key that is simply not the pack's."""
    d = tmp_path_factory.mktemp("other-keys")
    keys = {
        "other": make_key(d / "other.asc", "other key"),
        "protected": make_key(d / "protected.asc", "protected key", passphrase="secret"),
        "ecc": make_key(d / "ecc.asc", "ecc key", algo="ed25519"),
        "expired": make_key(d / "expired.asc", "expired key", expire="1d", faked_time=int(time.time()) - 10 * 86400),
        "public": make_key(d / "public.asc", "public only key", public_only=True),
    }
    keys["two"] = d / "two.asc"
    keys["two"].write_bytes(keys["other"].read_bytes() + keys["ecc"].read_bytes())
    return keys


@pytest.fixture
def private_tmp(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A short temporary directory of the test's own, where load_key makes its private homedir."""
    folder = Path(tempfile.mkdtemp(prefix="dpt-", dir="/tmp"))
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def unsigned_rpm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    top = tmp_path_factory.mktemp("rpmbuild").absolute()
    spec = top / "dptest.spec"
    spec.write_text(SPEC)
    run(["rpmbuild", "-bb", "--nodeps", "--define", f"_topdir {top}", str(spec)])
    (rpm,) = (top / "RPMS" / "noarch").glob("dptest-1.0-1.noarch.rpm")
    return rpm


# --- tests -----------------------------------------------------------------------------------


def test_tools_are_installed() -> None:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    assert not missing, f"missing tools (install gnupg and rpm): {missing}"


def test_test_key_is_generated_once(keys_dir: Path, key_file: Path) -> None:
    before = key_file.read_bytes()
    path, created_now = generate_test_key(keys_dir)
    assert (path, created_now) == (keys_dir / TEST_KEY_FILE, False)
    assert path.read_bytes() == before
    assert before.startswith(b"-----BEGIN PGP PRIVATE KEY BLOCK-----")
    assert path.stat().st_mode & 0o077 == 0
    assert (keys_dir / ".gitignore").read_text() == "*\n"
    assert sorted(p.name for p in keys_dir.iterdir()) == [".gitignore", TEST_KEY_FILE]


def test_load_key_reads_the_generated_key(key: SigningKey) -> None:
    assert re.fullmatch(r"[0-9A-F]{40}", key.fingerprint)
    assert key.created == TEST_KEY_CREATED
    assert key.uid == TEST_KEY_NAME
    assert (key.homedir / "pubring.kbx").exists()
    listing = run(["gpg", "--homedir", str(key.homedir), "--batch", "--with-colons", "--list-keys"])
    pub = next(line for line in listing.stdout.decode().splitlines() if line.startswith("pub:"))
    fields = pub.split(":")
    assert (fields[2], fields[3], fields[6]) == ("2048", "1", "")  # RSA 2048, no expiry


def test_public_key_is_a_plain_rsa_key(public_key: Path, tmp_path: Path) -> None:
    text = public_key.read_text()
    assert text.startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n")
    gpg = ["gpg", "--homedir", str(tmp_path), "--batch", "--no-autostart"]
    packets = run([*gpg, "--list-packets", str(public_key)]).stdout.decode()
    assert re.findall(r"^:(.+?) packet", packets, re.MULTILINE) == ["public key", "user ID", "signature"]
    assert f"version 4, algo 1, created {TEST_KEY_CREATED}, expires 0" in packets
    assert "digest algo 8," in packets  # SHA256 self-signature


def test_detached_signature_verifies_with_only_the_public_key(
    key: SigningKey, public_key: Path, tmp_path: Path
) -> None:
    update = tmp_path / "update.xml"
    update.write_text(UPDATE_XML)
    asc = detach_sign(key, update, epoch=EPOCH)
    assert asc == tmp_path / "update.xml.asc"
    text = asc.read_text()
    assert text.startswith("-----BEGIN PGP SIGNATURE-----\n\n")  # no Version: or Comment: lines
    assert sorted(p.name for p in tmp_path.iterdir()) == ["update.xml", "update.xml.asc"]
    status = gpg_verify_status(public_key, update, asc, tmp_path)
    # VALIDSIG <fingerprint> <date> <signature time> <expiry> <version> <reserved> <pk algo> <hash algo>
    validsig = re.search(r"^\[GNUPG:\] VALIDSIG (\S+) \S+ (\d+) \d+ 4 0 1 (\d+)", status, re.MULTILINE)
    assert validsig, status
    assert validsig.groups() == (key.fingerprint, str(EPOCH), "8")  # made at EPOCH, RSA, SHA256
    verify_detached(public_key, update, asc, tmp_path)


def test_signature_time_is_never_before_the_key(key: SigningKey, public_key: Path, tmp_path: Path) -> None:
    file = tmp_path / "repomd.xml"
    file.write_text("<repomd/>\n")
    asc = detach_sign(key, file, epoch=0)
    status = gpg_verify_status(public_key, file, asc, tmp_path)
    assert f" {key.fingerprint} 2000-01-01 {TEST_KEY_CREATED} " in status


def test_tampered_file_fails_verification(key: SigningKey, public_key: Path, tmp_path: Path) -> None:
    update = tmp_path / "update.xml"
    update.write_text(UPDATE_XML)
    asc = detach_sign(key, update, epoch=EPOCH)
    update.write_text(UPDATE_XML.replace("1.0", "1.1"))
    with pytest.raises(BuildError, match="changed after it was signed"):
        verify_detached(public_key, update, asc, tmp_path)


def test_signature_by_another_key_fails_verification(
    other_keys: dict[str, Path], public_key: Path, tmp_path: Path
) -> None:
    update = tmp_path / "update.xml"
    update.write_text(UPDATE_XML)
    with load_key(other_keys["other"]) as other:
        asc = detach_sign(other, update, epoch=EPOCH)
    with pytest.raises(BuildError, match="made by a key other than"):
        verify_detached(public_key, update, asc, tmp_path)


def test_signed_rpms_pass_the_check(key: SigningKey, public_key: Path, unsigned_rpm: Path, tmp_path: Path) -> None:
    rpm = signed_copy(unsigned_rpm, tmp_path / "Packages")
    sign_rpms(key, [rpm], epoch=EPOCH)
    check_rpm_signatures(public_key, [rpm], tmp_path / "check")
    # Both the header-only and the header+payload signature, as Citrix's packs have for rpm 4.11.
    (tmp_path / "rpmdb").mkdir()  # rpm -q opens a database even for -p; never the user's
    dbpath = ["--dbpath", str((tmp_path / "rpmdb").absolute())]
    query = run(["rpm", *dbpath, "-qp", "--qf", "%{RSAHEADER:pgpsig}\n%{SIGPGP:pgpsig}\n", str(rpm)])
    key_id = key.fingerprint[-16:].lower()
    expected = f"RSA/SHA256, Tue Nov 14 22:13:20 2023, Key ID {key_id}"
    assert query.stdout.decode().splitlines() == [expected, expected]


def test_unsigned_rpm_fails_the_check(key: SigningKey, public_key: Path, unsigned_rpm: Path, tmp_path: Path) -> None:
    signed = signed_copy(unsigned_rpm, tmp_path / "signed")
    sign_rpms(key, [signed], epoch=EPOCH)
    unsigned = signed_copy(unsigned_rpm, tmp_path / "unsigned")
    truncated = tmp_path / "truncated.rpm"
    truncated.write_bytes(signed.read_bytes()[:200])
    with pytest.raises(BuildError) as raised:
        check_rpm_signatures(public_key, [signed, unsigned, truncated], tmp_path / "check")
    message = raised.value.message
    assert "\n" not in message
    assert message.startswith("2 of 3 RPMs not signed by the key in ")
    assert message.count("dptest-1.0-1.noarch.rpm") == 1
    assert "dptest-1.0-1.noarch.rpm (unsigned)" in message
    assert "truncated.rpm (" in message


def test_rpm_signed_by_another_key_fails_the_check(
    other_keys: dict[str, Path], public_key: Path, unsigned_rpm: Path, tmp_path: Path
) -> None:
    rpm = signed_copy(unsigned_rpm, tmp_path / "Packages")
    with load_key(other_keys["other"]) as other:
        sign_rpms(other, [rpm], epoch=EPOCH)
    with pytest.raises(BuildError, match=r"dptest-1\.0-1\.noarch\.rpm \(Header V4 RSA/SHA256 .*NOKEY"):
        check_rpm_signatures(public_key, [rpm], tmp_path / "check")


def test_signing_is_reproducible(key_file: Path, unsigned_rpm: Path, tmp_path: Path) -> None:
    outputs = []
    for run_name in ("a", "b", "c"):
        out = tmp_path / run_name
        out.mkdir()
        (out / "update.xml").write_text(UPDATE_XML)
        rpm = signed_copy(unsigned_rpm, out)
        # A fresh import each time: nothing may depend on the homedir or the wall clock.
        with load_key(key_file) as key:
            epoch = EPOCH if run_name != "c" else EPOCH + 1
            asc = detach_sign(key, out / "update.xml", epoch=epoch)
            sign_rpms(key, [rpm], epoch=epoch)
        outputs.append((asc.read_bytes(), rpm.read_bytes()))
    assert outputs[0] == outputs[1]
    assert outputs[0][0] != outputs[2][0] and outputs[0][1] != outputs[2][1]


def test_secret_key_homedir_is_private_short_and_outside_the_work_dir(
    key_file: Path, public_key: Path, tmp_path: Path
) -> None:
    work_dir = tmp_path / ("w" * 60) / ("x" * 60)
    work_dir.mkdir(parents=True)
    with load_key(key_file) as key:
        # gpg-agent's sockets live in the homedir: it must stay short whatever the build folder is.
        assert len(str(key.homedir / "S.gpg-agent.browser")) < 108
        assert key.homedir.parent == Path(tempfile.gettempdir()) or key.homedir.parent == Path("/tmp")
        assert key.homedir.stat().st_mode & 0o777 == 0o700
        file = work_dir / "update.xml"
        file.write_text(UPDATE_XML)
        asc = detach_sign(key, file, epoch=EPOCH)
    verify_detached(public_key, file, asc, work_dir)  # a public key only: its scratch homedir may be long-pathed
    assert not key.homedir.exists()


def test_release_key_removes_the_homedir(key_file: Path, tmp_path: Path) -> None:
    key = load_key(key_file)
    agent = ["gpg-connect-agent", "--homedir", str(key.homedir), "--no-autostart", "GETINFO pid", "/bye"]
    assert run(agent).stdout.startswith(b"D ")  # the probe signature started an agent
    release_key(key)
    assert not key.homedir.exists()
    deadline = time.monotonic() + 10
    while processes_mentioning(str(key.homedir)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes_mentioning(str(key.homedir)) == []


@pytest.mark.parametrize(
    ("case", "message", "hint"),
    [
        ("protected", r"needs its passphrase and there is no terminal to ask for it: set DRIVERPACK_PASS", ""),
        ("ecc", r"is EdDSA \(ed25519\), not RSA", "RSA key"),
        ("expired", r"expired \d{4}-\d\d-\d\d", "quick-set-expire"),
        ("public", r"holds a public key only", "export-secret-keys"),
        ("two", r"holds 2 secret keys", "exactly one key"),
    ],
)
def test_unusable_keys_give_a_clear_error(
    other_keys: dict[str, Path], private_tmp: Path, case: str, message: str, hint: str
) -> None:
    with pytest.raises(PackError) as raised:
        load_key(other_keys[case])
    error = raised.value
    assert re.search(message, error.message), error.message
    assert str(other_keys[case]) in error.message
    assert "\n" not in error.message
    assert hint in error.hint
    assert list(private_tmp.iterdir()) == []  # the private homedir is gone again


def test_missing_or_unreadable_key_file(tmp_path: Path) -> None:
    with pytest.raises(PackError, match=r"keys/RPM-GPG-KEY-example: file not found"):
        load_key(tmp_path / "keys" / "RPM-GPG-KEY-example")
    (tmp_path / "dir.asc").mkdir()
    with pytest.raises(PackError, match="cannot read it"):
        load_key(tmp_path / "dir.asc")
    (tmp_path / "junk.asc").write_text("not a key\n")
    with pytest.raises(PackError, match="not an OpenPGP secret key export"):
        load_key(tmp_path / "junk.asc")


def test_binary_secret_key_export_is_accepted(key: SigningKey, tmp_path: Path) -> None:
    gpg = ["gpg", "--homedir", str(key.homedir), "--batch", "--pinentry-mode", "loopback", "--passphrase", ""]
    binary = run([*gpg, "--export-secret-keys", key.fingerprint]).stdout
    (tmp_path / "key.gpg").write_bytes(binary)
    with load_key(tmp_path / "key.gpg") as loaded:
        assert (loaded.fingerprint, loaded.created) == (key.fingerprint, key.created)


NO_PROMPT_SCRIPT = """
import os, sys
from pathlib import Path
os.close(0)
from driverpack.adapters.gpg import detach_sign, load_key, sign_rpms
from driverpack.errors import PackError
key_file, protected, rpm, work = map(Path, sys.argv[1:])
(work / "update.xml").write_text("x")
with load_key(key_file) as key:
    detach_sign(key, work / "update.xml", epoch=1700000000)
    sign_rpms(key, [rpm], epoch=1700000000)
try:
    load_key(protected)
except PackError as e:
    print("REFUSED:", e.message)
"""


def test_nothing_prompts_without_stdin_or_terminal(
    key_file: Path, other_keys: dict[str, Path], unsigned_rpm: Path, tmp_path: Path
) -> None:
    rpm = signed_copy(unsigned_rpm, tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "GPG_TTY")}
    # stdin closed and a new session (no controlling terminal): a prompt fails or hangs into the timeout.
    args = [str(key_file), str(other_keys["protected"]), str(rpm), str(tmp_path)]
    proc = subprocess.run(
        [sys.executable, "-c", NO_PROMPT_SCRIPT, *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        start_new_session=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    assert "REFUSED:" in proc.stdout.decode() and "passphrase" in proc.stdout.decode()
    assert (tmp_path / "update.xml.asc").exists()


def test_protected_key_file_signs_with_a_passphrase_from_the_environment(
    other_keys: dict[str, Path], unsigned_rpm: Path, tmp_path: Path, private_tmp: Path
) -> None:
    public = tmp_path / "RPM-GPG-KEY-protected"
    update = tmp_path / "update.xml"
    update.write_text(UPDATE_XML)
    rpm = signed_copy(unsigned_rpm, tmp_path / "Packages")
    with load_key(other_keys["protected"], Passphrase(b"secret", "the test")) as key:
        export_public_key(key, public)
        asc = detach_sign(key, update, epoch=EPOCH)
        sign_rpms(key, [rpm], epoch=EPOCH)  # rpmsign's gpg reads the passphrase from the same descriptor
        passphrase_fd = key.passphrase_fd
        os.fstat(passphrase_fd)
    with pytest.raises(OSError):
        os.fstat(passphrase_fd)  # closed with the key
    assert list(private_tmp.iterdir()) == []
    verify_detached(public, update, asc, tmp_path / "check")
    check_rpm_signatures(public, [rpm], tmp_path / "check")


@pytest.mark.parametrize(
    ("secret", "message"),
    [(b"wrong", "the passphrase from the test is wrong"), (b"", "the passphrase from the test is empty")],
)
def test_wrong_passphrase_for_a_key_file(
    other_keys: dict[str, Path], private_tmp: Path, secret: bytes, message: str
) -> None:
    with pytest.raises(PackError) as raised:
        load_key(other_keys["protected"], Passphrase(secret, "the test"))
    assert raised.value.message.endswith(message)
    assert "\n" not in raised.value.message
    assert list(private_tmp.iterdir()) == []


def test_keyring_key_problems_are_found_without_a_passphrase(other_keys: dict[str, Path]) -> None:
    home = Path(tempfile.mkdtemp(prefix="dpk-"))
    try:
        gpg = ["gpg", "--homedir", str(home), "--batch", "--no-tty", "--pinentry-mode", "loopback", "--passphrase", ""]
        run([*gpg, "--import", str(other_keys["public"]), str(other_keys["ecc"])])
        listing = run([*gpg, "--with-colons", "--list-keys"]).stdout.decode()
        public_only, ecc = re.findall(r"^fpr:+([0-9A-F]{40}):", listing, re.MULTILINE)
        cases = {
            public_only: "only the public key is there, not its secret key",
            ecc: "is EdDSA (ed25519), not RSA",
            "0" * 40: "no such key",
        }
        for fingerprint, problem in cases.items():
            with pytest.raises(PackError) as raised:
                check_keyring_key(fingerprint, home)
            assert raised.value.message.startswith(f"signing_fingerprint {fingerprint} in {home}: ")
            assert problem in raised.value.message
        with pytest.raises(PackError, match="no such GnuPG home folder"):
            check_keyring_key(public_only, home / "missing")
        assert not (home / "missing").exists()
    finally:
        run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], check=False)
        shutil.rmtree(home, ignore_errors=True)
