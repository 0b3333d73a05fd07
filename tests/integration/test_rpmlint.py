"""rpmlint (from PyPI, on the system's rpm Python bindings) on everything a pack build writes.

packs/helloworld and a variant with a base requirement (so it has a control-<label> RPM) are
built with driverpack.pipeline.iso. rpmlint then checks the generated specs
(build/<label>/SPECS/), the RPMs and SRPMs of build-rpms, and the signed RPMs staged for the ISO
(build/<label>/iso/Packages/), all in one run with driverpack.rpmlintrc: rpmlint reports a
filter that matched nothing as an error, which keeps the file free of stale filters.
docs/rpmlint.md says why each filter and each kept warning is there.

rpmlint runs with a scratch HOME and XDG config dirs: no user or system rpmlint configuration
applies, and rpm's keyring (%_dbpath from ~/.rpmmacros) holds the pack's public key only, so the
ISO's RPM signatures are verified for real.
"""

from __future__ import annotations

import re
import shutil
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from driverpack import pipeline
from driverpack.load import load_pack
from driverpack.run import run, which

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
HELLOWORLD = REPO / "packs" / "helloworld"
RPMLINTRC = REPO / "driverpack.rpmlintrc"
DOC = REPO / "docs" / "rpmlint.md"
# Not "-ctl": rpmlint reads a name ending in a language code as a locale package (see the doc).
BASE_LABEL = "helloworld-cu1"
BASE_REQUIRES = "product-version = 8.2.1"

SUMMARY = re.compile(
    r"^ *(?P<packages>\d+) packages and (?P<specs>\d+) specfiles checked; "
    r"(?P<errors>\d+) errors, (?P<warnings>\d+) warnings, (?P<filtered>\d+) filtered",
    re.M,
)
MESSAGE = re.compile(r"^(?P<where>\S+?):(?:\d+:)? (?P<level>[EW]): (?P<id>\S+)(?: (?P<detail>.*))?$", re.M)
FILTER = re.compile(r"""^\s*addFilter\(\s*r?["'](?P<regex>.*)["']\s*\)""", re.M)
DOC_ROW = re.compile(r"^\| `(?P<id>[^`]+)` \|.*?\| (?P<verdict>filtered|kept) \|", re.M)


@dataclass(frozen=True)
class Message:
    where: str  # package.arch, or spec file name
    level: str
    id: str
    detail: str


@dataclass(frozen=True)
class Lint:
    code: int
    output: str

    @property
    def counts(self) -> dict[str, int]:
        found = SUMMARY.search(self.output)
        assert found, f"no rpmlint summary line in:\n{self.output}"
        return {key: int(value) for key, value in found.groupdict().items()}

    @property
    def messages(self) -> list[Message]:
        return [Message(m["where"], m["level"], m["id"], m["detail"] or "") for m in MESSAGE.finditer(self.output)]


@dataclass(frozen=True)
class Artifacts:
    specs: list[Path]  # build/<label>/SPECS/*.spec
    built: list[Path]  # build-rpms: RPMS/*/*.rpm and SRPMS/*.rpm, unsigned
    iso: list[Path]  # build/<label>/iso/Packages/*.rpm, signed
    public_key: Path

    @property
    def everything(self) -> list[Path]:
        return [*self.specs, *self.built, *self.iso]


def rpmlint(home: Path, files: list[Path], *options: str | Path) -> Lint:
    program = Path(sys.executable).with_name("rpmlint")
    assert program.is_file(), f"rpmlint not found next to {sys.executable}: install the test extra"
    env = {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CONFIG_DIRS": str(home / "xdg"),
    }
    proc = run([program, *options, *files], env=env, check=False, quiet=True)
    return Lint(proc.returncode, proc.stdout.decode(errors="replace"))


def scratch_home(folder: Path, *keys: Path) -> Path:
    """A HOME whose rpm keyring holds only `keys`, and no rpmlint configuration."""
    dbpath = folder / "rpmdb"
    for sub in (dbpath, folder / ".config", folder / "xdg"):
        sub.mkdir(parents=True)
    (folder / ".rpmmacros").write_text(f"%_dbpath {dbpath}\n")
    for key in keys:
        run([which("rpmkeys"), "--dbpath", dbpath, "--import", key], quiet=True)
    return folder


def base_variant(root: Path) -> Path:
    """packs/helloworld as packs/helloworld-cu1, with its own uuid and a base requirement."""
    folder = root / "packs" / BASE_LABEL
    shutil.copytree(HELLOWORLD, folder)
    toml = folder / "pack.toml"
    text = toml.read_text()
    replacements = {
        'label = "helloworld"': f'label = "{BASE_LABEL}"',
        'uuid = "7a1b4bfe-3ac5-4c3f-9a3e-2b0f6d1c5e01"': (
            f'uuid = "{uuid.uuid5(uuid.NAMESPACE_URL, f"driverpack-test:{BASE_LABEL}")}"'
        ),
        f'# base_requires = "{BASE_REQUIRES}"': f'base_requires = "{BASE_REQUIRES}"',
    }
    for old, new in replacements.items():
        assert text.count(f"\n{old}\n") == 1, f"packs/helloworld/pack.toml has no line {old!r}"
        text = text.replace(f"\n{old}\n", f"\n{new}\n")
    toml.write_text(text)
    return folder


def documented(verdict: str) -> set[str]:
    """Message ids the table of docs/rpmlint.md marks as filtered or kept."""
    return {row["id"] for row in DOC_ROW.finditer(DOC.read_text()) if row["verdict"] == verdict}


# fixtures


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Artifacts:
    root = tmp_path_factory.mktemp("root")
    shutil.copytree(HELLOWORLD, root / "packs" / "helloworld")
    keys = set()
    for folder in (root / "packs" / "helloworld", base_variant(root)):
        keys.add(pipeline.iso(load_pack(folder), root=root).public_key)
    (public_key,) = keys  # both packs are signed with the one local test key
    build = root / "build"
    found = Artifacts(
        specs=sorted(build.glob("*/SPECS/*.spec")),
        built=sorted([*build.glob("*/rpmbuild/RPMS/*/*.rpm"), *build.glob("*/rpmbuild/SRPMS/*.src.rpm")]),
        iso=sorted(build.glob("*/iso/Packages/*.rpm")),
        public_key=public_key,
    )
    assert {p.name for p in found.specs} == {
        "helloworld.spec",
        "helloworld-data.spec",
        "update-helloworld.spec",
        f"update-{BASE_LABEL}.spec",
        f"control-{BASE_LABEL}.spec",
    }
    assert len(found.built) == 2 * 4  # per pack: the module and data RPMs and their SRPMs
    assert {p.name for p in found.iso} >= {
        "helloworld-1.0-1.x86_64.rpm",
        "update-helloworld-1.0.0-1.noarch.rpm",
        f"update-{BASE_LABEL}-1.0.0-1.noarch.rpm",
        f"control-{BASE_LABEL}-1.0.0-1.noarch.rpm",
    }
    return found


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, artifacts: Artifacts) -> Path:
    return scratch_home(tmp_path_factory.mktemp("home"), artifacts.public_key)


@pytest.fixture(scope="module")
def with_config(home: Path, artifacts: Artifacts) -> Lint:
    """One rpmlint run over everything, with driverpack.rpmlintrc."""
    return rpmlint(home, artifacts.everything, "-r", RPMLINTRC)


# with the config


def test_no_errors_with_the_config(with_config: Lint, artifacts: Artifacts) -> None:
    counts = with_config.counts
    assert counts["errors"] == 0, with_config.output
    assert with_config.code == 0, with_config.output
    assert counts["packages"] == len(artifacts.built) + len(artifacts.iso)
    assert counts["specs"] == len(artifacts.specs)
    assert counts["filtered"] > 0
    assert "unused-rpmlintrc-filter" not in with_config.output


def test_every_kept_warning_is_documented(with_config: Lint) -> None:
    kept = {m.id for m in with_config.messages}
    assert {m.level for m in with_config.messages} <= {"W"}, with_config.output
    assert kept <= documented("kept"), f"explain these in {DOC.name}: {sorted(kept - documented('kept'))}"


def test_every_filter_is_documented() -> None:
    ids = set()
    for found in FILTER.finditer(RPMLINTRC.read_text()):
        named = re.search(r"[EW]: ([a-z0-9%-]+)", found["regex"])
        assert named, f"filter {found['regex']!r} names no message id"
        ids.add(named.group(1))
    assert ids == documented("filtered")


# without it


def test_iso_rpms_pass_without_the_config(home: Path, artifacts: Artifacts) -> None:
    """Signed with the pack's key, Packager and Group set: nothing for the config to hide."""
    lint = rpmlint(home, artifacts.iso)
    errors = [m for m in lint.messages if m.level == "E"]
    assert errors == [], lint.output
    assert lint.counts["packages"] == len(artifacts.iso)


def test_build_rpms_output_lacks_only_signatures(home: Path, artifacts: Artifacts) -> None:
    lint = rpmlint(home, [*artifacts.specs, *artifacts.built])
    errors = [m for m in lint.messages if m.level == "E"]
    assert {m.id for m in errors} == {"no-signature"}, lint.output
    assert len(errors) == len(artifacts.built)


def test_signatures_are_checked_against_the_keyring(tmp_path: Path, artifacts: Artifacts) -> None:
    """With the pack's key missing from the keyring, rpmlint sees every ISO RPM's key as unknown."""
    lint = rpmlint(scratch_home(tmp_path / "home"), artifacts.iso, "--checks", "SignatureCheck")
    errors = [m for m in lint.messages if m.level == "E"]
    assert [m.id for m in errors] == ["unknown-key"] * len(artifacts.iso), lint.output
