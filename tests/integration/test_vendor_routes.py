"""Vendor build routes, end to end: one tarball shaped like each case of tests/data/routes/, built for
Citrix Hypervisor 8.2's kernel (its kernel-devel RPM, from shared/) and for the Debian kernel installed here.

Each case is one [[drivers]] table; every case is built into one pack per kernel, once, through
driverpack.pipeline.build_rpms. The tests then read the RPMs back (file list, vermagic, what the
route put into the module), rebuild every SRPM with `rpmbuild --rebuild` the way mock or Koji would
(so the spec's %build takes the same route), and check the route proposal for each tarball.
"""

from __future__ import annotations

import json
import re
import shutil
import tomllib
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support import CH82_RELEASE, ch82_kernel_devel, installed_kernel, make_tarball
from support import run_inv as inv

from driverpack import pipeline
from driverpack.adapters.rpmbuild import rpmbuild_argv
from driverpack.errors import BuildError
from driverpack.load import LoadedPack, load_pack
from driverpack.proposal import propose_route
from driverpack.run import run, which
from driverpack.steps.rpms import RpmsResult
from driverpack.vermagic import vermagic, vermagic_matches

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
ROUTES = REPO / "tests" / "data" / "routes"
NOT_DRIVER_KEYS = {"tarball", "modules"}
CHANGELOG = [{"date": "2024-01-01", "author": "Example Corp <drivers@example.com>", "text": "Route build"}]
# Too slow to build twice more: the real jool-dkms source is built for CH 8.2 only (≈1 min a build).
CH82_ONLY = {"dkms-multi-folder"}


@dataclass(frozen=True)
class Case:
    case: str
    keys: dict[str, Any]  # the [[drivers]] keys of driver.toml
    tarball: str
    modules: tuple[str, ...]

    @property
    def name(self) -> str:
        return str(self.keys["name"])

    @property
    def folder(self) -> Path:
        return ROUTES / self.case

    def write_tarball(self, dest: Path) -> Path:
        path = dest / self.tarball
        if (self.folder / self.tarball).is_file():  # a real source, kept as it was published
            shutil.copyfile(self.folder / self.tarball, path)
        else:
            make_tarball(self.folder / "source", path)
        return path


def read_case(folder: Path) -> Case:
    raw = tomllib.loads((folder / "driver.toml").read_text())
    keys = {k: v for k, v in raw.items() if k not in NOT_DRIVER_KEYS}
    return Case(folder.name, keys, raw["tarball"], tuple(raw["modules"]))


CASES = {c.case: c for c in map(read_case, sorted(p.parent for p in ROUTES.glob("*/driver.toml")))}


def write_pack(folder: Path, label: str, cases: list[Case], target: dict[str, str]) -> LoadedPack:
    """folder/pack.toml with one [[drivers]] table per case (JSON values are valid TOML), tarballs beside it."""
    folder.mkdir(parents=True)
    lines = [
        "[pack]",
        f'label = "{label}"',
        f'text = "Vendor route cases ({label})"',
        f'uuid = "{uuid.uuid5(uuid.NAMESPACE_URL, f"driverpack-test:{label}")}"',
        'version = "1.0.0"',
        "[target]",
        *(f"{k} = {json.dumps(v)}" for k, v in target.items()),
        'module_dir = "updates"',
    ]
    for case in cases:
        case.write_tarball(folder)
        table = {**case.keys, "source": case.tarball, "summary": f"{case.name} ({case.case})", "changelog": CHANGELOG}
        lines += ["[[drivers]]", *(f"{k} = {toml_value(v)}" for k, v in table.items())]
    (folder / "pack.toml").write_text("\n".join(lines) + "\n")
    return load_pack(folder)


def toml_value(value: Any) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(value)


@dataclass(frozen=True)
class Built:
    root: Path
    loaded: LoadedPack
    result: RpmsResult
    kernel: str

    def rpm(self, case: Case) -> Path:
        (found,) = [p for p in self.result.kmod_rpms if p.name.startswith(f"{case.name}-{case.keys['version']}-")]
        return found


def unpack_rpm(rpm: Path, dest: Path) -> Path:
    archive = run([which("rpm2cpio"), rpm], quiet=True).stdout
    dest.mkdir(parents=True)
    run([which("cpio"), "-idm", "--quiet", "--no-absolute-filenames"], cwd=dest, input=archive, quiet=True)
    return dest


def rpm_files(rpm: Path) -> list[str]:
    return run([which("rpm"), "-qp", "--list", rpm], quiet=True).stdout.decode().split()


def module_info(module: bytes) -> dict[str, str]:
    found = re.findall(rb"(?:^|\0)([a-z_]+)=([^\0]*)", module)
    return {key.decode(): value.decode(errors="replace") for key, value in found}


def check_rpm(rpm: Path, case: Case, kernel: str, tmp: Path) -> dict[str, dict[str, str]]:
    """The RPM holds exactly the case's modules for `kernel`; returns each module's modinfo."""
    assert rpm_files(rpm) == [f"/lib/modules/{kernel}/updates/{m}" for m in sorted(case.modules)]
    unpacked = unpack_rpm(rpm, tmp)
    infos = {}
    for module in case.modules:
        data = (unpacked / "lib" / "modules" / kernel / "updates" / module).read_bytes()
        magic = vermagic(data)
        assert magic is not None and vermagic_matches(magic, kernel), (module, magic)
        infos[module] = module_info(data)
    return infos


# fixtures


@pytest.fixture(scope="module")
def ch82(ch82_root: Path) -> Built:
    cases = list(CASES.values())
    target = {"kernel": CH82_RELEASE, "kernel_devel": str(ch82_kernel_devel())}
    loaded = write_pack(ch82_root / "packs" / "routes-ch82", "routes-ch82", cases, target)
    return Built(ch82_root, loaded, pipeline.build_rpms(loaded, ch82_root), CH82_RELEASE)


@pytest.fixture(scope="module")
def debian(tmp_path_factory: pytest.TempPathFactory) -> Built:
    root = tmp_path_factory.mktemp("routes-debian")
    cases = [c for c in CASES.values() if c.case not in CH82_ONLY]
    loaded = write_pack(root / "packs" / "routes-debian", "routes-debian", cases, {"kernel": "auto"})
    return Built(root, loaded, pipeline.build_rpms(loaded, root), installed_kernel())


@pytest.fixture(scope="module")
def rebuilt(ch82: Built, ch82_build_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every kernel-module SRPM rebuilt by rpmbuild --rebuild, as mock or Koji would: case name -> RPM."""
    top = tmp_path_factory.mktemp("rebuild")
    srpms = [p for p in ch82.result.srpms if not p.name.startswith(tuple(f"{c.name}-data" for c in CASES.values()))]

    def rebuild(srpm: Path) -> tuple[str, Path]:
        name = srpm.name.removesuffix(".src.rpm").rsplit("-", 2)[0]
        topdir = top / name
        argv = rpmbuild_argv(
            srpm, topdir, what="--rebuild", defines={"kernel_build_dir": str(ch82_build_dir), "_smp_mflags": "-j2"}
        )
        run(argv, log=top / f"{name}.log", source_date_epoch=ch82.loaded.pack.source_date_epoch())
        (rpm,) = (topdir / "RPMS" / "x86_64").glob("*.rpm")
        return name, rpm

    # Longest first: the real jool source takes most of the time.
    srpms.sort(key=lambda p: not p.name.startswith("jool-"))
    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(pool.map(rebuild, srpms))


# CH 8.2


@pytest.mark.parametrize("case", sorted(CASES))
def test_ch82_rpm_holds_the_modules(ch82: Built, case: str, tmp_path: Path) -> None:
    check_rpm(ch82.rpm(CASES[case]), CASES[case], CH82_RELEASE, tmp_path / "rpm")


@pytest.mark.parametrize("case", sorted(CASES))
def test_ch82_srpm_rebuild_takes_the_same_route(rebuilt: dict[str, Path], case: str, tmp_path: Path) -> None:
    check_rpm(rebuilt[CASES[case].name], CASES[case], CH82_RELEASE, tmp_path / "rpm")


def test_ch82_route_reached_the_modules(ch82: Built, rebuilt: dict[str, Path], tmp_path: Path) -> None:
    """What each route put into the module, in the RPM driverpack built and in the rebuilt SRPM's."""
    for i, rpm_of in enumerate((ch82.rpm, lambda case: rebuilt[case.name])):
        info = {c.case: check_rpm(rpm_of(c), c, CH82_RELEASE, tmp_path / f"{c.case}-{i}") for c in CASES.values()}
        assert info["generator"]["kcgen.ko"]["kcgen_kernel"] == CH82_RELEASE  # generated from CH 8.2's tree
        assert info["vendor-makefile"]["bnxalt.ko"]["bnxalt_flags"] == "probed"
        assert info["host-kernel"]["ksrcprobe.ko"]["ksrcprobe_kver"] == CH82_RELEASE  # not the build host's
        assert info["pwd-kbuild"]["pwdinc.ko"]["pwdinc"] == "include/ found through $(PWD)"
        assert info["flags-with-spaces"]["werror.ko"]["werror_flags"] == "1+2"
        assert info["exported-symbols"]["qedx_eth.ko"]["depends"] == "qedx_core"
        assert "jool_common" in info["dkms-multi-folder"]["jool.ko"]["depends"].split(",")


def test_ch82_exported_symbols_came_from_the_earlier_folder(ch82: Built) -> None:
    log = (ch82.root / "build" / "routes-ch82" / "logs" / "compile-qedx.log").read_text()
    assert "qedx_core_version" not in log, "modpost warned about the symbol qed exports"


# Debian (where /bin/sh is dash)


@pytest.mark.parametrize("case", sorted(set(CASES) - CH82_ONLY))
def test_debian_rpm_holds_the_modules(debian: Built, case: str, tmp_path: Path) -> None:
    check_rpm(debian.rpm(CASES[case]), CASES[case], debian.kernel, tmp_path / "rpm")


def test_bash_makefile_fails_under_dash(tmp_path: Path) -> None:
    """The bash-makefile case tests something: with /bin/sh (dash here) its recipe fails as the issue says."""
    assert Path("/bin/sh").resolve().name == "dash", "this host's /bin/sh is not dash"
    tree = tmp_path / "bashmk-1.0"
    shutil.copytree(CASES["bash-makefile"].folder / "source" / "bashmk-1.0", tree)
    proc = run([which("make"), "modules", "KVER=0.0"], cwd=tree, check=False, quiet=True)
    assert proc.returncode != 0
    assert "redirection unexpected" in proc.stderr.decode(), proc.stderr.decode()


def test_vendor_makefile_tree_without_its_route(tmp_path: Path, debian: Built) -> None:
    """Kbuild alone fails on the Makefile.alt tree, and the error names the key that takes the vendor route."""
    case = CASES["vendor-makefile"]
    keys = {k: v for k, v in case.keys.items() if k not in ("build", "makefile")}
    loaded = write_pack(tmp_path / "plain", "plain", [Case(case.case, keys, case.tarball, case.modules)], {})
    with pytest.raises(BuildError) as caught:
        pipeline.compile(loaded, tmp_path)
    message = caught.value.message
    assert "bnxalt.c:" in message and "Makefile.alt" in message
    assert 'build = "vendor"; makefile = "Makefile.alt"' in message, message


def test_werror_needs_its_make_args(tmp_path: Path, debian: Built) -> None:
    """Without CFLAGS_MODULE=-Wno-error the driver's own -Werror stops the build: the case tests something."""
    case = CASES["flags-with-spaces"]
    keys = {**case.keys, "make_args": [a for a in case.keys["make_args"] if not a.startswith("CFLAGS_MODULE=")]}
    loaded = write_pack(tmp_path / "werror", "werror", [Case(case.case, keys, case.tarball, case.modules)], {})
    with pytest.raises(BuildError) as caught:
        pipeline.compile(loaded, tmp_path)
    assert "unused variable" in caught.value.message, caught.value.message


def test_check_warns_when_dkms_conf_says_otherwise(tmp_path: Path) -> None:
    case = CASES["dkms-multi-folder"]
    keys = {k: v for k, v in case.keys.items() if k != "module_folders"}
    folder = write_pack(tmp_path / "packs" / "jool", "jool", [Case(case.case, keys, case.tarball, case.modules)], {})
    proc = inv(tmp_path, "check", "--pack", str(folder.folder))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "warning: packs/jool/pack.toml: drivers[0]: dkms.conf MAKE[0] runs Kbuild in src/mod/common/" in proc.stderr
    assert 'module_folders = ["src/mod/common", "src/mod/nat64", "src/mod/siit"]' in proc.stderr


# proposals


@pytest.mark.parametrize("case", sorted(set(CASES) - {"flags-with-spaces", "exported-symbols"}))
def test_proposal_is_the_case_route(case: str, tmp_path: Path) -> None:
    """For a recognised vendor tree the proposed keys are the route the case builds with: no hand edit."""
    proposal = propose_route(CASES[case].write_tarball(tmp_path), CASES[case].name)
    route = {k: v for k, v in CASES[case].keys.items() if k not in ("name", "version")}
    assert dict(proposal.keys) == route, proposal.reasons
    assert proposal.reasons


@pytest.mark.parametrize("case", sorted(set(CASES) - {"flags-with-spaces", "exported-symbols"}))
def test_new_from_writes_the_route(case: str, tmp_path: Path) -> None:
    """`inv new --from` writes the proposed route into the pack, says why, and inv check accepts the pack."""
    tarball = CASES[case].write_tarball(tmp_path)
    created = inv(tmp_path, "new", "vendor", "--from", str(tarball))
    assert created.returncode == 0, created.stdout + created.stderr
    assert "route: chose: " in created.stdout or "route: guessed: " in created.stdout, created.stdout
    (driver,) = load_pack(tmp_path / "packs" / "vendor").pack.drivers
    route = {k: v for k, v in CASES[case].keys.items() if k not in ("name", "version")}
    written = driver.model_dump(include=set(route), exclude_defaults=True)
    assert json.loads(json.dumps(written)) == route, created.stdout
    assert driver.name == CASES[case].name


def test_new_from_a_vendor_tree_builds_with_no_hand_edit(tmp_path: Path) -> None:
    """Intel-shaped (kcompat-generator.sh in src/): the pack `inv new --from` writes builds as it is."""
    tarball = CASES["generator"].write_tarball(tmp_path)
    assert inv(tmp_path, "new", "intel", "--from", str(tarball)).returncode == 0
    built = inv(tmp_path, "build-rpms", "--pack", "intel")
    assert built.returncode == 0, built.stderr
    assert "    compiled kcgen (1/1)" in built.stderr, built.stderr


def test_wrong_folder_guess_names_the_candidates(tmp_path: Path, debian: Built) -> None:
    """When no folder names the driver's module, the shallowest is built; its failure lists the candidates."""
    case = CASES["wrong-folder"]
    keys = {**case.keys, "name": "acmenic"}
    loaded = write_pack(tmp_path / "guess", "guess", [Case(case.case, keys, case.tarball, case.modules)], {})
    with pytest.raises(BuildError) as caught:
        pipeline.compile(loaded, tmp_path)
    message = caught.value.message
    assert "No rule to make target" in message, message
    assert (
        "driverpack built in drivers/scsi/ (the shallowest folder with obj- lines; candidates: drivers/scsi/, "
        "drivers/net/ethernet/acme/wrongdir/); if that is the wrong folder, name the right one with "
        'module_folders = ["<folder>"]'
    ) in message


def test_failed_prepare_step_is_named(tmp_path: Path, debian: Built) -> None:
    case = CASES["generator"]
    step = {k: v for k, v in case.keys["prepare"][0].items() if k != "env"}
    keys = {**case.keys, "prepare": [step]}
    loaded = write_pack(tmp_path / "noenv", "noenv", [Case(case.case, keys, case.tarball, case.modules)], {})
    with pytest.raises(BuildError) as caught:
        pipeline.compile(loaded, tmp_path)
    first, *rest = caught.value.message.splitlines()
    assert first == f"kcgen: prepare[0] (bash kcompat-generator.sh) for kernel {debian.kernel} failed:"
    assert any("OUT must name the header to write" in line for line in rest), caught.value.message
