"""Pydantic models of the pack file: the one boundary every pack passes before any step runs.

Validators check shape only; anything that looks at the disk or a tool is the preflight's job.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import PurePosixPath
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

_RPM_NAME = re.compile(r"^[A-Za-z0-9_+][A-Za-z0-9._+-]*$")
_RPM_VERSION = re.compile(r"^[A-Za-z0-9._+~^]+$")
_LABEL = re.compile(r"^[A-Za-z0-9_-]+$")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_KERNEL = re.compile(r"^[A-Za-z0-9._+~-]+$")


def _rpm_name(value: str) -> str:
    if not _RPM_NAME.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a valid rpm package name "
            "(letters, digits and . _ + - only, starting with a letter, digit, _ or +)"
        )
    return value


def _rpm_version(value: str) -> str:
    return _version_like(value, "version", "1.0.1")


def _rpm_release(value: str) -> str:
    return _version_like(value, "release", "1")


def _version_like(value: str, what: str, example: str) -> str:
    if value == "":
        raise ValueError(f"the {what} is empty (use e.g. {example})")
    if "-" in value:
        fix = "use 1.0.1 or put the suffix in release" if what == "version" else "use 1.1 or 1_1"
        raise ValueError(f"{value!r} contains '-', which rpm does not allow in a {what} ({fix})")
    if not _RPM_VERSION.fullmatch(value):
        raise ValueError(f"{value!r} is not a valid rpm {what}: use letters, digits and . _ + only (e.g. {example})")
    return value


def _label(value: str) -> str:
    if not _LABEL.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a valid label: use letters, digits, '_' and '-' only "
            "(it becomes update-<label>, the yum repo id and the ISO volume id)"
        )
    return value


def _uuid(value: str) -> str:
    if not _UUID.fullmatch(value):
        hint = " (use lowercase)" if _UUID.fullmatch(value.lower()) else ""
        raise ValueError(
            f"{value!r} is not a canonical lowercase uuid{hint}; make one with "
            "'python3 -c \"import uuid; print(uuid.uuid4())\"'"
        )
    return value


def _kernel(value: str) -> str:
    if value != "auto" and not _KERNEL.fullmatch(value):
        raise ValueError(f"{value!r} is not a kernel release (uname -r of the target, e.g. '4.19.0+1')")
    return value


_MAKE_ARG = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=[A-Za-z0-9._+/:,=-]*")


def _make_arg(value: str) -> str:
    # Only plain variables: make would run $(shell ...) or an option like --eval=... given here.
    if not _MAKE_ARG.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a plain NAME=value make variable (use letters, digits and . _ + / : , = - in values)"
        )
    return value


def _one_line(value: str) -> str:
    if value.strip() == "":
        raise ValueError("must not be empty")
    if "\n" in value or "\r" in value:
        raise ValueError("must be one line (it goes into an rpm header tag); remove the line break")
    if any(ord(c) < 32 and c != "\t" for c in value):
        raise ValueError("contains control characters; remove them")
    return value


def _relative_or_absolute_path(value: str) -> str:
    if value.strip() == "":
        raise ValueError("must not be empty")
    if "\n" in value or "\0" in value:
        raise ValueError("is not a usable file path")
    return value


RpmName = Annotated[str, AfterValidator(_rpm_name)]
RpmVersion = Annotated[str, AfterValidator(_rpm_version)]
RpmRelease = Annotated[str, AfterValidator(_rpm_release)]
Label = Annotated[str, AfterValidator(_label)]
Uuid = Annotated[str, AfterValidator(_uuid)]
KernelRelease = Annotated[str, AfterValidator(_kernel)]
OneLine = Annotated[str, AfterValidator(_one_line)]
FilePath = Annotated[str, AfterValidator(_relative_or_absolute_path)]
MakeArg = Annotated[str, AfterValidator(_make_arg)]
AfterApply = Literal["restartHost", "restartXAPI", "restartPV", "restartHVM"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)


class ChangelogEntry(_Model):
    date: dt.date
    author: OneLine
    text: str = Field(min_length=1)


class DataPackage(_Model):
    """The userspace RPM <name>-data: files from <name>-data-<version>/ next to pack.toml."""

    version: RpmVersion
    release: RpmRelease = "1"
    folder: str = ""  # default: <driver name>-data-<version>
    summary: str = ""
    license: str = ""


class Driver(_Model):
    name: RpmName
    version: RpmVersion
    release: RpmRelease = "1"
    source: FilePath
    summary: OneLine
    license: OneLine = "GPL"
    description: str = ""
    patches: tuple[FilePath, ...] = ()
    spec: str = ""
    make_args: tuple[MakeArg, ...] = ()
    changelog: tuple[ChangelogEntry, ...] = ()
    data: DataPackage | None = None
    # An in-box Citrix Hypervisor 8.2 driver package this driver upgrades: the kernel-module RPM
    # takes that Name (name stays the pack's handle for folders and logs); see inbox.py.
    replaces: RpmName | None = None
    epoch: Annotated[int, Field(ge=0)] | None = None

    @property
    def rpm_name(self) -> str:
        """The kernel-module RPM's Name."""
        return self.replaces or self.name

    @property
    def data_name(self) -> str:
        return f"{self.name}-data"

    def data_folder(self) -> str:
        assert self.data is not None
        return self.data.folder or f"{self.name}-data-{self.data.version}"

    def data_source(self) -> str:
        """The data folder's tarball in SOURCES: a plain tar, since the SRPM's payload compresses it."""
        return f"{self.data_folder()}.tar"


class ExtraRpm(_Model):
    path: FilePath


class PackInfo(_Model):
    label: Label | None = None
    text: OneLine
    uuid: Uuid
    version: RpmVersion
    build: RpmRelease = "1"
    vendor: OneLine = "driverpack"
    base_requires: str | None = None
    # None (not set): restartHost when the pack carries kernel modules, else nothing; see guidance.py.
    after_apply: tuple[AfterApply, ...] | None = None
    signing_key: str | None = None

    @model_validator(mode="after")
    def _base_requires_shape(self) -> PackInfo:
        if self.base_requires is not None:
            _one_line(self.base_requires)
            if "%" in self.base_requires:
                raise ValueError("base_requires must not contain '%'")
        return self


class KernelTarget(_Model):
    kernel: KernelRelease = "auto"
    build_dir: str = ""
    module_dir: Literal["extra", "updates"] = "updates"
    kernel_devel: str = ""


class Pack(_Model):
    pack: PackInfo
    target: KernelTarget = KernelTarget()
    drivers: tuple[Driver, ...] = ()
    rpms: tuple[ExtraRpm, ...] = ()

    @property
    def label(self) -> str:
        return self.pack.label or self.drivers[0].name

    @model_validator(mode="after")
    def _unique_names(self) -> Pack:
        if not self.drivers:
            # A pack of prebuilt RPMs only (built by Koji, COPR or mock from the SRPMs) is fine.
            if not self.rpms:
                raise ValueError("drivers: a pack needs at least one [[drivers]] table (or [[rpms]] to carry)")
            if self.pack.label is None:
                raise ValueError("pack.label: required when the pack has no [[drivers]] (it defaults to the first)")
        seen: dict[str, str] = {}
        names = [
            (f"drivers[{i}].replaces" if d.replaces else f"drivers[{i}].name", d.rpm_name)
            for i, d in enumerate(self.drivers)
        ]
        names += [(f"drivers[{i}].data", d.data_name) for i, d in enumerate(self.drivers) if d.data]
        names += [("pack.label", f"update-{self.label}"), ("pack.label", f"control-{self.label}")]
        for where, name in names:
            if name in seen:
                raise ValueError(f"package name {name!r} at {where} is already used at {seen[name]}; rename one")
            seen[name] = where
        if self.pack.label is None and self.drivers:
            try:
                _label(self.drivers[0].name)
            except ValueError as exc:
                raise ValueError(
                    f"pack.label: not set, so it defaults to drivers[0].name, and {exc}; set [pack] label"
                ) from None
        return self

    def source_date_epoch(self) -> int:
        """SOURCE_DATE_EPOCH default: the newest changelog date (midnight UTC), else 2000-01-01."""
        dates = [entry.date for d in self.drivers for entry in d.changelog]
        newest = max(dates) if dates else dt.date(2000, 1, 1)
        return int(dt.datetime(newest.year, newest.month, newest.day, tzinfo=dt.UTC).timestamp())


def is_rpm_version(kernel: str) -> bool:
    """Whether rpm can use a kernel release as a version (CH 8.2's 4.19.0+1 yes, Debian's 6.1.0-9-amd64 no)."""
    return "-" not in kernel and bool(_RPM_VERSION.fullmatch(kernel))


def is_label(value: str) -> bool:
    return bool(_LABEL.fullmatch(value))


def is_uuid(value: str) -> bool:
    return bool(_UUID.fullmatch(value))


def data_path_allowed(path: PurePosixPath) -> bool:
    """Whether a data package file may install at `path` (absolute)."""
    allowed = ("/lib/firmware", "/etc", "/usr/share/doc")
    text = str(path)
    return any(text == root or text.startswith(root + "/") for root in allowed)
