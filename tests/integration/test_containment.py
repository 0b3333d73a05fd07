"""Nothing outside build/, dist/ and keys/ is written or deleted, whatever the pack says: the cases found by hand.

The property-based tests over every key are in test_pack_values.py; these are the reproduced
cases, each run through the real CLI, and rpmbuild's folders as rpmbuild itself reports them.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from sentinel import SentinelTree, changes, new_sentinel_tree
from support import run_inv

from driverpack.adapters.rpmbuild import DIRECTORY_MACROS, rpmbuild
from driverpack.errors import BuildError
from driverpack.run import run, which

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "packs" / "helloworld"


def example_pack(tree: SentinelTree, data_table: str) -> Path:
    """The example pack in the tree's pack folder, its [drivers.data] table replaced."""
    pack = tree.pack
    pack.mkdir(parents=True)
    (pack / "helloworld-1.0.tar.gz").write_bytes((EXAMPLE / "helloworld-1.0.tar.gz").read_bytes())
    text = (EXAMPLE / "pack.toml").read_text()
    start = text.index("[drivers.data]")
    end = text.index("# Optional: prebuilt")
    (pack / "pack.toml").write_text(text[:start] + data_table + "\n" + text[end:])
    return pack


def test_data_folder_up_and_out_of_the_checkout_is_read_not_deleted(tmp_path: Path) -> None:
    """The reproduced case: enough '../' to reach a folder beside the checkout holding lib/firmware/a.bin."""
    tree = new_sentinel_tree(tmp_path)
    victim = tree.beside_work / "victim"
    (victim / "lib" / "firmware").mkdir(parents=True)
    (victim / "lib" / "firmware" / "a.bin").write_bytes(b"firmware that must stay\n")
    # As reported: more '../' than there are folders above the pack, then the path from /.
    example_pack(tree, f'[drivers.data]\nversion = "1.0"\nfolder = "{"../" * 40}{str(victim).lstrip("/")}"\n')
    before = tree.snapshot()

    checked = run_inv(tree.work, "check", "--pack", str(tree.pack), env=tree.env)
    built = run_inv(tree.work, "release-zip", "--pack", str(tree.pack), env=tree.env)

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert built.returncode == 0, built.stdout + built.stderr
    assert changes(before, tree.snapshot()) == []
    assert (victim / "lib" / "firmware" / "a.bin").read_bytes() == b"firmware that must stay\n"
    data_rpm = tree.work / "build" / "helloworld" / "rpmbuild" / "RPMS" / "noarch" / "helloworld-data-1.0-1.noarch.rpm"
    listed = run([which("rpm"), "-qlp", data_rpm], quiet=True).stdout.decode().split()
    assert listed == ["/lib/firmware/a.bin"]
    assert (
        tree.work / "build" / "helloworld" / "rpmbuild" / "data-helloworld" / "SOURCES" / "helloworld-data-1.0.tar"
    ).is_file()


@pytest.mark.parametrize(
    ("folder", "fragment"),
    [
        ("missing-folder", "not found"),
        ("helloworld-1.0.tar.gz", "is not a folder"),
        ("../..", "holds driverpack's build/ folder"),
    ],
)
def test_data_folder_that_cannot_work_stops_at_check(tmp_path: Path, folder: str, fragment: str) -> None:
    tree = new_sentinel_tree(tmp_path)
    example_pack(tree, f'[drivers.data]\nversion = "1.0"\nfolder = "{folder}"\n')
    before = tree.snapshot()
    proc = run_inv(tree.work, "check", "--pack", str(tree.pack), env=tree.env)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "pack.toml: drivers[0].data.folder: " in proc.stderr and fragment in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert changes(before, tree.snapshot()) == []


def test_data_folder_with_a_link_leaving_it_stops_at_check(tmp_path: Path) -> None:
    tree = new_sentinel_tree(tmp_path)
    example_pack(tree, '[drivers.data]\nversion = "1.0"\nfolder = "../fw"\n')
    fw = tree.pack.parent / "fw" / "lib" / "firmware"
    fw.mkdir(parents=True)
    (fw / "up").symlink_to(tree.above)
    proc = run_inv(tree.work, "check", "--pack", str(tree.pack), env=tree.env)
    assert proc.returncode == 2
    assert "pack.toml: drivers[0].data.folder: ../fw/lib/firmware/up is not a regular file" in proc.stderr


PROBE_SPEC = textwrap.dedent("""\
    Name: probe
    Version: 1
    Release: 1
    Summary: Where rpmbuild works
    License: GPL
    BuildArch: noarch

    %description
    Prints rpmbuild's folders.

    %prep
    echo "script $0"
    echo "buildroot %{buildroot}"
    {echoes}
    """)


def test_rpmbuild_works_only_inside_its_topdir(tmp_path: Path) -> None:
    """Every folder macro, the buildroot and rpm's temporary scripts (/var/tmp by default) are inside _topdir."""
    topdir = tmp_path / "build" / "pack" / "rpmbuild"
    spec = tmp_path / "probe.spec"
    echoes = "\n".join(f'echo "{macro} %{{{macro}}}"' for macro in DIRECTORY_MACROS)
    spec.write_text(PROBE_SPEC.replace("{echoes}", echoes))
    log = tmp_path / "rpmbuild.log"
    rpmbuild(spec, topdir, epoch=0, log=log, what="-bp")
    wanted = {*DIRECTORY_MACROS, "script", "buildroot"}
    printed = dict(line.split(" ", 1) for line in log.read_text().splitlines() if line.split(" ", 1)[0] in wanted)
    assert set(printed) == wanted
    for what, path in printed.items():
        assert Path(path) == topdir or Path(path).is_relative_to(topdir), f"{what} {path} is outside {topdir}"
    assert Path(printed["script"]).parent == topdir / "tmp"


def test_rpmbuild_refuses_a_topdir_rpm_would_read_as_macros(tmp_path: Path) -> None:
    # rpm expands folder macros more than once: '%%' does not keep a '%' in a path literal.
    topdir = tmp_path / "build" / "pack%{_tmppath}" / "rpmbuild"
    spec = tmp_path / "probe.spec"
    spec.write_text(PROBE_SPEC.replace("{echoes}", ""))
    with pytest.raises(BuildError, match=r"rpm reads the '%' in it as a macro"):
        rpmbuild(spec, topdir, epoch=0, log=tmp_path / "rpmbuild.log", what="-bp")


def test_data_folder_outside_the_pack_is_an_input_of_the_quick_check(tmp_path: Path) -> None:
    """A firmware file changed in a data folder beside the pack: the rerun sees it and ships the new bytes."""
    tree = new_sentinel_tree(tmp_path)
    firmware = tree.beside_work / "firmware-tree" / "lib" / "firmware" / "acme.bin"
    firmware.parent.mkdir(parents=True)
    firmware.write_bytes(b"version 1\n")
    example_pack(tree, f'[drivers.data]\nversion = "1.0"\nfolder = "{firmware.parents[2]}"\n')
    assert run_inv(tree.work, "release-zip", "--pack", str(tree.pack), env=tree.env).returncode == 0
    again = run_inv(tree.work, "release-zip", "--pack", str(tree.pack), env=tree.env)
    assert "up to date: no input or output changed" in again.stderr, again.stderr

    firmware.write_bytes(b"version 2\n")
    rebuilt = run_inv(tree.work, "release-zip", "--pack", str(tree.pack), env=tree.env)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "up to date: no input or output changed" not in rebuilt.stderr, rebuilt.stderr
    assert "==> build-rpms [helloworld]" in rebuilt.stderr and "    reused helloworld (unchanged)" in rebuilt.stderr
    rpm = tree.work / "build" / "helloworld" / "rpmbuild" / "RPMS" / "noarch" / "helloworld-data-1.0-1.noarch.rpm"
    unpacked = tmp_path / "unpacked"
    unpacked.mkdir()
    payload = run([which("rpm2cpio"), rpm], quiet=True).stdout
    run([which("cpio"), "-idm", "--quiet"], cwd=unpacked, input=payload, quiet=True)
    assert (unpacked / "lib" / "firmware" / "acme.bin").read_bytes() == b"version 2\n"


def test_signing_key_named_like_an_iso_is_refused(tmp_path: Path) -> None:
    """Its public key goes to dist/<key file name less .asc>: 'helloworld.iso.asc' would overwrite the ISO."""
    tree = new_sentinel_tree(tmp_path)
    pack = example_pack(tree, '[drivers.data]\nversion = "1.0"\n')
    (pack / "helloworld-data-1.0" / "lib" / "firmware").mkdir(parents=True)
    (pack / "helloworld-data-1.0" / "lib" / "firmware" / "a.bin").write_bytes(b"fw\n")
    (pack / "helloworld.iso.asc").write_text("not read: the name is refused first\n")
    toml = pack / "pack.toml"
    toml.write_text(toml.read_text().replace("[target]", 'signing_key = "helloworld.iso.asc"\n\n[target]', 1))
    checked = run_inv(tree.work, "check", "--pack", str(pack), env=tree.env)
    assert checked.returncode == 2, checked.stderr
    assert "pack.signing_key: helloworld.iso.asc: the public key would be written to dist/helloworld.iso" in (
        checked.stderr
    )
    assert "Traceback" not in checked.stderr
