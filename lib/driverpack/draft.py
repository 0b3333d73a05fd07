"""Draft [[drivers]] entries for `inv new`: from a source tarball, from an existing spec, or blank.

A draft is plain data (the keys to write, each with the comment that explains it, the files to
copy beside pack.toml, what was found and what the user must still decide); scaffold.py renders
and writes it. Other proposals (a vendor build route, say) extend a draft with `with_keys`.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any

from driverpack.adapters.tarball import ModuleTags, SourceFacts, TarballLayout, inspect_tarball, read_source_facts
from driverpack.errors import PackError
from driverpack.models import data_path_allowed
from driverpack.specread import SpecFacts, parse_spec

TomlValue = str | bool | list[Any] | dict[str, Any]

_TARBALL_SUFFIX = re.compile(r"\.(?:tar(?:\.[A-Za-z0-9]+)?|tgz|tbz2?|txz)$")
_NAME_VERSION = re.compile(r"^(?P<base>.+?)[-_]v?(?P<version>\d[A-Za-z0-9._+~-]*)$")
_RPM_NAME_BAD = re.compile(r"[^A-Za-z0-9._+-]+")
_RPM_VERSION_BAD = re.compile(r"[^A-Za-z0-9._+~]")
SPEC_READ_CAP = 1024 * 1024
DEFAULT_AUTHOR = "Example Corp <drivers@example.com>"


@dataclass(frozen=True)
class DraftKey:
    """One key of a drafted table: its value and the comment lines written above it."""

    key: str
    value: TomlValue
    comment: tuple[str, ...] = ()


@dataclass(frozen=True)
class DataFolder:
    """A `<name>-data-<version>/` folder inside the tarball, offered as the data RPM."""

    tarball: Path
    member: str  # the folder's path inside the tarball, relative to its top directory
    version: str
    refused: str = ""
    """Why it cannot be the data RPM as it is ("" when it can)."""


@dataclass(frozen=True)
class DriverDraft:
    """A [[drivers]] entry as `inv new` will write it, and what it read to get there."""

    keys: tuple[DraftKey, ...]
    copies: tuple[tuple[Path, str], ...] = ()
    """(file, name beside pack.toml) to copy into the pack folder."""
    data: DataFolder | None = None
    found: tuple[str, ...] = ()
    """What was read, one line per fact, for the user to check."""
    decide: tuple[tuple[str, str], ...] = ()
    """(key, what the user must still decide about it) for this driver."""
    origin: str = ""
    vendor: str = ""
    """The vendor the input names (a spec's Vendor:), for [pack] vendor."""

    def value(self, key: str) -> TomlValue | None:
        return next((k.value for k in self.keys if k.key == key), None)

    def with_keys(self, *keys: DraftKey) -> DriverDraft:
        """This draft with `keys` set: a key already there is replaced in place, a new one appended."""
        given = {k.key: k for k in keys}
        kept = tuple(given.pop(k.key, k) for k in self.keys)
        return replace(self, keys=kept + tuple(given.values()))

    def model_input(self) -> dict[str, object]:
        """The keys as the pack file will hold them, for validating before anything is written."""
        return {k.key: k.value for k in self.keys}


# names and versions


def split_tarball_name(file_name: str) -> tuple[str, str | None]:
    """'igb-5.3.5.tar.gz' -> ('igb', '5.3.5'); ('driver', None) when no version follows the name."""
    stem = _TARBALL_SUFFIX.sub("", file_name)
    match = _NAME_VERSION.match(stem)
    if match:
        return match.group("base"), match.group("version")
    return stem, None


def rpm_name(text: str) -> str:
    """An rpm-valid package name made from `text` (other characters become '-')."""
    name = _RPM_NAME_BAD.sub("-", text).strip("-.")
    return name or "driver"


def rpm_safe_version(text: str) -> tuple[str, str]:
    """(version rpm accepts, note on what was changed or ""): '-' and other characters become '_'."""
    safe = _RPM_VERSION_BAD.sub("_", text).strip("._") or "1.0"
    if safe == text:
        return safe, ""
    why = "'-' is not allowed in an rpm version" if "-" in text else "rpm allows only letters, digits and . _ + ~"
    return safe, f"made rpm-safe from {text!r} ({why}; or put the suffix in release)"


def choose_name(modules: tuple[str, ...], base: str) -> tuple[str, str]:
    """The driver's name from the modules its Kbuild builds and the tarball's base name, and why."""
    if len(modules) == 1:
        return rpm_name(modules[0]), f"the module its Kbuild builds ({modules[0]}.ko)"
    listed = ", ".join(modules)
    if modules:
        wanted = base.replace("_", "-").lower()
        for module in modules:
            if module.replace("_", "-").lower() == wanted:
                return rpm_name(module), f"the one of its {len(modules)} modules ({listed}) named like the tarball"
        return rpm_name(base), f"the tarball's name; it builds {len(modules)} modules: {listed}"
    return rpm_name(base), "the tarball's name (no module name could be read from its Kbuild obj-m lines)"


def _preferred_tags(tags: tuple[ModuleTags, ...], name: str) -> tuple[ModuleTags | None, ModuleTags | None]:
    """The files stating MODULE_DESCRIPTION and MODULE_LICENSE, the driver's own main file first."""
    stems = {name, f"{name}_main", name.replace("-", "_"), f"{name.replace('-', '_')}_main"}
    ranked = sorted(tags, key=lambda t: PurePosixPath(t.file).stem not in stems)
    described = next((t for t in ranked if t.description), None)
    licensed = next((t for t in ranked if t.license), None)
    return described, licensed


# drafts


def changelog_today(text: str, author: str = DEFAULT_AUTHOR) -> DraftKey:
    entry = {"date": dt.date.today().isoformat(), "author": author, "text": text}
    return DraftKey("changelog", [entry], ("%changelog: newest first; the newest date is the build's timestamp.",))


def blank_draft(label: str) -> DriverDraft:
    """The placeholder entry of a plain `inv new LABEL`: every value to be edited."""
    name = rpm_name(label.replace("_", "-"))
    keys = (
        DraftKey("name", name, ("Name: the kernel-module RPM's name (the module name by convention).",)),
        DraftKey("version", "1.0", ("RPM_VERSION and RPM_RELEASE: no '-' in either.",)),
        DraftKey("release", "1"),
        DraftKey(
            "source",
            f"{name}-1.0.tar.gz",
            ("Source0: the driver's tarball (.tar.gz, .tar.bz2 or .tar.xz), next to this file.",),
        ),
        DraftKey("summary", f"{label} kernel module"),
        DraftKey("license", "GPL"),
        DraftKey("patches", [], ("Optional: patches applied in order with -p1 after unpacking.",)),
        changelog_today("First release"),
    )
    return DriverDraft(
        keys=keys,
        decide=(
            (
                "",
                "put the driver's tarball beside pack.toml and set name, version, source and summary "
                "(or run 'inv new LABEL --from TARBALL', which reads them from the tarball)",
            ),
        ),
    )


def draft_from_tarball(tarball: Path) -> DriverDraft:
    """A driver entry read from a tarball without extracting it: name, version, summary, license, data folder."""
    if not tarball.is_file():
        raise PackError([f"--from {tarball}: no such file"], hint="give the path of the driver's source tarball")
    try:
        layout = inspect_tarball(tarball)
    except PackError as exc:
        raise PackError(
            [f"--from {p}" if p.startswith(str(tarball)) else p for p in exc.problems],
            hint=exc.hint
            or "a driver with its own build system: start from its spec, 'inv new LABEL --from-spec SPEC'",
        ) from None
    from driverpack.proposal import dkms_package_name

    base, version_text = split_tarball_name(tarball.name)
    package = dkms_package_name(tarball).removesuffix("-dkms")  # Debian names its DKMS packages <name>-dkms
    if package and rpm_name(package) == package:
        name, name_why = package, "PACKAGE_NAME in the tarball's dkms.conf"
    else:
        name, name_why = choose_name(layout.modules, base)
    found = [f"name {name}: {name_why}"]
    decide: list[tuple[str, str]] = []

    version_from = f"the tarball's name {tarball.name}"
    if version_text is None and layout.top_dir:
        _, version_text = split_tarball_name(layout.top_dir)
        version_from = f"its top directory {layout.top_dir}/"
    if version_text is None:
        version, version_note = "1.0", ""
        decide.append(("version", "not in the tarball's name or top directory; '1.0' is a guess"))
    else:
        version, version_note = rpm_safe_version(version_text)
        found.append(f"version {version}: from {version_from}" + (f", {version_note}" if version_note else ""))

    facts = read_source_facts(tarball, _build_folders(layout))
    described, licensed = _preferred_tags(facts.tags, name)
    if described and described.description:
        summary = described.description
        found.append(f"summary: MODULE_DESCRIPTION in {described.file}")
    else:
        summary = f"{name} kernel module"
        decide.append(("summary", "no MODULE_DESCRIPTION found; say what the driver is for"))
    if licensed and licensed.license:
        license_text = licensed.license
        found.append(f"license {license_text}: MODULE_LICENSE in {licensed.file}")
    else:
        license_text = "GPL"
        decide.append(("license", "no MODULE_LICENSE found; 'GPL' is a guess"))
    build_in = "/".join(p for p in (layout.top_dir, layout.build_dir) if p)
    found.append(
        f"builds in {build_in + '/' if build_in else 'the tarball root'} (its {layout.build_file} has obj- lines)"
    )

    data = _data_folder(tarball, name, facts)
    route = _route_keys(tarball, name)
    found += [f"route: {reason}" for reason in route.reasons]
    keys = (
        DraftKey("name", name, ("Name: the kernel-module RPM's name.",)),
        DraftKey("version", version, ("RPM_VERSION and RPM_RELEASE: no '-' in either.",)),
        DraftKey("release", "1"),
        DraftKey(
            "source",
            tarball.name,
            ("Source0: the tarball; driverpack finds its top directory and Kbuild folder itself.",),
        ),
        DraftKey("summary", summary),
        DraftKey("license", license_text),
        DraftKey("patches", [], ("Optional: patches applied in order with -p1 after unpacking.",)),
        changelog_today("First release"),
        *route.keys,
    )
    return DriverDraft(
        keys=keys,
        copies=((tarball, tarball.name),),
        data=data,
        found=tuple(found),
        decide=tuple(decide),
        origin=tarball.name,
    )


@dataclass(frozen=True)
class _Route:
    keys: tuple[DraftKey, ...]
    reasons: tuple[str, ...]


def _route_keys(tarball: Path, name: str) -> _Route:
    """The build route the tree asks for (dkms.conf, kcompat-generator.sh, Makefile.alt, ...), as draft keys."""
    from driverpack.proposal import propose_route

    proposal = propose_route(tarball, name)
    keys = []
    for index, (key, value) in enumerate(proposal.keys.items()):
        comment = ("The build route read from the tarball (see 'Vendor drivers' in the README):",) if index == 0 else ()
        keys.append(DraftKey(key, _plain(value), comment))
    return _Route(tuple(keys), proposal.reasons)


def _plain(value: Any) -> TomlValue:
    """A proposal's value (tuples, mappings) as the plain lists and dicts a draft holds."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value if isinstance(value, bool) else str(value)


def _build_folders(layout: TarballLayout) -> list[str]:
    """The Kbuild folder and the folders below it (its obj- subfolders among them)."""
    top = layout.build_dir
    return [f.path for f in layout.folders if not top or f.path == top or f.path.startswith(top + "/")] or [top]


def _data_folder(tarball: Path, name: str, facts: SourceFacts) -> DataFolder | None:
    """The shallowest `<name>-data-<version>/` folder, and whether its files may go into a data RPM."""
    pattern = re.compile(rf"^{re.escape(name)}-data-(.+)$")
    for directory in sorted(facts.directories, key=lambda d: (d.count("/"), d)):
        match = pattern.match(PurePosixPath(directory).name)
        if not match:
            continue
        inside = directory + "/"
        links = [link for link in facts.symlinks if link.startswith(inside)]
        outside = [
            f
            for f in facts.files
            if f.startswith(inside) and not data_path_allowed(PurePosixPath("/" + f[len(inside) :]))
        ]
        refused = ""
        if links:
            refused = f"{links[0]} is a symbolic link (a data RPM packs regular files only)"
        elif outside:
            refused = f"{outside[0]} would install outside /lib/firmware, /etc and /usr/share/doc"
        elif not any(f.startswith(inside) for f in facts.files):
            refused = "it holds no files"
        return DataFolder(tarball, directory, match.group(1), refused)
    return None


def draft_from_spec(spec: Path) -> DriverDraft:
    """A driver entry carried over from an existing spec; the spec itself is kept when the pack cannot express it."""
    if not spec.is_file():
        raise PackError([f"--from-spec {spec}: no such file"], hint="give the path of a .spec file")
    with spec.open("rb") as f:
        text = f.read(SPEC_READ_CAP).decode("utf-8", errors="replace")
    facts = parse_spec(text)
    problems = []
    for tag in ("name", "version"):
        if not getattr(facts, tag):
            raw = facts.unexpanded.get(tag)
            problems.append(
                f"{spec}: {tag.capitalize()}: "
                + (f"{raw!r} uses macros driverpack cannot expand without rpm" if raw else "missing")
            )
    if problems:
        raise PackError(problems, hint="give the value in the spec, or start from 'inv new LABEL' and edit pack.toml")
    assert facts.name is not None and facts.version is not None
    name = rpm_name(facts.name)
    found = [f"name {name}, from Name:"]
    decide: list[tuple[str, str]] = []
    version, note = rpm_safe_version(facts.version)
    found.append(f"version {version}, from Version:" + (f" {note}" if note else ""))
    release, release_note = rpm_safe_version(facts.release or "1")
    if facts.release:
        found.append(f"release {release}, from Release:" + (f" {release_note}" if release_note else ""))
    else:
        decide.append(("release", _unexpanded(facts, "release", "'1'")))
    keys = [
        DraftKey("name", name, ("Name:, Version: and Release: of the spec.",)),
        DraftKey("version", version),
        DraftKey("release", release),
    ]
    copies: list[tuple[Path, str]] = []
    source_name = _file_name(facts.source0) if facts.source0 else f"{name}-{version}.tar.gz"
    source_file = _beside(spec, source_name)
    if source_file is not None:
        copies.append((source_file, source_name))
        where = "beside the spec" if source_file.parent == spec.absolute().parent else "in ../SOURCES/"
        found.append(f"source {source_name}: Source0:, found {where}")
    else:
        said = f"Source0: {facts.source0}" if facts.source0 else "no Source0 in the spec"
        decide.append(("source", f"put {source_name} beside pack.toml ({said}; not found beside the spec)"))
    keys.append(DraftKey("source", source_name, ("Source0: the tarball, next to this file.",)))
    keys.append(DraftKey("summary", facts.summary or f"{name} kernel module"))
    if not facts.summary:
        decide.append(("summary", _unexpanded(facts, "summary", "a placeholder")))
    keys.append(DraftKey("license", facts.license or "GPL"))
    if not facts.license:
        decide.append(("license", _unexpanded(facts, "license", "'GPL'")))
    if facts.description:
        keys.append(DraftKey("description", facts.description, ("%description of the spec.",)))
    elif "description" in facts.unexpanded:
        found.append("description: not carried, it uses macros driverpack cannot expand; the summary is used")
    patches = []
    for patch in facts.patches:
        patch_name = _file_name(patch)
        patches.append(patch_name)
        patch_file = _beside(spec, patch_name)
        if patch_file is not None:
            copies.append((patch_file, patch_name))
        else:
            decide.append(("patches", f"put {patch_name} beside pack.toml (not found beside the spec)"))
    if patches:
        found.append(f"patches: {', '.join(patches)} (PatchN, in order)")
    keys.append(DraftKey("patches", patches, ("PatchN of the spec, applied in order with -p1.",)))
    for tag in sorted(t for t in facts.unexpanded if t.startswith("patch")):
        decide.append(("patches", f"{tag}: {facts.unexpanded[tag]!r} uses macros; add it by hand"))

    if facts.changelog:
        entries = [{"date": e.date.isoformat(), "author": e.author, "text": e.text} for e in facts.changelog]
        keys.append(DraftKey("changelog", entries, ("%changelog of the spec, entry by entry.",)))
        found.append(f"changelog: {len(entries)} entries")
    else:
        keys.append(changelog_today(f"Packed from {spec.name}"))
        found.append("changelog: none in the spec; one entry dated today")
    found += [f"changelog: {problem}" for problem in facts.changelog_problems]

    if facts.custom_sections:
        keys.append(
            DraftKey(
                "spec",
                spec.name,
                ("The spec, used as it is: it does what the pack file cannot express (see 'inv new' output).",),
            )
        )
        copies.append((spec, spec.name))
        found.append(f"spec {spec.name}: kept, because the pack file cannot express:")
        found += [f"  {section}" for section in facts.custom_sections]
    elif facts.not_carried:
        found.append("not carried (no pack key; the generated spec does without): " + "; ".join(facts.not_carried))
    return DriverDraft(
        keys=tuple(keys),
        copies=tuple(copies),
        found=tuple(found),
        decide=tuple(decide),
        origin=spec.name,
        vendor=facts.vendor or "",
    )


def _unexpanded(facts: SpecFacts, tag: str, instead: str) -> str:
    raw = facts.unexpanded.get(tag)
    said = f"{raw!r} uses macros driverpack cannot expand" if raw else "not in the spec"
    return f"{said}; {instead} for now"


def _file_name(value: str) -> str:
    """The file a Source or Patch line names (a URL or path: its last part)."""
    return PurePosixPath(value.split("#", 1)[0].rstrip("/")).name or value


def _beside(spec: Path, name: str) -> Path | None:
    """`name` beside the spec, or in ../SOURCES/ of an rpmbuild tree (SPECS/ and SOURCES/ side by side)."""
    spec = spec.absolute()
    for folder in (spec.parent, spec.parent.parent / "SOURCES"):
        candidate = folder / name
        if candidate.is_file():
            return candidate
    return None
