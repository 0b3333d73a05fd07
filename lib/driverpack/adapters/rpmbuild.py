"""rpmbuild with the settings Citrix Hypervisor 8.2's rpm 4.11 accepts, reproducibly."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from driverpack.errors import BuildError, ToolError
from driverpack.run import run

BUILDHOST = "driverpack"


@dataclass(frozen=True)
class BuiltSpec:
    spec: Path
    rpms: tuple[Path, ...]
    srpm: Path | None


_DB_FILES = ("rpmdb.sqlite", "Packages", "Packages.db", "data.mdb")


@functools.cache
def has_rpm_database() -> bool:
    """Debian has rpm but no database of installed packages: BuildRequires cannot be checked there.

    The database is looked for before it is queried: on Debian a query would create an empty one in ~/.rpmdb.
    """
    dbpath = Path(run(["rpm", "--eval", "%{_dbpath}"], quiet=True).stdout.decode().strip())
    if not any((dbpath / name).exists() for name in _DB_FILES):
        return False
    return run(["rpm", "-q", "--quiet", "rpm"], check=False, quiet=True).returncode == 0


# Every folder rpmbuild writes to or deletes in, each inside _topdir: %setup's `rm -rf`, %install and
# rpm's own temporary scripts (_tmppath, /var/tmp by default) then cannot reach outside it. The RPMs
# themselves may go to shared folders (rpmdir, srcrpmdir), which the caller keeps inside build/<label>/.
DIRECTORY_MACROS = {
    "_topdir": "",
    "_builddir": "BUILD",
    "_sourcedir": "SOURCES",
    "_specdir": "SPECS",
    "_rpmdir": "RPMS",
    "_srcrpmdir": "SRPMS",
    "_buildrootdir": "BUILDROOT",
    "_tmppath": "tmp",
}


def macro_path(path: Path) -> str:
    """A path as the body of a --define. rpm expands folder macros more than once, so no escaping keeps a '%'
    literal: a path holding one would be read as macros (the pack's paths cannot hold one; the checkout's might)."""
    if "%" in str(path):
        raise BuildError(
            f"rpmbuild cannot work with the path {path}: rpm reads the '%' in it as a macro",
            hint="build from a folder whose path has no '%'",
        )
    return str(path)


def rpmbuild_argv(
    spec: Path,
    topdir: Path,
    *,
    what: str,
    defines: Mapping[str, str],
    rpmdir: Path | None = None,
    srcrpmdir: Path | None = None,
) -> list[str]:
    folders = {macro: topdir / sub for macro, sub in DIRECTORY_MACROS.items()}
    folders["_rpmdir"] = rpmdir or folders["_rpmdir"]
    folders["_srcrpmdir"] = srcrpmdir or folders["_srcrpmdir"]
    settings = {
        **{macro: macro_path(folder) for macro, folder in folders.items()},
        "_buildhost": BUILDHOST,
        "use_source_date_epoch_as_buildtime": "1",
        "clamp_mtime_to_source_date_epoch": "1",
        "_build_id_links": "none",
        "debug_package": "%{nil}",
        "_binary_payload": "w9.gzdio",
        "_source_payload": "w9.gzdio",
        **dict(defines),
    }
    argv = ["rpmbuild", what]
    for key, value in settings.items():
        argv += ["--define", f"{key} {value}"]
    if not has_rpm_database():
        argv.append("--nodeps")
    return [*argv, str(spec)]


def rpmbuild(
    spec: Path,
    topdir: Path,
    *,
    epoch: int,
    log: Path,
    what: str = "-ba",
    defines: Mapping[str, str] | None = None,
    rpmdir: Path | None = None,
    srcrpmdir: Path | None = None,
) -> BuiltSpec:
    """Build `spec`; return the RPMs rpmbuild reports it wrote."""
    for sub in DIRECTORY_MACROS.values():
        (topdir / sub).mkdir(parents=True, exist_ok=True)
    for folder in (rpmdir or topdir / "RPMS", srcrpmdir or topdir / "SRPMS"):
        folder.mkdir(parents=True, exist_ok=True)
    argv = rpmbuild_argv(spec, topdir, what=what, defines=defines or {}, rpmdir=rpmdir, srcrpmdir=srcrpmdir)
    try:
        proc = run(argv, log=log, source_date_epoch=epoch)
    except ToolError as exc:
        raise BuildError(f"rpmbuild of {spec.name} failed", hint=exc.message) from None
    written = [
        Path(line.split(":", 1)[1].strip())
        for line in (proc.stdout + proc.stderr).decode(errors="replace").splitlines()
        if line.startswith("Wrote:")
    ]
    return BuiltSpec(
        spec=spec,
        rpms=tuple(p for p in written if not p.name.endswith(".src.rpm")),
        srpm=next((p for p in written if p.name.endswith(".src.rpm")), None),
    )
