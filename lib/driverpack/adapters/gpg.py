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

Never a prompt: every gpg call has --batch --no-tty, secret-key calls use --pinentry-mode loopback
(the agent never starts a pinentry), stdin is /dev/null, and load_key rejects protected keys.
Never the user's ~/.gnupg: each key lives in a private GNUPGHOME made by this module.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from driverpack.errors import BuildError, PackError, ToolError
from driverpack.run import run, which

TEST_KEY_FILE = "RPM-GPG-KEY-driverpack-test"
TEST_KEY_NAME = "driverpack local test key"
# 2000-01-01T00:00:00Z: earlier than any SOURCE_DATE_EPOCH a pack is built with.
TEST_KEY_CREATED = 946684800
TEST_KEY_BITS = 2048
DIGEST_ALGO = "SHA256"

# gpg-agent puts its sockets in the homedir and a socket path must fit sockaddr_un.sun_path
# (108 bytes with the NUL): the longest name is "S.gpg-agent.browser", and mkdtemp adds
# "/gpg-XXXXXXXX". Above this length the homedir goes to a short temporary directory instead.
_MAX_HOMEDIR_LEN = 80
_RSA_ALGOS = {1, 3}  # RSA, RSA sign-only
_ALGO_NAMES = {16: "Elgamal", 17: "DSA", 18: "ECDH", 19: "ECDSA", 22: "EdDSA"}
# libgpg-error codes (low 16 bits of a FAILURE status) meaning the key wants a passphrase.
_PASSPHRASE_ERRORS = {11, 99, 177}  # BAD_PASSPHRASE, CANCELED, NO_PASSPHRASE
_MIN_GPG = (2, 1)  # --pinentry-mode loopback, Creation-Date, socket handling

_NO_PASSPHRASE_HINT = (
    "export it without passphrase: in a scratch GNUPGHOME import it, run 'gpg --passwd <fingerprint>' "
    "and set an empty passphrase, then 'gpg --armor --export-secret-keys <fingerprint> > <file>'; "
    "or remove signing_key from the pack to sign with a local test key"
)
_EXPORT_HINT = "export exactly one key with 'gpg --armor --export-secret-keys <fingerprint> > <file>'"


@dataclass(frozen=True)
class SigningKey:
    """A secret key imported into a private GNUPGHOME; release_key() (or `with`) stops its agent."""

    homedir: Path  # private GNUPGHOME holding the secret key
    fingerprint: str
    created: int  # key creation time, epoch seconds
    uid: str

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
        secret = run(
            [*_gpg(home), *_LOOPBACK, "--armor", "--export-secret-keys", fingerprint],
            env=_env(home),
            quiet=True,
        ).stdout
    finally:
        _stop_agent(home)
        shutil.rmtree(home, ignore_errors=True)
    if b"PRIVATE KEY BLOCK" not in secret:
        raise ToolError(f"gpg exported no secret key for the new test key {fingerprint}")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{TEST_KEY_FILE}.", dir=keys_dir)  # mode 0600
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(secret)
            f.flush()
            os.fsync(f.fileno())
        # link() fails if another build created the key meanwhile: theirs wins, nothing is replaced.
        os.link(tmp, dest)
    except FileExistsError:
        return dest, False
    finally:
        tmp.unlink(missing_ok=True)
    return dest, True


def local_key_warning(public_key: Path) -> str:
    """What to tell the user when a pack is signed with the local test key."""
    return (
        f"signed with a local test key, not a release key: before installing, copy {public_key.name} "
        f"to the host and run '/opt/xensource/debug/import-update-key {public_key.name}'; "
        "set signing_key in the pack file to sign with your own key"
    )


def load_key(secret_key_file: Path, work_dir: Path) -> SigningKey:
    """Import the secret key file into a private homedir under work_dir; one RSA signing-capable key expected."""
    where = f"signing_key {secret_key_file}"
    try:
        data = secret_key_file.read_bytes()
    except FileNotFoundError:
        raise PackError([f"{where}: file not found"], _EXPORT_HINT) from None
    except OSError as e:
        raise PackError([f"{where}: cannot read it: {e.strerror or e}"]) from None
    if not data.strip():
        raise PackError([f"{where}: the file is empty"], _EXPORT_HINT)
    home = _make_homedir(work_dir)
    try:
        key = _import_secret_key(data, home, where)
        _probe_sign(key, where)
    except BaseException:
        _stop_agent(home)
        shutil.rmtree(home, ignore_errors=True)
        raise
    return key


def release_key(key: SigningKey) -> None:
    """Stop the key's gpg-agent and delete its private homedir."""
    _stop_agent(key.homedir)
    shutil.rmtree(key.homedir, ignore_errors=True)


def export_public_key(key: SigningKey, dest: Path) -> None:
    """Write the armored public key, the file the host imports."""
    proc = run(
        [
            *_gpg(key.homedir),
            "--no-autostart",
            "--armor",
            "--export-options",
            "export-minimal",
            "--export",
            key.fingerprint,
        ],
        env=_env(key.homedir),
    )
    if b"PUBLIC KEY BLOCK" not in proc.stdout:
        raise ToolError(f"gpg exported no public key for {key.fingerprint} from {key.homedir}")
    if dest.is_file() and dest.read_bytes() == proc.stdout:
        return  # packs signed with the same key share the file: rewriting it would make the others rebuild
    _write_atomic(dest, proc.stdout)


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
                *_LOOPBACK,
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
            env=_env(key.homedir),
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
    # rpmsign's default command shape, with our homedir, loopback pinentry and a pinned clock.
    # No --passphrase '': rpm splits the command with popt, which drops empty arguments.
    sign_cmd = (
        "%{shescape:%{__gpg}} gpg --no-verbose --no-armor --no-secmem-warning"
        " --batch --no-tty --homedir %{shescape:%{_driverpack_gpg_home}} --pinentry-mode loopback"
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
        "_driverpack_sign_time": str(signing_time(key, epoch)),
    }
    argv: list[str | os.PathLike[str]] = [which("rpmsign"), "--addsign", *_rpmsign_v3_flag()]
    for name, value in defines.items():
        argv += ["--define", f"{name} {_rpm_macro_escape(value)}"]
    argv += ["--define", f"__gpg_sign_cmd {sign_cmd}", *rpms]
    run(argv, env=_env(key.homedir))


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
    return [gpg, "--homedir", str(home), "--batch", "--no-tty", "--no-greeting"]


def _env(home: Path) -> dict[str, str]:
    return {"GNUPGHOME": str(home)}


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
    # The default since GnuPG 2.1.12; older 2.1 agents need it for --pinentry-mode loopback.
    (home / "gpg-agent.conf").write_text("allow-loopback-pinentry\n")
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


def _import_secret_key(data: bytes, home: Path, where: str) -> SigningKey:
    imported = run([*_gpg(home), "--import"], input=data, env=_env(home), check=False)
    listing = run(
        [*_gpg(home), "--with-colons", "--fixed-list-mode", "--with-fingerprint", "--list-secret-keys"],
        env=_env(home),
        check=False,
    )
    records = [line.split(":") for line in listing.stdout.decode(errors="replace").splitlines()]
    primaries = [i for i, rec in enumerate(records) if rec[0] == "sec"]
    if not primaries:
        public = run([*_gpg(home), "--no-autostart", "--with-colons", "--list-keys"], env=_env(home), check=False)
        if b"\npub:" in b"\n" + public.stdout:
            raise PackError([f"{where}: holds a public key only, no secret key"], _EXPORT_HINT)
        reason = _last_line(imported.stderr) or "no OpenPGP data"
        raise PackError([f"{where}: not an OpenPGP secret key export ({reason})"], _EXPORT_HINT)
    fingerprints = [_next_field(records, i, "fpr", 9) for i in primaries]
    if len(primaries) > 1:
        raise PackError(
            [f"{where}: holds {len(primaries)} secret keys ({', '.join(fingerprints)}), one is expected"],
            _EXPORT_HINT,
        )
    sec = records[primaries[0]] + [""] * 20
    fingerprint = fingerprints[0]
    algo = int(sec[3] or 0)
    if algo not in _RSA_ALGOS:
        kind = _ALGO_NAMES.get(algo, f"algorithm {algo}") + (f" ({sec[16]})" if sec[16] else "")
        raise PackError(
            [f"{where}: key {fingerprint} is {kind}, not RSA: the host's rpm 4.11 and gpg check RSA signatures"],
            "use an RSA key of 2048 bits or more",
        )
    if sec[14] not in ("+", ""):
        raise PackError(
            [f"{where}: the primary secret key of {fingerprint} is not in the file (only subkeys or a card stub)"],
            "export the primary key with 'gpg --armor --export-secret-keys <fingerprint>', not --export-secret-subkeys",
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
            "extend it ('gpg --quick-set-expire <fingerprint> 0') and export it again; pack keys should not expire",
        )
    uid = _unescape(_next_field(records, primaries[0], "uid", 9))
    return SigningKey(homedir=home, fingerprint=fingerprint, created=int(sec[5]), uid=uid)


def _probe_sign(key: SigningKey, where: str) -> None:
    """Sign a few bytes now: the one reliable way to learn whether the key needs a passphrase."""
    probe = key.homedir / "probe.sig"  # never /dev/null: gpg deletes its output when signing fails
    proc = run(
        [
            *_gpg(key.homedir),
            *_LOOPBACK,
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
        env=_env(key.homedir),
        check=False,
    )
    probe.unlink(missing_ok=True)
    if proc.returncode == 0:
        return
    failure = _status_field(proc.stdout, "FAILURE", 1)
    code = int(failure) & 0xFFFF if failure.isdigit() else 0
    if code in _PASSPHRASE_ERRORS or b"passphrase" in proc.stderr.lower():
        raise PackError([f"{where}: key {key.fingerprint} is protected by a passphrase"], _NO_PASSPHRASE_HINT)
    raise PackError([f"{where}: gpg cannot sign with key {key.fingerprint}: {_last_line(proc.stderr)}"])


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
