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


_MAKE_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


_MAKE_VALUE = re.compile(r"[A-Za-z0-9 ._+/:,=@%{}-]*")


def _make_arg(value: str) -> str:
    # A make variable given as one argv word (never through a shell), so spaces are fine
    # ("EXTRA_CFLAGS=-DFOO -DBAR"). Kbuild pastes values into recipe lines that a shell runs, so a
    # value holds plain words only: no quote, ';', '$', backquote, redirection or glob character.
    name, equals, rest = value.partition("=")
    if not equals or not _MAKE_VARIABLE.fullmatch(name) or not _MAKE_VALUE.fullmatch(rest):
        raise ValueError(
            f"{value!r} is not a plain NAME=value make variable (a value holds words separated by spaces, made "
            "of letters, digits and . _ + / : , = @ % -, and placeholders like {kernel_build_dir})"
        )
    from driverpack.routes import parse_template

    if any(isinstance(part, str) and ("{" in part or "}" in part) for part in parse_template(value)):
        raise ValueError(f"{value!r}: a literal brace in a make variable would be expanded by the recipe's shell")
    return value


def _has_control(value: str) -> bool:
    return any(ord(c) < 32 or ord(c) == 127 for c in value)


def _template(value: str) -> None:
    from driverpack.routes import parse_template

    parse_template(value)


def _template_word(value: str) -> str:
    """A word of a prepare command or an environment value: one line, no shell or make expansion."""
    if _has_control(value):
        raise ValueError(f"{value!r} holds a line break or control character")
    if any(c in value for c in "$`"):
        raise ValueError(f"{value!r} holds '$' or a backquote; placeholders are written {{kernel_build_dir}}")
    _template(value)
    return value


_FOLDER_PART = re.compile(r"^[A-Za-z0-9._+@:,=-]+$")


def _tree_path(value: str, what: str) -> str:
    parts = value.split("/")
    if (
        value.startswith("/")
        or any(p in ("", ".", "..") for p in parts)
        or not all(_FOLDER_PART.match(p) for p in parts)
    ):
        raise ValueError(
            f"{value!r} is not a {what} inside the source tree: give it relative to the tarball's top directory, "
            "without '..', '.', empty or absolute parts, using letters, digits and . _ + @ : , = - only"
        )
    return value


_FINGERPRINT = re.compile(r"^[0-9A-F]{40}$")


def _fingerprint(value: str) -> str:
    # gpg --fingerprint prints groups of four: accept those, keep the plain uppercase form.
    plain = value.replace(" ", "").upper()
    if _FINGERPRINT.fullmatch(plain):
        return plain
    if re.fullmatch(r"(0X)?([0-9A-F]{8}|[0-9A-F]{16})", plain):
        raise ValueError(
            f"{value!r} is a short key id, which more than one key can have: give the key's whole 40-digit "
            "fingerprint (the fpr line of 'gpg --list-secret-keys --with-colons')"
        )
    raise ValueError(
        f"{value!r} is not an OpenPGP key fingerprint: 40 hexadecimal digits "
        "(the fpr line of 'gpg --list-secret-keys --with-colons')"
    )


def _tree_folder(value: str) -> str:
    return value if value == "" else _tree_path(value, "folder")


def _make_target(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9._+/-]*", value):
        raise ValueError(f"{value!r} is not a make target (letters, digits and . _ + / - only, not starting with '-')")
    return value


def _makefile(value: str) -> str:
    if value and not (_FOLDER_PART.match(value) and not value.startswith("-") and value not in (".", "..")):
        raise ValueError(f"{value!r} is not a file name in the build folder (letters, digits and . _ + - only)")
    return value


# Environment names a prepare step may not set: they change which program runs or how the shell and make
# read their input, or driverpack sets them itself.
_RESERVED_ENV = {
    "PATH",
    "PWD",
    "HOME",
    "IFS",
    "CDPATH",
    "ENV",
    "BASH_ENV",
    "SHELL",
    "SHELLOPTS",
    "BASHOPTS",
    "PS4",
    "MAKEFLAGS",
    "MFLAGS",
    "GNUMAKEFLAGS",
    "MAKEFILES",
    "MAKEOVERRIDES",
    "MAKELEVEL",
    "KBUILD_EXTRA_SYMBOLS",
    "SOURCE_DATE_EPOCH",
}


def _env_name(value: str) -> str:
    from driverpack.routes import KERNEL_BUILD_DIR_NAMES, KERNEL_RELEASE_NAMES

    if not _MAKE_VARIABLE.fullmatch(value):
        raise ValueError(f"{value!r} is not an environment variable name (letters, digits and _)")
    if value in _RESERVED_ENV or value.startswith(("LD_", "BASH_FUNC")):
        raise ValueError(f"{value!r} may not be set by a pack (it changes which program runs or how)")
    if value in KERNEL_RELEASE_NAMES + KERNEL_BUILD_DIR_NAMES:
        raise ValueError(f"{value!r} is already exported by driverpack as the target kernel's release or build dir")
    return value


# A prepare step runs a file of the source tree, directly or through one of these interpreters.
INTERPRETERS = ("bash", "sh", "perl", "python3")


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
Fingerprint = Annotated[str, AfterValidator(_fingerprint)]
OneLine = Annotated[str, AfterValidator(_one_line)]
FilePath = Annotated[str, AfterValidator(_relative_or_absolute_path)]
MakeArg = Annotated[str, AfterValidator(_make_arg)]
TemplateWord = Annotated[str, AfterValidator(_template_word)]
TreeFolder = Annotated[str, AfterValidator(_tree_folder)]
MakeTarget = Annotated[str, AfterValidator(_make_target)]
Makefile = Annotated[str, AfterValidator(_makefile)]
EnvName = Annotated[str, AfterValidator(_env_name)]
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


class PrepareStep(_Model):
    """A command run in the unpacked tree before the build (a generator, a configure script)."""

    run: tuple[TemplateWord, ...] = Field(min_length=1)
    env: dict[EnvName, TemplateWord] = {}
    folder: TreeFolder = ""

    @model_validator(mode="after")
    def _runs_a_tree_file(self) -> PrepareStep:
        # Only files of the source tree run (directly or through an interpreter), never a command of the
        # build host with arguments of the pack's choosing: 'rm', 'bash -c ...'.
        program, *rest = self.run
        if program in INTERPRETERS:
            if not rest or rest[0].startswith("-"):
                raise ValueError(
                    f"run: {program} must be followed by a script of the source tree (e.g. "
                    f'["{program}", "kcompat-generator.sh"]), not an option'
                )
            _tree_path(rest[0].removeprefix("./"), "script")
        else:
            try:
                _tree_path(program.removeprefix("./"), "program")
            except ValueError:
                raise ValueError(
                    f"run: {program!r} is neither a file of the source tree (e.g. './configure', relative to "
                    f"the step's folder) nor one of {', '.join(INTERPRETERS)} followed by such a file"
                ) from None
        return self


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
    build: Literal["kbuild", "vendor"] = "kbuild"
    makefile: Makefile = ""
    targets: tuple[MakeTarget, ...] = ()
    prepare: tuple[PrepareStep, ...] = ()
    module_folders: tuple[TreeFolder, ...] = ()
    changelog: tuple[ChangelogEntry, ...] = ()
    data: DataPackage | None = None

    @property
    def data_name(self) -> str:
        return f"{self.name}-data"

    @model_validator(mode="after")
    def _route_shape(self) -> Driver:
        if self.build != "vendor" and (self.makefile or self.targets):
            raise ValueError('makefile and targets are for build = "vendor" (Kbuild builds the "modules" target)')
        if len(set(self.module_folders)) != len(self.module_folders):
            raise ValueError("module_folders: a folder is listed twice")
        return self

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
    after_apply: tuple[AfterApply, ...] = ()
    signing_key: str | None = None  # an armored secret key file (passphrase-protected or not)
    signing_fingerprint: Fingerprint | None = None  # a key in a GnuPG keyring, used where it is
    gnupghome: FilePath | None = None  # that keyring, when not $GNUPGHOME or ~/.gnupg
    source_archive_data: bool = False  # also put the data SRPMs (firmware, configuration) in the source archive

    @model_validator(mode="after")
    def _base_requires_shape(self) -> PackInfo:
        if self.base_requires is not None:
            _one_line(self.base_requires)
            if "%" in self.base_requires:
                raise ValueError("base_requires must not contain '%'")
        return self

    @model_validator(mode="after")
    def _one_signing_route(self) -> PackInfo:
        if self.signing_key is not None and self.signing_fingerprint is not None:
            raise ValueError(
                "signing_key and signing_fingerprint are both set: keep signing_key for an armored secret key "
                "file, or signing_fingerprint for a key in your GnuPG keyring, not both"
            )
        if self.gnupghome is not None and self.signing_fingerprint is None:
            raise ValueError(
                "gnupghome is set without signing_fingerprint: name the key to sign with from that keyring"
            )
        return self


class KernelTarget(_Model):
    kernel: KernelRelease = "auto"
    build_dir: str = ""
    module_dir: Literal["extra", "updates"] = "extra"
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
        names = [(f"drivers[{i}].name", d.name) for i, d in enumerate(self.drivers)]
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
