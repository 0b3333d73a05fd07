"""specs: inspect each driver's tarball and render the kernel-module and data spec files."""

from __future__ import annotations

import datetime as dt
import shutil
from dataclasses import dataclass
from pathlib import Path

import jinja2

from driverpack import inbox, spectext
from driverpack.adapters.tarball import TarballLayout, inspect_tarball
from driverpack.atomic import atomic_path, write_text
from driverpack.context import Context
from driverpack.datafiles import DataFile, scan_data_folder
from driverpack.errors import PackError
from driverpack.load import LoadedPack
from driverpack.models import ChangelogEntry, Driver, is_spec_safe_path
from driverpack.routes import plan_route, render_build_script

# Data files dracut copies into the initrd (firmware, modprobe options): the data RPM rebuilds it.
INITRD_TREES = ("lib/firmware/", "etc/modprobe.d/")


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
    # The preflight refuses such names first; this guards the template against a call that skipped it.
    if not is_spec_safe_path(value):
        raise PackError(
            [f"{where}: {what} {value!r} has characters driverpack does not put in a spec"],
            hint="rename it using letters, digits and . _ + - only",
        )
    return value


def pack_file_shown(loaded: LoadedPack) -> str:
    """The pack file as the specs' first comment names it; rpm expands macros even in comments, so only a safe name."""
    folder = loaded.folder.name
    return f"{folder if is_spec_safe_path(folder) else loaded.label}/pack.toml"


def render_kmod_spec(ctx: Context, driver: Driver, layout: TarballLayout, index: int) -> str:
    loaded = ctx.loaded
    where = f"{loaded.file}: drivers[{index}]"
    if layout.top_dir:
        _checked_name(layout.top_dir, "the tarball's top directory", where)
    plan = plan_route(driver, layout)
    for folder in plan.module_folders:
        if folder:
            _checked_name(folder, "the Makefile's directory", where)
    return (
        _environment()
        .get_template("kmod.spec.j2")
        .render(
            pack_file=pack_file_shown(loaded),
            kernel=ctx.kernel.release,
            module_dir=ctx.kernel.module_dir,
            name=driver.rpm_name,
            epoch=driver.epoch,
            version=driver.version,
            release=driver.release,
            summary=spectext.escape(driver.summary),
            license=spectext.escape(driver.license),
            vendor=spectext.escape(loaded.pack.pack.vendor),
            source=driver.source_name(),
            patches=list(driver.patch_names()),
            requires_kernel=ctx.kernel.requires_kernel,
            description=description(driver.description, driver.summary),
            setup=setup_line(layout, driver),
            route=plan.route,
            build_script=render_build_script(plan),
            module_folders=plan.module_folders,
            changelog=render_changelog(driver.changelog, str(inbox.driver_evr(driver)), ctx.epoch),
        )
    )


def data_files(loaded: LoadedPack, driver: Driver, index: int) -> list[DataFile]:
    """The data folder's files, at their install paths (the preflight has reported any problem already)."""
    where = f"{loaded.file}: drivers[{index}].data.folder"
    folder = loaded.data_folder(driver)
    if not folder.is_dir():
        raise PackError([f"{where}: {folder} is not a folder"])
    files, problems = scan_data_folder(folder, driver.data_folder())
    if problems:
        raise PackError([f"{where}: {p}" for p in problems])
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
            pack_file=pack_file_shown(loaded),
            name=driver.data_name,
            version=data.version,
            release=data.release,
            summary=spectext.escape(data.summary or f"Firmware and configuration for {driver.name}"),
            license=spectext.escape(data.license or driver.license),
            vendor=spectext.escape(loaded.pack.pack.vendor),
            source=driver.data_source(),
            folder=driver.data_dir_name,
            description=description(
                "", f"Userspace files (firmware, modprobe rules, configuration) for {driver.name}."
            ),
            files=files,
            kernel=ctx.kernel.release,
            initrd_files=any(f.path.startswith(INITRD_TREES) for f in files),
            changelog=render_changelog(driver.changelog, f"{data.version}-{data.release}", ctx.epoch),
        )
    )


def write_driver_specs(ctx: Context, index: int) -> DriverSpecs:
    """Render build/<label>/SPECS/<name>.spec (and <name>-data.spec) for one driver."""
    driver = ctx.loaded.pack.drivers[index]
    data_spec = None
    if driver.data is not None:
        data_spec = ctx.specs_dir / f"{driver.data_name}.spec"
        write_text(data_spec, render_data_spec(ctx, driver, index))
    if driver.spec:
        # Copied under the driver's name: build/<label>/ then holds every spec rpmbuild runs, named from
        # validated names only (logs, the release zip), wherever the pack keeps its own.
        own_spec = ctx.specs_dir / f"{driver.name}.spec"
        with atomic_path(own_spec) as tmp:
            shutil.copyfile(ctx.loaded.resolve(driver.spec), tmp)
        return DriverSpecs(driver, own_spec, data_spec, None)
    layout = inspect_tarball(ctx.loaded.resolve(driver.source))
    kmod_spec = ctx.specs_dir / f"{driver.name}.spec"
    write_text(kmod_spec, render_kmod_spec(ctx, driver, layout, index))
    return DriverSpecs(driver, kmod_spec, data_spec, layout)


def written(specs: DriverSpecs) -> tuple[Path, ...]:
    """The spec files this step wrote for a driver (a hand-written one as its copy)."""
    return (specs.kmod_spec, *((specs.data_spec,) if specs.data_spec is not None else ()))


def write_specs(ctx: Context) -> SpecsResult:
    """Every driver's specs."""
    return SpecsResult(tuple(write_driver_specs(ctx, index) for index in range(len(ctx.loaded.pack.drivers))))
