"""Pydantic models of the pack file: the one boundary every pack passes before any step runs.

Validators check shape only; anything that looks at the disk or a tool is the preflight's job.
docs/pack-values.md lists, for every key, where its value ends up and which rule here or in the
preflight keeps it there.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import PurePosixPath
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

_RPM_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._+-]*$")  # rpm 4.18 refuses a Name starting with '+'
# No '^': a caret in a version needs rpmlib(CaretInVersions), which the host's rpm 4.11 lacks.
_RPM_VERSION = re.compile(r"^[A-Za-z0-9._+~]+$")
_LABEL = re.compile(r"^[A-Za-z0-9_-]+$")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
# Starts with a letter or digit: the release is also an argument of depmod and dracut on the host.
_KERNEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+~-]*$")

# Names, versions, releases and the label are put together into file names (name-version-release.arch.rpm,
# .label-version.zip.tmp-PID): 64 characters each keeps every such name far below the 255-byte limit.
NAME_MAX = 64
# Linux limits: a whole path, and one name in it.
PATH_MAX = 4096
PATH_NAME_MAX = 255

SOURCE_SUFFIXES = (".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".tar")
# A file name rpm's Source/Patch tags, %setup's unquoted shell words, a tar member, the ISO and
# update.xml all take as it is.
_PLAIN_FILE_NAME = re.compile(r"[A-Za-z0-9_+][A-Za-z0-9._+~^-]*")


def is_plain_file_name(name: str, longest: int = PATH_NAME_MAX) -> bool:
    return len(name) <= longest and bool(_PLAIN_FILE_NAME.fullmatch(name))


def shown(value: str) -> str:
    """A pack value quoted for a message: repr (so control characters show), cut when very long."""
    return repr(value) if len(value) <= 120 else repr(value[:120]) + f"... ({len(value)} characters)"


def _length(value: str, what: str) -> None:
    if len(value) > NAME_MAX:
        raise ValueError(
            f"{shown(value)} is too long for a {what}: "
            f"use at most {NAME_MAX} characters (it becomes part of file names)"
        )


def _rpm_name(value: str) -> str:
    if not _RPM_NAME.fullmatch(value):
        raise ValueError(
            f"{shown(value)} is not a valid rpm package name "
            "(letters, digits and . _ + - only, starting with a letter, digit or _)"
        )
    _length(value, "package name")
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
        raise ValueError(f"{shown(value)} contains '-', which rpm does not allow in a {what} ({fix})")
    if not _RPM_VERSION.fullmatch(value):
        raise ValueError(
            f"{shown(value)} is not a valid rpm {what}: use letters, digits and . _ + only (e.g. {example})"
        )
    if ".." in value:
        raise ValueError(f"{shown(value)} holds '..', which rpm does not allow in a {what} (e.g. {example})")
    _length(value, what)
    return value


def _label(value: str) -> str:
    if not _LABEL.fullmatch(value):
        raise ValueError(
            f"{shown(value)} is not a valid label: use letters, digits, '_' and '-' only "
            "(it becomes update-<label>, the yum repo id and the ISO volume id)"
        )
    _length(value, "label")
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
    if value != "auto" and not is_kernel_release(value):
        raise ValueError(f"{shown(value)} is not a kernel release (uname -r of the target, e.g. '4.19.0+1')")
    return value


def is_kernel_release(value: str) -> bool:
    """Whether a kernel release is safe in the spec, in paths and as a depmod argument (also for 'auto')."""
    return len(value) <= NAME_MAX and bool(_KERNEL.fullmatch(value))


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


# What rpm reads in a Requires: line, without rich dependencies (rpm 4.11 on the host has none):
# name [op version], separated by commas or spaces.
_DEPENDENCY = r"[A-Za-z0-9_/][A-Za-z0-9._+/-]*(?:\s*(?:<|>|<=|>=|=)\s*[A-Za-z0-9._+~:-]+)?"
_REQUIRES = re.compile(rf"\s*{_DEPENDENCY}(?:(?:\s*,\s*|\s+){_DEPENDENCY})*\s*")


def _base_requires(value: str) -> str:
    _one_line(value)
    if "%" in value:
        raise ValueError("must not contain '%' (rpm would expand it in the control package's Requires)")
    if not _REQUIRES.fullmatch(value):
        raise ValueError(
            f"{shown(value)} is not an rpm requirement: name [op version], several separated by commas "
            "(e.g. 'product-version = 8.2.1')"
        )
    return value


def _optional_one_line(value: str) -> str:
    return value if value == "" else _one_line(value)


def _text(value: str) -> str:
    """Several lines (a description, a changelog entry): Windows line ends become plain ones."""
    value = value.replace("\r\n", "\n")
    if any(ord(c) < 32 and c not in "\n\t" for c in value):
        raise ValueError("contains control characters; remove them")
    return value


def _rpms_path(value: str) -> str:
    _relative_or_absolute_path(value)
    if "**" in value:
        raise ValueError(f"{shown(value)}: '**' (any depth) is not supported; name the folder holding the RPMs")
    return value


def _relative_or_absolute_path(value: str) -> str:
    if value.strip() == "":
        raise ValueError("must not be empty")
    if any(ord(c) < 32 or c == "\x7f" for c in value):
        raise ValueError(f"{shown(value)} is not a usable file path (it holds a line break or a control character)")
    if len(value.encode()) > PATH_MAX:
        raise ValueError(f"the path is longer than Linux allows ({PATH_MAX} bytes)")
    if any(len(part.encode()) > PATH_NAME_MAX for part in value.split("/")):
        raise ValueError(f"{shown(value)} has a name longer than Linux allows ({PATH_NAME_MAX} bytes)")
    return value


def _optional_path(value: str) -> str:
    return value if value == "" else _relative_or_absolute_path(value)


def sources_name(value: str, derived_stem: str, suffixes: tuple[str, ...]) -> str:
    """The name a source or patch gets in rpmbuild's SOURCES (and the spec): its own when that is safe, else derived.

    The derived name is made of validated names only, so no file name from the disk reaches a spec.
    """
    name = PurePosixPath(value).name
    if is_plain_file_name(name, longest=128):  # room for the temporary names beside it
        return name
    suffix = next((s for s in suffixes if name.endswith(s)), suffixes[0])
    return derived_stem + suffix


RpmName = Annotated[str, AfterValidator(_rpm_name)]
RpmVersion = Annotated[str, AfterValidator(_rpm_version)]
RpmRelease = Annotated[str, AfterValidator(_rpm_release)]
Label = Annotated[str, AfterValidator(_label)]
Uuid = Annotated[str, AfterValidator(_uuid)]
KernelRelease = Annotated[str, AfterValidator(_kernel)]
Fingerprint = Annotated[str, AfterValidator(_fingerprint)]
OneLine = Annotated[str, AfterValidator(_one_line)]
OptionalOneLine = Annotated[str, AfterValidator(_optional_one_line)]
BaseRequires = Annotated[str, AfterValidator(_base_requires)]
Text = Annotated[str, AfterValidator(_text)]
FilePath = Annotated[str, AfterValidator(_relative_or_absolute_path)]
OptionalFilePath = Annotated[str, AfterValidator(_optional_path)]  # "" means: not set
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
    text: Annotated[Text, Field(min_length=1)]


class DataPackage(_Model):
    """The userspace RPM <name>-data: files from <name>-data-<version>/ next to pack.toml, or from `folder`."""

    version: RpmVersion
    release: RpmRelease = "1"
    folder: OptionalFilePath = ""  # default: <driver name>-data-<version> next to pack.toml
    summary: OptionalOneLine = ""
    license: OptionalOneLine = ""


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
    description: Text = ""
    patches: tuple[FilePath, ...] = ()
    spec: OptionalFilePath = ""
    make_args: tuple[MakeArg, ...] = ()
    build: Literal["kbuild", "vendor"] = "kbuild"
    makefile: Makefile = ""
    targets: tuple[MakeTarget, ...] = ()
    prepare: tuple[PrepareStep, ...] = ()
    module_folders: tuple[TreeFolder, ...] = ()
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

    @model_validator(mode="after")
    def _route_shape(self) -> Driver:
        if self.build != "vendor" and (self.makefile or self.targets):
            raise ValueError('makefile and targets are for build = "vendor" (Kbuild builds the "modules" target)')
        if len(set(self.module_folders)) != len(self.module_folders):
            raise ValueError("module_folders: a folder is listed twice")
        return self

    def data_folder(self) -> str:
        """Where the pack keeps the data files (relative to pack.toml, absolute or ~): only ever read."""
        assert self.data is not None
        return self.data.folder or self.data_dir_name

    @property
    def data_dir_name(self) -> str:
        """The data files' folder in SOURCES, the tarball and %setup -n: fixed, whatever `folder` says."""
        assert self.data is not None
        return f"{self.name}-data-{self.data.version}"

    def data_source(self) -> str:
        """The data folder's tarball in SOURCES: a plain tar, since the SRPM's payload compresses it."""
        return f"{self.data_dir_name}.tar"

    def source_name(self) -> str:
        """Source0: the tarball's own file name, or <name>-<version>.tar.gz (etc.) when that is unsafe in a spec."""
        return sources_name(self.source, f"{self.name}-{self.version}", SOURCE_SUFFIXES)

    def patch_names(self) -> tuple[str, ...]:
        """PatchN: each patch's own file name, or <name>-<version>-patchN.patch when that is unsafe in a spec."""
        return tuple(
            sources_name(patch, f"{self.name}-{self.version}-patch{j}", (".patch",))
            for j, patch in enumerate(self.patches)
        )

    def sources_files(self) -> list[tuple[str, str, str]]:
        """(key, pack value, name in SOURCES) of every file this driver puts in rpmbuild's SOURCES."""
        files = [("source", self.source, self.source_name())]
        files += [
            (f"patches[{j}]", p, n) for j, (p, n) in enumerate(zip(self.patches, self.patch_names(), strict=True))
        ]
        if self.data is not None:
            files.append(("data.folder", self.data_folder(), self.data_source()))
        return files


class ExtraRpm(_Model):
    path: Annotated[str, AfterValidator(_rpms_path)]  # a file, a folder or a glob


class PackInfo(_Model):
    label: Label | None = None
    text: OneLine
    uuid: Uuid
    version: RpmVersion
    build: RpmRelease = "1"
    vendor: OneLine = "driverpack"
    base_requires: BaseRequires | None = None
    # None (not set): restartHost when the pack carries kernel modules, else nothing; see guidance.py.
    after_apply: tuple[AfterApply, ...] | None = None
    signing_key: str | None = None  # an armored secret key file (passphrase-protected or not)
    signing_fingerprint: Fingerprint | None = None  # a key in a GnuPG keyring, used where it is
    gnupghome: FilePath | None = None  # that keyring, when not $GNUPGHOME or ~/.gnupg
    source_archive_data: bool = False  # also put the data SRPMs (firmware, configuration) in the source archive

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
    build_dir: OptionalFilePath = ""
    module_dir: Literal["extra", "updates"] = "updates"
    kernel_devel: OptionalFilePath = ""


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
        # A driver's files sit side by side in its rpmbuild SOURCES: one name must not stand for two files.
        for i, driver in enumerate(self.drivers):
            in_sources: dict[str, tuple[str, str]] = {}
            for key, value, name in driver.sources_files():
                where = f"drivers[{i}].{key}"
                if name in in_sources and in_sources[name][1] != value:
                    raise ValueError(
                        f"{where}: its file name in rpmbuild's SOURCES, {name!r}, is also that of "
                        f"{in_sources[name][0]}; rename one of the two files"
                    )
                in_sources[name] = (where, value)
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


# Not starting with "-": a folder name is also an argument of %setup -n and cd.
_SPEC_SAFE_PART = re.compile(r"[A-Za-z0-9._+@:,=][A-Za-z0-9._+@:,=-]*")


def is_spec_safe_path(value: str) -> bool:
    """Whether a relative path (a data file, a tarball's folder) can stand in a spec and a shell word unquoted."""
    parts = value.split("/")
    return all(_SPEC_SAFE_PART.fullmatch(part) and part not in (".", "..") for part in parts)


def data_path_allowed(path: PurePosixPath) -> bool:
    """Whether a data package file may install at `path` (absolute)."""
    allowed = ("/lib/firmware", "/etc", "/usr/share/doc")
    text = str(path)
    return any(text == root or text.startswith(root + "/") for root in allowed)
