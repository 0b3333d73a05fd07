"""The one adapter for GnuPG 2 and rpmsign: one RSA key signs every RPM and the pack's two .asc files.

What CH 8.2 checks: xapi verifies `update.xml.asc` and `repodata/repomd.xml.asc` with gpg 1.4/2.0,
yum verifies each RPM with rpm 4.11. So: an RSA primary key (never a signing subkey), SHA256
digests (understood by both, and by current rpm/gpg which refuse SHA1), v4 signature packets, and
RPMs carrying both the header-only (RSAHEADER) and the header+payload (SIGPGP) signature, as in
Citrix's own packs; rpmsign >= 4.17 writes the latter only with `--rpmv3`.

Reproducible: RSA PKCS#1 v1.5 signatures are deterministic, so pinning the signature creation
time (`--faked-system-time <t>!`) makes them byte-identical. gpg refuses to sign before the
key's creation, hence t = max(SOURCE_DATE_EPOCH, key creation); the generated test key is dated
2000-01-01 so that t is SOURCE_DATE_EPOCH in practice.

Where secret keys live: a key file (load_key) is imported into a private GNUPGHOME made in a short
temporary directory outside the checkout (mode 0700, removed with its agent by release_key), so no
secret material is ever under build/ or dist/, not even for a moment. A key in the user's keyring
(keyring_key) stays there and signs through the user's gpg-agent, which also makes smartcards work:
nothing is imported, only the public key is exported.

Passphrases never come from the pack file. A Passphrase says where they come from: a file or a
descriptor named in the environment (read once, handed to each gpg call as /dev/fd/N of an in-memory
file, with --pinentry-mode loopback), else gpg-agent: its cache, or pinentry on the terminal
driverpack runs on. Without either, gpg runs with --pinentry-mode error: the agent never starts a
pinentry, so nothing waits for an answer that cannot come. Every call has --batch --no-tty, and
stdin is /dev/null or driverpack's own input.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import NoReturn

from driverpack.errors import BuildError, PackError, ToolError
from driverpack.run import run, which

TEST_KEY_FILE = "RPM-GPG-KEY-driverpack-test"
TEST_KEY_NAME = "driverpack local test key"
# 2000-01-01T00:00:00Z: earlier than any SOURCE_DATE_EPOCH a pack is built with.
TEST_KEY_CREATED = 946684800
TEST_KEY_BITS = 2048
DIGEST_ALGO = "SHA256"

PASSPHRASE_FILE_ENV = "DRIVERPACK_PASSPHRASE_FILE"
PASSPHRASE_FD_ENV = "DRIVERPACK_PASSPHRASE_FD"
PASSPHRASE_HOW = (
    f"set {PASSPHRASE_FILE_ENV} to a file holding it (or {PASSPHRASE_FD_ENV} to an open descriptor), "
    "or run on a terminal to be asked"
)
# Only a key in the user's keyring can use what their gpg-agent already holds.
_AGENT_HOW = ", or have gpg-agent cache it first (sign anything with the key on a terminal)"

# gpg-agent puts its sockets in the homedir and a socket path must fit sockaddr_un.sun_path
# (108 bytes with the NUL): the longest name is "S.gpg-agent.browser", and mkdtemp adds
# "/gpg-XXXXXXXX". Above this length the homedir goes to a short temporary directory instead.
_MAX_HOMEDIR_LEN = 80
_RSA_ALGOS = {1, 3}  # RSA, RSA sign-only
_ALGO_NAMES = {16: "Elgamal", 17: "DSA", 18: "ECDH", 19: "ECDSA", 22: "EdDSA"}
# libgpg-error codes (low 16 bits of a FAILURE status).
_BAD_PASSPHRASE, _NO_PIN_ENTRY, _CANCELED, _NO_PASSPHRASE = 11, 85, 99, 177
_MIN_GPG = (2, 1)  # --pinentry-mode loopback, Creation-Date, socket handling
# A whole build's signing with one passphrase entry: the private agent dies with the build anyway.
_PRIVATE_AGENT_CONF = "allow-loopback-pinentry\ndefault-cache-ttl 86400\nmax-cache-ttl 86400\n"

_EXPORT_HINT = "export exactly one key with 'gpg --armor --export-secret-keys <fingerprint> > <file>'"


@dataclass(frozen=True)
class Passphrase:
    """Where a protected key's passphrase comes from: the environment, else gpg-agent (pinentry on `terminal`)."""

    secret: bytes | None = field(default=None, repr=False)  # the first line of the environment's source
    origin: str = ""  # e.g. "DRIVERPACK_PASSPHRASE_FILE (/run/secrets/pass)", for messages
    terminal: str = ""  # GPG_TTY for pinentry; "" means gpg-agent must never ask


@dataclass(frozen=True)
class SigningKey:
    """A secret key gpg can sign with; release_key() (or `with`) cleans up after it."""

    homedir: Path  # the GNUPGHOME holding the secret key
    fingerprint: str
    created: int  # key creation time, epoch seconds
    uid: str
    is_private_home: bool = True  # made by load_key: removed with its agent; else the user's keyring
    passphrase: Passphrase = Passphrase()
    passphrase_fd: int = -1  # an in-memory file holding passphrase.secret, for /dev/fd/N
    uncache_keygrip: str = ""  # the user's agent caches this key's passphrase only because of us

    def __enter__(self) -> SigningKey:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        release_key(self)


def signing_time(key: SigningKey, epoch: int) -> int:
    """The creation time written into signatures: gpg cannot sign before the key existed."""
    return max(epoch, key.created)


def generate_test_key(keys_dir: Path, name: str = TEST_KEY_NAME) -> tuple[Path, bool]:
    """Create keys_dir/RPM-GPG-KEY-driverpack-test (armored secret key export) once; return (path, created_now)."""
    dest = keys_dir / TEST_KEY_FILE
    if dest.exists() or dest.is_symlink():
        return dest, False
    if not keys_dir.exists():
        keys_dir.mkdir(parents=True)
        # The folder holds secret keys: keep it out of git wherever it is.
        (keys_dir / ".gitignore").write_text("*\n")
    params = (
        "%no-protection\n"
        f"Key-Type: RSA\nKey-Length: {TEST_KEY_BITS}\nKey-Usage: sign\n"
        f"Name-Real: {name}\nExpire-Date: 0\n"
        f"Creation-Date: seconds={TEST_KEY_CREATED}\n"
        "%commit\n"
    )
    home = _make_homedir(None)
    # The export goes straight from gpg into a 0600 file beside dest: never through memory or a step's log.
    fd, tmp_name = tempfile.mkstemp(prefix=f".{TEST_KEY_FILE}.", dir=keys_dir)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        proc = run(
            [
                *_gpg(home),
                "--status-fd",
                "1",
                "--faked-system-time",
                f"{TEST_KEY_CREATED}!",
                "--cert-digest-algo",  # gpg 2.2 would pick SHA512 for the self-signature
                DIGEST_ALGO,
                "--gen-key",
            ],
            input=params.encode(),
            env=_env(home),
        )
        fingerprint = _status_field(proc.stdout, "KEY_CREATED", 1)
        if not fingerprint:
            raise ToolError(f"gpg generated no key in {home}")
        run(
            [*_gpg(home), *_LOOPBACK, "--armor", "--export-secret-keys", fingerprint],
            env=_env(home),
            quiet=True,
            stdout_to=tmp,
        )
        with tmp.open("rb") as f:
            if b"PRIVATE KEY BLOCK" not in f.read(64):
                raise ToolError(f"gpg exported no secret key for the new test key {fingerprint}")
            os.fsync(f.fileno())
        # link() fails if another build created the key meanwhile: theirs wins, nothing is replaced.
        os.link(tmp, dest)
    except FileExistsError:
        return dest, False
    finally:
        tmp.unlink(missing_ok=True)
        _stop_agent(home)
        shutil.rmtree(home, ignore_errors=True)
    return dest, True


def local_key_warning(public_key: Path) -> str:
    """What to tell the user when a pack is signed with the local test key."""
    return (
        f"signed with a local test key, not a release key: before installing, copy {public_key.name} "
        f"to the host and run '/opt/xensource/debug/import-update-key {public_key.name}'; "
        "set signing_key or signing_fingerprint in the pack file to sign with your own key"
    )


def terminal() -> str:
    """The terminal pinentry may ask on (GPG_TTY): the one on driverpack's stdin, else "" (nobody to ask)."""
    if not os.isatty(0):
        return ""
    return os.environ.get("GPG_TTY") or os.ttyname(0)


def passphrase_problems(env: Mapping[str, str]) -> list[str]:
    """What is wrong with the environment's passphrase source, found without reading it (a descriptor reads once)."""
    file, fd = env.get(PASSPHRASE_FILE_ENV, ""), env.get(PASSPHRASE_FD_ENV, "")
    if file and fd:
        return [f"{PASSPHRASE_FILE_ENV} and {PASSPHRASE_FD_ENV} are both set: unset one (one passphrase source)"]
    if file:
        path = Path(file).expanduser()
        if not path.exists():
            return [f"{PASSPHRASE_FILE_ENV}={file}: file not found"]
        if path.is_dir() or not os.access(path, os.R_OK):
            return [f"{PASSPHRASE_FILE_ENV}={file}: not a readable file"]
    if fd:
        if not fd.isdigit():
            return [f"{PASSPHRASE_FD_ENV}={fd}: not a file descriptor number"]
        try:
            os.fstat(int(fd))
        except OSError:
            return [f"{PASSPHRASE_FD_ENV}={fd}: no such open file descriptor in this process"]
    return []


def passphrase_from(env: Mapping[str, str], *, terminal: str = "") -> Passphrase:
    """The passphrase source the environment names (its first line, read once), else gpg-agent on `terminal`."""
    problems = passphrase_problems(env)
    if problems:
        raise PackError(problems)
    file, fd = env.get(PASSPHRASE_FILE_ENV, ""), env.get(PASSPHRASE_FD_ENV, "")
    if file:
        try:
            secret = Path(file).expanduser().read_bytes()
        except OSError as e:
            raise PackError([f"{PASSPHRASE_FILE_ENV}={file}: cannot read it: {e.strerror or e}"]) from None
        return Passphrase(_first_line(secret), f"{PASSPHRASE_FILE_ENV} ({file})", terminal)
    if fd:
        return Passphrase(_read_fd_once(int(fd)), f"{PASSPHRASE_FD_ENV} ({fd})", terminal)
    return Passphrase(terminal=terminal)


# What a pack writes into dist/ beside its public key: a key named like one would overwrite it.
DIST_OUTPUT_SUFFIXES = (".iso", ".md5", ".zip")


def public_key_name(secret_key_file: Path) -> str:
    """The name the host knows the key by (update.xml's key attribute, the file in dist/): the key file's name."""
    name = secret_key_file.name
    for suffix in (".asc", ".gpg", ".key", ".sec", ".secret"):
        name = name.removesuffix(suffix)
    return name


def load_key(secret_key_file: Path, passphrase: Passphrase = Passphrase()) -> SigningKey:
    """Import a secret key file into a private homedir outside the checkout; one RSA signing-capable key expected."""
    where = f"signing_key {secret_key_file}"
    try:
        data = secret_key_file.read_bytes()
    except FileNotFoundError:
        raise PackError([f"{where}: file not found"], _EXPORT_HINT) from None
    except OSError as e:
        raise PackError([f"{where}: cannot read it: {e.strerror or e}"]) from None
    if not data.strip():
        raise PackError([f"{where}: the file is empty"], _EXPORT_HINT)
    home = _make_homedir(None)
    key = None
    try:
        _keep_s2k_count(secret_key_file, home)
        key = _with_passphrase(_import_secret_key(data, home, where), passphrase)
        _probe_sign(key, f"{where} (key {key.fingerprint})")
    except BaseException:
        if key is not None:
            release_key(key)
        else:
            _stop_agent(home)
            shutil.rmtree(home, ignore_errors=True)
        raise
    return key


def keyring_homedir(gnupghome: Path | None) -> Path:
    """The keyring to sign from: the pack's gnupghome, else $GNUPGHOME or gpg's default (~/.gnupg)."""
    if gnupghome is not None:
        return gnupghome.absolute()
    found = run([which("gpgconf"), "--list-dirs", "homedir"], quiet=True).stdout.decode(errors="replace").strip()
    return Path(_unescape_percent(found))


def check_keyring_key(fingerprint: str, homedir: Path) -> None:
    """PackError saying why the key `fingerprint` in `homedir` cannot sign a pack; no passphrase needed to find out."""
    _keyring_listing(fingerprint, homedir)


def keyring_key(fingerprint: str, homedir: Path, passphrase: Passphrase = Passphrase()) -> SigningKey:
    """The key `fingerprint` where it is, in the keyring `homedir`: nothing imported; unlocked (asked for) once now."""
    where = f"signing_fingerprint {fingerprint} in {homedir}"
    key, keygrip = _keyring_listing(fingerprint, homedir)
    if passphrase.secret is not None and not _agent_has_passphrase(homedir, keygrip):
        # The environment's passphrase is for this build only, not for whoever uses the agent next.
        key = replace(key, uncache_keygrip=keygrip)
    key = _with_passphrase(key, passphrase)
    try:
        _probe_sign(key, where)
    except BaseException:
        release_key(key)
        raise
    return key


def release_key(key: SigningKey) -> None:
    """Forget what this build gave gpg-agent; for a private homedir stop its agent and delete it."""
    if key.passphrase_fd >= 0:
        os.close(key.passphrase_fd)
    if key.uncache_keygrip:
        _agent_command(key.homedir, f"CLEAR_PASSPHRASE --mode=normal {key.uncache_keygrip}")
    if key.is_private_home:
        _stop_agent(key.homedir)
        shutil.rmtree(key.homedir, ignore_errors=True)


def public_key_export(homedir: Path, fingerprint: str) -> bytes:
    """The armored public key (export-minimal): what the host imports, and what identifies a keyring key."""
    proc = run(
        [
            *_gpg(homedir),
            "--no-autostart",
            "--armor",
            "--export-options",
            "export-minimal",
            "--export",
            fingerprint,
        ],
        env=_env(homedir),
    )
    return proc.stdout


def export_public_key(key: SigningKey, dest: Path) -> None:
    """Write the armored public key, the file the host imports."""
    data = public_key_export(key.homedir, key.fingerprint)
    if b"PUBLIC KEY BLOCK" not in data:
        raise ToolError(f"gpg exported no public key for {key.fingerprint} from {key.homedir}")
    if dest.is_file() and dest.read_bytes() == data:
        return  # packs signed with the same key share the file: rewriting it would make the others rebuild
    _write_atomic(dest, data)


def detach_sign(key: SigningKey, file: Path, *, epoch: int) -> Path:
    """Write file + ".asc", an armored detached signature made at signing_time(); return its path."""
    asc = file.with_name(file.name + ".asc")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{asc.name}.", dir=file.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        run(
            [
                *_gpg(key.homedir),
                *_pinentry(key),
                "--faked-system-time",
                f"{signing_time(key, epoch)}!",
                "--digest-algo",
                DIGEST_ALGO,
                "--local-user",
                f"{key.fingerprint}!",  # "!": the primary key itself, never a signing subkey
                "--armor",
                "--no-emit-version",
                "--no-comments",
                "--yes",
                "--output",
                tmp,
                "--detach-sign",
                "--",
                file,
            ],
            env=_signing_env(key),
            pass_fds=_passed_fds(key),
        )
        tmp.chmod(0o644)
        os.replace(tmp, asc)
    finally:
        tmp.unlink(missing_ok=True)
    return asc


def verify_detached(public_key_file: Path, file: Path, signature: Path, work_dir: Path) -> None:
    """Check `signature` over `file` with only `public_key_file` known, as the host does; BuildError if bad."""
    for path in (file, signature):
        if not path.is_file():
            raise BuildError(f"{path}: file not found, cannot verify the signature")
    home = _make_homedir(work_dir)
    try:
        _import_public_key(public_key_file, home)
        proc = run(
            [
                *_gpg(home),
                "--no-autostart",
                "--trust-model",
                "always",
                "--status-fd",
                "1",
                "--verify",
                "--",
                signature,
                file,
            ],
            env=_env(home),
            check=False,
        )
    finally:
        shutil.rmtree(home, ignore_errors=True)
    status = _status_keywords(proc.stdout)
    if proc.returncode == 0 and "VALIDSIG" in status and "GOODSIG" in status:
        return
    if "BADSIG" in status:
        reason = "the file changed after it was signed"
    elif "NO_PUBKEY" in status:
        reason = f"it was made by a key other than the one in {public_key_file.name}"
    elif "NODATA" in status or not status:
        reason = "it is not an OpenPGP signature"
    else:
        reason = _last_line(proc.stderr) or f"gpg exit code {proc.returncode}"
    raise BuildError(f"{signature} does not verify {file}: {reason}")


def sign_rpms(key: SigningKey, rpms: Sequence[Path], *, epoch: int) -> None:
    """Sign RPMs in place (rpmsign --addsign): header-only and header+payload RSA/SHA256 signatures."""
    if not rpms:
        return
    gpg = which("gpg")
    _check_gpg_version(gpg)
    # rpmsign's default command shape, with our homedir, passphrase source and a pinned clock. rpmsign
    # runs it once per signature, each gpg inheriting the passphrase descriptor from rpmsign.
    # No --passphrase '': rpm splits the command with popt, which drops empty arguments.
    sign_cmd = (
        "%{shescape:%{__gpg}} gpg --no-verbose --no-armor --no-secmem-warning"
        " --batch --no-tty --no-auto-check-trustdb --homedir %{shescape:%{_driverpack_gpg_home}}"
        " %{_driverpack_pinentry}"
        " --faked-system-time %{_driverpack_sign_time}!"
        " %{?_gpg_digest_algo:--digest-algo=%{_gpg_digest_algo}}"
        " %{?_gpg_name:-u %{shescape:%{_gpg_name}}}"
        " -sbo %{shescape:%{?__signature_filename}}"
        " %{?__plaintext_filename:-- %{shescape:%{__plaintext_filename}}}"
    )
    defines = {
        "__gpg": gpg,
        "_gpg_name": f"{key.fingerprint}!",
        "_gpg_digest_algo": DIGEST_ALGO.lower(),
        "_driverpack_gpg_home": str(key.homedir),
        "_driverpack_pinentry": " ".join(_pinentry(key)),  # words without quotes or macros
        "_driverpack_sign_time": str(signing_time(key, epoch)),
    }
    argv: list[str | os.PathLike[str]] = [which("rpmsign"), "--addsign", *_rpmsign_v3_flag()]
    for name, value in defines.items():
        argv += ["--define", f"{name} {_rpm_macro_escape(value)}"]
    argv += ["--define", f"__gpg_sign_cmd {sign_cmd}", *rpms]
    run(argv, env=_signing_env(key), pass_fds=_passed_fds(key))


def check_rpm_signatures(public_key_file: Path, rpms: Sequence[Path], work_dir: Path, *, digests: bool = True) -> None:
    """Check every RPM carries a good signature by the key in `public_key_file`; BuildError naming the others.

    digests=False checks the signatures only (rpmkeys --nodigest): the header+payload signature still
    covers every byte, and callers that compare each file's sha256 with the repodata skip a second pass.
    """
    if not rpms:
        return
    rpmkeys = which("rpmkeys")
    work_dir.mkdir(parents=True, exist_ok=True)
    dbpath = Path(tempfile.mkdtemp(prefix="rpmdb-", dir=work_dir)).absolute()
    try:
        run([rpmkeys, "--dbpath", dbpath, "--import", public_key_file])
        flags = [] if digests else ["--nodigest"]
        proc = run([rpmkeys, "--dbpath", dbpath, "-Kv", *flags, *rpms], check=False)
    finally:
        shutil.rmtree(dbpath, ignore_errors=True)
    results = _parse_rpmkeys_verbose(proc.stdout.decode(errors="replace"))
    errors = proc.stderr.decode(errors="replace")
    problems = []
    for rpm in rpms:
        lines = results.get(os.fspath(rpm))
        if not lines:  # not listed, or listed with no checks at all: not (readable as) an RPM
            said = [line.split(f"{os.fspath(rpm)}: ", 1)[-1] for line in errors.splitlines() if str(rpm) in line]
            problems.append(f"{rpm.name} ({said[-1].strip() if said else 'not a readable RPM'})")
            continue
        bad = [line for line in lines if not line.endswith(": OK")]
        if bad:
            problems.append(f"{rpm.name} ({'; '.join(bad)})")
        elif not any(line.startswith("Header ") and "Signature" in line for line in lines):
            problems.append(f"{rpm.name} (unsigned)")
    if problems:
        raise BuildError(
            f"{len(problems)} of {len(rpms)} RPMs not signed by the key in {public_key_file}: " + ", ".join(problems)
        )


# --- internals -------------------------------------------------------------------------------

_LOOPBACK = ("--pinentry-mode", "loopback", "--passphrase", "")


def _gpg(home: Path) -> list[str]:
    gpg = which("gpg")
    _check_gpg_version(gpg)
    # --no-auto-check-trustdb: signing needs no trust, and a user's keyring is not ours to write.
    return [gpg, "--homedir", str(home), "--batch", "--no-tty", "--no-greeting", "--no-auto-check-trustdb"]


def _env(home: Path) -> dict[str, str]:
    return {"GNUPGHOME": str(home)}


def _pinentry(key: SigningKey) -> list[str]:
    """How gpg-agent gets the passphrase: from our descriptor, from pinentry on the terminal, or not at all."""
    if key.passphrase_fd >= 0:
        # A path, not --passphrase-fd: each gpg opens the in-memory file afresh and reads it from the start.
        return ["--pinentry-mode", "loopback", "--passphrase-file", f"/dev/fd/{key.passphrase_fd}"]
    return ["--pinentry-mode", "ask" if key.passphrase.terminal else "error"]


def _signing_env(key: SigningKey) -> dict[str, str]:
    env = _env(key.homedir)
    if key.passphrase.terminal and key.passphrase_fd < 0:
        env["GPG_TTY"] = key.passphrase.terminal  # where the agent's pinentry asks
    return env


def _passed_fds(key: SigningKey) -> tuple[int, ...]:
    return (key.passphrase_fd,) if key.passphrase_fd >= 0 else ()


def _with_passphrase(key: SigningKey, passphrase: Passphrase) -> SigningKey:
    """`key` with its passphrase source; an environment passphrase goes into an in-memory file, never to disk."""
    if passphrase.secret is None:
        return replace(key, passphrase=passphrase)
    fd = os.memfd_create("driverpack-passphrase", os.MFD_CLOEXEC)
    os.write(fd, passphrase.secret + b"\n")
    return replace(key, passphrase=passphrase, passphrase_fd=fd)


def _first_line(data: bytes) -> bytes:
    """What gpg's --passphrase-file takes: the first line, without its line ending."""
    return data.split(b"\n", 1)[0].removesuffix(b"\r")


_fd_secrets: dict[tuple[int, int, int], bytes] = {}


def _read_fd_once(fd: int) -> bytes:
    """The first line of an inherited descriptor, read once per process (several packs share it)."""
    info = os.fstat(fd)
    ident = (fd, info.st_dev, info.st_ino)
    if ident not in _fd_secrets:
        data = b""
        while b"\n" not in data:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            data += chunk
        _fd_secrets[ident] = _first_line(data)
    return _fd_secrets[ident]


def _unescape_percent(text: str) -> str:
    """gpgconf escapes '%' and ':' in paths as %25 and %3a."""
    return re.sub(r"%([0-9a-fA-F]{2})", lambda m: chr(int(m[1], 16)), text)


def _agent_command(home: Path, command: str) -> str:
    """One command to the agent of `home`, if one runs (never starts one); its output."""
    proc = run(
        [which("gpg-connect-agent"), "--homedir", home, "--no-autostart", command, "/bye"],
        env=_env(home),
        check=False,
        quiet=True,
    )
    return proc.stdout.decode(errors="replace")


def _agent_has_passphrase(home: Path, keygrip: str) -> bool:
    """Whether the agent holds the key's passphrase already (KEYINFO's cached field), or needs none."""
    for line in _agent_command(home, f"KEYINFO {keygrip}").splitlines():
        fields = line.split()
        if fields[:3] == ["S", "KEYINFO", keygrip] and len(fields) > 7:
            return fields[6] == "1" or fields[7] == "C"
    return False


@functools.cache
def _check_gpg_version(gpg: str) -> None:
    first = run([gpg, "--version"], quiet=True).stdout.decode(errors="replace").splitlines()[:1]
    found = re.search(r"(\d+)\.(\d+)", first[0]) if first else None
    if not found or (int(found[1]), int(found[2])) < _MIN_GPG:
        version = found[0] if found else "unknown"
        raise ToolError(
            f"GnuPG {_MIN_GPG[0]}.{_MIN_GPG[1]} or newer is needed, {gpg} is version {version}",
            "install GnuPG 2: 'apt-get install gnupg' (Debian/Ubuntu) or 'dnf install gnupg2' (Fedora/RHEL)",
        )


@functools.cache
def _rpmsign_v3_flag() -> tuple[str, ...]:
    """["--rpmv3"] where rpmsign has it (4.17+); older rpmsign writes header+payload signatures anyway."""
    help_text = run([which("rpmsign"), "--help"], quiet=True, check=False).stdout
    return ("--rpmv3",) if b"--rpmv3" in help_text else ()


def _make_homedir(base: Path | None) -> Path:
    """A fresh private GNUPGHOME under `base`, or under a short temporary directory if agent sockets would not fit.

    Even with --no-autostart, gpg tries the agent socket and fails ("File name too long") on a
    long homedir, so verification homedirs follow the same rule.
    """
    if base is not None:
        base.mkdir(parents=True, exist_ok=True)
        base = base.absolute()
    if base is None or len(str(base)) + len("/gpg-XXXXXXXX") > _MAX_HOMEDIR_LEN:
        base = _short_temp_dir()
    home = Path(tempfile.mkdtemp(prefix="gpg-", dir=base))  # mode 0700, as gpg wants
    # allow-loopback-pinentry: the default since GnuPG 2.1.12; older 2.1 agents need it.
    (home / "gpg-agent.conf").write_text(_PRIVATE_AGENT_CONF)
    return home


def _short_temp_dir() -> Path:
    tmp = Path(tempfile.gettempdir()).absolute()
    return tmp if len(str(tmp)) <= 20 else Path("/tmp")


def _stop_agent(home: Path) -> None:
    """Stop the agent gpg started for `home` (it would otherwise outlive the build).

    Not keyed on `home/S.gpg-agent`: the socket may live under /run/user/<uid>/gnupg instead.
    """
    if not home.is_dir():
        return
    run([which("gpgconf"), "--homedir", home, "--kill", "gpg-agent"], env=_env(home), check=False, quiet=True)


def _keep_s2k_count(secret_key_file: Path, home: Path) -> None:
    """Have the private agent protect its copy of a protected key as the file does (its S2K count).

    gpg-agent re-protects an imported key with its own calibrated count, often far higher than the
    file's, and pays that count again for every signature; the file's own count keeps the copy
    exactly as hard to guess as the file, without making a pack of many RPMs slow to sign.
    """
    listing = home / "packets.txt"  # not the step's log: the listing describes the secret key packets
    argv: list[str | os.PathLike[str]] = [*_gpg(home), "--list-packets", "--", secret_key_file]
    run(argv, env=_env(home), check=False, quiet=True, stdout_to=listing)
    count = re.search(rb"protect count: (\d+)", listing.read_bytes())
    listing.unlink()
    if count:
        with (home / "gpg-agent.conf").open("a") as conf:
            conf.write(f"s2k-count {int(count[1])}\n")


def _import_secret_key(data: bytes, home: Path, where: str) -> SigningKey:
    imported = run([*_gpg(home), "--import"], input=data, env=_env(home), check=False)
    records = _secret_key_records(home)
    primaries = [i for i, rec in enumerate(records) if rec[0] == "sec"]
    if not primaries:
        public = run([*_gpg(home), "--no-autostart", "--with-colons", "--list-keys"], env=_env(home), check=False)
        if b"\npub:" in b"\n" + public.stdout:
            raise PackError([f"{where}: holds a public key only, no secret key"], _EXPORT_HINT)
        reason = _last_line(imported.stderr) or "no OpenPGP data"
        raise PackError([f"{where}: not an OpenPGP secret key export ({reason})"], _EXPORT_HINT)
    if len(primaries) > 1:
        fingerprints = [_next_field(records, i, "fpr", 9) for i in primaries]
        raise PackError(
            [f"{where}: holds {len(primaries)} secret keys ({', '.join(fingerprints)}), one is expected"],
            _EXPORT_HINT,
        )
    sec = records[primaries[0]] + [""] * 20
    if sec[14] not in ("+", ""):
        fingerprint = _next_field(records, primaries[0], "fpr", 9)
        raise PackError(
            [f"{where}: the primary secret key of {fingerprint} is not in the file (only subkeys or a card stub)"],
            "export the primary key with 'gpg --armor --export-secret-keys <fingerprint>', not --export-secret-subkeys",
        )
    key, _ = _usable_key(records, primaries[0], home, where, export_hint=" and export it again")
    return key


def _keyring_listing(fingerprint: str, home: Path) -> tuple[SigningKey, str]:
    """The key `fingerprint` of the keyring `home` if it can sign a pack, and its keygrip; else PackError."""
    where = f"signing_fingerprint {fingerprint} in {home}"
    if not home.is_dir():
        _refuse(f"{where}: no such GnuPG home folder", "set [pack] gnupghome, or GNUPGHOME, to your keyring")
    records = _secret_key_records(home, fingerprint)
    primaries = [i for i, rec in enumerate(records) if rec[0] == "sec"]
    if not primaries:
        public = run(
            [*_gpg(home), "--no-autostart", "--with-colons", "--list-keys", "--", fingerprint],
            env=_env(home),
            check=False,
        )
        if b"\npub:" in b"\n" + public.stdout:
            _refuse(
                f"{where}: only the public key is there, not its secret key",
                "import the secret key there, or plug in its smartcard and run 'gpg --card-status'",
            )
        _refuse(
            f"{where}: no such key",
            f"list the keys with 'gpg --homedir {home} --list-secret-keys --with-colons' (the fpr lines)",
        )
    i = primaries[0]
    primary = _next_field(records, i, "fpr", 9)
    if primary != fingerprint:
        _refuse(
            f"{where}: this is the fingerprint of a subkey of {primary}",
            "give the primary key's fingerprint: packs are signed with the primary key, never a subkey",
        )
    if records[i][14:15] == ["#"]:
        _refuse(
            f"{where}: only a stub of the primary secret key is there (exported with --export-secret-subkeys, "
            "or moved to a smartcard that this keyring has not seen)",
            "import the primary secret key, or plug in its smartcard and run 'gpg --card-status'",
        )
    # Field 15 is "+" for a key on disk and a serial number for a key on a smartcard: both sign through the agent.
    return _usable_key(records, i, home, where, export_hint="", is_private_home=False)


def _refuse(problem: str, hint: str) -> NoReturn:
    raise PackError([problem], hint)


def _secret_key_records(home: Path, fingerprint: str = "") -> list[list[str]]:
    listing = run(
        [
            *_gpg(home),
            "--with-colons",
            "--fixed-list-mode",
            "--with-fingerprint",
            "--with-keygrip",
            "--list-secret-keys",
            *(["--", fingerprint] if fingerprint else []),
        ],
        env=_env(home),
        check=False,
    )
    return [line.split(":") for line in listing.stdout.decode(errors="replace").splitlines()]


def _usable_key(
    records: list[list[str]], index: int, home: Path, where: str, *, export_hint: str, is_private_home: bool = True
) -> tuple[SigningKey, str]:
    """records[index] (a "sec" record) as a SigningKey and its keygrip, if it is an RSA key that may sign now."""
    sec = records[index] + [""] * 20
    fingerprint = _next_field(records, index, "fpr", 9)
    algo = int(sec[3] or 0)
    if algo not in _RSA_ALGOS:
        kind = _ALGO_NAMES.get(algo, f"algorithm {algo}") + (f" ({sec[16]})" if sec[16] else "")
        raise PackError(
            [f"{where}: key {fingerprint} is {kind}, not RSA: the host's rpm 4.11 and gpg check RSA signatures"],
            "use an RSA key of 2048 bits or more",
        )
    if "s" not in sec[11]:
        raise PackError(
            [f"{where}: key {fingerprint} is not allowed to sign (usage '{sec[11]}')"],
            "use a key whose primary key has the sign capability",
        )
    if sec[1] == "r":
        raise PackError([f"{where}: key {fingerprint} is revoked"], "use another key")
    expires = int(sec[6]) if sec[6].isdigit() else 0
    if sec[1] == "e" or (expires and expires <= time.time()):
        when = time.strftime("%Y-%m-%d", time.gmtime(expires)) if expires else "already"
        raise PackError(
            [f"{where}: key {fingerprint} expired {when}"],
            f"extend it ('gpg --quick-set-expire <fingerprint> 0'){export_hint}; pack keys should not expire",
        )
    uid = _unescape(_next_field(records, index, "uid", 9))
    key = SigningKey(
        homedir=home, fingerprint=fingerprint, created=int(sec[5]), uid=uid, is_private_home=is_private_home
    )
    return key, _next_field(records, index, "grp", 9)


def _probe_sign(key: SigningKey, where: str) -> None:
    """Sign a few bytes now: a wrong or missing passphrase fails here with one line, and a terminal prompt comes now."""
    with tempfile.TemporaryDirectory(prefix="dp-probe-") as scratch:
        probe = Path(scratch) / "probe.sig"  # never /dev/null: gpg deletes its output when signing fails
        proc = run(
            [
                *_gpg(key.homedir),
                *_pinentry(key),
                "--status-fd",
                "1",
                "--local-user",
                f"{key.fingerprint}!",
                "--yes",
                "--output",
                probe,
                "--detach-sign",
            ],
            input=b"driverpack signing probe\n",
            env=_signing_env(key),
            pass_fds=_passed_fds(key),
            check=False,
        )
    if proc.returncode == 0:
        return
    failure = _status_field(proc.stdout, "FAILURE", 1)
    code = int(failure) & 0xFFFF if failure.isdigit() else 0
    origin, tty = key.passphrase.origin, key.passphrase.terminal
    how = PASSPHRASE_HOW + ("" if key.is_private_home else _AGENT_HOW)
    if code == _BAD_PASSPHRASE:
        what = f"the passphrase from {origin} is wrong" if origin else "wrong passphrase"
    elif code == _NO_PASSPHRASE:
        what = f"the passphrase from {origin} is empty" if origin else "no passphrase given"
    elif code == _CANCELED:
        what = "passphrase entry cancelled"
    elif code == _NO_PIN_ENTRY and not origin and not tty:
        what = f"the key needs its passphrase and there is no terminal to ask for it: {how}"
    elif code == _NO_PIN_ENTRY and not origin:
        what = f"gpg-agent could not ask for its passphrase on {tty}: {how}"
    else:
        what = f"gpg cannot sign with the key: {_last_line(proc.stderr) or f'exit code {proc.returncode}'}"
    raise PackError([f"{where}: {what}"])


def _import_public_key(public_key_file: Path, home: Path) -> None:
    if not public_key_file.is_file():
        raise BuildError(f"public key {public_key_file}: file not found")
    proc = run([*_gpg(home), "--no-autostart", "--import", "--", public_key_file], env=_env(home), check=False)
    if proc.returncode != 0:
        raise BuildError(f"public key {public_key_file}: gpg cannot import it: {_last_line(proc.stderr)}")


def _parse_rpmkeys_verbose(text: str) -> dict[str, list[str]]:
    """`rpmkeys -Kv` output: a "<path>:" line, then one indented "<check>: <result>" line per check."""
    results: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line and not line[0].isspace() and line.endswith(":"):
            current = results.setdefault(line[:-1], [])
        elif current is not None and line.strip():
            current.append(line.strip())
    return results


def _status_keywords(status: bytes) -> set[str]:
    words = set()
    for line in status.decode(errors="replace").splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "[GNUPG:]":
            words.add(parts[1])
    return words


def _status_field(status: bytes, keyword: str, index: int) -> str:
    """Field `index` (after the keyword) of the last `[GNUPG:] keyword ...` status line, or ""."""
    found = ""
    for line in status.decode(errors="replace").splitlines():
        parts = line.split()
        if len(parts) > index + 1 and parts[:2] == ["[GNUPG:]", keyword]:
            found = parts[index + 2] if len(parts) > index + 2 else ""
    return found


def _next_field(records: list[list[str]], start: int, kind: str, index: int) -> str:
    """Field `index` of the first `kind` record after records[start], within the same key."""
    for rec in records[start + 1 :]:
        if rec[0] in ("sec", "pub"):
            break
        if rec[0] == kind and len(rec) > index:
            return rec[index]
    return ""


def _unescape(field: str) -> str:
    """Colon listings escape ':' and control characters as \\xHH."""
    raw = re.sub(rb"\\x([0-9a-fA-F]{2})", lambda m: bytes([int(m[1], 16)]), field.encode())
    return raw.decode(errors="replace")


def _rpm_macro_escape(value: str) -> str:
    return value.replace("%", "%%")


def _last_line(output: bytes) -> str:
    lines = [line.strip() for line in output.decode(errors="replace").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _write_atomic(dest: Path, data: bytes) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        tmp.chmod(0o644)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
