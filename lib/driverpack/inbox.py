"""Citrix Hypervisor 8.2's in-box driver packages, and the rules a pack's modules follow beside them.

The table (data/ch82-inbox-drivers.toml, its sources named in its header) lists each vendor
driver package dom0 installs and the modules it owns under /lib/modules/<kernel>/updates/.
depmod finds one module per name, so a pack's module of the same name must either replace
that package (same RPM Name, higher EVR: `xe update-apply` upgrades it like any yum update)
or be renamed. These checks run in the preflight (module names read from the Kbuild files),
right after compile (the .ko files built) and on every RPM read back (carried [[rpms]] too).
"""

from __future__ import annotations

import difflib
import functools
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources

from driverpack.adapters.rpminfo import RpmInfo
from driverpack.models import Driver, Pack
from driverpack.rpmver import Evr

TABLE_FILE = "ch82-inbox-drivers.toml"
PRODUCT = "Citrix Hypervisor 8.2"


@dataclass(frozen=True)
class InboxPackage:
    """One in-box driver package: its Name, EVR as shipped (None when not confirmed), its modules."""

    name: str
    evr: Evr | None
    modules: tuple[str, ...]  # file names, e.g. "i40e.ko"
    source: str
    note: str
    hotfix_evr: Evr | None = None  # a higher EVR a later 8.2 hotfix is known to ship (its changelog says so)


@functools.cache
def inbox_packages() -> tuple[InboxPackage, ...]:
    """The table, parsed once; a malformed table is a bug in driverpack (ValueError)."""
    text = resources.files("driverpack").joinpath("data", TABLE_FILE).read_text(encoding="utf-8")
    raw = tomllib.loads(text)
    packages = []
    for entry in raw["package"]:
        unknown = set(entry) - {"name", "evr", "modules", "source", "note", "hotfix_evr"}
        if unknown or not entry.get("modules") or not entry.get("source"):
            raise ValueError(f"{TABLE_FILE}: entry {entry.get('name')!r} is malformed ({sorted(unknown)})")
        modules = tuple(entry["modules"])
        if not all(m.endswith(".ko") and "/" not in m for m in modules):
            raise ValueError(f"{TABLE_FILE}: {entry['name']}: module file names must be plain '<name>.ko'")
        packages.append(
            InboxPackage(
                name=entry["name"],
                evr=Evr.parse(entry["evr"]) if entry["evr"] else None,
                modules=modules,
                source=entry["source"],
                note=entry.get("note", ""),
                hotfix_evr=Evr.parse(entry["hotfix_evr"]) if entry.get("hotfix_evr") else None,
            )
        )
    return tuple(packages)


def module_key(name: str) -> str:
    """A module's identity as modprobe sees it: no directory, no .ko, '-' and '_' alike."""
    return name.rsplit("/", 1)[-1].removesuffix(".ko").replace("-", "_")


@functools.cache
def _owners() -> dict[str, InboxPackage]:
    return {module_key(m): package for package in inbox_packages() for m in package.modules}


def owner_of(module: str) -> InboxPackage | None:
    """The in-box package owning a module of this name (`i40e`, `i40e.ko` or a path), if any."""
    return _owners().get(module_key(module))


def find_package(name: str) -> InboxPackage | None:
    return next((p for p in inbox_packages() if p.name == name), None)


def _evr_text(package: InboxPackage) -> str:
    return str(package.evr) if package.evr is not None else "EVR not confirmed"


def module_problems(modules: Iterable[str], rpm_name: str, where: str, *, carried: bool = False) -> list[str]:
    """Modules an RPM named `rpm_name` would ship that an in-box package of another name owns."""
    problems = []
    for module in sorted(set(modules), key=module_key):
        owner = owner_of(module)
        if owner is None or owner.name == rpm_name:
            continue
        ko = module_key(module) + ".ko"
        replace = (
            f"rebuild it as package {owner.name} with a higher version-release (it then upgrades the in-box driver)"
            if carried
            else f'set replaces = "{owner.name}" in this [[drivers]] table (the RPM is then named {owner.name} '
            "and upgrades the in-box driver; its version-release must be higher)"
        )
        problems.append(
            f"{where}: {'ships' if carried else 'builds'} {ko}, which {PRODUCT} ships in its package "
            f"{owner.name} ({_evr_text(owner)}) "
            f"under /lib/modules/<kernel>/updates/: a second package with that module conflicts with it or never "
            f"loads; either {replace}, or rename the module (its obj-m name) so both can coexist"
        )
    return problems


def driver_evr(driver: Driver) -> Evr:
    return Evr(driver.epoch, driver.version, driver.release)


def replaces_problems(pack: Pack, where: str) -> list[str]:
    """Each `replaces` names an in-box package, and the driver's EVR is higher than the in-box one."""
    problems = []
    for i, driver in enumerate(pack.drivers):
        if driver.replaces is None:
            continue
        package = find_package(driver.replaces)
        if package is None:
            names = [p.name for p in inbox_packages()]
            close = difflib.get_close_matches(driver.replaces, names, n=4, cutoff=0.5)
            listed = f"close names: {', '.join(close)}" if close else f"the in-box packages are: {', '.join(names)}"
            problems.append(
                f"{where}: drivers[{i}].replaces: {driver.replaces!r} is not one of {PRODUCT}'s in-box driver "
                f"packages ({listed})"
            )
            continue
        problems += evr_problems(driver_evr(driver), package, f"{where}: drivers[{i}]")
    return problems


def evr_problems(evr: Evr, package: InboxPackage, where: str) -> list[str]:
    """A replacement must sort above the in-box package, or yum keeps the in-box one."""
    if package.evr is None or evr.compare(package.evr) > 0:
        return []
    fix = "raise version or release"
    if (package.evr.epoch or 0) > (evr.epoch or 0):
        fix = f"set epoch = {package.evr.epoch} (the in-box package has Epoch {package.evr.epoch})"
    return [
        f"{where}: replaces {package.name} {package.evr}, but {evr} is not higher, so the host would keep the "
        f"in-box driver; {fix}"
    ]


def replaces_warnings(pack: Pack) -> list[str]:
    """Replacements whose in-box EVR is not confirmed: the build cannot check that they upgrade."""
    warnings = []
    for driver in pack.drivers:
        package = find_package(driver.replaces) if driver.replaces else None
        if package is not None and package.evr is None:
            warnings.append(
                f"{driver.name} replaces {package.name}, whose {PRODUCT} version is not confirmed "
                f"({package.note}); check that {driver_evr(driver)} is higher than 'rpm -q {package.name}' on the host"
            )
        elif (
            package is not None
            and package.hotfix_evr is not None
            and driver_evr(driver).compare(package.hotfix_evr) <= 0
        ):
            warnings.append(
                f"{driver.name} replaces {package.name}, and {driver_evr(driver)} is above {PRODUCT}'s {package.evr} "
                f"but not above {package.hotfix_evr}, which a later {PRODUCT} hotfix ships: a host with that hotfix "
                f"keeps its driver; check 'rpm -q {package.name}' on the hosts you target"
            )
    return warnings


def rpm_problems(info: RpmInfo) -> list[str]:
    """An RPM's modules against the table: another package's module, or a replacement that does not upgrade."""
    modules = [f.path for f in info.files if f.path.startswith("/lib/modules/") and f.path.endswith(".ko")]
    problems = module_problems(modules, info.name, info.path.name, carried=True)
    package = find_package(info.name)
    if package is not None and modules:
        problems += evr_problems(Evr(info.epoch, info.version, info.release), package, info.path.name)
    return problems
