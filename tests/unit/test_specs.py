"""Spec rendering (driverpack.steps.specs): layouts, patches, kernels, data files, hostile text.

The Context is built by hand, so nothing depends on the kernels installed here. Packs are
copied to tmp_path/packs/<label>/ and loaded from tmp_path, so the specs name the pack file as
`packs/<label>/pack.toml` and hold no machine-specific path.

The helloworld specs are compared with golden files in tests/unit/golden/specs/. After an
intended change to the templates, regenerate them and review the diff:

    UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_specs.py

Every rendered spec is parsed with the real rpmspec; a missing rpmspec fails, it never skips.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from driverpack.adapters.tarball import inspect_tarball
from driverpack.context import Context, KernelTarget
from driverpack.errors import PackError
from driverpack.load import LoadedPack, load_pack
from driverpack.models import ChangelogEntry, Driver
from driverpack.steps.specs import render_data_spec, render_kmod_spec, write_specs

REPO = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).parent / "golden" / "specs"
UPDATE_GOLDEN = os.environ.get("UPDATE_GOLDEN") == "1"

CH82_RELEASE = "4.19.0+1"
DEBIAN_KERNEL = "6.1.0-9-amd64"
REQUIRES_KERNEL = "Requires: kernel-uname-r = %{kernel_version}\n"

MODULE_MAKEFILE = "obj-m += demo.o\n"
MODULE_SOURCE = '#include <linux/module.h>\nMODULE_LICENSE("GPL");\n'

PACK_TOML = """\
[pack]
label = "demo"
text = "Demo driver"
uuid = "2f0c8d5e-6b1a-4c3e-9d7f-1a2b3c4d5e6f"
version = "1.0.0"
vendor = "Example Corp"

[[drivers]]
name = "demo"
version = "1.0"
release = "1"
source = "demo-1.0.tar.gz"
summary = "Demo kernel module"
changelog = [{ date = "2024-02-03", author = "Example Corp <drivers@example.com>", text = "First release" }]
"""


# building inputs


def make_tarball(path: Path, files: dict[str, str]) -> Path:
    """A gzip tarball of files (name -> text), directories implied, fixed times."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        dirs = sorted({"/".join(name.split("/")[:i]) for name in files for i in range(1, name.count("/") + 1)})
        for name in dirs:
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            info.mtime = 1_700_000_000
            tar.addfile(info)
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    return path


def demo_pack(root: Path, toml: str = PACK_TOML, files: dict[str, str] | None = None) -> LoadedPack:
    """packs/demo/ under root with pack.toml and demo-1.0.tar.gz, loaded from root."""
    folder = root / "packs" / "demo"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pack.toml").write_text(toml)
    default = {"demo-1.0/Makefile": MODULE_MAKEFILE, "demo-1.0/demo.c": MODULE_SOURCE}
    make_tarball(folder / "demo-1.0.tar.gz", default if files is None else files)
    return load_pack(folder)


def context(loaded: LoadedPack, kernel: str = CH82_RELEASE, module_dir: str = "updates") -> Context:
    target = KernelTarget(release=kernel, build_dir=Path("/lib/modules") / kernel / "build", module_dir=module_dir)
    work = loaded.folder.parent.parent / "build" / loaded.label
    return Context(
        loaded=loaded,
        kernel=target,
        work=work,
        dist=work.parent.parent / "dist",
        epoch=loaded.pack.source_date_epoch(),
        jobs=1,
    )


def kmod_spec(ctx: Context, index: int = 0) -> str:
    driver = ctx.loaded.pack.drivers[index]
    return render_kmod_spec(ctx, driver, inspect_tarball(ctx.loaded.resolve(driver.source)), index)


def with_driver(ctx: Context, **changes: object) -> tuple[Context, Driver]:
    driver = ctx.loaded.pack.drivers[0].model_copy(update=changes)
    return ctx, driver


def section(spec: str, name: str) -> str:
    """The body of one %section of a spec (up to the next section line)."""
    match = re.search(
        rf"^%{name}\n(.*?)(?=^%(?:description|prep|build|install|post|postun|files|changelog)\n|\Z)", spec, re.M | re.S
    )
    assert match, f"no %{name} section in:\n{spec}"
    return match.group(1)


# the real rpmspec


def rpmspec(*args: str | Path) -> str:
    tool = shutil.which("rpmspec")
    assert tool, "rpmspec is required: apt-get install rpm (Debian/Ubuntu) or dnf install rpm-build (Fedora/RHEL)"
    proc = subprocess.run(
        [tool, *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, "LC_ALL": "C"},
        check=False,
    )
    assert proc.returncode == 0, f"rpmspec {' '.join(map(str, args))} failed:\n{proc.stderr}"
    assert "warning" not in proc.stderr.lower(), proc.stderr
    return proc.stdout


def parsed(spec_text: str, where: Path) -> str:
    """rpmspec -P output of a spec; fails on any parse error or warning."""
    where.mkdir(parents=True, exist_ok=True)
    path = where / "check.spec"
    path.write_text(spec_text)
    return rpmspec("-P", path)


def queried(spec_text: str, where: Path, fmt: str) -> str:
    where.mkdir(parents=True, exist_ok=True)
    path = where / "query.spec"
    path.write_text(spec_text)
    return rpmspec("-q", "--qf", fmt, path)


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """tmp_path as the current directory, so pack files are shown as packs/<label>/pack.toml."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def helloworld(root: Path) -> Context:
    shutil.copytree(REPO / "packs" / "helloworld", root / "packs" / "helloworld")
    return context(load_pack(root / "packs" / "helloworld"))


# golden: the shipped example


def helloworld_specs(ctx: Context) -> dict[str, str]:
    driver = ctx.loaded.pack.drivers[0]
    return {"helloworld.spec": kmod_spec(ctx), "helloworld-data.spec": render_data_spec(ctx, driver, 0)}


@pytest.mark.parametrize("name", ["helloworld.spec", "helloworld-data.spec"])
def test_helloworld_matches_golden(helloworld: Context, name: str) -> None:
    text = helloworld_specs(helloworld)[name]
    path = GOLDEN / name
    if UPDATE_GOLDEN:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode())
    assert path.exists(), f"no golden file {path}: run with UPDATE_GOLDEN=1"
    assert text == path.read_bytes().decode()


def test_golden_folder_has_no_stale_files() -> None:
    assert sorted(p.name for p in GOLDEN.iterdir()) == ["helloworld-data.spec", "helloworld.spec"]


def test_goldens_hold_no_machine_paths(helloworld: Context) -> None:
    fragments = {str(REPO), str(helloworld.loaded.folder), "/tmp/", "/home/"}
    fragments |= {str(Path.home())} if len(Path.home().parts) > 1 else set()
    for path in GOLDEN.iterdir():
        text = path.read_text()
        for fragment in fragments:
            assert fragment not in text, f"{path.name} holds {fragment!r}"
        assert "# Generated by driverpack from helloworld/pack.toml;" in text


def test_helloworld_specs_parse(helloworld: Context, tmp_path: Path) -> None:
    specs = helloworld_specs(helloworld)
    kmod = parsed(specs["helloworld.spec"], tmp_path / "kmod")
    assert "Requires: kernel-uname-r = 4.19.0+1\n" in kmod
    assert "/lib/modules/4.19.0+1/updates/*.ko" in kmod
    assert "\n/usr/sbin/depmod 4.19.0+1 || :\n" in kmod
    assert "Requires(post): /usr/sbin/depmod\n" in kmod
    assert "BuildRequires: kernel-devel-uname-r = 4.19.0+1\n" in kmod
    assert "dracut -f /boot/initrd-4.19.0+1.img 4.19.0+1 || :" in kmod
    data = parsed(specs["helloworld-data.spec"], tmp_path / "data")
    assert "BuildArch: noarch\n" in data


def test_helloworld_kmod_header(helloworld: Context, tmp_path: Path) -> None:
    out = queried(
        helloworld_specs(helloworld)["helloworld.spec"],
        tmp_path,
        "%{name}|%{version}|%{release}|%{summary}|%{license}|%{vendor}\n[%{requirename} %{requireversion}\n]",
    )
    first, *requires = out.splitlines()
    assert first == "helloworld|1.0|1|Hello world kernel module|GPL|Example Corp"
    assert "kernel-uname-r 4.19.0+1" in requires


# tarball layouts


def test_top_dir_gives_setup_n(root: Path) -> None:
    spec = kmod_spec(context(demo_pack(root)))
    assert "%setup -q -n demo-1.0\n" in spec
    assert '(cd "${driverpack_top}" && ' in section(spec, "build")


def test_top_dir_named_differently_from_name_version(root: Path) -> None:
    files = {"demo-driver-src/Makefile": MODULE_MAKEFILE, "demo-driver-src/demo.c": MODULE_SOURCE}
    spec = kmod_spec(context(demo_pack(root, files=files)))
    assert "%setup -q -n demo-driver-src\n" in spec


def test_no_top_dir_gives_setup_c(root: Path, tmp_path: Path) -> None:
    spec = kmod_spec(context(demo_pack(root, files={"Makefile": MODULE_MAKEFILE, "demo.c": MODULE_SOURCE})))
    assert "%setup -q -c -n demo-1.0\n" in spec
    assert '(cd "${driverpack_top}" && ' in section(spec, "build")
    parsed(spec, tmp_path / "check")


def test_makefile_in_src(root: Path, tmp_path: Path) -> None:
    files = {
        "demo-1.0/Makefile": "all:\n\t$(MAKE) -C src\n",
        "demo-1.0/README": "read me\n",
        "demo-1.0/src/Makefile": MODULE_MAKEFILE,
        "demo-1.0/src/demo.c": MODULE_SOURCE,
    }
    spec = kmod_spec(context(demo_pack(root, files=files)))
    assert "%setup -q -n demo-1.0\n" in spec
    assert '(cd "${driverpack_top}"/src && PWD="${driverpack_top}"/src make ' in section(spec, "build")
    assert "find %{?driverpack_prebuilt:%{driverpack_prebuilt}/}src -name '*.ko'" in section(spec, "install")
    out = parsed(spec, tmp_path / "check")
    assert 'M="${driverpack_top}"/src SHELL=/bin/bash PWD="${driverpack_top}"/src modules)\n' in out
    assert "find src -name '*.ko'" in out


def test_kbuild_in_a_nested_dir_without_top_dir(root: Path) -> None:
    files = {"driver/linux/Kbuild": "obj-m := demo.o\n", "driver/linux/demo.c": MODULE_SOURCE, "NOTES": "x\n"}
    spec = kmod_spec(context(demo_pack(root, files=files)))
    assert "%setup -q -c -n demo-1.0\n" in spec
    assert '(cd "${driverpack_top}"/driver/linux && ' in section(spec, "build")


def test_tarball_without_a_module_makefile(root: Path) -> None:
    ctx = context(demo_pack(root, files={"demo-1.0/README": "no build files\n"}))
    with pytest.raises(PackError, match="no Kbuild or Makefile with obj-m"):
        kmod_spec(ctx)


# patches and make arguments


def test_patches_in_order(root: Path, tmp_path: Path) -> None:
    toml = PACK_TOML.replace(
        'source = "demo-1.0.tar.gz"\n',
        'source = "demo-1.0.tar.gz"\npatches = ["patches/0001-fix-build.patch", "0002-add-id.patch"]\n',
    )
    spec = kmod_spec(context(demo_pack(root, toml)))
    assert "Source0: demo-1.0.tar.gz\nPatch0: 0001-fix-build.patch\nPatch1: 0002-add-id.patch\n" in spec
    prep = section(spec, "prep")
    assert prep == "%setup -q -n demo-1.0\n%patch -P 0 -p1\n%patch -P 1 -p1\n\n"
    parsed(spec, tmp_path / "check")


def test_patches_really_apply_in_order_with_rpmbuild_bp(root: Path, tmp_path: Path) -> None:
    """The second patch only applies on top of the first: rpmbuild -bp proves the order."""
    toml = PACK_TOML.replace(
        'source = "demo-1.0.tar.gz"\n', 'source = "demo-1.0.tar.gz"\npatches = ["first.patch", "second.patch"]\n'
    )
    ctx = context(demo_pack(root, toml))
    folder = ctx.loaded.folder
    (folder / "first.patch").write_text(
        '--- a/demo.c\n+++ b/demo.c\n@@ -1,2 +1,3 @@\n #include <linux/module.h>\n MODULE_LICENSE("GPL");\n'
        '+MODULE_AUTHOR("first");\n'
    )
    (folder / "second.patch").write_text(
        '--- a/demo.c\n+++ b/demo.c\n@@ -1,3 +1,4 @@\n #include <linux/module.h>\n MODULE_LICENSE("GPL");\n'
        ' MODULE_AUTHOR("first");\n+MODULE_DESCRIPTION("second");\n'
    )
    spec = tmp_path / "prep" / "demo.spec"
    spec.parent.mkdir()
    spec.write_text(kmod_spec(ctx))
    top = tmp_path / "rpmtop"
    rpmbuild = shutil.which("rpmbuild")
    assert rpmbuild, "rpmbuild is required: apt-get install rpm or dnf install rpm-build"
    proc = subprocess.run(
        [rpmbuild, "-bp", "--nodeps", "--define", f"_topdir {top}", "--define", f"_sourcedir {folder}", str(spec)],
        capture_output=True,
        text=True,
        env={**os.environ, "LC_ALL": "C"},
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [patched] = [p for p in top.rglob("demo.c") if p.parent.name == "demo-1.0"]
    assert patched.read_text().splitlines()[-2:] == ['MODULE_AUTHOR("first");', 'MODULE_DESCRIPTION("second");']


def test_no_patches_no_patch_lines(root: Path) -> None:
    spec = kmod_spec(context(demo_pack(root)))
    assert "Patch" not in spec and "%patch" not in spec


def test_make_args(root: Path, tmp_path: Path) -> None:
    toml = PACK_TOML.replace(
        'source = "demo-1.0.tar.gz"\n',
        'source = "demo-1.0.tar.gz"\nmake_args = ["CONFIG_DEMO_DEBUG=y", "EXTRA_CFLAGS=-DFOO -DBAR", "EMPTY=",'
        ' "KSRC_COPY={kernel_build_dir}", "PCT=100%"]\n',
    )
    spec = kmod_spec(context(demo_pack(root, toml)))
    args = (
        "SHELL=/bin/bash PWD=\"${driverpack_top}\" CONFIG_DEMO_DEBUG=y 'EXTRA_CFLAGS=-DFOO -DBAR' EMPTY= "
        "KSRC_COPY=\"%{kernel_build_dir}\" 'PCT=100%%' modules)\n"
    )
    assert args in section(spec, "build")
    # rpm turns '%%' into '%'; the shell then sees each variable as one word.
    assert " 'EXTRA_CFLAGS=-DFOO -DBAR' EMPTY= KSRC_COPY=\"/" in parsed(spec, tmp_path / "c")
    assert " 'PCT=100%' modules)\n" in parsed(spec, tmp_path / "c")


@pytest.mark.parametrize(
    "bad",
    [
        "V=1; rm -rf /",
        "A=$(id)",
        "A=`id`",
        "A=%{__rm}",
        "-j99",
        "--eval=x",
        "A=b\nmodules_install",
        "A=b\n",
        "A=$$x",
        "A='x'",
        'CFLAGS=-DX="a b"',
        "A=x>y",
        "A=*",
    ],
)
def test_make_args_refused(root: Path, bad: str) -> None:
    driver = demo_pack(root).pack.drivers[0]
    with pytest.raises(ValueError) as caught:
        Driver.model_validate({**driver.model_dump(), "make_args": [bad]})
    assert "make_args" in str(caught.value)


# the target kernel


def test_kernel_that_is_an_rpm_version_is_required(root: Path, tmp_path: Path) -> None:
    spec = kmod_spec(context(demo_pack(root), kernel=CH82_RELEASE))
    assert REQUIRES_KERNEL in spec
    assert "%define kernel_version 4.19.0+1\n" in spec
    out = parsed(spec, tmp_path / "c")
    assert "Requires: kernel-uname-r = 4.19.0+1\n" in out


def test_debian_kernel_release_gets_no_requires(root: Path, tmp_path: Path) -> None:
    spec = kmod_spec(context(demo_pack(root), kernel=DEBIAN_KERNEL))
    assert "kernel-uname-r" not in spec
    assert f"%define kernel_version {DEBIAN_KERNEL}\n" in spec
    out = parsed(spec, tmp_path / "c")
    assert "kernel-uname-r" not in out and "kernel-devel-uname-r" not in out
    assert f"/lib/modules/{DEBIAN_KERNEL}/updates/*.ko" in out


def test_module_dir_extra(root: Path, tmp_path: Path) -> None:
    spec = kmod_spec(context(demo_pack(root), module_dir="extra"))
    assert "%define module_dir extra\n" in spec
    assert "/lib/modules/4.19.0+1/extra/*.ko" in parsed(spec, tmp_path / "c")


def test_replaces_names_the_rpm_and_epoch(root: Path, tmp_path: Path) -> None:
    ctx = context(demo_pack(root))
    _, driver = with_driver(ctx, replaces="intel-i40e", epoch=1, version="2.9.22")
    spec = render_kmod_spec(ctx, driver, inspect_tarball(ctx.loaded.resolve(driver.source)), 0)
    out = queried(spec, tmp_path / "q", "%{NAME} %{EPOCH} %{VERSION}-%{RELEASE}")
    assert out.split() == ["intel-i40e", "1", "2.9.22-1"]
    assert " - 1:2.9.22-1\n" in spec  # the changelog's EVR


@pytest.mark.parametrize(
    ("path", "rebuilds"),
    [
        ("lib/firmware/demo/fw.bin", True),
        ("etc/modprobe.d/demo.conf", True),
        ("etc/udev/rules.d/90-demo.rules", False),
        ("usr/share/doc/demo-data/README", False),
    ],
)
def test_data_spec_rebuilds_the_initrd_for_firmware_and_modprobe_files(root: Path, path: str, rebuilds: bool) -> None:
    ctx = context(demo_pack(root, DATA_TOML))
    write_data_folder(ctx.loaded.folder / "demo-data-2.0", {path: "x\n"})
    spec = render_data_spec(ctx, ctx.loaded.pack.drivers[0], 0)
    assert ("%posttrans\n" in spec) is rebuilds
    assert ("dracut -f /boot/initrd-%{kernel_version}.img %{kernel_version} || :" in spec) is rebuilds
    assert ("%define kernel_version 4.19.0+1\n" in spec) is rebuilds
    assert "depmod" not in spec


# changelog and description


def test_changelog_newest_first_with_multiline_text(root: Path) -> None:
    ctx, driver = with_driver(
        context(demo_pack(root)),
        changelog=(
            ChangelogEntry(date=dt.date(2023, 5, 1), author="A <a@example.com>", text="Old"),
            ChangelogEntry(date=dt.date(2024, 2, 3), author="B <b@example.com>", text="New\n\nsecond line\n"),
        ),
        release="3",
    )
    spec = render_kmod_spec(ctx, driver, inspect_tarball(ctx.loaded.resolve(driver.source)), 0)
    assert section(spec, "changelog") == (
        "* Sat Feb 03 2024 B <b@example.com> - 1.0-3\n- New\n  second line\n\n"
        "* Mon May 01 2023 A <a@example.com> - 1.0-3\n- Old\n"
    )


def test_no_changelog_gets_one_entry_dated_source_date_epoch(root: Path) -> None:
    toml = "\n".join(line for line in PACK_TOML.splitlines() if not line.startswith("changelog")) + "\n"
    ctx = context(demo_pack(root, toml))
    assert ctx.epoch == 946684800
    assert section(kmod_spec(ctx), "changelog") == "* Sat Jan 01 2000 driverpack - 1.0-1\n- Built with driverpack\n"


def test_description_defaults_to_summary(root: Path) -> None:
    assert section(kmod_spec(context(demo_pack(root))), "description") == "Demo kernel module\n\n"


# hostile text

MARKER = "driverpack-pwned"

HOSTILE_SUMMARY = "Demo %{__rm} -rf / %(echo pwned) $(id) `id` 100% %% ${HOME} \\ 'q' \"q\""
HOSTILE_LINES = [
    "Line one %{__rm} -rf /",
    "%prep",
    "%(echo pwned)",
    "$(id) and `id`",
    "  %build",
    "%if 0",
    "%endif",
    "%changelog",
    "%include /etc/hostname",
    "%define x y",
    "# not a comment",
    "* Mon Jan 01 2024 Fake <f@example.com> - 9-9",
    "last 100%",
]


def hostile_driver(ctx: Context, marker: Path) -> Driver:
    touch = f"%(touch {marker})"
    return ctx.loaded.pack.drivers[0].model_copy(
        update={
            "summary": f"{HOSTILE_SUMMARY} {touch}",
            "license": "GPL %{?_sourcedir} %(id)",
            "description": "\n".join([*HOSTILE_LINES, touch]),
            "changelog": (
                ChangelogEntry(
                    date=dt.date(2024, 1, 1),
                    author=f"Attacker {touch} <m@example.com>",
                    text="\n".join(["%prep", "%{__rm} -rf /", "%(echo pwned)", "$(id) `id`", touch]),
                ),
            ),
        }
    )


def test_hostile_text_is_escaped_in_the_spec(root: Path, tmp_path: Path) -> None:
    ctx = context(demo_pack(root))
    driver = hostile_driver(ctx, tmp_path / MARKER)
    spec = render_kmod_spec(ctx, driver, inspect_tarball(ctx.loaded.resolve(driver.source)), 0)
    summary = re.search(r"^Summary: (.*)$", spec, re.M)
    assert summary and summary.group(1) == driver.summary.replace("%", "%%")
    # No description line opens with '%' (a section, conditional or macro definition).
    assert not [line for line in section(spec, "description").splitlines() if line.lstrip().startswith("%")]


def test_hostile_text_comes_out_literally_and_runs_nothing(root: Path, tmp_path: Path) -> None:
    ctx = context(demo_pack(root))
    marker = tmp_path / MARKER
    driver = hostile_driver(ctx, marker)
    spec = render_kmod_spec(ctx, driver, inspect_tarball(ctx.loaded.resolve(driver.source)), 0)
    work = tmp_path / "rpmspec"

    out = parsed(spec, work)
    assert not marker.exists(), "rpmspec ran a command from pack text"
    assert out.count("\n%prep\n") == 1 and out.count("\n%changelog\n") == 1
    scripts = out.split("\n%prep\n", 1)[1].split("\n%changelog\n", 1)[0]
    for fragment in ("pwned", "id`", "$(id)", MARKER, "__rm", "hostname"):
        assert fragment not in scripts, f"pack text leaked into the build scripts: {fragment!r}"

    header = queried(
        spec, work, "%{summary}\n--\n%{license}\n--\n%{description}\n--\n[%{changelogname}\n%{changelogtext}\n]"
    )
    summary, license, description, changelog = header.split("\n--\n")
    assert summary == driver.summary
    assert license == driver.license
    # A zero-width space keeps directive-like lines plain text; otherwise the text is unchanged.
    assert description.replace("\u200b", "") == driver.description
    assert changelog.replace("\u200b", "") == (
        f"Attacker %(touch {marker}) <m@example.com> - 1.0-1\n"
        f"- %prep\n  %{{__rm}} -rf /\n  %(echo pwned)\n  $(id) `id`\n  %(touch {marker})\n"
    )
    assert not marker.exists(), "rpmspec ran a command from pack text"


@pytest.mark.parametrize("line", ["%if 0", "%endif", "%include /etc/hostname", "# kept"])
def test_changelog_directive_lines_stay_text(root: Path, tmp_path: Path, line: str) -> None:
    ctx, driver = with_driver(
        context(demo_pack(root)),
        changelog=(ChangelogEntry(date=dt.date(2024, 1, 1), author="A <a@example.com>", text=f"First\n{line}\nlast"),),
    )
    spec = render_kmod_spec(ctx, driver, inspect_tarball(ctx.loaded.resolve(driver.source)), 0)
    changelog = queried(spec, tmp_path / "q", "[%{changelogtext}\n]")
    assert changelog.replace("\u200b", "") == f"- First\n  {line}\n  last\n"


def test_hostile_data_text_is_escaped(root: Path, tmp_path: Path) -> None:
    toml = PACK_TOML + '\n[drivers.data]\nversion = "2.0"\nsummary = "Firmware %(echo pwned) $(id)"\n'
    ctx = context(demo_pack(root, toml))
    write_data_folder(ctx.loaded.folder / "demo-data-2.0", {"lib/firmware/demo/fw.bin": "fw"})
    spec = render_data_spec(ctx, ctx.loaded.pack.drivers[0], 0)
    assert queried(spec, tmp_path / "q", "%{summary}") == "Firmware %(echo pwned) $(id)"


# data specs


def write_data_folder(folder: Path, files: dict[str, str], executable: tuple[str, ...] = ()) -> None:
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(0o755 if name in executable else 0o644)


DATA_TOML = PACK_TOML + '\n[drivers.data]\nversion = "2.0"\nrelease = "3"\n'


def test_data_spec_config_only_for_etc(root: Path, tmp_path: Path) -> None:
    ctx = context(demo_pack(root, DATA_TOML))
    write_data_folder(
        ctx.loaded.folder / "demo-data-2.0",
        {
            "lib/firmware/demo/fw.bin": "fw",
            "etc/modprobe.d/demo.conf": "options demo debug=0\n",
            "etc/udev/rules.d/90-demo.rules": "# rules\n",
            "usr/share/doc/demo-data/README": "doc\n",
            "lib/firmware/demo/load.sh": "#!/bin/sh\n",
        },
        executable=("lib/firmware/demo/load.sh",),
    )
    spec = render_data_spec(ctx, ctx.loaded.pack.drivers[0], 0)
    assert section(spec, "files") == (
        "%config(noreplace) /etc/modprobe.d/demo.conf\n"
        "%config(noreplace) /etc/udev/rules.d/90-demo.rules\n"
        "/lib/firmware/demo/fw.bin\n"
        "/lib/firmware/demo/load.sh\n"
        "/usr/share/doc/demo-data/README\n\n"
    )
    install = section(spec, "install")
    assert "install -D -m 0644 'lib/firmware/demo/fw.bin' '%{buildroot}/lib/firmware/demo/fw.bin'\n" in install
    assert "install -D -m 0755 'lib/firmware/demo/load.sh' '%{buildroot}/lib/firmware/demo/load.sh'\n" in install
    assert "Name: demo-data\nVersion: 2.0\nRelease: 3\n" in spec
    assert "Source0: demo-data-2.0.tar\n" in spec
    assert "%setup -q -n demo-data-2.0\n" in spec
    out = parsed(spec, tmp_path / "c")
    assert "\n%config(noreplace) /etc/modprobe.d/demo.conf\n" in out
    assert "\n/lib/firmware/demo/fw.bin\n" in out
    assert "BuildArch: noarch\n" in out


def test_data_folder_with_files_outside_allowed_trees(root: Path) -> None:
    ctx = context(demo_pack(root, DATA_TOML))
    write_data_folder(
        ctx.loaded.folder / "demo-data-2.0",
        {"lib/firmware/demo/fw.bin": "fw", "usr/bin/demo-tool": "#!/bin/sh\n", "boot/evil": "x", "etcetera/x": "x"},
    )
    with pytest.raises(PackError) as caught:
        render_data_spec(ctx, ctx.loaded.pack.drivers[0], 0)
    assert caught.value.problems == [
        f"packs/demo/pack.toml: drivers[0].data.folder: demo-data-2.0/{rel} would install to /{rel}, "
        "outside the allowed trees (lib/firmware, etc, usr/share/doc)"
        for rel in ("boot/evil", "etcetera/x", "usr/bin/demo-tool")
    ]


def test_data_folder_with_a_symlink(root: Path) -> None:
    ctx = context(demo_pack(root, DATA_TOML))
    folder = ctx.loaded.folder / "demo-data-2.0"
    write_data_folder(folder, {"lib/firmware/demo/fw.bin": "fw"})
    (folder / "lib/firmware/demo/link.bin").symlink_to("fw.bin")
    with pytest.raises(PackError, match=r"demo-data-2.0/lib/firmware/demo/link.bin is not a regular file"):
        render_data_spec(ctx, ctx.loaded.pack.drivers[0], 0)


def test_data_folder_missing_or_empty(root: Path) -> None:
    ctx = context(demo_pack(root, DATA_TOML))
    with pytest.raises(PackError, match=r"drivers\[0\]\.data\.folder: .*/packs/demo/demo-data-2.0 is not a folder"):
        render_data_spec(ctx, ctx.loaded.pack.drivers[0], 0)
    (ctx.loaded.folder / "demo-data-2.0" / "etc").mkdir(parents=True)
    with pytest.raises(PackError, match=r"drivers\[0\]\.data\.folder: demo-data-2.0/ holds no files"):
        render_data_spec(ctx, ctx.loaded.pack.drivers[0], 0)


def test_data_file_with_unsafe_name(root: Path) -> None:
    ctx = context(demo_pack(root, DATA_TOML))
    write_data_folder(ctx.loaded.folder / "demo-data-2.0", {"etc/modprobe.d/it's %{x}.conf": "x"})
    with pytest.raises(PackError, match="rename it"):
        render_data_spec(ctx, ctx.loaded.pack.drivers[0], 0)


# write_specs


def test_write_specs(root: Path, tmp_path: Path) -> None:
    toml = DATA_TOML + (
        '\n[[drivers]]\nname = "other"\nversion = "0.9"\nsource = "other.tar.gz"\nsummary = "Other module"\n'
        '\n[[drivers]]\nname = "handmade"\nversion = "3"\nsource = "demo-1.0.tar.gz"\nsummary = "Hand"\n'
        'spec = "handmade.spec"\n'
    )
    loaded = demo_pack(root, toml)
    make_tarball(loaded.folder / "other.tar.gz", {"Kbuild": "obj-m := other.o\n", "other.c": MODULE_SOURCE})
    (loaded.folder / "handmade.spec").write_text("Name: handmade\n")
    write_data_folder(loaded.folder / "demo-data-2.0", {"etc/modprobe.d/demo.conf": "x\n"})
    ctx = context(loaded)

    result = write_specs(ctx)

    specs_dir = root / "build" / "demo" / "SPECS"
    assert ctx.specs_dir == specs_dir
    # A hand-written spec is copied under its driver's name: every spec rpmbuild runs is in build/<label>/.
    assert sorted(p.name for p in specs_dir.iterdir()) == ["demo-data.spec", "demo.spec", "handmade.spec", "other.spec"]
    demo, other, handmade = result.drivers
    assert (demo.kmod_spec, demo.data_spec) == (specs_dir / "demo.spec", specs_dir / "demo-data.spec")
    assert demo.layout is not None and demo.layout.top_dir == "demo-1.0"
    assert (other.kmod_spec, other.data_spec) == (specs_dir / "other.spec", None)
    assert other.layout is not None and other.layout.top_dir is None
    assert handmade.kmod_spec == specs_dir / "handmade.spec"
    assert handmade.kmod_spec.read_text() == "Name: handmade\n"
    assert handmade.layout is None
    assert demo.kmod_spec.read_text() == kmod_spec(ctx, 0)
    assert "%setup -q -c -n other-0.9\n" in other.kmod_spec.read_text()
    assert demo.data_spec is not None
    assert demo.data_spec.read_text() == render_data_spec(ctx, loaded.pack.drivers[0], 0)
    for spec in (demo.kmod_spec, demo.data_spec, other.kmod_spec):
        parsed(spec.read_text(), tmp_path / "parse" / spec.stem)
    # Written atomically: no temporary files are left beside the specs.
    assert not [p for p in specs_dir.iterdir() if p.name.startswith(".")]


def test_write_specs_again_gives_the_same_files(root: Path) -> None:
    ctx = context(demo_pack(root))
    first = write_specs(ctx).drivers[0].kmod_spec.read_bytes()
    assert write_specs(ctx).drivers[0].kmod_spec.read_bytes() == first
