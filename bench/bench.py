"""driverpack benchmark: each figure is a ratio against the raw tools (or Python) measured in the same run.

Prints one line per figure on stdout: `<name>: <value> (target <op> <number>) ok|MISS`; details go to stderr.
Run it with bench/run. Work happens in a scratch folder that is removed at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = REPO / ".venv" / "bin"
INV = [str(VENV_BIN / "inv"), "-r", str(REPO)]
sys.path.insert(0, str(REPO / "lib"))


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def sh(argv: Sequence[str | Path], cwd: Path, env: dict[str, str] | None = None) -> None:
    proc = subprocess.run(
        [str(a) for a in argv], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False
    )
    if proc.returncode:
        command = " ".join(map(str, argv))
        sys.exit(f"bench: command failed ({proc.returncode}): {command}\n{proc.stdout.decode()[-3000:]}")


def timed(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median_of(reps: int, prepare: Callable[[], None], fn: Callable[[], None]) -> float:
    times = []
    for _ in range(reps):
        prepare()
        times.append(timed(fn))
    return statistics.median(times)


def figure(name: str, value: float, op: str, target: float, unit: str = "") -> bool:
    ok = value <= target if op == "<=" else value >= target
    print(f"{name}: {value:.3f}{unit} (target {op} {target}) {'ok' if ok else 'MISS'}", flush=True)
    return ok


def copy_pack(src: Path, root: Path, label: str) -> Path:
    dest = root / "packs" / label
    shutil.copytree(src, dest)
    return dest


def clean(root: Path) -> None:
    for sub in ("build", "dist"):
        shutil.rmtree(root / sub, ignore_errors=True)


# --- end-to-end and no-op ------------------------------------------------------------------------


def raw_release(root: Path, specs: Path, kernel_build: Path, key_home: Path, fingerprint: str) -> None:
    """What a person does by hand for the example pack, with the raw tools and the same specs."""
    work = root / "raw"
    shutil.rmtree(work, ignore_errors=True)
    top = work / "rpmbuild"
    for sub in ("SOURCES", "SPECS", "RPMS", "SRPMS", "BUILD", "BUILDROOT"):
        (top / sub).mkdir(parents=True)
    pack = REPO / "packs" / "helloworld"
    shutil.copy(pack / "helloworld-1.0.tar.gz", top / "SOURCES")
    sh(["tar", "-cf", top / "SOURCES" / "helloworld-data-1.0.tar", "-C", pack, "helloworld-data-1.0"], work)
    # compile once with make, as the DDK guide has you check it builds
    src = work / "src"
    src.mkdir()
    sh(["tar", "-xzf", top / "SOURCES" / "helloworld-1.0.tar.gz", "-C", src], work)
    sh(["make", f"-j{os.cpu_count()}", "-C", kernel_build, f"M={src / 'helloworld-1.0'}", "modules"], work)
    defines = ["--define", f"_topdir {top}", "--define", f"kernel_build_dir {kernel_build}", "--nodeps"]
    prebuilt = ["--define", f"driverpack_prebuilt {src / 'helloworld-1.0'}"]
    sh(["rpmbuild", "-ba", *defines, *prebuilt, specs / "helloworld.spec"], work)
    sh(["rpmbuild", "-ba", *defines, specs / "helloworld-data.spec"], work)
    sh(["rpmbuild", "-bb", *defines, specs / "update-helloworld.spec"], work)
    repo = work / "iso"
    (repo / "Packages").mkdir(parents=True)
    for rpm in (top / "RPMS").rglob("*.rpm"):
        shutil.copy(rpm, repo / "Packages")
    sign_and_write_iso(repo, root / "raw.iso", key_home, fingerprint, update_xml=specs.parent / "iso" / "update.xml")
    sh(["sh", "-c", "md5sum raw.iso > raw.iso.md5"], root)
    sh(["zip", "-q", "-r", "raw.zip", "raw.iso", "raw.iso.md5"], root)


def sign_and_write_iso(repo: Path, iso: Path, key_home: Path, fingerprint: str, update_xml: Path | None) -> None:
    env = {**os.environ, "GNUPGHOME": str(key_home)}
    rpms = sorted(str(p) for p in (repo / "Packages").glob("*.rpm"))
    sh(
        [
            "rpmsign",
            "--addsign",
            "--rpmv3",
            "--define",
            f"_gpg_name {fingerprint}",
            "--define",
            "__gpg /usr/bin/gpg",
            *rpms,
        ],
        repo,
        env,
    )
    if update_xml is not None:
        shutil.copy(update_xml, repo / "update.xml")
        sh(["gpg", "--batch", "--yes", "--armor", "--detach-sign", "-u", fingerprint, "update.xml"], repo, env)
    sh(["createrepo_c", "--quiet", "--simple-md-filenames", "--no-database", "."], repo)
    sh(["gpg", "--batch", "--yes", "--armor", "--detach-sign", "-u", fingerprint, "repodata/repomd.xml"], repo, env)
    sh(["xorriso", "-as", "mkisofs", "-quiet", "-R", "-J", "-V", "bench", "-o", iso, "."], repo)


def import_key(root: Path) -> tuple[Path, str]:
    home = Path(tempfile.mkdtemp(prefix="gpg-", dir="/tmp"))
    key = root / "keys" / "RPM-GPG-KEY-driverpack-test"
    env = {**os.environ, "GNUPGHOME": str(home)}
    sh(["gpg", "--batch", "--import", key], root, env)
    out = subprocess.run(
        ["gpg", "--batch", "--with-colons", "--list-secret-keys"], env=env, capture_output=True, check=True
    )
    fingerprint = next(line.split(":")[9] for line in out.stdout.decode().splitlines() if line.startswith("fpr"))
    return home, fingerprint


def bench_end_to_end(root: Path, reps: int, floor: float) -> tuple[bool, bool]:
    from driverpack.context import installed_kernels

    copy_pack(REPO / "packs" / "helloworld", root, "helloworld")
    kernels = installed_kernels()
    kernel_build = Path("/lib/modules") / kernels[0] / "build"
    argv = [*INV, "release-zip", "--pack", "helloworld"]
    sh(argv, root)  # makes keys/ once, and warms the caches
    key_home, fingerprint = import_key(root)
    specs = root / "build" / "helloworld" / "SPECS"
    kept_specs = root / "specs" / "SPECS"
    shutil.copytree(specs, kept_specs)
    shutil.copytree(root / "build" / "helloworld" / "iso", root / "specs" / "iso")

    ours = median_of(reps, lambda: clean(root), lambda: sh(argv, root))
    noop = median_of(max(reps, 10), lambda: None, lambda: sh(argv, root))
    raw = median_of(reps, lambda: None, lambda: raw_release(root, kept_specs, kernel_build, key_home, fingerprint))
    log(f"end-to-end: driverpack {ours:.2f}s, raw tools {raw:.2f}s")
    log(f"no-op: a second inv release-zip {noop * 1000:.0f} ms, inv --list of one empty task {floor * 1000:.0f} ms")
    shutil.rmtree(key_home, ignore_errors=True)
    return figure("end-to-end", ours / raw, "<=", 1.3), figure("no-op", noop / floor, "<=", 1.6)


# --- iso-large -----------------------------------------------------------------------------------


def bench_iso_large(root: Path, reps: int, size_mib: int) -> tuple[bool, bool, bool]:
    pack = copy_pack(REPO / "packs" / "helloworld", root, "large")
    text = (pack / "pack.toml").read_text()
    text = text.replace('label = "helloworld"', 'label = "large"')
    text = text.replace("7a1b4bfe-3ac5-4c3f-9a3e-2b0f6d1c5e01", "5d0c2a8e-1b7f-4e39-8c65-0f2d9a4b7e13")
    (pack / "pack.toml").write_text(text)
    firmware = pack / "helloworld-data-1.0" / "lib" / "firmware" / "large"
    firmware.mkdir(parents=True)
    chunk = 64
    for i in range(size_mib // chunk):
        (firmware / f"blob{i:02d}.bin").write_bytes(os.urandom(chunk << 20))
    log(f"iso-large: building the RPMs of a pack with {size_mib} MiB of firmware (not timed)")
    sh([*INV, "build-rpms", "--pack", "large"], root)
    key_home, fingerprint = import_key(root)
    rpms = sorted((root / "build" / "large" / "rpmbuild" / "RPMS").rglob("*.rpm"))

    def fresh_iso() -> None:
        shutil.rmtree(root / "build" / "large" / "iso", ignore_errors=True)
        (root / "build" / "large" / "stamps" / "iso.stamp").unlink(missing_ok=True)
        shutil.rmtree(root / "build" / ".quick", ignore_errors=True)
        for path in (root / "dist").glob("large*"):
            path.unlink()

    peak = [0]

    def ours_iso() -> None:
        sh(["/usr/bin/time", "-f", "%M", "-o", str(root / "maxrss"), *INV, "iso", "--pack", "large"], root)
        peak[0] = max(peak[0], int((root / "maxrss").read_text().split()[-1]))

    def raw_prepare() -> None:
        repo = root / "raw-large"
        shutil.rmtree(repo, ignore_errors=True)
        (repo / "Packages").mkdir(parents=True)

    def raw_iso() -> None:
        repo = root / "raw-large"
        for rpm in rpms:  # a copy: signing rewrites the RPM, and the built one stays unsigned
            shutil.copy(rpm, repo / "Packages")
        sign_and_write_iso(repo, root / "raw-large.iso", key_home, fingerprint, update_xml=None)

    ours = median_of(reps, fresh_iso, ours_iso)
    raw = median_of(reps, raw_prepare, raw_iso)
    shutil.rmtree(key_home, ignore_errors=True)
    log(f"iso-large: driverpack {ours:.2f}s, raw tools {raw:.2f}s, peak RSS {peak[0] / 1024:.0f} MiB")
    sh([*INV, "release-zip", "--pack", "large"], root)
    iso_size = (root / "dist" / "large.iso").stat().st_size
    zip_size = (root / "dist" / "large-1.0.0.zip").stat().st_size
    log(f"zip-size: release zip {zip_size / 2**20:.0f} MiB, ISO {iso_size / 2**20:.0f} MiB")
    return (
        figure("iso-large", ours / raw, "<=", 1.2),
        figure("iso-large-peak-memory", peak[0] / 1024, "<=", 300, " MiB"),
        figure("zip-size", zip_size / iso_size, "<=", 1.05),
    )


# --- parallel ------------------------------------------------------------------------------------


def module_source(name: str, greeting: str) -> str:
    return (
        "#include <linux/module.h>\n"
        f'static int __init m_init(void) {{ pr_info("{name}: {greeting}\\n"); return 0; }}\n'
        "static void __exit m_exit(void) {}\n"
        'module_init(m_init);\nmodule_exit(m_exit);\nMODULE_LICENSE("GPL");\n'
    )


def greeting_patch(name: str, greeting: str) -> str:
    """A -p1 patch of <name>.c replacing its greeting."""
    old, new = module_source(name, "hello").splitlines()[1], module_source(name, greeting).splitlines()[1]
    return f"--- a/{name}.c\n+++ b/{name}.c\n@@ -2 +2 @@\n-{old}\n+{new}\n"


def synthetic_pack(root: Path, label: str, uuid: str, drivers: int) -> Path:
    """A pack of `drivers` small modules, each with a patch (the kind of pack a NIC family makes)."""
    pack = root / "packs" / label
    pack.mkdir(parents=True)
    tables = []
    for i in range(1, drivers + 1):
        name = f"{label}{i}"
        src = root / f"{label}-src" / f"{name}-1.0"
        src.mkdir(parents=True)
        (src / f"{name}.c").write_text(module_source(name, "hello"))
        (src / "Kbuild").write_text(f"obj-m := {name}.o\n")
        (pack / f"{name}.patch").write_text(greeting_patch(name, "patched"))
        with tarfile.open(pack / f"{name}-1.0.tar.gz", "w:gz") as tar:
            tar.add(src, arcname=f"{name}-1.0")
        tables.append(
            f'[[drivers]]\nname = "{name}"\nversion = "1.0"\nsource = "{name}-1.0.tar.gz"\n'
            f'summary = "benchmark module {i}"\npatches = ["{name}.patch"]\n'
        )
    (pack / "pack.toml").write_text(
        f'[pack]\nlabel = "{label}"\ntext = "{drivers} drivers"\nuuid = "{uuid}"\nversion = "1.0"\n'
        'after_apply = ["restartHost"]\n\n' + "\n".join(tables)
    )
    return pack


def fresh(root: Path, label: str) -> Callable[[], None]:
    def remove() -> None:
        shutil.rmtree(root / "build" / label, ignore_errors=True)
        shutil.rmtree(root / "build" / ".quick", ignore_errors=True)
        for path in (root / "dist").glob(f"{label}*"):
            path.unlink()

    return remove


def bench_parallel(root: Path, reps: int, drivers: int) -> bool:
    synthetic_pack(root, "eight", "2f6b9c1e-8a3d-4c57-b0e4-6d1a7f9e3c25", drivers)
    default = median_of(reps, fresh(root, "eight"), lambda: sh([*INV, "build-rpms", "--pack", "eight"], root))
    one = median_of(
        reps, fresh(root, "eight"), lambda: sh([*INV, "build-rpms", "--pack", "eight", "--jobs", "1"], root)
    )
    log(f"parallel: {drivers} drivers, default jobs ({os.cpu_count()}) {default:.2f}s, one job {one:.2f}s")
    return figure("parallel", default / one, "<=", 0.65)


def bench_incremental(root: Path, reps: int) -> bool:
    """One driver's patch changed in the eight-driver pack, against a clean build of a one-driver pack."""
    synthetic_pack(root, "single", "7d3a1f5c-2e9b-4b8d-a6c0-3f1e8d5b2a94", 1)
    single = median_of(reps, fresh(root, "single"), lambda: sh([*INV, "release-zip", "--pack", "single"], root))
    sh([*INV, "release-zip", "--pack", "eight"], root)
    patch = root / "packs" / "eight" / "eight3.patch"
    edits = iter(range(1000))
    change = median_of(
        reps,
        lambda: patch.write_text(greeting_patch("eight3", f"edit {next(edits)}")),
        lambda: sh([*INV, "release-zip", "--pack", "eight"], root),
    )
    log(f"incremental: one patch changed in 8 drivers {change:.2f}s, a clean one-driver pack {single:.2f}s")
    return figure("incremental", change / single, "<=", 1.5)


# --- startup -------------------------------------------------------------------------------------


def empty_tasks(root: Path) -> Path:
    """A tasks file with one empty task: invoke's own start-up, the floor of every inv command."""
    folder = root / "empty-tasks"
    folder.mkdir()
    (folder / "tasks.py").write_text("from invoke import task\n\n\n@task\ndef nothing(c):\n    pass\n")
    return folder


def bench_startup(root: Path, reps: int) -> tuple[bool, float]:
    empty = empty_tasks(root)
    inv = median_of(reps, lambda: None, lambda: sh([*INV, "--list"], root))
    floor = median_of(reps, lambda: None, lambda: sh([VENV_BIN / "inv", "-r", empty, "--list"], root))
    log(f"startup: inv --list {inv * 1000:.0f} ms, inv --list of one empty task {floor * 1000:.0f} ms")
    return figure("startup", inv / floor, "<=", 1.15), floor


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reps", type=int, default=3, help="repetitions per measurement (median taken)")
    parser.add_argument("--large-mib", type=int, default=1024, help="firmware size for iso-large")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = parser.parse_args()
    for tool in ("createrepo_c", "xorriso", "zip", "rpmbuild", "rpmsign", "gpg", "make"):
        if shutil.which(tool) is None:
            sys.exit(f"bench: '{tool}' not found; the raw-tool baselines need it (apt-get install createrepo-c zip)")
    root = Path(tempfile.mkdtemp(prefix="driverpack-bench-"))
    log(f"bench: scratch folder {root}")
    results: list[bool] = []
    try:
        started, floor = bench_startup(root, max(args.reps, 10))
        results += started, *bench_end_to_end(root, args.reps, floor)
        results.append(bench_parallel(root, args.reps, 8))
        results.append(bench_incremental(root, args.reps))
        results += bench_iso_large(root, max(1, args.reps - 1), args.large_mib)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
