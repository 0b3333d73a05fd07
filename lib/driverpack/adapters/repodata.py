"""Yum repository metadata for a pack (createrepo_c) and its comps groups file.

What CH 8.2 reads, from Citrix's build-update packs: repomd.xml with sha256 records, gzip
primary/filelists/other XML, the groups file as `group` plus `group_gz`, and groups `update`
(xapi applies `@update`) and `drivers` (the installer's driver-disk path).

No sqlite databases: the host's yum 3.4 builds its sqlite cache from the XML when a repomd has
no `*_db` record (YumPackageSack.populate in yum/yumRepo.py), and dnf never reads them.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import createrepo_c as cr

from driverpack.errors import BuildError

PACKAGES_DIR = "Packages"
REPODATA_DIR = "repodata"
REPOMD_NAME = "repomd.xml"
GROUP_IDS = ("update", "drivers")

# Simple names, no checksum prefix: the longest ISO path name stays far below Joliet's 64.
_PRIMARY = "primary.xml.gz"
_FILELISTS = "filelists.xml.gz"
_OTHER = "other.xml.gz"
_GROUPS = "groups.xml"
_GROUPS_GZ = "groups.xml.gz"
_REQUIRED_RECORDS = ("primary", "filelists", "other", "group", "group_gz")
_GZIP_RECORDS = ("primary", "filelists", "other", "group_gz")
_CHANGELOG_LIMIT = 10
# Written next to repodata/ (same filesystem, so the final rename is atomic); a re-run removes
# what an interrupted run left.
_NEW_DIR = ".repodata.new"
_OLD_DIR = ".repodata.old"


@dataclass(frozen=True)
class RepoPackage:
    """One package as primary.xml lists it."""

    name: str
    epoch: str
    version: str
    release: str
    arch: str
    location: str
    checksum_type: str
    checksum: str
    size: int


def render_groups_xml(label: str, mandatory: Sequence[str], *, description: str = "") -> str:
    """Comps XML with groups `update` and `drivers`, each listing `mandatory` (normally update-<label>)."""
    names = list(dict.fromkeys(mandatory))
    if not names or any(not n or n != n.strip() for n in names):
        raise BuildError(f"groups file for '{label}': mandatory package names must be non-empty: {names!r}")
    text = escape(description or label)
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<!DOCTYPE comps PUBLIC "-//Red Hat, Inc.//DTD Comps info//EN" "comps.dtd">',
        "<comps>",
    ]
    for group_id in GROUP_IDS:
        lines += [
            "  <group>",
            f"    <id>{group_id}</id>",
            f"    <name>{escape(label)}</name>",
            f"    <description>{text}</description>",
            "    <default>false</default>",
            "    <uservisible>true</uservisible>",
            "    <packagelist>",
            *(f'      <packagereq type="mandatory">{escape(n)}</packagereq>' for n in names),
            "    </packagelist>",
            "  </group>",
        ]
    lines.append("</comps>")
    return "\n".join(lines) + "\n"


def write_repodata(repo_dir: Path, *, groups_xml: str, epoch: int) -> Path:
    """Index repo_dir/Packages/*.rpm into repo_dir/repodata/ reproducibly; return repomd.xml's path.

    The revision, every timestamp, every file mtime and each package's recorded file time come
    from `epoch`, so the same RPM files give byte-identical repodata however they were copied.
    """
    if epoch < 0:
        raise BuildError(f"repodata epoch must not be negative: {epoch}")
    rpms = sorted((repo_dir / PACKAGES_DIR).glob("*.rpm"))
    if not rpms:
        raise BuildError(f"no RPMs to index in {repo_dir / PACKAGES_DIR}")
    groups = groups_xml.encode()
    problems = _group_problems(groups, None)
    if problems:
        raise BuildError("groups file is not usable:\n" + "\n".join(f"  - {p}" for p in problems))

    new, old, final = repo_dir / _NEW_DIR, repo_dir / _OLD_DIR, repo_dir / REPODATA_DIR
    for stale in (new, old):
        if stale.exists():
            shutil.rmtree(stale)
    new.mkdir()
    try:
        _write_into(new, rpms, groups, epoch)
    except BaseException:
        shutil.rmtree(new, ignore_errors=True)
        raise
    if final.exists():
        final.rename(old)
    new.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return final / REPOMD_NAME


def _write_into(out: Path, rpms: Sequence[Path], groups: bytes, epoch: int) -> None:
    xml_files = (
        cr.PrimaryXmlFile(str(out / _PRIMARY), cr.GZ_COMPRESSION),
        cr.FilelistsXmlFile(str(out / _FILELISTS), cr.GZ_COMPRESSION),
        cr.OtherXmlFile(str(out / _OTHER), cr.GZ_COMPRESSION),
    )
    try:
        for xml_file in xml_files:
            xml_file.set_num_of_pkgs(len(rpms))
        for rpm in rpms:
            href = f"{PACKAGES_DIR}/{rpm.name}"
            try:
                pkg = cr.package_from_rpm(str(rpm), cr.SHA256, href, None, _CHANGELOG_LIMIT)
            except (OSError, cr.CreaterepoCError) as e:
                raise BuildError(f"cannot index {rpm}: {e}", "is it a complete RPM file?") from None
            # stat() mtime by default: it would change with every copy of the same file.
            pkg.time_file = epoch
            for xml_file in xml_files:
                xml_file.add_pkg(pkg)
    finally:
        for xml_file in xml_files:
            xml_file.close()
    (out / _GROUPS).write_bytes(groups)

    repomd = cr.Repomd()
    repomd.set_revision(str(epoch))
    for record_type, name in (
        ("primary", _PRIMARY),
        ("filelists", _FILELISTS),
        ("other", _OTHER),
        ("group", _GROUPS),
    ):
        record = _filled_record(record_type, out / name, epoch)
        repomd.set_record(record)
        if record_type == "group":
            # compress_and_fill writes groups.xml.gz next to groups.xml.
            compressed = record.compress_and_fill(cr.SHA256, cr.GZ_COMPRESSION)
            compressed.type = "group_gz"
            compressed.location_href = f"{REPODATA_DIR}/{_GROUPS_GZ}"
            compressed.set_timestamp(epoch)
            repomd.set_record(compressed)
    repomd.sort_records()
    repomd_path = out / REPOMD_NAME
    repomd_path.write_text(repomd.xml_dump(), encoding="utf-8")
    _set_mtime(repomd_path, epoch)
    _set_mtime(out, epoch)


def _filled_record(record_type: str, path: Path, epoch: int) -> Any:
    record = cr.RepomdRecord(record_type, str(path))
    record.location_href = f"{REPODATA_DIR}/{path.name}"
    record.fill(cr.SHA256)
    # Also sets the file's mtime, so the ISO gets the same timestamps.
    record.set_timestamp(epoch)
    return record


def _set_mtime(path: Path, epoch: int) -> None:
    os.utime(path, (epoch, epoch))


def read_repodata(repo_dir: Path) -> tuple[RepoPackage, ...]:
    """The packages primary.xml lists, by location; BuildError unless the records are as we write them."""
    records = _read_records(repo_dir)
    primary = records["primary"]
    packages: list[RepoPackage] = []
    problems: list[str] = []

    def on_package(pkg: Any) -> bool:
        packages.append(_repo_package(pkg))
        return True

    def on_warning(_kind: int, message: str) -> bool:
        problems.append(str(message).strip())
        return True

    primary_path = _record_path(repo_dir, primary)
    try:
        cr.xml_parse_primary(str(primary_path), pkgcb=on_package, warningcb=on_warning, do_files=False)
    except (OSError, cr.CreaterepoCError) as e:
        raise BuildError(f"cannot parse {primary_path}: {e}".rstrip()) from None
    for pkg in packages:
        if not pkg.location:
            problems.append(f"package {pkg.name} has no location")
        if pkg.checksum_type != "sha256":
            problems.append(f"package {pkg.location or pkg.name} has a {pkg.checksum_type} checksum, not sha256")
    if problems:
        raise BuildError(f"{primary_path} is not usable:\n" + "\n".join(f"  - {p}" for p in problems))
    return tuple(sorted(packages, key=lambda p: p.location))


def check_repodata(repo_dir: Path, *, package_files: Mapping[str, tuple[int, str]] | None = None) -> None:
    """Repodata matches Packages/ and the files it names, and has groups `update` and `drivers`.

    `package_files` ("Packages/x.rpm" -> (size, sha256)) stands in for the RPMs on disk when the caller
    has already streamed them from elsewhere (an ISO), so they are not hashed twice.
    """
    records = _read_records(repo_dir)
    packages = read_repodata(repo_dir)
    problems: list[str] = []

    for record in records.values():
        href = str(record.location_href)
        path = _record_path(repo_dir, record)
        if not path.is_file():
            problems.append(f"{href} ({record.type}) is listed in {REPOMD_NAME} but missing")
            continue
        problems += _file_problems(path, href, int(record.size), str(record.checksum_type), str(record.checksum))

    listed: dict[str, RepoPackage] = {}
    for pkg in packages:
        if pkg.location in listed:
            problems.append(f"{pkg.location} is listed twice in primary")
        listed[pkg.location] = pkg
    if package_files is not None:
        on_disk = set(package_files)
    else:
        on_disk = {f"{PACKAGES_DIR}/{p.name}" for p in (repo_dir / PACKAGES_DIR).glob("*.rpm")}
    for location in sorted(on_disk - listed.keys()):
        problems.append(f"{location} is not in the repodata")
    for location, pkg in sorted(listed.items()):
        if package_files is not None:
            problems += _known_file_problems(location, pkg, package_files.get(location))
            continue
        pkg_path = _safe_join(repo_dir, location)
        if pkg_path is None or not pkg_path.is_file():
            problems.append(f"{location} is listed in primary but missing")
            continue
        problems += _file_problems(pkg_path, location, pkg.size, pkg.checksum_type, pkg.checksum)

    problems += _groups_problems(repo_dir, records, {p.name for p in packages})
    if problems:
        raise BuildError(
            f"repodata in {repo_dir} does not match its files:\n" + "\n".join(f"  - {p}" for p in problems),
            "write the repodata again after the last change to Packages/",
        )


def _read_records(repo_dir: Path) -> dict[str, Any]:
    repomd_path = repo_dir / REPODATA_DIR / REPOMD_NAME
    if not repomd_path.is_file():
        raise BuildError(f"{repomd_path} is missing", "write the repodata first")
    try:
        repomd = cr.Repomd(str(repomd_path))
    except (OSError, cr.CreaterepoCError) as e:
        raise BuildError(f"cannot parse {repomd_path}: {e}".rstrip()) from None
    records = {str(r.type): r for r in repomd.records}
    problems = [f"no '{t}' record" for t in _REQUIRED_RECORDS if t not in records]
    for record_type, record in sorted(records.items()):
        if record.checksum_type != "sha256":
            problems.append(f"'{record_type}' has a {record.checksum_type} checksum, not sha256")
        if _safe_join(repo_dir, str(record.location_href)) is None:
            problems.append(f"'{record_type}' points outside the repository: {record.location_href}")
    for record_type in _GZIP_RECORDS:
        path = _record_path(repo_dir, records[record_type]) if record_type in records else None
        if path is not None and path.is_file() and not _is_gzip(path):
            problems.append(f"'{record_type}' ({records[record_type].location_href}) is not gzip")
    if problems:
        raise BuildError(f"{repomd_path} is not usable:\n" + "\n".join(f"  - {p}" for p in problems))
    return records


def _is_gzip(path: Path) -> bool:
    # By content: createrepo_c's detect_compression trusts a .gz suffix.
    with path.open("rb") as f:
        return f.read(2) == b"\x1f\x8b"


def _repo_package(pkg: Any) -> RepoPackage:
    return RepoPackage(
        name=str(pkg.name),
        epoch=str(pkg.epoch or "0"),
        version=str(pkg.version),
        release=str(pkg.release),
        arch=str(pkg.arch),
        location=str(pkg.location_href or ""),
        checksum_type=str(pkg.checksum_type),
        checksum=str(pkg.pkgId),
        size=int(pkg.size_package),
    )


def _record_path(repo_dir: Path, record: Any) -> Path:
    return _safe_join(repo_dir, str(record.location_href)) or repo_dir / REPODATA_DIR / "invalid"


def _safe_join(repo_dir: Path, href: str) -> Path | None:
    """repo_dir/href, or None when href would leave the repository."""
    parts = Path(href).parts
    if not parts or Path(href).is_absolute() or ".." in parts:
        return None
    return repo_dir / href


def _known_file_problems(location: str, pkg: RepoPackage, known: tuple[int, str] | None) -> list[str]:
    if known is None:
        return [f"{location} is listed in primary but missing"]
    size, sha256 = known
    if size != pkg.size:
        return [f"{location} has {size} bytes, the repodata says {pkg.size}"]
    if pkg.checksum_type != "sha256" or sha256 != pkg.checksum:
        return [f"{location} has sha256 {sha256}, the repodata says {pkg.checksum_type} {pkg.checksum}"]
    return []


def _file_problems(path: Path, href: str, size: int, checksum_type: str, checksum: str) -> list[str]:
    actual_size = path.stat().st_size
    if actual_size != size:
        return [f"{href} has {actual_size} bytes, the repodata says {size}"]
    with path.open("rb") as f:
        digest = hashlib.file_digest(f, checksum_type).hexdigest()
    if digest != checksum:
        return [f"{href} has {checksum_type} {digest}, the repodata says {checksum}"]
    return []


def _groups_problems(repo_dir: Path, records: dict[str, Any], names: set[str]) -> list[str]:
    group = _record_path(repo_dir, records["group"])
    group_gz = _record_path(repo_dir, records["group_gz"])
    if not (group.is_file() and group_gz.is_file()):
        return []  # already reported as missing files
    data = group.read_bytes()
    try:
        unpacked = gzip.decompress(group_gz.read_bytes())
    except (OSError, EOFError) as e:
        return [f"{records['group_gz'].location_href} does not decompress: {e}"]
    problems = []
    if unpacked != data:
        # yum and dnf read group_gz when it exists, so the two must agree.
        problems.append(f"{records['group_gz'].location_href} differs from {records['group'].location_href}")
    return problems + _group_problems(data, names, str(records["group"].location_href))


def _group_problems(data: bytes, names: set[str] | None, where: str = "groups file") -> list[str]:
    """Groups `update` and `drivers` exist and name mandatory packages (that are in `names`, if given)."""
    try:
        root = ET.fromstring(data)
    except ET.ParseError as e:
        return [f"{where} is not valid XML: {e}"]
    if root.tag != "comps":
        return [f"{where}: the root element is <{root.tag}>, not <comps>"]
    groups = {g.findtext("id", "").strip(): g for g in root.iter("group")}
    problems = []
    for group_id in GROUP_IDS:
        group = groups.get(group_id)
        if group is None:
            problems.append(f"{where} has no group '{group_id}'")
            continue
        mandatory = [
            (req.text or "").strip() for req in group.iter("packagereq") if req.get("type", "mandatory") == "mandatory"
        ]
        if not mandatory:
            problems.append(f"{where}: group '{group_id}' has no mandatory package")
        if names is not None:
            problems += [
                f"{where}: group '{group_id}' needs {name}, which is not in the repository"
                for name in mandatory
                if name not in names
            ]
    return problems
