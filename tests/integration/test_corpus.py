"""A corpus of driver source layouts, all built into one pack: each one builds, packs and verifies.

Each case is a folder under tests/data/corpus/<case>/: source/ holds what the driver's tarball
holds (one top directory, or files at its root), patches/ its patches, and driver.toml its
[[drivers]] keys plus `tarball` (the archive's file name; its suffix picks the compression) and
`modules` (the .ko files its kernel-module RPM must hold, nothing more). Every case is one
[[drivers]] table of a single pack, so the corpus is compiled, packed, signed and verified once,
through driverpack.pipeline.iso; the tests then read the ISO back with the tools a host uses.
"""

from __future__ import annotations

import json
import re
import tomllib
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from support import installed_kernel, make_tarball
from support import run_inv as inv

from driverpack import pipeline
from driverpack.adapters.tarball import TarballLayout, inspect_tarball
from driverpack.errors import BuildError
from driverpack.load import LoadedPack, load_pack
from driverpack.run import run, which
from driverpack.steps.iso import IsoResult
from driverpack.vermagic import vermagic, vermagic_matches

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "tests" / "data" / "corpus"
LABEL = "corpus"
PACK_VERSION = "1.0.0"
CHANGELOG = '[{ date = "2024-01-01", author = "Example Corp <drivers@example.com>", text = "Corpus build" }]'


@dataclass(frozen=True)
class Case:
    """One corpus folder: a driver as its vendor ships it."""

    case: str
    name: str
    version: str
    tarball: str
    modules: tuple[str, ...]
    patches: tuple[str, ...] = ()
    make_args: tuple[str, ...] = ()

    @property
    def folder(self) -> Path:
        return CORPUS / self.case

    @property
    def rpm(self) -> str:
        return f"{self.name}-{self.version}-1.x86_64.rpm"

    def drivers_table(self) -> str:
        """The case's [[drivers]] table (json strings and lists are valid TOML)."""
        return (
            "\n[[drivers]]\n"
            f"name = {json.dumps(self.name)}\n"
            f"version = {json.dumps(self.version)}\n"
            f"source = {json.dumps(self.tarball)}\n"
            f"summary = {json.dumps(f'Corpus driver {self.name} ({self.case})')}\n"
            f"patches = {json.dumps(list(self.patches))}\n"
            f"make_args = {json.dumps(list(self.make_args))}\n"
            f"changelog = {CHANGELOG}\n"
        )


def read_case(folder: Path) -> Case:
    raw = tomllib.loads((folder / "driver.toml").read_text())
    return Case(
        case=folder.name,
        name=raw["name"],
        version=raw["version"],
        tarball=raw["tarball"],
        modules=tuple(raw["modules"]),
        patches=tuple(raw.get("patches", ())),
        make_args=tuple(raw.get("make_args", ())),
    )


CASES = {case.case: case for case in map(read_case, sorted(p.parent for p in CORPUS.glob("*/driver.toml")))}


@dataclass(frozen=True)
class Built:
    root: Path  # the current directory of the build: build/ and dist/ are here
    loaded: LoadedPack
    result: IsoResult
    extracted: Path  # the ISO's files, as xorriso extracts them

    @property
    def packages(self) -> Path:
        return self.extracted / "Packages"


# making the pack


def write_pack(folder: Path, label: str, cases: list[Case]) -> LoadedPack:
    """folder/pack.toml with one [[drivers]] per case, the tarballs and patches beside it."""
    folder.mkdir(parents=True)
    text = (
        "[pack]\n"
        f'label = "{label}"\n'
        f'text = "Driver layout corpus ({label})"\n'
        f'uuid = "{uuid.uuid5(uuid.NAMESPACE_URL, f"driverpack-test:{label}")}"\n'
        f'version = "{PACK_VERSION}"\n'
        'vendor = "Example Corp"\n'
        "\n[target]\n"
        'kernel = "auto"\n'
    )
    for case in cases:
        make_tarball(case.folder / "source", folder / case.tarball)
        for patch in case.patches:
            (folder / patch).write_bytes((case.folder / "patches" / patch).read_bytes())
        text += case.drivers_table()
    (folder / "pack.toml").write_text(text)
    return load_pack(folder)


# reading the result back


def tool(*argv: str | Path, cwd: Path | None = None) -> str:
    return run([which(str(argv[0])), *argv[1:]], cwd=cwd, quiet=True).stdout.decode()


def unpack_rpm(rpm: Path, dest: Path) -> Path:
    archive = run([which("rpm2cpio"), rpm], quiet=True).stdout
    dest.mkdir(parents=True)
    run([which("cpio"), "-idm", "--quiet", "--no-absolute-filenames"], cwd=dest, input=archive, quiet=True)
    return dest


def module_info(module: bytes) -> dict[str, str]:
    """The .modinfo strings of a module (name=value, NUL separated), as modinfo shows them."""
    found = re.findall(rb"(?:^|\0)([a-z_]+)=([^\0]*)", module)
    return {key.decode(): value.decode(errors="replace") for key, value in found}


# fixtures


@pytest.fixture(scope="module")
def kernel() -> str:
    """The one installed kernel build dir, which `kernel = "auto"` targets."""
    return installed_kernel()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, kernel: str) -> Built:
    """The whole corpus as one pack: built, signed, written to an ISO and verified, once."""
    root = tmp_path_factory.mktemp("corpus")
    loaded = write_pack(root / "packs" / LABEL, LABEL, list(CASES.values()))
    result = pipeline.iso(loaded, root)
    extracted = root / "extracted"
    tool("xorriso", "-osirrox", "on", "-indev", result.iso, "-extract", "/", extracted)
    return Built(root=root, loaded=loaded, result=result, extracted=extracted)


# the corpus itself


def test_corpus_covers_the_layouts(tmp_path: Path) -> None:
    """Each layout the issue lists is in the corpus, as driverpack's own tarball inspection sees it."""
    layouts: dict[str, TarballLayout] = {}
    for case in CASES.values():
        tarball = tmp_path / case.tarball
        make_tarball(case.folder / "source", tarball)
        layouts[case.case] = inspect_tarball(tarball)
    top = {name: layout.top_dir for name, layout in layouts.items()}
    place = {name: (layout.top_dir, layout.build_dir, layout.build_file) for name, layout in layouts.items()}
    assert place["makefile-top"] == ("ctop-1.0", "", "Makefile")
    assert place["makefile-in-src"] == ("csrc-1.0", "src", "Makefile")
    assert place["kbuild-only"] == ("ckbuild-1.0", "", "Kbuild")
    assert not list((CASES["kbuild-only"].folder / "source").rglob("Makefile"))
    assert place["multi-module"] == ("cmulti-1.0", "", "Kbuild")
    multi = CASES["multi-module"].folder / "source" / "cmulti-1.0"
    assert {p.parent.name for p in multi.rglob("*/Kbuild")} == {"net", "storage"}  # one module in each
    assert top["other-top-dir"] == "Vendor_Driver-v2.3"
    assert top["no-top-dir"] is None
    assert CASES["make-args"].make_args
    assert CASES["needs-patch"].patches
    suffixes = {re.sub(r"^.*?(\.tar\.\w+)$", r"\1", case.tarball) for case in CASES.values()}
    assert suffixes == {".tar.gz", ".tar.bz2", ".tar.xz"}
    names = [case.name for case in CASES.values()]
    assert len(set(names)) == len(names)
    for case in CASES.values():  # the module names read from the Kbuild files are the ones built
        assert layouts[case.case].modules == tuple(sorted(m.removesuffix(".ko") for m in case.modules))
    modules = [module for case in CASES.values() for module in case.modules]
    assert len(set(modules)) == len(modules), "two drivers would install the same module file"


# the pack built from it


@pytest.mark.parametrize("case", sorted(CASES))
def test_kmod_rpm_holds_exactly_its_modules(built: Built, kernel: str, case: str, tmp_path: Path) -> None:
    driver = CASES[case]
    rpm = built.packages / driver.rpm
    assert rpm.is_file(), sorted(p.name for p in built.packages.iterdir())
    listed = tool("rpm", "-qp", "--list", rpm).split()
    assert listed == [f"/lib/modules/{kernel}/updates/{module}" for module in sorted(driver.modules)]
    unpacked = unpack_rpm(rpm, tmp_path / "unpacked")
    for module in driver.modules:
        magic = vermagic((unpacked / "lib" / "modules" / kernel / "updates" / module).read_bytes())
        assert magic is not None and vermagic_matches(magic, kernel), (module, magic)


def test_make_args_reach_the_module(built: Built, kernel: str, tmp_path: Path) -> None:
    driver = CASES["make-args"]
    (arg,) = driver.make_args
    name, value = arg.split("=", 1)
    unpacked = unpack_rpm(built.packages / driver.rpm, tmp_path / "unpacked")
    info = module_info((unpacked / "lib" / "modules" / kernel / "updates" / "cflag.ko").read_bytes())
    assert info[name.lower()] == value


def test_make_args_are_needed(tmp_path: Path, kernel: str) -> None:
    """Without its make variable the make-args driver does not compile: the corpus case tests something."""
    driver = CASES["make-args"]
    loaded = write_pack(tmp_path / "noargs", "noargs", [replace(driver, make_args=())])
    with pytest.raises(BuildError) as caught:
        pipeline.compile(loaded, tmp_path)
    first = caught.value.message.splitlines()[0]
    assert "cflag.c:" in first and "#error" in first and "CFLAG_VALUE" in first, caught.value.message


def test_patch_is_in_the_module(built: Built, kernel: str, tmp_path: Path) -> None:
    unpacked = unpack_rpm(built.packages / CASES["needs-patch"].rpm, tmp_path / "unpacked")
    info = module_info((unpacked / "lib" / "modules" / kernel / "updates" / "cpatch.ko").read_bytes())
    assert info["cpatch_state"] == "patched by fix-build.patch"


def test_iso_packages_hold_every_rpm(built: Built) -> None:
    expected = {case.rpm for case in CASES.values()} | {f"update-{LABEL}-{PACK_VERSION}-1.noarch.rpm"}
    assert {p.name for p in built.packages.iterdir()} == expected
    listing = tool("isoinfo", "-R", "-f", "-i", built.result.iso).split()
    assert {p.removeprefix("/Packages/") for p in listing if p.startswith("/Packages/")} == expected
    requires = tool("rpm", "-qp", "--requires", built.packages / f"update-{LABEL}-{PACK_VERSION}-1.noarch.rpm")
    for case in CASES.values():
        assert f"{case.name} >= {case.version}-1" in requires, requires


def test_srpm_for_every_driver(built: Built) -> None:
    srpms = built.root / "build" / LABEL / "rpmbuild" / "SRPMS"
    assert {p.name for p in srpms.iterdir()} == {f"{c.name}-{c.version}-1.src.rpm" for c in CASES.values()}


def test_verify_through_the_command_line(built: Built) -> None:
    proc = inv(built.root, "verify", "--pack", str(built.loaded.folder))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"update.xml: {LABEL} {PACK_VERSION}" in proc.stderr
