"""driverpack tasks: thin wrappers that parse flags, load the pack and call one library function.

Imports of the library happen inside the tasks so that `inv --list` starts fast.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from invoke import Collection, Exit, task

sys.path.insert(0, str(Path(__file__).resolve().parent / "lib"))

ROOT = Path.cwd()
BUILD_HELP = {
    "jobs": "parallel jobs for compiling and packaging (default: the number of cores)",
    "wait": "when another run builds the same pack, wait at most this many seconds (default: until it ends)",
}
COMMON_HELP = {
    "debug": "show a traceback on errors",
    "verbose": "also print each tool's command line (always in the step's log under build/<label>/logs/)",
}
PACK_HELP = {"pack": "a label under packs/ or a path to a pack folder (default: every pack)", **COMMON_HELP}


def _guarded(work: Callable[[], Any], debug: bool, verbose: bool = False) -> Any:
    """The one place a driverpack error becomes a message and an exit code; -v shows tool command lines."""
    from driverpack.errors import DriverpackError
    from driverpack.run import commands_on_screen

    try:
        with commands_on_screen(verbose):
            return work()
    except DriverpackError as exc:
        if debug:
            raise
        raise Exit(f"error: {exc.render()}", code=exc.exit_code) from None
    except (OSError, ValueError, RuntimeError) as exc:
        if debug:
            raise
        raise Exit(
            f"error: {type(exc).__name__}: {exc}\n  hint: rerun with --debug for the traceback", code=1
        ) from None
    except KeyboardInterrupt:
        raise Exit("interrupted: finished outputs are the previous complete ones", code=130) from None


def _each_pack(pack: str | None, debug: bool, verbose: bool, step: Callable[..., Any]) -> None:
    from driverpack import pipeline

    def work() -> None:
        for loaded in pipeline.select_packs(pack, ROOT):
            step(loaded, ROOT)

    _guarded(work, debug, verbose)


def _seconds(text: str | None, option: str) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value < 0:
        raise Exit(f"error: {option} {text}: give a number of seconds (0 or more)", code=2)
    return value


def _build(
    pack: str | None, debug: bool, verbose: bool, name: str, jobs_text: str | None = None, wait_text: str | None = None
) -> None:
    """Run a build task on each pack; a rerun with nothing changed answers before loading the models."""
    from driverpack import quick

    if jobs_text is not None and not (str(jobs_text).isdigit() and int(jobs_text) > 0):
        raise Exit(f"error: --jobs {jobs_text}: give a positive number of jobs", code=2)
    jobs = int(jobs_text) if jobs_text else None
    wait = _seconds(wait_text, "--wait")

    folders = quick.pack_folders(pack, ROOT)
    labels = [quick.up_to_date(ROOT, folder, name) for folder in folders or []]
    if folders and all(labels):
        for label in labels:
            print(f"--- {name} [{label}] up to date: no input or output changed", file=sys.stderr)
        return

    def work() -> None:
        from driverpack import pipeline

        for loaded in pipeline.select_packs(pack, ROOT):
            pipeline.run_task(loaded, ROOT, name, jobs=jobs, wait=wait)

    _guarded(work, debug, verbose)


@task(help=PACK_HELP)
def check(c, pack=None, debug=False, verbose=False):
    """Validate pack files and preflight: tools, kernel build dir, sources, uuid uniqueness."""
    from driverpack import pipeline

    _guarded(lambda: pipeline.check_all(pipeline.select_packs(pack, ROOT), ROOT), debug, verbose)
    print("check: ok")


@task(help={**PACK_HELP, "wait": BUILD_HELP["wait"]})
def specs(c, pack=None, wait=None, debug=False, verbose=False):
    """Write the kernel-module and data spec files to build/<label>/SPECS/."""
    _build(pack, debug, verbose, "specs", wait_text=wait)


@task(help={**PACK_HELP, **BUILD_HELP})
def compile(c, pack=None, jobs=None, wait=None, debug=False, verbose=False):
    """Unpack, patch and compile each driver against the target kernel; check every module's vermagic."""
    _build(pack, debug, verbose, "compile", jobs, wait)


@task(help={**PACK_HELP, **BUILD_HELP, "srpms-only": "write just the SRPMs (for mock, Koji, COPR); compile nothing"})
def build_rpms(c, pack=None, srpms_only=False, jobs=None, wait=None, debug=False, verbose=False):
    """Build the kernel-module, data and source RPMs under build/<label>/rpmbuild/ and check them."""
    _build(pack, debug, verbose, "srpms" if srpms_only else "build-rpms", jobs, wait)


@task(help={**PACK_HELP, **BUILD_HELP})
def iso(c, pack=None, jobs=None, wait=None, debug=False, verbose=False):
    """Write the signed supplemental pack dist/<label>.iso, its .md5 files and public key; verify it."""
    _build(pack, debug, verbose, "iso", jobs, wait)


@task(help={**PACK_HELP, **BUILD_HELP})
def release_zip(c, pack=None, jobs=None, wait=None, debug=False, verbose=False):
    """Bundle dist/<label>-<version>.zip: the ISO, the GPL source archive and both .md5 files."""
    _build(pack, debug, verbose, "release-zip", jobs, wait)


@task(
    help={
        **PACK_HELP,
        "pack": "check dist/<label>.iso of this pack (default: every pack; with --iso alone: no pack needed)",
        "iso": "an ISO to check: any pack ISO, a vendor's or Citrix's own too (no pack needed)",
        "key": "the public key the ISO was signed with (default: the key file update.xml names, beside the ISO)",
        "kernel": "the target's uname -r for the vermagic check (default: the module RPMs' kernel-uname-r)",
    }
)
def verify(c, pack=None, iso=None, key=None, kernel=None, debug=False, verbose=False):
    """Read a pack ISO back and check it the way xapi, yum and the installer will."""
    from driverpack import pipeline

    key_file = Path(key).expanduser().resolve() if key else None
    iso_file = Path(iso).expanduser().resolve() if iso else None
    if iso_file is not None and not pack:
        _guarded(lambda: pipeline.verify_file(iso_file, key_file, kernel), debug, verbose)
        return

    def step(loaded, root):
        pipeline.verify(loaded, root, iso_file, key_file, kernel)

    _each_pack(pack, debug, verbose, step)


@task(
    iterable=["from_"],
    help={
        "label": "the new pack's label (letters, digits, _ and -)",
        "from": "a driver source tarball to fill a [[drivers]] entry from (repeat for more drivers)",
        "from-spec": "an existing kernel-module spec (a vendor's or a DDK example) to carry over",
        **COMMON_HELP,
    },
)
def new(c, label, from_=None, from_spec=None, debug=False, verbose=False):
    """Scaffold packs/LABEL/pack.toml with a fresh uuid and comments, filled from tarballs or a spec."""
    from driverpack.scaffold import new_pack

    tarballs = [Path(t).expanduser() for t in from_ or []]
    spec = Path(from_spec).expanduser() if from_spec else None
    result = _guarded(lambda: new_pack(ROOT, label, tarballs=tarballs, spec=spec), debug, verbose)
    for line in result.report:
        print(line)


@task(help={**PACK_HELP, "wait": BUILD_HELP["wait"]})
def clean(c, pack=None, wait=None, debug=False, verbose=False):
    """Remove build/<label>/ and the pack's files in dist/."""
    from driverpack import pipeline

    seconds = _seconds(wait, "--wait")
    _each_pack(pack, debug, verbose, lambda loaded, root: pipeline.clean(loaded, root, seconds))


@task(help=PACK_HELP)
def status(c, pack=None, debug=False, verbose=False):
    """For each pack and step: up to date, or which input changed and so what a build would redo."""
    from driverpack import pipeline

    _each_pack(pack, debug, verbose, pipeline.print_status)


@task(help={"args": "extra pytest arguments, e.g. '-k specs -x'", "verbose": COMMON_HELP["verbose"]})
def test(c, args="", verbose=False):
    """Run every test (linters included) with pytest."""
    import os
    import shlex

    argv = [sys.executable, "-m", "pytest", *shlex.split(args)]
    if verbose:
        print("+ " + " ".join(argv), file=sys.stderr, flush=True)
    sys.stdout.flush()
    os.execv(sys.executable, argv)


ns = Collection(check, specs, compile, build_rpms, iso, release_zip, verify, status, new, clean, test)
