"""specs: inspect each driver's tarball and render the kernel-module and data spec files."""

from __future__ import annotations

import datetime as dt
import re
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import jinja2

from driverpack import inbox, spectext
from driverpack.adapters.tarball import TarballLayout, inspect_tarball
from driverpack.atomic import write_text
from driverpack.context import Context
from driverpack.errors import PackError
from driverpack.load import LoadedPack
from driverpack.models import ChangelogEntry, Driver, data_path_allowed

# Data files dracut copies into the initrd (firmware, modprobe options): the data RPM rebuilds it.
INITRD_TREES = ("lib/firmware/", "etc/modprobe.d/")

# Names that are safe in a spec, a shell command and %files without quoting tricks.
_SAFE_NAME = re.compile(r"^[A-Za-z0-9._+@:,=-]+$")


@dataclass(frozen=True)
class DataFile:
    path: str  # install path without the leading '/'
    mode: str  # octal, e.g. "0644"
    is_config: bool


@dataclass(frozen=True)
class DriverSpecs:
    driver: Driver
    kmod_spec: Path
    data_spec: Path | None
    layout: TarballLayout | None  # None for a hand-written spec


@dataclass(frozen=True)
class SpecsResult:
    drivers: tuple[DriverSpecs, ...]


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("driverpack", "templates"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )


def render_changelog(entries: tuple[ChangelogEntry, ...], evr: str, epoch: int) -> str:
    """%changelog body, newest first; a pack without entries gets one dated SOURCE_DATE_EPOCH."""
    if not entries:
        day = dt.datetime.fromtimestamp(epoch, dt.UTC).date()
        entries = (ChangelogEntry(date=day, author="driverpack", text="Built with driverpack"),)
    blocks = []
    for entry in sorted(entries, key=lambda e: e.date, reverse=True):
        lines = [line.strip() for line in entry.text.strip().splitlines() if line.strip()]
        body = "\n".join(("- " if i == 0 else "  ") + spectext.escape_block(line) for i, line in enumerate(lines))
        header = f"* {entry.date.strftime('%a %b %d %Y')} {spectext.escape(entry.author)} - {evr}"
        blocks.append(f"{header}\n{body}")
    return "\n\n".join(blocks)


def description(text: str, fallback: str) -> str:
    return spectext.escape_block(text.strip() or fallback)


def setup_line(layout: TarballLayout, driver: Driver) -> str:
    if layout.top_dir is None:
        return f"%setup -q -c -n {driver.name}-{driver.version}"
    return f"%setup -q -n {layout.top_dir}"


def _checked_name(value: str, what: str, where: str) -> str:
    for part in PurePosixPath(value).parts:
        if not _SAFE_NAME.match(part):
            raise PackError(
                [f"{where}: {what} {value!r} has characters driverpack does not put in a spec"],
                hint="rename it using letters, digits and . _ + - only",
            )
    return value


def render_kmod_spec(ctx: Context, driver: Driver, layout: TarballLayout, index: int) -> str:
    loaded = ctx.loaded
    where = f"{loaded.file}: drivers[{index}]"
    if layout.top_dir:
        _checked_name(layout.top_dir, "the tarball's top directory", where)
    if layout.build_dir:
        _checked_name(layout.build_dir, "the Makefile's directory", where)
    for arg in driver.make_args:
        if not re.fullmatch(r"[A-Za-z0-9_]+=[A-Za-z0-9._+/:,=-]*", arg):
            raise PackError(
                [f"{where}.make_args: {arg!r} is not a plain NAME=value make variable"],
                hint="use letters, digits and . _ + / : , = - in values",
            )
    return (
        _environment()
        .get_template("kmod.spec.j2")
        .render(
            pack_file=f"{loaded.folder.name}/pack.toml",
            kernel=ctx.kernel.release,
            module_dir=ctx.kernel.module_dir,
            name=driver.rpm_name,
            epoch=driver.epoch,
            version=driver.version,
            release=driver.release,
            summary=spectext.escape(driver.summary),
            license=spectext.escape(driver.license),
            vendor=spectext.escape(loaded.pack.pack.vendor),
            source=_checked_name(Path(driver.source).name, "source", f"{where}.source"),
            patches=[
                _checked_name(Path(p).name, "patch", f"{where}.patches[{i}]") for i, p in enumerate(driver.patches)
            ],
            requires_kernel=ctx.kernel.requires_kernel,
            description=description(driver.description, driver.summary),
            setup=setup_line(layout, driver),
            build_dir=layout.build_dir,
            make_args=driver.make_args,
            changelog=render_changelog(driver.changelog, str(inbox.driver_evr(driver)), ctx.epoch),
        )
    )


def data_files(loaded: LoadedPack, driver: Driver, index: int) -> list[DataFile]:
    """The data folder's files, at their install paths; every problem reported at once."""
    folder = loaded.folder / driver.data_folder()
    where = f"{loaded.file}: drivers[{index}].data"
    if not folder.is_dir():
        raise PackError(
            [f"{where}: data folder {driver.data_folder()}/ not found next to pack.toml"],
            hint="create it with the files laid out as they install (lib/firmware/..., etc/modprobe.d/...)",
        )
    files, problems = [], []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        info = path.lstat()
        if stat.S_ISDIR(info.st_mode):
            continue
        if not stat.S_ISREG(info.st_mode):
            problems.append(f"{where}: {driver.data_folder()}/{rel} is not a regular file (links are not packed)")
            continue
        if not data_path_allowed(PurePosixPath("/" + rel)):
            problems.append(
                f"{where}: {driver.data_folder()}/{rel} would install to /{rel}, outside the allowed trees "
                "(lib/firmware, etc, usr/share/doc)"
            )
            continue
        if not all(_SAFE_NAME.match(part) for part in PurePosixPath(rel).parts):
            problems.append(f"{where}: {driver.data_folder()}/{rel}: rename it using letters, digits and . _ + - only")
            continue
        mode = "0755" if info.st_mode & 0o111 else "0644"
        files.append(DataFile(path=rel, mode=mode, is_config=rel.startswith("etc/")))
    if problems:
        raise PackError(problems)
    if not files:
        raise PackError([f"{where}: data folder {driver.data_folder()}/ holds no files"])
    return files


def render_data_spec(ctx: Context, driver: Driver, index: int) -> str:
    assert driver.data is not None
    loaded = ctx.loaded
    data = driver.data
    files = data_files(loaded, driver, index)
    return (
        _environment()
        .get_template("data.spec.j2")
        .render(
            pack_file=f"{loaded.folder.name}/pack.toml",
            name=driver.data_name,
            version=data.version,
            release=data.release,
            summary=spectext.escape(data.summary or f"Firmware and configuration for {driver.name}"),
            license=spectext.escape(data.license or driver.license),
            vendor=spectext.escape(loaded.pack.pack.vendor),
            source=driver.data_source(),
            folder=_checked_name(driver.data_folder(), "data folder", f"{loaded.file}: drivers[{index}].data"),
            description=description(
                "", f"Userspace files (firmware, modprobe rules, configuration) for {driver.name}."
            ),
            files=files,
            kernel=ctx.kernel.release,
            initrd_files=any(f.path.startswith(INITRD_TREES) for f in files),
            changelog=render_changelog(driver.changelog, f"{data.version}-{data.release}", ctx.epoch),
        )
    )


def write_specs(ctx: Context) -> SpecsResult:
    """Render build/<label>/SPECS/<name>.spec (and <name>-data.spec) for every driver."""
    results = []
    for index, driver in enumerate(ctx.loaded.pack.drivers):
        data_spec = None
        if driver.data is not None:
            data_spec = ctx.specs_dir / f"{driver.data_name}.spec"
            write_text(data_spec, render_data_spec(ctx, driver, index))
        if driver.spec:
            results.append(DriverSpecs(driver, ctx.loaded.resolve(driver.spec), data_spec, None))
            continue
        layout = inspect_tarball(ctx.loaded.resolve(driver.source))
        kmod_spec = ctx.specs_dir / f"{driver.name}.spec"
        write_text(kmod_spec, render_kmod_spec(ctx, driver, layout, index))
        results.append(DriverSpecs(driver, kmod_spec, data_spec, layout))
    return SpecsResult(tuple(results))
