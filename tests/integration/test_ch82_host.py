"""Packs that a Citrix Hypervisor 8.2 host treats right, built against CH 8.2's own kernel-devel RPM.

The target is `kernel = "4.19.0+1"` with `kernel_devel` pointing at the RPM in ../shared/ch82/
(unpacked once per session, see conftest.py), so `Requires: kernel-uname-r` and the SRPM's
`BuildRequires: kernel-devel-uname-r` are real and exercised here:

- the replacing pack (`replaces = "intel-i40e"`) is built, put on an ISO, and installed with dnf
  into a scratch `--installroot` where a stub dom0 and a stub of the in-box intel-i40e (owning
  updates/i40e.ko) are installed: it upgrades the in-box package like a plain yum update;
- without `replaces` the same driver is refused by `check` (Kbuild names the module), or right
  after compile when only the compile shows the module's name; no RPM is made either way;
- the scriptlets run for real: rpm installs, upgrades and erases the packages in a scratch
  `--root` (rpm runs scriptlets chrooted there, as root). The root's /bin/sh is a statically
  linked busybox (Debian's busybox-static, Fedora's busybox), and `depmod`, `dracut`, `udevadm`
  and `runlevel` are recording stand-ins that write their arguments to /calls.log, so nothing
  of this machine's /boot, /lib/modules, /var/lib/rpm-state or rpm database is touched. The
  in-box stub is built with CH 8.2's own macros.kernel (from the kernel-devel RPM), so the
  upgrade runs Citrix's old %postun beside ours. `runlevel` succeeds in "running host" mode and
  fails in "installer" mode, as on the host installer;
- the SRPM rebuilds with `rpmbuild --rebuild` against a scratch rpm database where the
  kernel-devel RPM is installed (and fails for want of it where it is not).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import textwrap
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import support

from driverpack import pipeline
from driverpack.adapters.iso import extract_iso
from driverpack.errors import PackError
from driverpack.load import LoadedPack, load_pack
from driverpack.run import run, which
from driverpack.steps.iso import IsoResult
from driverpack.steps.rpms import RpmsResult
from driverpack.vermagic import debug_sections, vermagic, vermagic_matches

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
DRIVERS = REPO / "tests" / "data" / "drivers"
KERNEL = support.CH82_RELEASE
INITRD = f"/boot/initrd-{KERNEL}.img"
DRACUT = f"dracut -f {INITRD} {KERNEL}"
UDEV = ["udevadm trigger --attr-nomatch=driver", "udevadm settle -t 30"]
CHANGELOG = '[{ date = "2024-01-01", author = "Example Corp <drivers@example.com>", text = "Test build" }]'

# What dom0 has that the packs need, for rpm and dnf in a scratch root: kernel-uname-r, the
# tools the scriptlets call (recording stand-ins), a static /bin/sh, an initrd, rpm's state dir.
DOM0_STUB = """\
Name: ch82-dom0-stub
Version: 1
Release: 1
Summary: Stands in for a Citrix Hypervisor 8.2 dom0 in a scratch root
License: MIT
AutoReqProv: no
Provides: kernel-uname-r = {kernel}
%global __os_install_post %{{nil}}
%global debug_package %{{nil}}

%description
Stand-ins that record their calls to /calls.log.

%install
mkdir -p %{{buildroot}}/bin %{{buildroot}}/sbin %{{buildroot}}/usr/bin %{{buildroot}}/usr/sbin \\
    %{{buildroot}}/boot %{{buildroot}}/var/lib/rpm-state
cp {busybox} %{{buildroot}}/bin/sh
ln -s sh %{{buildroot}}/bin/rm
for tool in usr/sbin/depmod sbin/depmod usr/bin/dracut usr/bin/udevadm; do
    printf '#!/bin/sh\\necho "${{0##*/}} $*" >> /calls.log\\n' > %{{buildroot}}/$tool
done
printf '#!/bin/sh\\necho runlevel >> /calls.log\\n[ -e /running-host ]\\n' > %{{buildroot}}/usr/sbin/runlevel
echo initrd > %{{buildroot}}{initrd}

%files
%attr(0755,root,root) /bin/sh
/bin/rm
%attr(0755,root,root) /sbin/depmod
%attr(0755,root,root) /usr/sbin/depmod
%attr(0755,root,root) /usr/bin/dracut
%attr(0755,root,root) /usr/bin/udevadm
%attr(0755,root,root) /usr/sbin/runlevel
{initrd}
%dir /var/lib/rpm-state
"""

# The in-box intel-i40e of a CH 8.2 host, with Citrix's scriptlets (macros.kernel's, loaded from
# the kernel-devel RPM when this is built).
INBOX_STUB = """\
Name: intel-i40e
Version: 2.9.21
Release: 3
Summary: Stands in for Citrix Hypervisor 8.2's in-box Intel i40e driver package
License: GPL
AutoReqProv: no
Requires: kernel-uname-r = %{{kernel_version}}
%global __os_install_post %{{nil}}
%global debug_package %{{nil}}

%description
Owns updates/i40e.ko like the real package.

%install
mkdir -p %{{buildroot}}/lib/modules/%{{kernel_version}}/updates
echo in-box > %{{buildroot}}/lib/modules/%{{kernel_version}}/updates/i40e.ko

%post
/sbin/depmod %{{kernel_version}}
%{{regenerate_initrd_post}}

%postun
/sbin/depmod %{{kernel_version}}
%{{regenerate_initrd_postun}}

%posttrans
%{{regenerate_initrd_posttrans}}

%files
/lib/modules/{kernel}/updates/i40e.ko
"""

BUILD_TOOLS_STUB = """\
Name: build-tools-stub
Version: 1
Release: 1
Summary: Stands in for the compilers of a build root, in a scratch rpm database
License: MIT
BuildArch: noarch
Provides: gcc
Provides: make
Provides: binutils

%description
Provides what the generated specs BuildRequire besides the kernel.

%files
"""


@dataclass(frozen=True)
class Built:
    root: Path
    loaded: LoadedPack
    rpms: RpmsResult


# --- helpers -----------------------------------------------------------------------------------


def tool(*argv: str | Path, cwd: Path | None = None) -> str:
    return run([which(str(argv[0])), *argv[1:]], cwd=cwd, quiet=True).stdout.decode()


def attempt(*argv: str | Path) -> tuple[int, str]:
    proc = run([which(str(argv[0])), *argv[1:]], check=False, quiet=True)
    return proc.returncode, proc.stdout.decode(errors="replace") + proc.stderr.decode(errors="replace")


def make_pack(
    root: Path,
    label: str,
    case: str,
    *,
    name: str,
    version: str,
    release: str = "1",
    extra: str = "",
    data: bool = False,
    kernel_devel: Path | None = None,
) -> LoadedPack:
    """packs/<label>/ targeting CH 8.2's kernel-devel RPM, with one driver made from tests/data/drivers/<case>/."""
    folder = root / "packs" / label
    folder.mkdir(parents=True)
    case_dir = DRIVERS / case
    (top,) = (case_dir / "source").iterdir()
    tarball = f"{top.name}.tar.gz"
    support.make_tarball(case_dir / "source", folder / tarball)
    text = textwrap.dedent(f"""\
        [pack]
        label = "{label}"
        text = "Test pack {label}"
        uuid = "{uuid.uuid5(uuid.NAMESPACE_URL, f"driverpack-test:{label}")}"
        version = "1.0.0"
        vendor = "Example Corp"

        [target]
        kernel = "{KERNEL}"
        kernel_devel = {json.dumps(str(kernel_devel or support.ch82_kernel_devel()))}

        [[drivers]]
        name = "{name}"
        version = "{version}"
        release = "{release}"
        source = "{tarball}"
        summary = "Test driver {name}"
        changelog = {CHANGELOG}
        """)
    text += extra
    if data:
        (data_dir,) = case_dir.glob("*-data-*")
        shutil.copytree(data_dir, folder / data_dir.name)
        text += f'\n[drivers.data]\nversion = "{data_dir.name.rsplit("-", 1)[1]}"\n'
    (folder / "pack.toml").write_text(text)
    return load_pack(folder)


def rpm_query(path: Path, *options: str) -> list[str]:
    return [line for line in tool("rpm", "-qp", *options, path).splitlines() if line.strip()]


def payload_files(rpm: Path, dest: Path) -> Path:
    dest.mkdir(parents=True)
    run([which("cpio"), "-idm", "--quiet", "--no-absolute-filenames"], cwd=dest, input=tool_bytes(rpm), quiet=True)
    return dest


def tool_bytes(rpm: Path) -> bytes:
    return run([which("rpm2cpio"), rpm], quiet=True).stdout


def build_stub(spec_text: str, work: Path, name: str, *load: Path) -> Path:
    spec = work / f"{name}.spec"
    spec.write_text(spec_text)
    top = (work / f"{name}-rpmbuild").absolute()
    argv: list[str | Path] = ["rpmbuild", "-bb", "--nodeps", "--define", f"_topdir {top}"]
    for macros in load:
        argv += ["--load", macros]
    tool(*argv, spec)
    (rpm,) = (top / "RPMS").glob(f"*/{name}-*.rpm")
    return rpm


def assert_no_rpms(root: Path, label: str) -> None:
    built = sorted((root / "build" / label / "rpmbuild").glob("**/*.rpm"))
    assert built == [], built


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory, ch82_cache: Path) -> Path:
    where = tmp_path_factory.mktemp("ch82")
    support.use_kernel_devel_cache(where, ch82_cache)
    return where


@pytest.fixture(scope="module")
def replacing(root: Path) -> Built:
    """A vendor's i40e that replaces the in-box intel-i40e, with a data RPM (firmware, modprobe options)."""
    loaded = make_pack(
        root,
        "acme-i40e",
        "acme-i40e",
        name="acme-i40e",
        version="2.9.22",
        extra='replaces = "intel-i40e"\n',
        data=True,
    )
    return Built(root, loaded, pipeline.build_rpms(loaded, root=root))


@pytest.fixture(scope="module")
def replacing_iso(replacing: Built) -> IsoResult:
    return pipeline.iso(replacing.loaded, root=replacing.root)


@pytest.fixture(scope="module")
def macros_kernel(ch82_cache: Path) -> Path:
    """CH 8.2's own macros.kernel, as its kernel-devel RPM installs it."""
    (found,) = ch82_cache.glob("*/root/usr/lib/rpm/macros.d/macros.kernel")
    return found


@pytest.fixture(scope="module")
def stubs(tmp_path_factory: pytest.TempPathFactory, macros_kernel: Path) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("stubs")
    busybox = shutil.which("busybox")
    assert busybox, "busybox not found: install busybox-static (Debian) or busybox (Fedora); ./bootstrap does"
    file_type = tool("file", "-L", busybox) if shutil.which("file") else "statically linked"
    assert "statically linked" in file_type, f"{busybox} must be statically linked to run in a scratch root"
    return {
        "dom0": build_stub(DOM0_STUB.format(kernel=KERNEL, busybox=busybox, initrd=INITRD), work, "ch82-dom0-stub"),
        "inbox": build_stub(INBOX_STUB.format(kernel=KERNEL), work, "intel-i40e", macros_kernel),
        "tools": build_stub(BUILD_TOOLS_STUB, work, "build-tools-stub"),
    }


# --- the replacing pack ------------------------------------------------------------------------


def test_replacing_driver_is_built_as_the_inbox_package(replacing: Built) -> None:
    (kmod,) = replacing.rpms.kmod_rpms
    assert rpm_query(kmod, "--qf", "%{NAME} %{EPOCH} %{VERSION}-%{RELEASE}") == ["intel-i40e (none) 2.9.22-1"]
    assert rpm_query(kmod, "--list") == [f"/lib/modules/{KERNEL}/updates/i40e.ko"]
    requires = rpm_query(kmod, "--requires")
    assert f"kernel-uname-r = {KERNEL}" in requires
    assert "/usr/sbin/depmod" in requires and "/sbin/depmod" not in requires
    assert (replacing.root / "build" / "acme-i40e" / "logs" / "compile-acme-i40e.log").is_file(), (
        "name stays the handle"
    )
    srpm = next(p for p in replacing.rpms.srpms if p.name.startswith("intel-i40e-2.9.22-1"))
    assert f"kernel-devel-uname-r = {KERNEL}" in rpm_query(srpm, "--requires")


def test_modules_carry_the_ch82_vermagic_and_no_debug_info(replacing: Built, tmp_path: Path) -> None:
    (kmod,) = replacing.rpms.kmod_rpms
    module = payload_files(kmod, tmp_path / "payload") / f"lib/modules/{KERNEL}/updates/i40e.ko"
    data = module.read_bytes()
    magic = vermagic(data)
    assert magic is not None and vermagic_matches(magic, KERNEL), magic
    assert debug_sections(data) == []
    assert ".debug_" not in tool("readelf", "-S", "-W", module)
    # The check can fail: the module as compiled, before the spec strips it, has debug info.
    (compiled,) = (replacing.root / "build" / "acme-i40e" / "BUILD").rglob("i40e.ko")
    assert ".debug_info" in debug_sections(compiled.read_bytes())
    assert ".debug_info" in tool("readelf", "-S", "-W", compiled)


def test_no_debug_info_in_any_module_of_any_rpm_built_here(root: Path, replacing: Built, tmp_path: Path) -> None:
    rpms = sorted(p for p in root.glob("build/*/rpmbuild/RPMS/*/*.rpm"))
    assert rpms
    for i, rpm in enumerate(rpms):
        for module in payload_files(rpm, tmp_path / str(i)).rglob("*.ko"):
            assert debug_sections(module.read_bytes()) == [], f"{rpm.name}: {module.name}"


def test_data_rpm_rebuilds_the_initrd_too(replacing: Built) -> None:
    (data,) = replacing.rpms.data_rpms
    scripts = tool("rpm", "-qp", "--scripts", data)
    assert DRACUT in scripts and "regenerate-initrd-4.19.0+1" in scripts and "depmod" not in scripts


def test_update_asks_for_a_reboot_when_after_apply_is_unset(replacing: Built, replacing_iso: IsoResult) -> None:
    assert replacing.loaded.pack.pack.after_apply is None
    xml = (replacing.root / "build" / "acme-i40e" / "iso" / "update.xml").read_text()
    assert 'after-apply-guidance="restartHost"' in xml


def test_dnf_upgrades_the_inbox_driver(
    replacing: Built, replacing_iso: IsoResult, stubs: dict[str, Path], tmp_path: Path
) -> None:
    host = tmp_path / "root"
    host.mkdir()
    tool("rpm", "--root", host, "-i", "--noscripts", stubs["dom0"], stubs["inbox"])
    tree = tmp_path / "iso"
    extract_iso(replacing_iso.iso, tree)
    (tmp_path / "dnf.conf").write_text("[main]\ngpgcheck=0\ninstall_weak_deps=0\n")
    code, output = attempt(
        "dnf",
        f"--config={tmp_path / 'dnf.conf'}",
        f"--installroot={host}",
        "--releasever=8.2",
        "--noplugins",
        "--setopt=reposdir=/dev/null",
        f"--setopt=cachedir={tmp_path / 'cache'}",
        f"--repofrompath=pack,{tree}",
        "--repo=pack",
        "--nogpgcheck",
        "--setopt=tsflags=noscripts",
        "--assumeyes",
        "install",
        "@update",
    )
    assert code == 0, output
    assert "Upgrading" in output or "Upgraded" in output, output
    owner = tool("rpm", "--root", host, "-qf", f"/lib/modules/{KERNEL}/updates/i40e.ko")
    assert owner.split() == ["intel-i40e-2.9.22-1.x86_64"]
    installed = tool("rpm", "--root", host, "-q", "intel-i40e").split()
    assert installed == ["intel-i40e-2.9.22-1.x86_64"]
    assert (host / f"lib/modules/{KERNEL}/updates/i40e.ko").read_bytes() != b"in-box\n"


# --- refusals: no RPM is made ------------------------------------------------------------------


def test_check_refuses_an_inbox_module_without_replaces(root: Path) -> None:
    loaded = make_pack(root, "clash", "acme-i40e", name="acme-i40e", version="2.9.22")
    with pytest.raises(PackError) as caught:
        pipeline.build_rpms(loaded, root=root)
    (problem,) = caught.value.problems
    assert "drivers[0]: builds i40e.ko" in problem
    assert "intel-i40e (2.9.21-3)" in problem
    assert 'replaces = "intel-i40e"' in problem and "rename the module" in problem
    assert_no_rpms(root, "clash")


def test_compile_refuses_an_inbox_module_that_only_the_compile_names(root: Path) -> None:
    loaded = make_pack(
        root, "clash-late", "make-named", name="mknamed", version="1.0", extra='make_args = ["DRV=i40e"]\n'
    )
    pipeline.check(loaded, root)  # Kbuild's obj-m := $(DRV).o names no module
    with pytest.raises(PackError) as caught:
        pipeline.build_rpms(loaded, root=root)
    (problem,) = caught.value.problems
    assert problem.startswith(f"{loaded.file}: drivers[0]: builds i40e.ko, which Citrix Hypervisor 8.2 ships")
    assert "no RPM was built" in caught.value.hint
    assert list((root / "build" / "clash-late" / "BUILD").rglob("i40e.ko")), "it was compiled"
    assert_no_rpms(root, "clash-late")


def test_replacement_that_does_not_upgrade_is_refused(root: Path) -> None:
    loaded = make_pack(
        root, "downgrade", "acme-i40e", name="acme-i40e", version="2.9.21", release="3",
        extra='replaces = "intel-i40e"\n',
    )  # fmt: skip
    with pytest.raises(PackError) as caught:
        pipeline.check(loaded, root)
    (problem,) = caught.value.problems
    assert "replaces intel-i40e 2.9.21-3, but 2.9.21-3 is not higher" in problem


def test_carried_rpm_with_an_inbox_module_is_refused(root: Path, replacing: Built, tmp_path: Path) -> None:
    (kmod,) = replacing.rpms.kmod_rpms
    module = payload_files(kmod, tmp_path / "payload") / f"lib/modules/{KERNEL}/updates/i40e.ko"
    spec = textwrap.dedent(f"""\
        Name: other-nic
        Version: 1.0
        Release: 1
        Summary: A prebuilt RPM shipping an in-box module under another name
        License: GPL
        Group: System Environment/Kernel
        %global __os_install_post %{{nil}}
        %global debug_package %{{nil}}
        %description
        Built elsewhere.
        %install
        install -D -m 0644 {module} %{{buildroot}}/lib/modules/{KERNEL}/updates/i40e.ko
        %files
        /lib/modules/{KERNEL}/updates/i40e.ko
        """)
    carried = build_stub(spec, tmp_path, "other-nic")
    folder = root / "packs" / "carried-clash"
    folder.mkdir(parents=True)
    shutil.copyfile(carried, folder / carried.name)
    (folder / "pack.toml").write_text(
        textwrap.dedent(f"""\
            [pack]
            label = "carried-clash"
            text = "Carried"
            uuid = "{uuid.uuid5(uuid.NAMESPACE_URL, "driverpack-test:carried-clash")}"
            version = "1.0"
            [target]
            kernel = "{KERNEL}"
            [[rpms]]
            path = "{carried.name}"
            """)
    )
    with pytest.raises(PackError) as caught:
        pipeline.check(load_pack(folder), root)
    (problem,) = caught.value.problems
    assert "rpms[0].path: other-nic-1.0-1.x86_64.rpm: ships i40e.ko" in problem
    assert "rebuild it as package intel-i40e" in problem


# --- scriptlets, run by rpm in a scratch root --------------------------------------------------


class Host:
    """A scratch root with the dom0 stub, where rpm runs the packs' scriptlets chrooted."""

    def __init__(self, where: Path, stubs: dict[str, Path], *, running: bool, initrd: bool) -> None:
        self.root = where
        where.mkdir()
        (where / "dev").mkdir()
        # The scriptlets redirect to /dev/null, as on any host.
        os.mknod(where / "dev" / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
        self.rpm("-i", stubs["dom0"])
        if running:
            (where / "running-host").touch()
        if not initrd:
            (where / INITRD.lstrip("/")).unlink()
        self.calls()  # start from an empty log

    def rpm(self, *args: str | Path) -> str:
        return tool("rpm", "--root", self.root, *args)

    def calls(self) -> list[str]:
        """The stand-ins' calls since the last look, one 'tool args' line each."""
        log = self.root / "calls.log"
        lines = log.read_text().splitlines() if log.exists() else []
        log.write_text("")
        return lines

    def marker_left(self) -> bool:
        return (self.root / f"var/lib/rpm-state/regenerate-initrd-{KERNEL}").exists()


MODES = {
    # (runlevel succeeds, /boot/initrd-<kernel>.img exists) -> what %posttrans calls after the marker
    "running host": ((True, True), [DRACUT, "runlevel", *UDEV]),
    "installer": ((False, True), [DRACUT, "runlevel"]),
    "running host without an initrd": ((True, False), ["runlevel", *UDEV]),
}


@pytest.mark.parametrize("mode", list(MODES))
def test_scriptlets_install_erase_and_upgrade(
    replacing: Built, stubs: dict[str, Path], tmp_path: Path, mode: str
) -> None:
    (running, initrd), posttrans = MODES[mode]
    (kmod,) = replacing.rpms.kmod_rpms
    (data,) = replacing.rpms.data_rpms
    assert os.geteuid() == 0, "rpm --root runs scriptlets chrooted, which needs root"
    host = Host(tmp_path / "root", stubs, running=running, initrd=initrd)
    dracut = [DRACUT] if initrd else []

    # install, two packages in one transaction: depmod from the module's %post, one initrd rebuild
    host.rpm("-i", kmod, data)
    assert host.calls() == [f"depmod {KERNEL}", *posttrans]
    assert not host.marker_left()

    # erase the module: depmod, and the initrd at once (no %posttrans on erase), no udev
    host.rpm("-e", "intel-i40e")
    assert host.calls() == [f"depmod {KERNEL}", *dracut]
    host.rpm("-e", "acme-i40e-data")
    assert host.calls() == dracut

    # the in-box package, with Citrix's own scriptlets (its %posttrans triggers udev unconditionally)
    host.rpm("-i", stubs["inbox"])
    assert host.calls() == [f"depmod {KERNEL}", DRACUT, *UDEV]

    # upgrade it: our %post and Citrix's old %postun each run depmod and mark; one rebuild at the end
    host.rpm("-U", kmod, data)
    assert host.calls() == [f"depmod {KERNEL}", f"depmod {KERNEL}", *posttrans]
    assert not host.marker_left()
    assert host.rpm("-q", "intel-i40e").split() == ["intel-i40e-2.9.22-1.x86_64"]


# --- the SRPM, rebuilt where the kernel-devel RPM is installed ---------------------------------


def test_srpm_rebuilds_only_where_kernel_devel_is_installed(
    replacing: Built, stubs: dict[str, Path], ch82_cache: Path, tmp_path: Path
) -> None:
    srpm = next(p for p in replacing.rpms.srpms if p.name.startswith("intel-i40e-"))
    (tree,) = ch82_cache.glob(f"*/root/usr/src/kernels/{KERNEL}-x86_64")
    db = tmp_path / "rpmdb"
    db.mkdir()
    tool("rpm", "--dbpath", db, "--initdb")
    tool("rpm", "--dbpath", db, "-i", "--justdb", "--nodeps", "--noscripts", stubs["tools"])

    def rebuild(top: Path) -> tuple[int, str]:
        return attempt(
            "rpmbuild", "--rebuild", "--dbpath", db, "--define", f"_topdir {top}",
            "--define", f"kernel_build_dir {tree}", srpm,
        )  # fmt: skip

    code, output = rebuild(tmp_path / "without")
    assert code != 0
    assert f"kernel-devel-uname-r = {KERNEL} is needed" in output

    tool("rpm", "--dbpath", db, "-i", "--justdb", "--nodeps", "--noscripts", support.ch82_kernel_devel())
    code, output = rebuild(tmp_path / "with")
    assert code == 0, output
    (rebuilt,) = (tmp_path / "with" / "RPMS" / "x86_64").glob("intel-i40e-2.9.22-1.x86_64.rpm")
    assert rpm_query(rebuilt, "--list") == [f"/lib/modules/{KERNEL}/updates/i40e.ko"]
