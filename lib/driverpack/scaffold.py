"""inv new: a commented pack.toml with a fresh uuid, its drivers drafted from tarballs or a spec.

Everything is read and validated first; then the files are copied into the new pack folder under
temporary names and renamed, and pack.toml is written last. A failure removes what this run made.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from pydantic import ValidationError

from driverpack.adapters.tarball import extract_tarball
from driverpack.atomic import atomic_path, write_text
from driverpack.draft import (
    DEFAULT_AUTHOR,
    DataFolder,
    DraftKey,
    DriverDraft,
    TomlValue,
    blank_draft,
    draft_from_spec,
    draft_from_tarball,
    rpm_safe_version,
)
from driverpack.errors import PackError
from driverpack.load import PACK_FILE, PACKS_DIR, format_validation_errors
from driverpack.models import Pack, is_label

PLACEHOLDER_VENDOR = "Example Corp"
HEADER = """\
# driverpack pack file{written_by}.
# Every key is explained in the README ("The pack file"); packs/helloworld/pack.toml
# is a complete example. Check it with: inv check --pack {label}

[pack]
# LABEL: names the update-<label> RPM, the yum repo id and the ISO (<label>.iso).
label = {label_value}
# TEXT: shown by XenCenter and the installer (update.xml name-description). One line.
text = {text}
# UUID: made fresh for this pack. Keep it for every build of this pack; another pack needs another.
uuid = "{uuid}"
# PACK_VERSION and PACK_BUILD: the pack's version, and the release of update-<label>.
version = {version}
build = "1"
# Shown as the RPMs' Vendor.
vendor = {vendor}
# Optional. A control-<label> RPM then requires this, e.g. "product-version = 8.2.1".
# base_requires = "product-version = 8.2.1"
# Optional. What the host does after applying: restartHost, restartXAPI, restartPV, restartHVM.
# Default: restartHost when the pack carries kernel modules (a new module takes effect at boot).
# after_apply = ["restartHost"]
# Optional. The RSA key that signs the RPMs, update.xml and repomd.xml: a secret key file (its
# passphrase may stay on it), or the fingerprint of a key in your GnuPG keyring (or smartcard).
# Absent: a local test key is made once in keys/ (a warning says how to import it on the host).
# signing_key = "keys/RPM-GPG-KEY-example"
# signing_fingerprint = "0123456789ABCDEF0123456789ABCDEF01234567"

[target]
# The target host's `uname -r`. "auto": the one kernel whose build dir is installed on this
# machine (a test build). Citrix Hypervisor 8.2 runs "4.19.0+1"; build for it from its
# kernel-devel RPM, no DDK needed:
#   kernel = "4.19.0+1"
#   kernel_devel = "kernel-devel-4.19.19-<release>.x86_64.rpm"   # the host's kernel-devel RPM
kernel = "auto"
# Optional: build_dir (the kernel's Kbuild tree) and module_dir (where modules install under
# /lib/modules/<kernel>/: "updates", as Citrix's rules ask; "extra" loses to an in-box module of the
# same name); see the README for their defaults.
"""

DATA_COMMENT = """\
# Optional: the userspace RPM {name}-data (DATA_RPM_VERSION, DATA_RPM_RELEASE). Its files come
# from {folder}/ next to this file, laid out as they install:
# lib/firmware/..., etc/modprobe.d/..., etc/udev/rules.d/..., usr/share/doc/...
"""

FOOTER = """\
# Optional: prebuilt RPMs to carry in the pack (a file, a folder or a glob).
# [[rpms]]
# path = "extra/tool-2.0-1.noarch.rpm"
"""


@dataclass(frozen=True)
class NewPack:
    """What `inv new` wrote, and what it tells the user."""

    path: Path
    report: tuple[str, ...]


@dataclass(frozen=True)
class PackDraft:
    """The [pack] values `inv new` writes."""

    label: str
    text: str
    uuid: str
    version: str
    vendor: str


@dataclass(frozen=True)
class _Data:
    """A data folder taken from a tarball into the pack (or why not)."""

    source: DataFolder
    folder: str  # its name beside pack.toml
    version: str
    note: str
    usable: bool


def new_pack(root: Path, label: str, tarballs: Sequence[Path] = (), spec: Path | None = None) -> NewPack:
    """Write packs/<label>/pack.toml (and copy its sources beside it); refuse to touch an existing pack."""
    if not is_label(label):
        raise PackError(
            [f"{label!r} is not a valid label: use letters, digits, '_' and '-' only"],
            hint="e.g. inv new acme-nic",
        )
    folder = root / PACKS_DIR / label
    path = folder / PACK_FILE
    shown = _shown(path, root)
    if path.exists():
        raise PackError([f"{shown} already exists"], hint="pick another label or edit that file")

    drafts: list[DriverDraft] = []
    if spec is not None:
        drafts.append(draft_from_spec(spec))
    drafts += [draft_from_tarball(tarball) for tarball in tarballs]
    if not drafts:
        drafts.append(blank_draft(label))
    data = [_data_plan(d) for d in drafts]
    _check_copies(folder, drafts, data, shown)
    first = drafts[0]
    text = str(first.value("summary")) if (spec is not None or tarballs) else f"{label} driver"
    version = str(first.value("version")) if (spec is not None or tarballs) else "1.0.0"
    vendor = next((d.vendor for d in drafts if d.vendor), PLACEHOLDER_VENDOR)
    pack_id = str(uuid.uuid4())
    info = PackDraft(label, text, pack_id, version, vendor)
    _validate(info, drafts, data, shown)

    rendered = render_pack(info, drafts, data, tarballs, spec)
    created_folder = not folder.exists()
    made: list[Path] = []
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for draft in drafts:
            for source, name in draft.copies:
                if _copy(source, folder / name):
                    made.append(folder / name)
        for item in data:
            if item is not None and item.usable and not (folder / item.folder).exists():
                _take_data_folder(item, folder)
                made.append(folder / item.folder)
        write_text(path, rendered)
    except BaseException:
        for made_path in reversed(made):
            if made_path.is_dir():
                shutil.rmtree(made_path, ignore_errors=True)
            else:
                made_path.unlink(missing_ok=True)
        if created_folder:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    return NewPack(path, tuple(_report(info, shown, drafts, data)))


# planning and checking, before anything is written


def _data_plan(draft: DriverDraft) -> _Data | None:
    if draft.data is None:
        return None
    folder = PurePosixPath(draft.data.member).name
    version, note = rpm_safe_version(draft.data.version)
    return _Data(draft.data, folder, version, note, usable=not draft.data.refused)


def _check_copies(folder: Path, drafts: Sequence[DriverDraft], data: Sequence[_Data | None], shown: str) -> None:
    """Two inputs for one name, or a different file already in the pack folder: refuse before writing."""
    problems = []
    targets: dict[str, Path] = {}
    for draft in drafts:
        for source, name in draft.copies:
            previous = targets.setdefault(name, source)
            if previous.resolve() != source.resolve():
                problems.append(f"{previous} and {source} would both be copied as {name} beside {shown}")
            dest = folder / name
            if dest.exists() and not _same_file(source, dest):
                problems.append(f"{_shown(dest, folder.parent.parent)} already exists and differs from {source}")
    for item in data:
        if item is not None and item.folder in targets:
            problems.append(f"the data folder {item.folder}/ and a file of the same name would both go beside {shown}")
    if problems:
        raise PackError(problems, hint="rename one of the inputs, or remove the file from the pack folder")


def _same_file(source: Path, dest: Path) -> bool:
    if source.resolve() == dest.resolve():
        return True
    if not dest.is_file() or source.stat().st_size != dest.stat().st_size:
        return False
    with source.open("rb") as a, dest.open("rb") as b:
        while True:
            chunk = a.read(1 << 20)
            if chunk != b.read(1 << 20):
                return False
            if not chunk:
                return True


def _validate(info: PackDraft, drafts: Sequence[DriverDraft], data: Sequence[_Data | None], shown: str) -> None:
    """The pack as it will be written must load: checked with the models before writing a byte."""
    drivers = []
    for draft, item in zip(drafts, data, strict=True):
        values = draft.model_input()
        if item is not None and item.usable:
            values["data"] = _data_values(draft, item)
        drivers.append(values)
    raw = {
        "pack": {
            "label": info.label,
            "text": info.text,
            "uuid": info.uuid,
            "version": info.version,
            "vendor": info.vendor,
        },
        "target": {"kernel": "auto"},
        "drivers": drivers,
    }
    try:
        Pack.model_validate(raw)
    except ValidationError as exc:
        raise PackError(
            [f"{shown} would not be valid: {line}" for line in format_validation_errors(exc)],
            hint="the inputs give values the pack file refuses; start from 'inv new LABEL' and edit pack.toml",
        ) from None


def _data_values(draft: DriverDraft, item: _Data) -> dict[str, str]:
    values = {"version": item.version, "release": "1"}
    if item.folder != f"{draft.value('name')}-data-{item.version}":
        values["folder"] = item.folder
    return values


# writing


def _copy(source: Path, dest: Path) -> bool:
    """Copy under a temporary name, then rename; False when dest already is that file."""
    if dest.exists() and _same_file(source, dest):
        return False
    with atomic_path(dest) as tmp:
        shutil.copyfile(source, tmp)
    return True


def _take_data_folder(item: _Data, folder: Path) -> None:
    """Unpack the tarball (with the same checks as the build) and keep just the data folder."""
    scratch = folder / f".{item.folder}.unpack-{os.getpid()}"
    shutil.rmtree(scratch, ignore_errors=True)
    try:
        top = extract_tarball(item.source.tarball, scratch)
        os.rename(top / item.source.member, folder / item.folder)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def toml_string(text: str) -> str:
    """A TOML basic string holding `text` exactly."""
    out = []
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif char == "\n":
            out.append("\\n")
        elif char == "\t":
            out.append("\\t")
        elif ord(char) < 32 or ord(char) == 127:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def toml_value(value: TomlValue) -> str:
    """A TOML value: strings, booleans, arrays (tables one per line), inline tables."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{key} = {toml_value(val)}" for key, val in value.items()) + " }"
    if not value:
        return "[]"
    if not any(isinstance(item, dict) for item in value):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    return "[\n" + "\n".join(f"  {toml_value(item)}," for item in value) + "\n]"


def render_pack(
    info: PackDraft,
    drafts: Sequence[DriverDraft],
    data: Sequence[_Data | None],
    tarballs: Sequence[Path] = (),
    spec: Path | None = None,
) -> str:
    """The pack file text: every key with the comment that explains it."""
    sources = ([f"--from-spec {spec.name}"] if spec else []) + [f"--from {t.name}" for t in tarballs]
    written_by = f", written by: inv new {info.label} {' '.join(sources)}" if sources else ""
    parts = [
        HEADER.format(
            written_by=written_by,
            label=info.label,
            label_value=toml_string(info.label),
            text=toml_string(info.text),
            uuid=info.uuid,
            version=toml_string(info.version),
            vendor=toml_string(info.vendor),
        )
    ]
    for draft, item in zip(drafts, data, strict=True):
        parts.append(_render_driver(draft, item))
    parts.append(FOOTER)
    return "\n".join(parts)


def _render_driver(draft: DriverDraft, item: _Data | None) -> str:
    name = str(draft.value("name"))
    lines = ["# One [[drivers]] table per driver; each gives a kernel-module RPM <name>-<version>-<release>."]
    lines.append("[[drivers]]")
    lines += _render_keys(draft.keys)
    if not any(k.key == "spec" for k in draft.keys):
        lines.append('# Optional: extra make variables for Kbuild, e.g. ["CONFIG_FOO_DEBUG=y"].')
        lines.append("# make_args = []")
    lines.append("")
    if item is not None and item.usable:
        lines.append(DATA_COMMENT.format(name=name, folder=item.folder).rstrip("\n"))
        lines.append("[drivers.data]")
        lines += [f"{key} = {toml_string(value)}" for key, value in _data_values(draft, item).items()]
    else:
        lines.append(DATA_COMMENT.format(name=name, folder=f"{name}-data-<version>").rstrip("\n"))
        lines += ["# [drivers.data]", '# version = "1.0"', '# release = "1"']
    return "\n".join(lines) + "\n"


def _render_keys(keys: Sequence[DraftKey]) -> list[str]:
    lines = []
    for key in keys:
        lines += [f"# {comment}" for comment in key.comment]
        lines.append(f"{key.key} = {toml_value(key.value)}")
    return lines


# what the user reads


def _report(info: PackDraft, shown: str, drafts: Sequence[DriverDraft], data: Sequence[_Data | None]) -> list[str]:
    label = info.label
    lines = [f"created {shown}"]
    decide = [f"pack.text: what the installer shows; now {info.text!r}"]
    if info.vendor == PLACEHOLDER_VENDOR:
        decide.append(f"pack.vendor: your company, the RPMs' Vendor; now {info.vendor!r}")
    if any(_wrote_changelog(d) for d in drafts):
        decide.append(f"the changelog's author: now {DEFAULT_AUTHOR!r}")
    decide += [
        "target.kernel: 'auto' builds for the kernel installed here; for Citrix Hypervisor 8.2 set "
        "'4.19.0+1' and kernel_devel (see the comment in the file)",
    ]
    for index, (draft, item) in enumerate(zip(drafts, data, strict=True)):
        where = f" from {draft.origin}" if draft.origin else ""
        lines.append(f"drivers[{index}] {draft.value('name')}{where}:")
        lines += [f"    {fact}" for fact in draft.found]
        copied = [name for _, name in draft.copies]
        if copied:
            lines.append(f"    copied beside pack.toml: {', '.join(copied)}")
        if item is not None and item.usable:
            note = f" ({item.note})" if item.note else ""
            lines.append(
                f"    data RPM {draft.value('name')}-data {item.version}{note}: {item.source.member}/ from the "
                f"tarball, now {item.folder}/ beside pack.toml"
            )
        elif item is not None:
            lines.append(f"    {item.source.member}/ in the tarball is not used as the data RPM: {item.source.refused}")
            decide.append(
                f"drivers[{index}].data: lay out a {item.folder}/ folder beside pack.toml and uncomment [drivers.data]"
            )
        decide += [f"drivers[{index}]{'.' + key if key else ''}: {what}" for key, what in draft.decide]
    lines.append(f"still to decide, in {shown}:")
    lines += [f"    {line}" for line in decide]
    lines.append("    pack.uuid: fresh; keep it for every build of this pack")
    lines.append(f"next: inv check --pack {label}, then inv release-zip --pack {label}")
    return lines


def _wrote_changelog(draft: DriverDraft) -> bool:
    entries = draft.value("changelog")
    return isinstance(entries, list) and any(isinstance(e, dict) and e.get("author") == DEFAULT_AUTHOR for e in entries)


def _shown(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)
