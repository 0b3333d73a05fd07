"""verify: read a pack ISO back and check it the way xapi, yum and the host installer will."""

from __future__ import annotations

import functools
import hashlib
import re
import shutil
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from driverpack import inbox
from driverpack.adapters import gpg
from driverpack.adapters.iso import extract_iso, file_digests, read_iso
from driverpack.adapters.repodata import check_repodata, read_repodata
from driverpack.adapters.rpminfo import RpmInfo, check_common, check_data_rpm, check_kmod_rpm, read_rpm
from driverpack.errors import BuildError, DriverpackError
from driverpack.models import is_label, is_uuid
from driverpack.run import run

_MODULE_PATH = re.compile(r"^/lib/modules/([^/]+)/")
REQUIRED_FILES = ("update.xml", "update.xml.asc", "repodata/repomd.xml", "repodata/repomd.xml.asc")


@dataclass(frozen=True)
class VerifyReport:
    lines: tuple[str, ...]
    iso_md5: str  # md5 of the whole ISO, as read back


class VerifyFailed(BuildError):
    """The ISO failed some checks; `passed` holds the report lines of those that held."""

    def __init__(self, message: str, passed: tuple[str, ...], hint: str = "") -> None:
        super().__init__(message, hint)
        self.passed = passed


def verify_iso(
    iso: Path,
    *,
    kernel: str | None = None,
    kernel_origin: str = "--kernel",
    public_key: Path | None = None,
    packages_dir: Path | None = None,
) -> VerifyReport:
    """Every check of DESIGN.md's "Verification"; VerifyFailed listing every problem found.

    `public_key` defaults to the key file update.xml names, beside the ISO; `kernel` (for the
    vermagic check) to each module RPM's `Requires: kernel-uname-r`, else its module paths.
    Every RPM on the ISO is streamed once and its sha256 compared with the repodata. `packages_dir`
    (the staged RPMs the ISO was just written from) spares extracting large RPMs for the rpm-level
    checks: the sha256 match shows they are the same bytes.
    """
    if not iso.is_file():
        raise BuildError(f"{iso}: no such ISO", hint="build it with 'inv iso'")
    ok: list[str] = []
    problems: list[str] = []
    contents = read_iso(iso)
    names = {f.path for f in contents.files}
    sizes = {f.path: f.size for f in contents.files}
    ok.append(f"read back with pycdlib: {len(names)} files, Rock Ridge and Joliet")
    if not (contents.has_rock_ridge and contents.has_joliet):
        problems.append(f"{iso.name}: Rock Ridge or Joliet missing")
    problems += [f"{iso.name}: {name} missing" for name in REQUIRED_FILES if name not in names]
    problems += _independent_reader_problems(iso, names, ok)
    rpm_paths = sorted(n for n in names if n.startswith("Packages/") and n.endswith(".rpm"))

    work = Path(tempfile.mkdtemp(prefix="driverpack-verify-"))
    # Hashing and rpmkeys run beside the main checks: on a large pack they are most of the time.
    pool = ThreadPoolExecutor(max_workers=2)
    try:
        md5_future = pool.submit(_md5, iso)
        staged = packages_dir is not None and all(
            (packages_dir / Path(n).name).is_file() and (packages_dir / Path(n).name).stat().st_size == sizes[n]
            for n in rpm_paths
        )
        extract_iso(iso, work, include=(lambda n: n not in rpm_paths) if staged else None)
        if staged:
            assert packages_dir is not None
            for name in rpm_paths:
                (work / name).parent.mkdir(parents=True, exist_ok=True)
                (work / name).symlink_to((packages_dir / Path(name).name).resolve())
        update, attributes = _update_xml_problems(work, contents.volume_id, contents.application_id, problems)
        key_file, key_problem = public_key_for(iso, attributes.get("key", ""), public_key)
        if key_file is not None:
            signature_problems: list[str] = []
            for signed in (work / "update.xml", work / "repodata" / "repomd.xml"):
                asc = signed.with_name(signed.name + ".asc")
                signature_problems += _problems_of(functools.partial(gpg.verify_detached, key_file, signed, asc, work))
            rpms = [work / n for n in rpm_paths]
            # Signatures only: each file's sha256 is compared with the repodata below.
            signatures = pool.submit(
                _problems_of, lambda: gpg.check_rpm_signatures(key_file, rpms, work, digests=False)
            )
            digests = file_digests(iso, rpm_paths)
            signature_problems += signatures.result()
            problems += signature_problems
            if not signature_problems:
                ok.append(f"signatures verified with {key_file.name}: update.xml, repomd.xml, {len(rpms)} RPMs")
        else:
            problems.append(key_problem)
            digests = file_digests(iso, rpm_paths)
        package_files = {n: (sizes[n], digests[n]) for n in rpm_paths}
        repodata_problems = _problems_of(lambda: check_repodata(work, package_files=package_files))
        problems += repodata_problems
        listed = () if repodata_problems else _listed_packages(work)
        if listed:
            ok.append(f"repodata: {len(listed)} packages listed with matching sha256, gzip primary, groups")
        problems += _rpm_problems(work, attributes, (kernel, kernel_origin) if kernel else None, ok)
        iso_md5 = md5_future.result()
        problems += _md5_problems(iso, iso_md5, work, ok)
        if update is not None:
            ok.append(
                f"update.xml: {attributes.get('name-label')} {attributes.get('version')} {attributes.get('uuid')}"
            )
    finally:
        pool.shutdown(wait=True)
        shutil.rmtree(work, ignore_errors=True)
    # Name files by their place on the ISO, not the scratch folder that no longer exists.
    problems = [p.replace(f"{work}/", f"{iso.name}:") for p in problems]
    if problems:
        raise VerifyFailed(
            f"{iso.name} failed verification:\n" + "\n".join(f"  - {p}" for p in problems),
            tuple(ok),
            hint=_KEY_HINT if key_file is None else "",
        )
    return VerifyReport(tuple(ok), iso_md5)


_KEY_HINT = (
    "give the public key the pack was signed with: 'inv verify --iso ISO --key FILE' "
    "(the file a vendor ships for /opt/xensource/debug/import-update-key)"
)


def public_key_for(iso: Path, named: str, given: Path | None) -> tuple[Path | None, str]:
    """The key to check signatures with: `given` (--key), else the file update.xml names, beside the ISO."""
    if given is not None:
        if given.is_file():
            return given, ""
        return None, f"signatures not checked: --key {given}: no such file"
    if not named:
        return None, "signatures not checked: update.xml names no key file"
    # A plain file name only: update.xml comes from the ISO being checked and must not pick a path.
    if Path(named).name != named or named in (".", ".."):
        return None, f"signatures not checked: update.xml names the key {named!r}, which is not a file name"
    found = iso.parent / named
    if found.is_file():
        return found, ""
    return None, f"signatures not checked: update.xml names the key {named}, which is not beside the ISO"


def _md5(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "md5").hexdigest()


def _problems_of(check: Callable[[], object]) -> list[str]:
    try:
        check()
    except DriverpackError as exc:
        return [exc.message]
    return []


def _listed_packages(work: Path) -> tuple[object, ...]:
    try:
        return tuple(read_repodata(work))
    except DriverpackError:
        return ()


def _independent_reader_problems(iso: Path, names: set[str], ok: list[str]) -> list[str]:
    """isoinfo and xorriso, where installed, must see the same Rock Ridge names as pycdlib."""
    problems = []
    if shutil.which("isoinfo"):
        listing = run(["isoinfo", "-R", "-f", "-i", str(iso)], quiet=True).stdout.decode(errors="replace")
        seen = {line.strip().lstrip("/") for line in listing.splitlines() if line.strip()}
        missing = sorted(n for n in names if n not in seen)
        if missing:
            problems.append(f"isoinfo does not see: {', '.join(missing)}")
        else:
            ok.append("isoinfo reads every Rock Ridge name")
    if shutil.which("xorriso"):
        proc = run(["xorriso", "-indev", str(iso), "-find", "/", "-type", "f"], quiet=True)
        seen = {
            line.strip().strip("'").lstrip("/")
            for line in proc.stdout.decode(errors="replace").splitlines()
            if line.strip().startswith("'/")
        }
        missing = sorted(n for n in names if n not in seen)
        if missing:
            problems.append(f"xorriso does not see: {', '.join(missing)}")
        else:
            ok.append("xorriso reads every Rock Ridge name")
    return problems


def _update_xml_problems(
    work: Path, volume_id: str, application_id: str, problems: list[str]
) -> tuple[ET.Element | None, dict[str, str]]:
    path = work / "update.xml"
    if not path.is_file():
        return None, {}
    try:
        root = ET.fromstring(path.read_bytes())
    except ET.ParseError as exc:
        problems.append(f"update.xml does not parse: {exc}")
        return None, {}
    attributes = dict(root.attrib)
    if root.tag != "update":
        problems.append(f"update.xml: root element is <{root.tag}>, not <update>")
    for name in ("name-label", "uuid", "version", "installation-size", "key"):
        if not attributes.get(name):
            problems.append(f"update.xml: attribute {name} missing (xapi rejects the pack)")
    if not is_uuid(attributes.get("uuid", "")):
        problems.append(f"update.xml: uuid {attributes.get('uuid')!r} is not a canonical lowercase uuid")
    if not is_label(attributes.get("name-label", "")):
        problems.append(f"update.xml: name-label {attributes.get('name-label')!r} is not a valid label")
    if attributes.get("uuid") and attributes["uuid"] != application_id:
        problems.append(f"ISO application id {application_id!r} is not the pack uuid {attributes['uuid']}")
    if attributes.get("name-label") and not attributes["name-label"].startswith(volume_id):
        problems.append(f"ISO volume id {volume_id!r} does not match the label {attributes['name-label']!r}")
    description = root.find("name-description")
    if description is None or not (description.text or "").strip():
        problems.append("update.xml: <name-description> missing or empty (xapi rejects the pack)")
    return root, attributes


def _rpm_problems(work: Path, attributes: dict[str, str], kernel: tuple[str, str] | None, ok: list[str]) -> list[str]:
    problems: list[str] = []
    label = attributes.get("name-label", "")
    infos: list[RpmInfo] = []
    for path in sorted((work / "Packages").glob("*.rpm")):
        try:
            infos.append(read_rpm(path))
        except DriverpackError as exc:
            problems.append(exc.message)
    update = next((i for i in infos if i.name == f"update-{label}"), None)
    control = next((i for i in infos if i.name == f"control-{label}"), None)
    payload = [i for i in infos if i not in (update, control)]
    if update is None:
        problems.append(f"Packages/: update-{label} RPM missing")
    else:
        if attributes.get("uuid") and not any(p.split()[0] == attributes["uuid"] for p in update.provides):
            problems.append(f"{update.path.name}: does not provide the pack uuid {attributes.get('uuid')}")
        required = {r.split()[0] for r in update.requires}
        for info in payload:
            if info.name not in required:
                problems.append(f"{update.path.name}: does not require payload package {info.name}")
        if "posttrans" not in update.scripts or "/var/update/applied/" not in update.scripts["posttrans"]:
            problems.append(f"{update.path.name}: %posttrans does not record the update in /var/update/applied")
    if attributes.get("control") and control is None:
        problems.append(f"update.xml names control={attributes['control']} but that RPM is missing")
    size = sum(i.installed_size for i in payload)
    if attributes.get("installation-size") and attributes["installation-size"] != str(size):
        problems.append(f"update.xml: installation-size {attributes['installation-size']} != payload's {size}")
    modules = 0
    targets: dict[str, str] = {}
    for info in payload:
        kernels = {m.group(1) for f in info.files if (m := _MODULE_PATH.match(f.path))}
        if kernels:
            target, why = target_kernel(info, kernel, kernels)
            targets.setdefault(target, why)
            problems += check_kmod_rpm(info, target)
            problems += inbox.rpm_problems(info)
            modules += sum(1 for f in info.files if f.path.endswith(".ko"))
        elif info.name.endswith("-data"):
            problems += check_data_rpm(info)
        else:
            problems += check_common(info)
    ok.append(
        f"{len(payload)} payload RPMs checked ({modules} modules: vermagic, no debug info, no in-box module"
        " names; paths, rpm 4.11 payloads)"
    )
    ok += [f"modules checked for kernel {target} ({why})" for target, why in sorted(targets.items())]
    return problems


def target_kernel(info: RpmInfo, given: tuple[str, str] | None, from_paths: set[str]) -> tuple[str, str]:
    """The kernel a module RPM is checked against, and where that came from."""
    if given:
        return given
    for requirement in info.requires:
        words = requirement.split()
        if len(words) == 3 and words[0] == "kernel-uname-r" and words[1] == "=":
            return words[2], "the RPMs' Requires: kernel-uname-r"
    return sorted(from_paths)[0], "the module paths"


def _md5_problems(iso: Path, iso_md5: str, work: Path, ok: list[str]) -> list[str]:
    """The .md5 files beside the ISO, when present, must hold for the ISO and inside it."""
    problems = []
    label = iso.name.removesuffix(".iso")
    iso_md5_file = iso.parent / f"{label}.iso.md5"
    metadata_md5 = iso.parent / f"{label}.metadata.md5"
    if iso_md5_file.is_file():
        if iso_md5_file.read_text().split() != [iso_md5, iso.name]:
            problems.append(f"{iso_md5_file.name}: does not match the ISO (it changed after it was written)")
        else:
            ok.append(f"{iso_md5_file.name}: md5 matches")
    if metadata_md5.is_file():
        check = run(["md5sum", "-c", "--quiet", str(metadata_md5.resolve())], cwd=work, check=False, quiet=True)
        if check.returncode:
            problems.append(f"{metadata_md5.name}: md5sum -c inside the ISO fails")
        else:
            ok.append(f"{metadata_md5.name}: md5sum -c inside the ISO ok")
    return problems
