"""How a pack names its signing key and where a passphrase comes from: the pack-file keys and the environment.

The pack-file tests write a pack.toml into tmp_path and load it from there, so problem lines read
`pack.toml: pack...`. The environment tests hand passphrase_from() a mapping, never os.environ.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from driverpack.adapters.gpg import PASSPHRASE_FD_ENV, PASSPHRASE_FILE_ENV, passphrase_from, passphrase_problems
from driverpack.errors import PackError
from driverpack.load import load_pack
from driverpack.models import PackInfo
from driverpack.steps.iso import public_key_name, vendor_key_name

FINGERPRINT = "0971C009E4C39205D10F80C0148615A2A6B5D7F1"
BASE = """\
[pack]
label = "demo"
text = "Demo driver"
uuid = "7a1b4bfe-3ac5-4c3f-9a3e-2b0f6d1c5e01"
version = "1.0.0"
{signing}
[[drivers]]
name = "demo"
version = "1.0"
source = "demo-1.0.tar.gz"
summary = "Demo kernel module"
"""


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def load(tmp_path: Path, signing: str) -> PackInfo:
    (tmp_path / "pack.toml").write_text(BASE.format(signing=signing))
    return load_pack(tmp_path).pack.pack


def refused(tmp_path: Path, signing: str) -> list[str]:
    with pytest.raises(PackError) as caught:
        load(tmp_path, signing)
    return caught.value.problems


def test_fingerprint_is_kept_plain_and_uppercase(tmp_path: Path) -> None:
    spaced = " ".join(FINGERPRINT.lower()[i : i + 4] for i in range(0, 40, 4))  # as gpg --fingerprint shows it
    info = load(tmp_path, f'signing_fingerprint = "{spaced}"\ngnupghome = "~/.gnupg-release"')
    assert info.signing_fingerprint == FINGERPRINT
    assert info.gnupghome == "~/.gnupg-release"
    assert info.signing_key is None


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("148615A2A6B5D7F1", "is a short key id, which more than one key can have"),
        ("0x148615A2", "is a short key id"),
        ("release key", "is not an OpenPGP key fingerprint: 40 hexadecimal digits"),
        (FINGERPRINT + "00", "is not an OpenPGP key fingerprint"),
    ],
)
def test_not_a_fingerprint(tmp_path: Path, value: str, problem: str) -> None:
    (line,) = refused(tmp_path, f'signing_fingerprint = "{value}"')
    assert line.startswith(f"pack.toml: pack.signing_fingerprint: {value!r} {problem}")


def test_key_file_and_keyring_key_are_exclusive(tmp_path: Path) -> None:
    (line,) = refused(tmp_path, f'signing_key = "keys/release.asc"\nsigning_fingerprint = "{FINGERPRINT}"')
    assert line.startswith("pack.toml: pack: signing_key and signing_fingerprint are both set: keep signing_key")


def test_gnupghome_needs_a_fingerprint(tmp_path: Path) -> None:
    (line,) = refused(tmp_path, 'signing_key = "keys/release.asc"\ngnupghome = "~/.gnupg"')
    assert line == (
        "pack.toml: pack: gnupghome is set without signing_fingerprint: name the key to sign with from that keyring"
    )


def test_no_passphrase_key_in_the_pack_file(tmp_path: Path) -> None:
    (line,) = refused(tmp_path, 'signing_key = "k.asc"\npassphrase = "secret"')
    assert line.startswith("pack.toml: pack.passphrase: unknown key 'passphrase'")


def test_public_key_names() -> None:
    assert public_key_name(Path("keys/RPM-GPG-KEY-acme.asc")) == "RPM-GPG-KEY-acme"
    assert vendor_key_name("Example Corp") == "RPM-GPG-KEY-Example-Corp"
    assert vendor_key_name("ACME, Inc./R&D") == "RPM-GPG-KEY-ACME-Inc.-R-D"
    assert vendor_key_name("../..") == "RPM-GPG-KEY-vendor"


# --- the environment -----------------------------------------------------------------------------


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    read_end, write_end = os.pipe()
    yield read_end, write_end
    for fd in (read_end, write_end):
        with contextlib.suppress(OSError):  # the test may have closed it
            os.close(fd)


def test_no_source_means_gpg_agent(tmp_path: Path) -> None:
    passphrase = passphrase_from({}, terminal="/dev/pts/7")
    assert (passphrase.secret, passphrase.origin, passphrase.terminal) == (None, "", "/dev/pts/7")
    assert passphrase_from({}).terminal == ""  # nobody to ask: gpg-agent must not prompt


def test_passphrase_file_gives_its_first_line(tmp_path: Path) -> None:
    (tmp_path / "pass").write_bytes(b"s3cret with spaces\r\nsecond line\n")
    passphrase = passphrase_from({PASSPHRASE_FILE_ENV: str(tmp_path / "pass")})
    assert passphrase.secret == b"s3cret with spaces"
    assert passphrase.origin == f"{PASSPHRASE_FILE_ENV} ({tmp_path / 'pass'})"
    assert "s3cret" not in repr(passphrase)  # never in a traceback or a log line


def test_passphrase_descriptor_is_read_once(pipe: tuple[int, int]) -> None:
    read_end, write_end = pipe
    os.write(write_end, b"from a pipe\n")
    os.close(write_end)
    env = {PASSPHRASE_FD_ENV: str(read_end)}
    first = passphrase_from(env)
    assert first.secret == b"from a pipe"
    assert passphrase_from(env).secret == b"from a pipe"  # a second pack in the same run gets it too


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({PASSPHRASE_FILE_ENV: "/nonexistent/pass"}, f"{PASSPHRASE_FILE_ENV}=/nonexistent/pass: file not found"),
        ({PASSPHRASE_FILE_ENV: "/"}, f"{PASSPHRASE_FILE_ENV}=/: not a readable file"),
        ({PASSPHRASE_FD_ENV: "three"}, f"{PASSPHRASE_FD_ENV}=three: not a file descriptor number"),
        ({PASSPHRASE_FD_ENV: "999"}, f"{PASSPHRASE_FD_ENV}=999: no such open file descriptor in this process"),
        (
            {PASSPHRASE_FILE_ENV: "/etc/hostname", PASSPHRASE_FD_ENV: "0"},
            f"{PASSPHRASE_FILE_ENV} and {PASSPHRASE_FD_ENV} are both set: unset one (one passphrase source)",
        ),
    ],
)
def test_unusable_passphrase_sources(env: dict[str, str], problem: str) -> None:
    assert passphrase_problems(env) == [problem]
    with pytest.raises(PackError) as caught:
        passphrase_from(env)
    assert caught.value.problems == [problem]
