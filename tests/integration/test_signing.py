"""Signing with a release key that keeps its passphrase: a key in a GnuPG keyring, or a protected key file.

One passphrase-protected RSA key is made in a short test GNUPGHOME whose gpg-agent allows preset
passphrases. A copy of packs/helloworld in one module root is then signed through the real CLI in
every way a vendor gives the passphrase: a preset gpg-agent, DRIVERPACK_PASSPHRASE_FILE,
DRIVERPACK_PASSPHRASE_FD, and pinentry on a terminal (a pseudo-terminal typed into). Each test sets
the pack's signing keys and removes the ISO, so it signs anew; the compiled modules are shared.

inv runs the way CI runs it: stdin /dev/null, its own session (no terminal), and a timeout, so a
prompt nobody can answer fails the test instead of hanging it. TMPDIR is a scratch folder of the
module, so the private GNUPGHOME a protected key file is imported into can be seen to go away.
After every build, each file under build/ and dist/ (logs, RPMs, the ISO, the zip and the archive
inside it) is searched for the key's secret material: its secret MPIs, the encrypted secret part
of the key file, armored or binary, and gpg-agent's key format.
"""

from __future__ import annotations

import base64
import gzip
import os
import re
import select
import shutil
import subprocess
import tempfile
import time
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import INV, REPO

pytestmark = pytest.mark.slow

EXAMPLE_PACK = REPO / "packs" / "helloworld"
LABEL = "helloworld"
PASSPHRASE = "correct horse battery staple"
KEY_UID = "ACME release key <release@example.com>"
VENDOR_KEY = "RPM-GPG-KEY-Example-Corp"  # the example pack's vendor is "Example Corp"
FILE_KEY = "RPM-GPG-KEY-acme"
TIMEOUT = 120  # seconds: far above a build here, far below a hung test
FAILURE_SECONDS = 30  # a refused passphrase is told at the start of the iso step, not after a wait
# Markers of secret keys in the forms gpg writes them: armored exports and gpg-agent's key files.
SECRET_MARKERS = (b"PRIVATE KEY BLOCK", b"protected-private-key", b"(11:private-key", b"shadowed-private-key")
# inv must not see the tester's own passphrase sources or display.
SCRUBBED_ENV = ("GPG_TTY", "DISPLAY", "WAYLAND_DISPLAY", "GNUPGHOME", "SOURCE_DATE_EPOCH", "TERM")


# --- the key -----------------------------------------------------------------------------------


@dataclass
class Keyring:
    """The test GNUPGHOME, its one protected key, and byte strings no output may contain."""

    home: Path
    fingerprint: str
    keygrip: str
    needles: list[bytes]

    def gpg(self, *args: str, input: bytes | None = None) -> bytes:
        argv = ["gpg", "--homedir", str(self.home), "--batch", "--no-tty", *args]
        return subprocess.run(argv, input=input, capture_output=True, check=True, timeout=TIMEOUT).stdout

    def agent(self, command: str) -> str:
        argv = ["gpg-connect-agent", "--homedir", str(self.home), command, "/bye"]
        return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=TIMEOUT).stdout

    def is_cached(self) -> bool:
        """Whether the agent holds the passphrase (KEYINFO's cached field)."""
        fields = self.agent(f"KEYINFO {self.keygrip}").split()
        return fields[6] == "1"

    def forget(self) -> None:
        self.agent(f"CLEAR_PASSPHRASE --mode=normal {self.keygrip}")
        assert not self.is_cached()

    def preset(self) -> None:
        libexec = subprocess.run(["gpgconf", "--list-dirs", "libexecdir"], capture_output=True, text=True, check=True)
        argv = [
            f"{libexec.stdout.strip()}/gpg-preset-passphrase",
            "--homedir",
            str(self.home),
            "--preset",
            "--passphrase",
            PASSPHRASE,
            self.keygrip,
        ]
        subprocess.run(argv, capture_output=True, check=True, timeout=TIMEOUT)
        assert self.is_cached()

    def export_protected(self, dest: Path) -> Path:
        """The armored secret key, protected by PASSPHRASE, as a vendor keeps it; its secret part becomes a needle."""
        loopback = ("--pinentry-mode", "loopback", "--passphrase", PASSPHRASE)
        dest.write_bytes(self.gpg(*loopback, "--armor", "--export-secret-keys", self.fingerprint))
        binary = self.gpg("--dearmor", input=dest.read_bytes())
        encrypted = secret_part(binary, self.gpg("--export", self.fingerprint))
        self.needles += chunks(encrypted[-200:])
        return dest


def packets(data: bytes) -> Iterator[tuple[int, bytes]]:
    """OpenPGP packets (tag, body) of a binary key export (RFC 4880 4.2; no partial lengths in keys)."""
    i = 0
    while i < len(data):
        ctb = data[i]
        if ctb & 0x40:
            tag, first = ctb & 0x3F, data[i + 1]
            if first < 192:
                length, i = first, i + 2
            elif first < 224:
                length, i = ((first - 192) << 8) + data[i + 2] + 192, i + 3
            else:
                length, i = int.from_bytes(data[i + 2 : i + 6]), i + 6
        else:
            size = (1, 2, 4)[ctb & 3]
            tag, length, i = (ctb >> 2) & 0x0F, int.from_bytes(data[i + 1 : i + 1 + size]), i + 1 + size
        yield tag, data[i : i + length]
        i += length


def secret_part(secret_export: bytes, public_export: bytes) -> bytes:
    """What a secret key packet (tag 5) holds beyond its public key packet (tag 6): the secret MPIs or their cipher."""
    secret = next(body for tag, body in packets(secret_export) if tag == 5)
    public = next(body for tag, body in packets(public_export) if tag == 6)
    assert secret.startswith(public)
    return secret[len(public) :]


def chunks(secret: bytes) -> list[bytes]:
    """Three 24-byte slices, as bytes and as base64 at each alignment (armor may hold them at any offset)."""
    slices = [secret[o : o + 24] for o in (len(secret) // 5, len(secret) // 2, len(secret) * 4 // 5)]
    return [*slices, *(base64.b64encode(s[k : k + 18]) for s in slices for k in range(3))]


def make_keyring() -> Keyring:
    """An RSA key made without a passphrase (so its secret MPIs can be read), then protected with one."""
    home = Path(tempfile.mkdtemp(prefix="dps-", dir="/tmp"))  # short: gpg-agent's sockets may live in it
    # A low S2K count only makes the test's signatures fast; it is not what is tested.
    (home / "gpg-agent.conf").write_text("allow-preset-passphrase\ns2k-count 65536\n")
    ring = Keyring(home, "", "", [])
    empty = ("--pinentry-mode", "loopback", "--passphrase", "")
    ring.gpg(*empty, "--quick-gen-key", KEY_UID, "rsa2048", "sign", "never")
    listing = ring.gpg("--with-colons", "--with-keygrip", "--list-secret-keys").decode()
    fingerprint = re.search(r"^fpr:+([0-9A-F]{40}):", listing, re.M)[1]  # type: ignore[index]
    keygrip = re.search(r"^grp:+([0-9A-F]{40}):", listing, re.M)[1]  # type: ignore[index]
    plain = secret_part(ring.gpg(*empty, "--export-secret-keys"), ring.gpg("--export"))
    assert len(plain) > 500 and plain[0] == 0  # s2k usage 0: the MPIs d, p, q, u in clear
    ring = Keyring(home, fingerprint, keygrip, chunks(plain[1:-2]))
    ring.gpg("--pinentry-mode", "loopback", "--passphrase", PASSPHRASE, "--passwd", fingerprint)
    ring.forget()
    with pytest.raises(subprocess.CalledProcessError):  # protected now: no signature without the passphrase
        ring.gpg("--pinentry-mode", "error", "--local-user", fingerprint, "--detach-sign", input=b"x")
    return ring


# --- the root and inv --------------------------------------------------------------------------


@dataclass(frozen=True)
class Root:
    path: Path
    scratch: Path  # inv's TMPDIR
    pack_text: str  # pack.toml as the example ships it

    @property
    def pack(self) -> Path:
        return self.path / "packs" / LABEL

    @property
    def dist(self) -> Path:
        return self.path / "dist"

    def sign_with(self, **keys: str) -> None:
        """Set the pack's signing keys (and only those) and remove the ISO, so the next iso signs anew."""
        lines = "".join(f'{key} = "{value}"\n' for key, value in keys.items())
        (self.pack / "pack.toml").write_text(self.pack_text.replace("[pack]\n", f"[pack]\n{lines}", 1))
        (self.dist / f"{LABEL}.iso").unlink(missing_ok=True)

    def inv(self, *args: str, env: Mapping[str, str] | None = None, pass_fds: tuple[int, ...] = ()) -> Run:
        """inv as CI runs it: no terminal, nothing on stdin, a timeout."""
        start = time.monotonic()
        proc = subprocess.run(
            [str(INV), "-r", str(REPO), *args],
            cwd=self.path,
            env=inv_env(self.scratch, env),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            start_new_session=True,
            pass_fds=pass_fds,
            timeout=TIMEOUT,
            check=False,
        )
        return Run(proc.returncode, proc.stderr, time.monotonic() - start)


@dataclass(frozen=True)
class Run:
    code: int
    stderr: str
    seconds: float

    def ok(self) -> Run:
        assert self.code == 0, self.stderr
        return self


def inv_env(scratch: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV and not k.startswith("DRIVERPACK_")}
    return {**env, "LC_ALL": "C", "NO_COLOR": "1", "TMPDIR": str(scratch), **(extra or {})}


def haystacks(root: Root) -> Iterator[tuple[str, bytes]]:
    """Every file under build/ and dist/, and what the zip and gzip files hold, as (name, bytes)."""
    for path in sorted(p for top in (root.path / "build", root.dist) for p in top.rglob("*") if p.is_file()):
        data = path.read_bytes()
        yield str(path), data
        if path.suffix == ".zip":
            with zipfile.ZipFile(path) as archive:
                for name in archive.namelist():
                    yield f"{path}!{name}", archive.read(name)
                    if name.endswith(".tar.gz"):
                        yield f"{path}!{name}!", gzip.decompress(archive.read(name))
        elif path.suffix == ".gz":  # the source archive, the repodata
            yield f"{path}!", gzip.decompress(data)


def assert_no_secret_material(root: Root, ring: Keyring) -> None:
    homes = [p for top in (root.path / "build", root.dist) for p in top.rglob("private-keys-v1.d")]
    assert homes == [], f"a GnuPG home with secret keys under build/ or dist/: {homes}"
    scanned = 0
    for name, data in haystacks(root):
        scanned += 1
        flat = re.sub(rb"\s", b"", data)  # armor breaks base64 into lines
        for marker in SECRET_MARKERS:
            assert marker not in data, f"{name} holds {marker!r}"
        for needle in ring.needles:
            assert needle not in data and needle not in flat, f"{name} holds secret key material"
    assert scanned > 40  # logs, specs, RPMs, repodata, the ISO and its checksums, the public key


def signer_of_update_rpm(root: Root) -> str:
    """The key id in the signed update RPM's header signature, as rpm reads it."""
    (rpm,) = (root.path / "build" / LABEL / "iso" / "Packages").glob(f"update-{LABEL}-*.rpm")
    dbpath = root.scratch.parent / f"{root.scratch.name}-rpmdb"
    dbpath.mkdir(exist_ok=True)  # rpm opens a database even for -qp: never the tester's
    query = ["rpm", "--dbpath", str(dbpath), "-qp", "--qf", "%{RSAHEADER:pgpsig}", str(rpm)]
    out = subprocess.run(query, capture_output=True, text=True, check=True, timeout=TIMEOUT).stdout
    shutil.rmtree(dbpath)
    return out.rsplit("Key ID ", 1)[-1].upper()


def assert_scratch_clean(root: Root) -> None:
    """The private GNUPGHOME (and every other temporary folder) is gone, and no process still uses it."""
    assert list(root.scratch.iterdir()) == []
    users = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and str(root.scratch).encode() in (proc / "cmdline").read_bytes():
                users.append(proc.name)
        except OSError:
            continue
    assert users == [], f"processes still running in {root.scratch}: {users}"


def failure_report(stderr: str) -> list[str]:
    """What inv says from its "error:" line to the end (the steps before it print their own lines)."""
    lines = stderr.rstrip("\n").splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("error: ")]
    assert len(starts) == 1, stderr
    return lines[starts[0] :]


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ring() -> Iterator[Keyring]:
    keyring = make_keyring()
    yield keyring
    subprocess.run(["gpgconf", "--homedir", str(keyring.home), "--kill", "gpg-agent"], check=False, timeout=30)
    shutil.rmtree(keyring.home, ignore_errors=True)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory, ring: Keyring) -> Iterator[Root]:
    base = tmp_path_factory.mktemp("signing-root")
    shutil.copytree(EXAMPLE_PACK, base / "packs" / LABEL, ignore=shutil.ignore_patterns("keys"))
    scratch = Path(tempfile.mkdtemp(prefix="dps-", dir="/tmp"))  # short, so driverpack puts its homedirs there
    made = Root(base, scratch, (base / "packs" / LABEL / "pack.toml").read_text())
    assert "[pack]\n" in made.pack_text and "signing_" not in made.pack_text.replace("# signing_", "")
    made.sign_with(signing_fingerprint=ring.fingerprint, gnupghome=str(ring.home))
    made.inv("build-rpms").ok()  # compiled once; each test signs
    yield made
    shutil.rmtree(scratch, ignore_errors=True)


@pytest.fixture
def passphrase_file(tmp_path: Path) -> Path:
    path = tmp_path / "passphrase"
    path.write_text(PASSPHRASE + "\n")
    path.chmod(0o600)
    return path


# --- tests -------------------------------------------------------------------------------------


def test_keyring_key_unlocked_in_a_preset_agent_signs_and_verifies(root: Root, ring: Keyring) -> None:
    ring.preset()
    root.sign_with(signing_fingerprint=ring.fingerprint, gnupghome=str(ring.home))
    build = root.inv("iso").ok()
    assert "==> iso [helloworld]" in build.stderr
    assert f"signatures verified with {VENDOR_KEY}: update.xml, repomd.xml, 3 RPMs" in build.stderr
    assert "warning: signed with a local test key" not in build.stderr
    public = ring.gpg("--export", ring.fingerprint)
    assert ring.gpg("--dearmor", input=(root.dist / VENDOR_KEY).read_bytes()) == public
    assert signer_of_update_rpm(root) == ring.fingerprint[-16:]
    assert ring.is_cached()  # the agent's own cache is the user's: left as it was
    assert_no_secret_material(root, ring)
    assert_scratch_clean(root)

    check = root.inv("verify", "--pack", LABEL).ok()
    assert f"signatures verified with {VENDOR_KEY}: update.xml, repomd.xml, 3 RPMs" in check.stderr
    ring.forget()


def test_keyring_key_with_a_passphrase_file(root: Root, ring: Keyring, passphrase_file: Path) -> None:
    ring.forget()
    root.sign_with(signing_fingerprint=ring.fingerprint)  # the keyring from GNUPGHOME this time
    env = {"GNUPGHOME": str(ring.home), "DRIVERPACK_PASSPHRASE_FILE": str(passphrase_file)}
    build = root.inv("iso", env=env).ok()
    assert f"signatures verified with {VENDOR_KEY}: update.xml, repomd.xml, 3 RPMs" in build.stderr
    assert signer_of_update_rpm(root) == ring.fingerprint[-16:]
    assert PASSPHRASE not in build.stderr
    assert not ring.is_cached()  # given for this build only: not left in the agent for the next user
    assert_no_secret_material(root, ring)
    assert_scratch_clean(root)


@pytest.mark.parametrize("source", ["file", "fd"])
def test_protected_key_file(root: Root, ring: Keyring, passphrase_file: Path, source: str) -> None:
    ring.forget()  # the key file is imported into a fresh GNUPGHOME: nothing comes from this agent
    (root.pack / "keys").mkdir(exist_ok=True)
    ring.export_protected(root.pack / "keys" / f"{FILE_KEY}.asc")
    root.sign_with(signing_key=f"keys/{FILE_KEY}.asc")
    if source == "file":
        build = root.inv("release-zip", env={"DRIVERPACK_PASSPHRASE_FILE": str(passphrase_file)}).ok()
        assert (root.dist / f"{LABEL}-1.0.0.zip").is_file()
    else:
        read_end, write_end = os.pipe()
        os.write(write_end, PASSPHRASE.encode() + b"\n")
        os.close(write_end)
        try:
            build = root.inv("iso", env={"DRIVERPACK_PASSPHRASE_FD": str(read_end)}, pass_fds=(read_end,)).ok()
        finally:
            os.close(read_end)
    assert f"signatures verified with {FILE_KEY}: update.xml, repomd.xml, 3 RPMs" in build.stderr
    assert signer_of_update_rpm(root) == ring.fingerprint[-16:]
    assert_no_secret_material(root, ring)
    assert_scratch_clean(root)


@pytest.mark.parametrize("route", ["keyring", "key file"])
@pytest.mark.parametrize("given", ["wrong", "missing"])
def test_wrong_or_missing_passphrase_fails_with_one_clear_line(
    root: Root, ring: Keyring, tmp_path: Path, route: str, given: str
) -> None:
    ring.forget()
    if route == "keyring":
        root.sign_with(signing_fingerprint=ring.fingerprint, gnupghome=str(ring.home))
    else:
        (root.pack / "keys").mkdir(exist_ok=True)
        ring.export_protected(root.pack / "keys" / f"{FILE_KEY}.asc")
        root.sign_with(signing_key=f"keys/{FILE_KEY}.asc")
    env = {}
    if given == "wrong":
        (tmp_path / "wrong").write_text("not the passphrase\n")
        env["DRIVERPACK_PASSPHRASE_FILE"] = str(tmp_path / "wrong")
    failed = root.inv("iso", env=env)
    assert failed.code == 2, failed.stderr
    assert "Traceback" not in failed.stderr
    report = failure_report(failed.stderr)
    assert len(report) == 1, report  # one line: what failed, which key, how to give the passphrase
    line = report[0]
    if given == "wrong":
        assert f"the passphrase from DRIVERPACK_PASSPHRASE_FILE ({tmp_path / 'wrong'}) is wrong" in line
    else:
        assert "needs its passphrase and there is no terminal to ask for it" in line
        assert "DRIVERPACK_PASSPHRASE_FILE" in line and "DRIVERPACK_PASSPHRASE_FD" in line
    assert ring.fingerprint in line
    assert failed.seconds < FAILURE_SECONDS
    assert not (root.dist / f"{LABEL}.iso").exists()
    assert not ring.is_cached()
    assert_scratch_clean(root)


def test_pinentry_asks_once_on_the_terminal(root: Root, ring: Keyring) -> None:
    """On a terminal, gpg-agent's pinentry asks for the passphrase once; every signature after it uses the cache."""
    ring.forget()
    root.sign_with(signing_fingerprint=ring.fingerprint, gnupghome=str(ring.home))
    controller, terminal = os.openpty()
    stderr = root.scratch.parent / f"{root.scratch.name}-stderr"
    try:
        with stderr.open("w") as err:
            proc = subprocess.Popen(
                [str(INV), "-r", str(REPO), "iso"],
                cwd=root.path,
                env=inv_env(root.scratch, {"TERM": "xterm"}),
                stdin=terminal,  # the terminal driverpack runs on: pinentry draws and reads there
                stdout=subprocess.DEVNULL,
                stderr=err,
                start_new_session=True,
            )
        screen, prompts = b"", 0
        deadline = time.monotonic() + TIMEOUT
        while proc.poll() is None and time.monotonic() < deadline:
            if select.select([controller], [], [], 0.2)[0]:
                screen += os.read(controller, 65536)
            if screen.count(b"Passphrase:") > prompts:
                prompts += 1
                time.sleep(0.3)  # pinentry switches the terminal to raw mode after drawing
                os.write(controller, PASSPHRASE.encode() + b"\r")
        if proc.poll() is None:
            proc.kill()
            pytest.fail(f"inv still running after {TIMEOUT}s; the terminal showed: {screen[-2000:]!r}")
        text = stderr.read_text()
    finally:
        os.close(controller)
        os.close(terminal)
        stderr.unlink(missing_ok=True)
    assert proc.returncode == 0, text
    assert prompts == 1
    assert f"signatures verified with {VENDOR_KEY}: update.xml, repomd.xml, 3 RPMs" in text
    assert ring.is_cached()  # the user typed it into their agent: its cache, its rules
    ring.forget()
    assert_no_secret_material(root, ring)
