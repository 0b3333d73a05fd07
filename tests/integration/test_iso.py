"""The supplemental pack ISO end to end, read back with the tools of the world that consumes it.

packs/helloworld (and a variant of it with a base requirement, hence a control package), targeting
Citrix Hypervisor 8.2's kernel through its kernel-devel RPM (../shared/ch82/), is built
in-process with driverpack.pipeline.iso into a temporary root, once per module. The ISO is then
read with isoinfo and xorriso, its signatures checked with gpg and rpmkeys, its RPMs with rpm,
its yum repository installed into a scratch root with dnf (gpgcheck on), its .md5 files with
md5sum, and its layout compared with a pack made by Citrix's build-update (shared/reference/).
"""

from __future__ import annotations

import functools
import re
import shutil
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import support

from driverpack import pipeline
from driverpack.adapters.iso import IsoEntry, write_iso
from driverpack.load import LoadedPack, load_pack
from driverpack.run import run, which
from driverpack.steps.iso import IsoResult

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
HELLOWORLD = REPO / "packs" / "helloworld"
# CI clones the repository with a copy of shared/ beside it, as on the development machine.
REFERENCE_DIR = REPO.parent / "shared" / "reference"
REFERENCE_ISO = "build-update-with-control.iso"

CONTROL_LABEL = "helloworld-ctl"
CONTROL_UUID = "3f9c2d7e-8b41-4a6f-9e0d-5c7a1b2e4f60"
BASE_REQUIRES = "product-version = 8.2.1"
# Characters a careless heredoc, spec or XML writer would mangle.
CONTROL_TEXT = 'Hello world with a control package: $HOME, `uname`, 100% "quoted" & <escaped>'

TOP_LEVEL = {"update.xml", "update.xml.asc", "Packages", "repodata"}
SIGNED = ("update.xml", "repodata/repomd.xml")
REPO_NS = {"repo": "http://linux.duke.edu/metadata/repo"}
LISTING = re.compile(
    r"^(?P<perm>[-dl][-rwxsStT]{9})\s+\d+\s+\d+\s+\d+\s+(?P<size>\d+)\s+"
    r"(?P<date>\w{3}\s+\d+\s+\d{4})\s+\[\s*\d+\s+\d+\]\s\s(?P<name>.*?)\s*$"
)
SCRIPT_HEADER = re.compile(r"^(?P<name>[a-z]+) (?:scriptlet \(using [^)]*\):|program: .*)$")

STUB_SPEC = """\
Name: host-base-stub
Version: 1
Release: 1
Summary: What a Citrix Hypervisor 8.2 host provides to a pack, for dnf in a scratch root
License: MIT
BuildArch: noarch
Provides: /bin/sh
Provides: /usr/sbin/depmod
Provides: kernel-uname-r = 4.19.0+1
{extra}
%description
Stands in for the host's base packages.

%files
"""


# --- helpers -----------------------------------------------------------------------------------


def tool(*argv: str | Path, cwd: Path | None = None) -> str:
    """Run a tool that must succeed; its stdout as text."""
    return run([which(str(argv[0])), *argv[1:]], cwd=cwd, quiet=True).stdout.decode()


def attempt(*argv: str | Path, cwd: Path | None = None) -> tuple[int, str]:
    """Run a tool that may fail; (exit code, stdout + stderr)."""
    proc = run([which(str(argv[0])), *argv[1:]], cwd=cwd, check=False, quiet=True)
    return proc.returncode, proc.stdout.decode(errors="replace") + proc.stderr.decode(errors="replace")


@dataclass(frozen=True)
class RpmHeader:
    path: Path
    name: str
    epoch: str  # "" when none
    version: str
    release: str
    arch: str
    size: int

    @property
    def nevra(self) -> str:
        return f"{self.name}-{self.version}-{self.release}.{self.arch}"

    @property
    def evr(self) -> str:
        return f"{self.epoch + ':' if self.epoch else ''}{self.version}-{self.release}"


def rpm_headers(paths: list[Path]) -> list[RpmHeader]:
    out = tool("rpm", "-qp", "--qf", r"%{NAME}\t%{EPOCH}\t%{VERSION}\t%{RELEASE}\t%{ARCH}\t%{SIZE}\n", *paths)
    rows = [line.split("\t") for line in out.splitlines()]
    assert len(rows) == len(paths), out
    return [
        RpmHeader(path, name, "" if epoch == "(none)" else epoch, version, release, arch, int(size))
        for path, (name, epoch, version, release, arch, size) in zip(paths, rows, strict=True)
    ]


def deps(rpm: Path, kind: str) -> list[str]:
    """`rpm -qp --provides|--requires`, one dependency per item."""
    return [line.strip() for line in tool("rpm", "-qp", f"--{kind}", rpm).splitlines() if line.strip()]


def scriptlets(rpm: Path) -> dict[str, str]:
    """`rpm -qp --scripts` split by scriptlet: {"posttrans": body, ...}."""
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in tool("rpm", "-qp", "--scripts", rpm).splitlines(keepends=True):
        header = SCRIPT_HEADER.match(line.rstrip("\n"))
        if header:
            current = found.setdefault(header["name"], [])
        elif current is not None:
            current.append(line)
    return {name: "".join(lines) for name, lines in found.items()}


def extract(iso: Path, dest: Path) -> Path:
    tool("xorriso", "-osirrox", "on", "-indev", iso, "-extract", "/", dest)
    return dest


def rock_ridge_listing(iso: Path) -> dict[str, str]:
    """`isoinfo -R -l`: {path relative to the root: permission string}, directories included."""
    entries: dict[str, str] = {}
    directory = ""
    for line in tool("isoinfo", "-R", "-l", "-i", iso).splitlines():
        if line.startswith("Directory listing of /"):
            directory = line.removeprefix("Directory listing of /").strip()
            continue
        found = LISTING.match(line)
        if found and found["name"] not in (".", ".."):
            entries[directory + found["name"]] = found["perm"]
    return entries


def files_under(tree: Path) -> set[str]:
    return {p.relative_to(tree).as_posix() for p in tree.rglob("*") if p.is_file()}


def repomd_locations(tree: Path) -> dict[str, str]:
    """repomd.xml's records: {type: location href}."""
    root = ET.parse(tree / "repodata" / "repomd.xml").getroot()
    return {
        data.attrib["type"]: data.find("repo:location", REPO_NS).attrib["href"]  # type: ignore[union-attr]
        for data in root.findall("repo:data", REPO_NS)
    }


def groups(tree: Path) -> dict[str, list[tuple[str, str]]]:
    """The comps groups file named by repomd.xml: {group id: [(package, type), ...]}."""
    comps = ET.parse(tree / repomd_locations(tree)["group"]).getroot()
    return {
        (group.findtext("id") or "").strip(): [
            ((req.text or "").strip(), req.attrib.get("type", "")) for req in group.iter("packagereq")
        ]
        for group in comps.iter("group")
    }


def dep_shape(dep: str, names: dict[str, str]) -> str:
    """A dependency with its package name replaced by its role and its version by EVR."""
    name, _, rest = dep.partition(" ")
    name = names.get(name, name)
    if rest:
        operator, _, _version = rest.partition(" ")
        return f"{name} {operator} EVR"
    return name


# --- the packs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Built:
    """One pack built by pipeline.iso, and its ISO extracted with xorriso."""

    loaded: LoadedPack
    root: Path
    result: IsoResult
    tree: Path

    @property
    def label(self) -> str:
        return self.loaded.label

    @property
    def uuid(self) -> str:
        return self.loaded.pack.pack.uuid

    @property
    def update_name(self) -> str:
        return f"update-{self.label}"

    @property
    def control_name(self) -> str:
        return f"control-{self.label}"

    @functools.cached_property
    def rpms(self) -> list[RpmHeader]:
        return rpm_headers(sorted((self.tree / "Packages").glob("*.rpm")))

    @property
    def update(self) -> RpmHeader:
        (found,) = [r for r in self.rpms if r.name == self.update_name]
        return found

    @property
    def control(self) -> RpmHeader | None:
        found = [r for r in self.rpms if r.name == self.control_name]
        assert len(found) <= 1
        return found[0] if found else None

    @property
    def payload(self) -> list[RpmHeader]:
        return [r for r in self.rpms if r.name not in (self.update_name, self.control_name)]

    @functools.cached_property
    def update_xml(self) -> ET.Element:
        return ET.parse(self.tree / "update.xml").getroot()


def variant_toml(text: str) -> str:
    """packs/helloworld/pack.toml with a new label, uuid and text, a base requirement and restartHost."""
    head, marker, rest = text.partition("[pack]\n")
    assert marker, "packs/helloworld/pack.toml has no [pack] table"
    end = rest.find("\n[")
    table, tail = (rest, "") if end < 0 else (rest[: end + 1], rest[end + 1 :])
    table = re.sub(r"(?m)^[ \t]*#?[ \t]*(label|uuid|text|base_requires|after_apply)[ \t]*=.*\n", "", table)
    ours = (
        f'label = "{CONTROL_LABEL}"\n'
        f'uuid = "{CONTROL_UUID}"\n'
        f"text = '{CONTROL_TEXT}'\n"
        f'base_requires = "{BASE_REQUIRES}"\n'
        'after_apply = ["restartHost"]\n'
    )
    return head + marker + ours + table + tail


def for_ch82(text: str) -> str:
    """The pack targets Citrix Hypervisor 8.2's kernel, built from its kernel-devel RPM."""
    kernel = f'kernel = "{support.CH82_RELEASE}"\nkernel_devel = "{support.ch82_kernel_devel()}"\n'
    assert text.count('\nkernel = "auto"\n') == 1, "packs/helloworld/pack.toml has no kernel = auto line"
    return text.replace('\nkernel = "auto"\n', "\n" + kernel)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory, ch82_cache: Path) -> Path:
    """A driverpack root holding packs/helloworld and packs/helloworld-ctl (the control variant), for CH 8.2."""
    if not (HELLOWORLD / "pack.toml").is_file():
        pytest.fail(f"the example pack is missing: {HELLOWORLD}/pack.toml")
    root = tmp_path_factory.mktemp("root")
    support.use_kernel_devel_cache(root, ch82_cache)
    shutil.copytree(HELLOWORLD, root / "packs" / "helloworld")
    plain_toml = root / "packs" / "helloworld" / "pack.toml"
    plain_toml.write_text(for_ch82(plain_toml.read_text(encoding="utf-8")), encoding="utf-8")
    variant = root / "packs" / CONTROL_LABEL
    shutil.copytree(HELLOWORLD, variant)
    toml = variant / "pack.toml"
    toml.write_text(for_ch82(variant_toml(toml.read_text(encoding="utf-8"))), encoding="utf-8")
    return root


def build(folder: Path, root: Path) -> Built:
    loaded = load_pack(folder)
    result = pipeline.iso(loaded, root=root)
    tree = extract(result.iso, root / "extracted" / loaded.label)
    return Built(loaded, root, result, tree)


@pytest.fixture(scope="module")
def plain(root: Path) -> Built:
    return build(root / "packs" / "helloworld", root)


@pytest.fixture(scope="module")
def control(root: Path) -> Built:
    built = build(root / "packs" / CONTROL_LABEL, root)
    info = built.loaded.pack.pack
    assert (built.label, info.uuid, info.text) == (CONTROL_LABEL, CONTROL_UUID, CONTROL_TEXT)
    assert (info.base_requires, info.after_apply) == (BASE_REQUIRES, ("restartHost",))
    return built


@pytest.fixture(scope="module", params=["plain", "control"])
def built(request: pytest.FixtureRequest) -> Built:
    value: Built = request.getfixturevalue(request.param)
    return value


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    iso = REFERENCE_DIR / REFERENCE_ISO
    if not iso.is_file():
        pytest.fail(
            f"reference ISO not found: {iso}; the tests expect a copy of the shared/ folder"
            " (shared/reference/*.iso) beside the repository"
        )
    return extract(iso, tmp_path_factory.mktemp("reference") / "tree")


# --- the ISO as isoinfo and xorriso read it ----------------------------------------------------


def test_volume_descriptor_names_the_pack(built: Built) -> None:
    described = tool("isoinfo", "-d", "-i", built.result.iso)
    fields = dict(line.split(": ", 1) for line in described.splitlines() if ": " in line)
    assert fields["Volume id"] == built.label
    assert fields["Application id"] == built.uuid
    assert re.search(r"^Joliet with UCS level \d found$", described, re.M), described
    assert re.search(r"^Rock Ridge signatures version \d+ found$", described, re.M), described
    assert built.result.iso.name == f"{built.label}.iso"


def test_rock_ridge_names_and_modes(built: Built) -> None:
    listing = rock_ridge_listing(built.result.iso)
    directories = {path for path, perm in listing.items() if perm.startswith("d")}
    files = set(listing) - directories
    assert directories == {"Packages", "repodata"}
    assert files == files_under(built.tree)
    assert {listing[d] for d in directories} == {"drwxr-xr-x"}
    assert {listing[f] for f in files} == {"-rw-r--r--"}


def test_joliet_names_equal_rock_ridge_names(built: Built) -> None:
    joliet = {line.strip().lstrip("/") for line in tool("isoinfo", "-J", "-f", "-i", built.result.iso).splitlines()}
    assert joliet == set(rock_ridge_listing(built.result.iso))


def test_extracted_tree_is_a_signed_yum_repository(built: Built) -> None:
    info = built.loaded.pack.pack
    files = files_under(built.tree)
    assert {name.split("/")[0] for name in files} == TOP_LEVEL
    assert {"update.xml", "update.xml.asc", "repodata/repomd.xml", "repodata/repomd.xml.asc"} <= files
    metadata = set(repomd_locations(built.tree).values())
    assert {f for f in files if f.startswith("repodata/")} == metadata | {
        "repodata/repomd.xml",
        "repodata/repomd.xml.asc",
    }

    expected = {f"Packages/{built.update_name}-{info.version}-1.noarch.rpm"}
    if info.base_requires:
        expected.add(f"Packages/{built.control_name}-{info.version}-1.noarch.rpm")
    packages = {f for f in files if f.startswith("Packages/")}
    assert expected <= packages
    assert all(f.endswith(".rpm") for f in packages)
    wanted = set()
    for driver in built.loaded.pack.drivers:
        wanted.add((driver.name, driver.version, driver.release))
        if driver.data is not None:
            wanted.add((f"{driver.name}-data", driver.data.version, driver.data.release))
    assert {(r.name, r.version, r.release) for r in built.payload} == wanted
    assert {f"Packages/{r.path.name}" for r in built.payload} == packages - expected


# --- update.xml --------------------------------------------------------------------------------


def test_update_xml_has_what_xapi_requires(built: Built) -> None:
    info = built.loaded.pack.pack
    root = built.update_xml
    assert root.tag == "update"
    expected = {
        "name-label": built.label,
        "uuid": built.uuid,
        "version": info.version,
        "installation-size": str(sum(r.size for r in built.payload)),
        "key": built.result.public_key.name,
    }
    if info.after_apply:
        expected["after-apply-guidance"] = ",".join(info.after_apply)
    if info.base_requires:
        expected["control"] = built.control_name
    assert root.attrib == expected
    assert [child.tag for child in root] == ["name-description"]
    description = root.findtext("name-description") or ""
    assert description.strip()
    assert description == info.text


def test_control_rpm_only_with_a_base_requirement(built: Built) -> None:
    base_requires = built.loaded.pack.pack.base_requires
    if base_requires is None:
        assert built.control is None
        assert "control" not in built.update_xml.attrib
        return
    assert built.control is not None
    requires = [d for d in deps(built.control.path, "requires") if not d.startswith("rpmlib(")]
    assert requires == [base_requires]
    assert tool("rpm", "-qpl", built.control.path).strip() == "(contains no files)"


# --- signatures --------------------------------------------------------------------------------


@pytest.fixture
def gnupghome(built: Built, tmp_path: Path) -> Path:
    """A fresh GNUPGHOME that knows the pack's exported public key and nothing else."""
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    tool("gpg", "--homedir", home, "--batch", "--no-autostart", "--import", built.result.public_key)
    return home


def gpg_verify(home: Path, signature: Path, data: Path) -> tuple[int, str]:
    return attempt(
        "gpg", "--homedir", home, "--batch", "--no-autostart", "--status-fd", "1", "--verify", signature, data
    )


def test_detached_signatures_verify_with_the_pack_key_alone(built: Built, gnupghome: Path) -> None:
    keys = [
        line.split(":")
        for line in tool(
            "gpg", "--homedir", gnupghome, "--batch", "--no-autostart", "--with-colons", "--list-keys"
        ).splitlines()
    ]
    public = [k for k in keys if k[0] == "pub"]
    assert len(public) == 1, keys
    assert public[0][3] == "1", "the pack key must be RSA (the host's rpm 4.11 and gpg)"
    assert public[0][6] == "", "the pack key must not expire"
    fingerprint = next(k[9] for k in keys if k[0] == "fpr")  # the primary key's
    for name in SIGNED:
        code, output = gpg_verify(gnupghome, built.tree / f"{name}.asc", built.tree / name)
        assert code == 0, output
        assert "[GNUPG:] GOODSIG" in output
        assert f"[GNUPG:] VALIDSIG {fingerprint}" in output


def test_tampered_update_xml_fails_verification(built: Built, gnupghome: Path, tmp_path: Path) -> None:
    tampered = tmp_path / "update.xml"
    text = (built.tree / "update.xml").read_text(encoding="utf-8")
    tampered.write_text(text.replace(f'version="{built.loaded.pack.pack.version}"', 'version="99.0"'), encoding="utf-8")
    assert tampered.read_text(encoding="utf-8") != text
    code, output = gpg_verify(gnupghome, built.tree / "update.xml.asc", tampered)
    assert code != 0
    assert "[GNUPG:] BADSIG" in output
    assert "GOODSIG" not in output


def test_every_rpm_is_signed_by_the_pack_key(built: Built, tmp_path: Path) -> None:
    rpms = [r.path for r in built.rpms]
    empty = tmp_path / "empty-rpmdb"
    empty.mkdir()
    code, output = attempt("rpmkeys", "--dbpath", empty, "-K", *rpms)
    assert code != 0 and output.count("SIGNATURES NOT OK") == len(rpms), output

    dbpath = tmp_path / "rpmdb"
    dbpath.mkdir()
    tool("rpmkeys", "--dbpath", dbpath, "--import", built.result.public_key)
    checked = tool("rpmkeys", "--dbpath", dbpath, "-K", *rpms)
    assert checked.splitlines() == [f"{rpm}: digests signatures OK" for rpm in rpms]


# --- the update RPM ----------------------------------------------------------------------------


def test_update_rpm_provides_uuid_and_requires_payload(built: Built) -> None:
    update = built.update
    assert update.arch == "noarch"
    assert tool("rpm", "-qpl", update.path).strip() == "(contains no files)"
    provides = deps(update.path, "provides")
    assert built.uuid in provides
    requires = deps(update.path, "requires")
    for rpm in built.payload:
        assert f"{rpm.name} >= {rpm.evr}" in requires
    named = [d for d in requires if not d.startswith(("rpmlib(", "/"))]
    assert len(named) == len(built.payload), requires


def test_update_rpm_records_the_update_on_the_host(built: Built) -> None:
    scripts = scriptlets(built.update.path)
    posttrans = scripts["posttrans"]
    heredoc = re.search(
        rf"^cat >/var/update/applied/{built.uuid} <<'(?P<end>[A-Za-z0-9_]+)'\n(?P<body>.*?)^(?P=end)$",
        posttrans,
        re.S | re.M,
    )
    assert heredoc, f"no quoted heredoc writing /var/update/applied/{built.uuid}:\n{posttrans}"
    # The host's applied file is update.xml byte for byte: nothing expanded by rpm or the shell.
    assert heredoc["body"] == (built.tree / "update.xml").read_text(encoding="utf-8")
    reboot = f"echo {built.uuid} >>/run/reboot-required.hfxs"
    needs_reboot = "restartHost" in built.loaded.pack.pack.after_apply
    assert (reboot in posttrans.splitlines()) == needs_reboot, posttrans
    assert f"/var/update/{built.uuid}/.remove" in scripts["postuninstall"]


# --- a real client: dnf into a scratch root ----------------------------------------------------


@pytest.fixture(scope="module")
def stubs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Stand-ins for a host's base packages: {"plain" | "8.2.1" | "8.2.0": rpm}."""
    top = tmp_path_factory.mktemp("stubs")
    variants = {
        "plain": "",
        "8.2.1": "Provides: product-version = 8.2.1\n",
        "8.2.0": "Provides: product-version = 8.2.0\n",
    }
    made = {}
    for key, extra in variants.items():
        topdir = (top / key).absolute()
        spec = top / f"stub-{key}.spec"
        spec.write_text(STUB_SPEC.format(extra=extra))
        tool("rpmbuild", "-bb", "--define", f"_topdir {topdir}", spec)
        (made[key],) = (topdir / "RPMS" / "noarch").glob("*.rpm")
    return made


@dataclass(frozen=True)
class Scratch:
    """A scratch host root for dnf, with the host's base stub installed."""

    dir: Path
    tree: Path  # the extracted ISO
    public_key: Path

    @property
    def root(self) -> Path:
        return self.dir / "root"

    def dnf(self, *args: str, gpgkey: bool = True) -> tuple[int, str]:
        key = [f"--setopt=pack.gpgkey={self.public_key.as_uri()}", "--setopt=pack.repo_gpgcheck=1"] if gpgkey else []
        return attempt(
            "dnf",
            f"--config={self.dir / 'dnf.conf'}",
            f"--installroot={self.root}",
            "--releasever=8.2",
            "--noplugins",
            "--setopt=reposdir=/dev/null",
            f"--setopt=cachedir={self.dir / 'cache'}",
            f"--repofrompath=pack,{self.tree}",
            "--repo=pack",
            "--setopt=pack.gpgcheck=1",
            *key,
            "--setopt=tsflags=noscripts",
            "--assumeyes",
            *args,
        )

    def installed(self) -> set[str]:
        listed = tool("rpm", "--root", self.root, "-qa", "--qf", r"%{NAME}-%{VERSION}-%{RELEASE}.%{ARCH}\n")
        return {line for line in listed.splitlines() if not line.startswith("gpg-pubkey-")}


@pytest.fixture
def scratch(tmp_path: Path) -> Iterator[Path]:
    """A folder for one scratch host; afterwards, stops the gpg-agents dnf's repo_gpgcheck left running."""
    yield tmp_path
    for keyring in sorted(tmp_path.glob("cache/*/pubring")):
        run([which("gpgconf"), "--homedir", keyring, "--kill", "gpg-agent"], check=False, quiet=True)


def scratch_host(where: Path, built: Built, stub: Path, tree: Path | None = None) -> Scratch:
    host = Scratch(where, tree or built.tree, built.result.public_key)
    host.root.mkdir(parents=True)
    (where / "dnf.conf").write_text("[main]\ngpgcheck=1\nrepo_gpgcheck=1\ninstallonly_limit=0\n")
    tool("rpm", "--root", host.root, "-i", stub)
    return host


def assert_payload_installed(host: Scratch, built: Built) -> None:
    installed = host.installed()
    for rpm in (built.update, *built.payload):
        assert rpm.nevra in installed
    listed = [path for rpm in built.payload for path in tool("rpm", "-qpl", rpm.path).splitlines()]
    for path in listed:
        assert (host.root / path.lstrip("/")).exists(), path
    module_dir = built.loaded.pack.target.module_dir
    modules = [p for p in listed if re.fullmatch(rf"/lib/modules/[^/]+/{module_dir}/[^/]+\.ko", p)]
    assert modules, f"no module under /lib/modules/<kernel>/{module_dir}/ in {listed}"
    for module in modules:
        assert (host.root / module.lstrip("/")).is_file(), module


def test_dnf_installs_update_group_with_gpgcheck(plain: Built, stubs: dict[str, Path], scratch: Path) -> None:
    host = scratch_host(scratch, plain, stubs["plain"])
    code, output = host.dnf("install", "@update")
    assert code == 0, output
    assert_payload_installed(host, plain)


def test_dnf_refuses_the_pack_without_its_key(plain: Built, stubs: dict[str, Path], scratch: Path) -> None:
    """Shows gpgcheck is really on in the command above: without the key nothing installs."""
    host = scratch_host(scratch, plain, stubs["plain"])
    code, output = host.dnf("install", "@update", gpgkey=False)
    assert code != 0, output
    assert "GPG" in output
    assert host.installed() == {"host-base-stub-1-1.noarch"}


def test_dnf_refuses_repodata_changed_after_signing(plain: Built, stubs: dict[str, Path], scratch: Path) -> None:
    """repo_gpgcheck checks repomd.xml.asc as xapi does: metadata changed after signing is refused."""
    tree = scratch / "tree"
    shutil.copytree(plain.tree, tree)
    repomd = tree / "repodata" / "repomd.xml"
    repomd.chmod(0o644)
    repomd.write_bytes(repomd.read_bytes() + b"<!-- changed after signing -->\n")
    host = scratch_host(scratch, plain, stubs["plain"], tree)
    code, output = host.dnf("install", "@update")
    assert code != 0, output
    assert "repomd.xml GPG signature verification error" in output
    assert host.installed() == {"host-base-stub-1-1.noarch"}


def test_dnf_installs_control_then_update(control: Built, stubs: dict[str, Path], scratch: Path) -> None:
    host = scratch_host(scratch, control, stubs["8.2.1"])
    code, output = host.dnf("install", control.control_name)  # xapi's precheck
    assert code == 0, output
    code, output = host.dnf("install", "@update")
    assert code == 0, output
    assert_payload_installed(host, control)
    assert control.control is not None and control.control.nevra in host.installed()


def test_control_refuses_an_older_base(control: Built, stubs: dict[str, Path], scratch: Path) -> None:
    host = scratch_host(scratch, control, stubs["8.2.0"])
    code, output = host.dnf("install", control.control_name)
    assert code != 0, output
    assert BASE_REQUIRES in output
    assert host.installed() == {"host-base-stub-1-1.noarch"}


# --- checksums and reproducibility -------------------------------------------------------------


def test_md5_files_check_with_md5sum(built: Built) -> None:
    dist = built.result.iso.parent
    assert built.result.iso_md5 == dist / f"{built.label}.iso.md5"
    assert built.result.metadata_md5 == dist / f"{built.label}.metadata.md5"
    assert tool("md5sum", "-c", built.result.iso_md5.name, cwd=dist).splitlines() == [f"{built.label}.iso: OK"]
    checked = tool("md5sum", "-c", built.result.metadata_md5.resolve(), cwd=built.tree)
    assert checked.splitlines() == [f"{name}: OK" for name in SIGNED]


def test_two_clean_runs_give_identical_iso_bytes(tmp_path_factory: pytest.TempPathFactory) -> None:
    root = tmp_path_factory.mktemp("repro")
    folder = root / "packs" / "helloworld"
    shutil.copytree(HELLOWORLD, folder)
    runs = []
    for _ in range(2):
        for output in ("build", "dist"):
            shutil.rmtree(root / output, ignore_errors=True)
        result = pipeline.iso(load_pack(folder), root=root)
        runs.append((result.iso.read_bytes(), result.iso_md5.read_text(), result.metadata_md5.read_text()))
        assert (root / "keys").is_dir()
    first, second = runs
    assert first[0] == second[0], "the ISO bytes differ between two clean runs"
    assert first[1:] == second[1:]


# --- compared with a pack made by build-update -------------------------------------------------


def test_layout_matches_reference(control: Built, reference: Path) -> None:
    ours, theirs = files_under(control.tree), files_under(reference)
    assert {f.split("/")[0] for f in ours} == {f.split("/")[0] for f in theirs} == TOP_LEVEL
    for tree in (control.tree, reference):
        for name in ("update.xml", "update.xml.asc", "repodata/repomd.xml", "repodata/repomd.xml.asc"):
            assert (tree / name).is_file(), f"{tree}/{name}"
    # The same repodata records, less the sqlite databases yum builds itself.
    reference_types = {t for t in repomd_locations(reference) if not t.endswith("_db")}
    assert set(repomd_locations(control.tree)) == reference_types
    # Packages: the payload, update-<label> and control-<label>, as build-update names them.
    for tree, label in ((control.tree, control.label), (reference, reference_label(reference))):
        names = {p.name for p in (tree / "Packages").glob("*.rpm")}
        assert sum(n.startswith(f"update-{label}-") and n.endswith(".noarch.rpm") for n in names) == 1
        assert sum(n.startswith(f"control-{label}-") and n.endswith(".noarch.rpm") for n in names) == 1


def reference_label(reference: Path) -> str:
    return ET.parse(reference / "update.xml").getroot().attrib["name-label"]


def test_update_xml_matches_reference(control: Built, reference: Path) -> None:
    theirs = ET.parse(reference / "update.xml").getroot()
    ours = control.update_xml
    # build-update's reference pack has no after-apply-guidance; ours asks for restartHost.
    assert set(ours.attrib) == set(theirs.attrib) | {"after-apply-guidance"}
    assert [c.tag for c in ours] == [c.tag for c in theirs if c.tag != "rollsup"]
    for tree in (control.tree, reference):
        text = (tree / "update.xml").read_text(encoding="utf-8")
        assert text.startswith("  <update "), "no XML declaration, indented, as build-update writes it"


def test_update_rpm_matches_reference(control: Built, reference: Path) -> None:
    label = reference_label(reference)
    (ref_rpm,) = (reference / "Packages").glob(f"update-{label}-*.rpm")
    ref_uuid = ET.parse(reference / "update.xml").getroot().attrib["uuid"]
    ref_payload = [
        h.name
        for h in rpm_headers(sorted((reference / "Packages").glob("*.rpm")))
        if h.name not in (f"update-{label}", f"control-{label}")
    ]
    ref_names = {ref_uuid: "UUID", f"update-{label}": "UPDATE", **dict.fromkeys(ref_payload, "PAYLOAD")}
    our_names = {
        control.uuid: "UUID",
        control.update_name: "UPDATE",
        **dict.fromkeys((r.name for r in control.payload), "PAYLOAD"),
    }
    for kind in ("provides", "requires"):
        ours = deps(control.update.path, kind)
        theirs = deps(ref_rpm, kind)
        assert {dep_shape(d, our_names) for d in ours if not d.startswith("rpmlib(")} == {
            dep_shape(d, ref_names) for d in theirs if not d.startswith("rpmlib(")
        }, kind
        # Nothing rpm 4.11 (build-update's world) would not know.
        assert {d.split()[0] for d in ours if d.startswith("rpmlib(")} <= {
            d.split()[0] for d in theirs if d.startswith("rpmlib(")
        }
    our_postun = scriptlets(control.update.path)["postuninstall"].replace(control.uuid, "UUID")
    ref_postun = scriptlets(ref_rpm)["postuninstall"].replace(ref_uuid, "UUID")
    assert our_postun.strip() == ref_postun.strip()


def test_control_rpm_matches_reference(control: Built, reference: Path) -> None:
    label = reference_label(reference)
    (ref_rpm,) = (reference / "Packages").glob(f"control-{label}-*.rpm")
    assert control.control is not None
    ref_requires = [d for d in deps(ref_rpm, "requires") if not d.startswith(("rpmlib(", "/"))]
    our_requires = [d for d in deps(control.control.path, "requires") if not d.startswith(("rpmlib(", "/"))]
    assert [d.split()[0] for d in our_requires] == [d.split()[0] for d in ref_requires] == ["product-version"]
    assert deps(control.control.path, "provides") == [f"{control.control_name} = {control.control.evr}"]


def test_groups_match_reference(control: Built, reference: Path) -> None:
    ours, theirs = groups(control.tree), groups(reference)
    assert set(ours) == set(theirs) == {"update", "drivers"}
    for group in ("update", "drivers"):
        assert ours[group] == [(control.update_name, "mandatory")]
        assert theirs[group] == [(f"update-{reference_label(reference)}", "mandatory")]


# --- inv verify through the command line -------------------------------------------------------


def inv_verify(root: Path, folder: Path, iso: Path) -> tuple[int, str]:
    inv = Path(sys.executable).parent / "inv"
    if not inv.is_file():
        pytest.fail(f"invoke's 'inv' is not installed beside {sys.executable}")
    return attempt(inv, "-r", REPO, "verify", "--pack", folder, "--iso", iso, cwd=root)


def test_inv_verify_accepts_a_good_iso(plain: Built) -> None:
    code, output = inv_verify(plain.root, plain.loaded.folder, plain.result.iso)
    assert code == 0, output
    assert "Traceback" not in output


@pytest.fixture
def badly_signed_iso(plain: Built, tmp_path: Path) -> Path:
    """The pack's ISO rewritten with a signature over other data as update.xml.asc, its key beside it."""
    tree = tmp_path / "tree"
    shutil.copytree(plain.tree, tree)
    asc = tree / "update.xml.asc"
    asc.chmod(0o644)
    # A real signature by the right key, over repomd.xml: gpg reports BADSIG for update.xml.
    asc.write_bytes((tree / "repodata" / "repomd.xml.asc").read_bytes())
    out = tmp_path / "iso" / "broken.iso"
    write_iso(
        out,
        [IsoEntry(path=p.relative_to(tree).as_posix(), source=p) for p in sorted(tree.rglob("*")) if p.is_file()],
        volume_id=plain.label,
        application_id=plain.uuid,
        epoch=plain.loaded.pack.source_date_epoch(),
    )
    shutil.copyfile(plain.result.public_key, out.parent / plain.result.public_key.name)
    return out


def test_inv_verify_rejects_a_bad_signature(plain: Built, badly_signed_iso: Path) -> None:
    code, output = inv_verify(plain.root, plain.loaded.folder, badly_signed_iso)
    assert code != 0, output
    assert "Traceback" not in output
    errors = output[output.index("error:") :] if "error:" in output else ""
    assert "update.xml.asc" in errors, output
