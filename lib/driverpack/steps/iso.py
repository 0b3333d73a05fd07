"""iso: the supplemental pack, as Citrix's build-update makes it, signed and written natively with pycdlib."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from driverpack import guidance, packmeta
from driverpack.adapters import gpg
from driverpack.adapters.iso import IsoEntry, write_iso
from driverpack.adapters.repodata import render_groups_xml, write_repodata
from driverpack.adapters.rpmbuild import rpmbuild
from driverpack.adapters.rpminfo import holds_modules, read_rpm
from driverpack.atomic import write_text
from driverpack.context import Context
from driverpack.errors import BuildError


@dataclass(frozen=True)
class IsoResult:
    iso: Path
    iso_md5: Path  # written by write_iso_md5 once the ISO has been read back
    metadata_md5: Path
    public_key: Path
    packages: Path  # the staged, signed RPMs the ISO holds
    test_key_warning: str  # non-empty when signed with the local test key


@dataclass(frozen=True)
class SigningChoice:
    """The key a pack is signed with: a secret key file (maybe the local test key) or a key in a GnuPG keyring."""

    key_file: Path | None  # the armored (or binary) secret key export; None for a keyring's key
    fingerprint: str  # the keyring key's fingerprint; "" for a key file
    gnupghome: Path | None  # the pack's keyring; None: $GNUPGHOME or gpg's default
    is_test_key: bool
    key_name: str  # the public key's file name in dist/, update.xml's key attribute


def signing_choice(ctx: Context, root: Path) -> SigningChoice:
    """The pack's signing key; without one, the local test key (made once in keys/)."""
    info = ctx.loaded.pack.pack
    if info.signing_fingerprint:
        home = ctx.loaded.resolve(info.gnupghome) if info.gnupghome else None
        return SigningChoice(None, info.signing_fingerprint, home, False, vendor_key_name(info.vendor))
    if info.signing_key:
        path = ctx.loaded.resolve(info.signing_key)
        return SigningChoice(path, "", None, False, public_key_name(path))
    path, _ = gpg.generate_test_key(root / "keys")
    return SigningChoice(path, "", None, True, public_key_name(path))


def signing_key_input(ctx: Context, root: Path) -> str:
    """What the iso step's digest reads of the key: a key file's sha256; a keyring key's fingerprint and public key."""
    choice = signing_choice(ctx, root)
    if choice.key_file is not None:
        return f"key file {choice.key_file} {hashlib.sha256(choice.key_file.read_bytes()).hexdigest()}"
    public = gpg.public_key_export(gpg.keyring_homedir(choice.gnupghome), choice.fingerprint)
    return f"keyring key {choice.fingerprint} {hashlib.sha256(public).hexdigest()}"


def open_signing_key(choice: SigningChoice) -> gpg.SigningKey:
    """Ready to sign: a wrong or missing passphrase fails here, and a terminal prompt comes now, once."""
    # The test key has no passphrase: the environment's source is not even read for it.
    passphrase = gpg.Passphrase() if choice.is_test_key else gpg.passphrase_from(os.environ, terminal=gpg.terminal())
    if choice.key_file is None:
        return gpg.keyring_key(choice.fingerprint, gpg.keyring_homedir(choice.gnupghome), passphrase)
    return gpg.load_key(choice.key_file, passphrase)


public_key_name = gpg.public_key_name


def vendor_key_name(vendor: str) -> str:
    """A keyring key's public key name: RPM-GPG-KEY-<vendor>, the DDK guide's convention, as a plain file name."""
    return "RPM-GPG-KEY-" + (re.sub(r"[^A-Za-z0-9._-]+", "-", vendor).strip("-.") or "vendor")


def md5_line(path: Path, name: str) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return f"{digest.hexdigest()}  {name}\n"


def update_meta(ctx: Context, key_name: str, payload: tuple[Path, ...]) -> packmeta.UpdateMeta:
    info = ctx.loaded.pack.pack
    rpms = []
    carries_modules = False
    for path in payload:
        rpm = read_rpm(path)
        rpms.append(packmeta.PayloadRpm(rpm.name, rpm.epoch, rpm.version, rpm.release, rpm.installed_size))
        carries_modules = carries_modules or holds_modules(rpm)
    return packmeta.UpdateMeta(
        label=ctx.label,
        text=info.text,
        uuid=info.uuid,
        version=info.version,
        build=info.build,
        vendor=info.vendor,
        after_apply=guidance.effective_after_apply(info.after_apply, carries_modules),
        key_name=key_name,
        base_requires=info.base_requires,
        payload=tuple(rpms),
        changelog_date=packmeta.changelog_date(ctx.epoch),
    )


def stage_pack(ctx: Context, root: Path, payload: tuple[Path, ...]) -> tuple[Path, Path, bool]:
    """Fill build/<label>/iso/ with what goes on the ISO; return (stage dir, public key, is test key)."""
    stage = ctx.work / "iso"
    if stage.exists():
        shutil.rmtree(stage)
    packages = stage / "Packages"
    packages.mkdir(parents=True)
    names = [p.name for p in payload]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise BuildError(f"two payload RPMs share a file name: {', '.join(duplicates)}")
    for path in payload:
        shutil.copyfile(path, packages / path.name)  # copies: signing rewrites them in place

    choice = signing_choice(ctx, root)
    meta = update_meta(ctx, choice.key_name, payload)
    problems = packmeta.check(meta)
    if problems:
        raise BuildError("\n".join(f"{ctx.loaded.file}: {p}" for p in problems))

    topdir = ctx.work / "update-rpmbuild"
    shutil.rmtree(topdir, ignore_errors=True)
    specs = [("update", packmeta.render_update_spec(meta))]
    if packmeta.has_control(meta):
        specs.append(("control", packmeta.render_control_spec(meta)))
    for kind, text in specs:
        spec = ctx.specs_dir / f"{kind}-{ctx.label}.spec"
        write_text(spec, text)
        built = rpmbuild(spec, topdir, epoch=ctx.epoch, log=ctx.logs_dir / f"rpmbuild-{spec.stem}.log", what="-bb")
        for rpm in built.rpms:
            shutil.copyfile(rpm, packages / rpm.name)

    public_key = ctx.dist / choice.key_name
    with open_signing_key(choice) as key:
        gpg.export_public_key(key, public_key)
        gpg.sign_rpms(key, sorted(packages.glob("*.rpm")), epoch=ctx.epoch)
        write_text(stage / "update.xml", packmeta.render_update_xml(meta))
        gpg.detach_sign(key, stage / "update.xml", epoch=ctx.epoch)
        groups = render_groups_xml(
            ctx.label, [packmeta.update_package_name(meta)], description=ctx.loaded.pack.pack.text
        )
        repomd = write_repodata(stage, groups_xml=groups, epoch=ctx.epoch)
        gpg.detach_sign(key, repomd, epoch=ctx.epoch)
    return stage, public_key, choice.is_test_key


def iso_entries(stage: Path) -> list[IsoEntry]:
    return [
        IsoEntry(path=p.relative_to(stage).as_posix(), source=p, mode=0o644)
        for p in sorted(stage.rglob("*"))
        if p.is_file()
    ]


def write_pack_iso(
    ctx: Context, root: Path, payload: tuple[Path, ...], progress: Callable[[int, int], None] | None = None
) -> IsoResult:
    """Stage, sign and write dist/<label>.iso, <label>.metadata.md5 and the public key (see write_iso_md5)."""
    stage, public_key, is_test_key = stage_pack(ctx, root, payload)
    iso = ctx.dist / f"{ctx.label}.iso"
    iso_md5 = ctx.dist / f"{ctx.label}.iso.md5"
    metadata_md5 = ctx.dist / f"{ctx.label}.metadata.md5"
    # The old .md5 files go first: an interrupted run never leaves an ISO beside a checksum that lies.
    iso_md5.unlink(missing_ok=True)
    metadata_md5.unlink(missing_ok=True)
    write_iso(
        iso,
        iso_entries(stage),
        volume_id=ctx.label,
        application_id=ctx.loaded.pack.pack.uuid,
        epoch=ctx.epoch,
        progress=progress,
    )
    write_text(
        metadata_md5,
        md5_line(stage / "update.xml", "update.xml") + md5_line(stage / "repodata/repomd.xml", "repodata/repomd.xml"),
    )
    warning = gpg.local_key_warning(public_key) if is_test_key else ""
    return IsoResult(iso, iso_md5, metadata_md5, public_key, stage / "Packages", warning)


def write_iso_md5(result: IsoResult, md5_hex: str) -> None:
    """<label>.iso.md5 from the md5 of the ISO as read back, checkable with `md5sum -c`."""
    write_text(result.iso_md5, f"{md5_hex}  {result.iso.name}\n")
