"""Repodata for real RPMs built by rpmbuild, read back by createrepo_c and installed by a real dnf."""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from driverpack.adapters.repodata import (
    RepoPackage,
    check_repodata,
    read_repodata,
    render_groups_xml,
    write_repodata,
)
from driverpack.errors import BuildError
from driverpack.run import run

pytestmark = pytest.mark.slow

EPOCH = 1700000000
UUID = "0b0f6f52-7e43-4b4a-9d5c-4d4d0a7f0a11"
LABEL = "demo"

SPECS = {
    "demo-data": f"""\
Name: demo-data
Version: 1.0
Release: 1
Summary: demo data
License: GPL-2.0-or-later
BuildArch: noarch
Provides: {UUID}

%description
A file for the demo pack.

%install
mkdir -p %{{buildroot}}/usr/share/demo
echo hello > %{{buildroot}}/usr/share/demo/data.txt

%files
/usr/share/demo/data.txt
""",
    "demo-tools": """\
Name: demo-tools
Epoch: 2
Version: 0.3
Release: 4
Summary: demo tools
License: GPL-2.0-or-later
BuildArch: noarch

%description
An empty package with an epoch.

%files
""",
    "update-demo": """\
Name: update-demo
Version: 1.0
Release: 1
Summary: demo pack
License: GPL-2.0-or-later
BuildArch: noarch
Requires: demo-data >= 1.0-1
Requires: demo-tools >= 2:0.3-4

%description
The update package of the demo pack.

%files
""",
}


@pytest.fixture(scope="module")
def built_rpms(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The RPMs of SPECS, built once per module with the real rpmbuild."""
    top = tmp_path_factory.mktemp("rpmbuild").resolve()
    for name, text in SPECS.items():
        spec = top / f"{name}.spec"
        spec.write_text(text)
        run(
            [
                "rpmbuild",
                "-bb",
                "--nodeps",
                "--define",
                f"_topdir {top}",
                "--define",
                "_build_id_links none",
                "--define",
                "_buildhost localhost",
                "--define",
                "use_source_date_epoch_as_buildtime 1",
                "--define",
                "clamp_mtime_to_source_date_epoch 1",
                spec,
            ],
            source_date_epoch=EPOCH,
            quiet=True,
        )
    rpms = sorted((top / "RPMS" / "noarch").glob("*.rpm"))
    assert [p.name for p in rpms] == [
        "demo-data-1.0-1.noarch.rpm",
        "demo-tools-0.3-4.noarch.rpm",
        "update-demo-1.0-1.noarch.rpm",
    ]
    return rpms


def make_repo(where: Path, rpms: list[Path], mtime: int = EPOCH + 12345) -> Path:
    """A fresh pack directory with copies of `rpms` in Packages/, all with the given mtime."""
    repo = where / "repo"
    (repo / "Packages").mkdir(parents=True)
    for rpm in rpms:
        copy = repo / "Packages" / rpm.name
        shutil.copyfile(rpm, copy)
        os.utime(copy, (mtime, mtime))
    return repo


def groups() -> str:
    return render_groups_xml(LABEL, [f"update-{LABEL}"])


def write(repo: Path) -> Path:
    return write_repodata(repo, groups_xml=groups(), epoch=EPOCH)


def tree_bytes(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_groups_xml_has_update_and_drivers_with_mandatory_packages() -> None:
    root = ET.fromstring(render_groups_xml("a&b", ["update-a&b", "extra"], description="x < y"))

    assert root.tag == "comps"
    assert [g.findtext("id") for g in root.iter("group")] == ["update", "drivers"]
    for group in root.iter("group"):
        assert group.findtext("name") == "a&b"
        assert group.findtext("description") == "x < y"
        assert group.findtext("default") == "false"
        reqs = [(r.get("type"), r.text) for r in group.iter("packagereq")]
        assert reqs == [("mandatory", "update-a&b"), ("mandatory", "extra")]


def test_groups_xml_needs_a_package() -> None:
    with pytest.raises(BuildError, match="mandatory"):
        render_groups_xml(LABEL, [])


def test_written_repodata_reads_back_and_checks(tmp_path: Path, built_rpms: list[Path]) -> None:
    repo = make_repo(tmp_path, built_rpms)

    repomd = write(repo)

    assert repomd == repo / "repodata" / "repomd.xml"
    packages = read_repodata(repo)
    assert [(p.name, p.epoch, p.version, p.release, p.arch) for p in packages] == [
        ("demo-data", "0", "1.0", "1", "noarch"),
        ("demo-tools", "2", "0.3", "4", "noarch"),
        ("update-demo", "0", "1.0", "1", "noarch"),
    ]
    for pkg in packages:
        data = (repo / pkg.location).read_bytes()
        assert pkg == RepoPackage(
            name=pkg.name,
            epoch=pkg.epoch,
            version=pkg.version,
            release=pkg.release,
            arch=pkg.arch,
            location=f"Packages/{pkg.name}-{pkg.version}-{pkg.release}.noarch.rpm",
            checksum_type="sha256",
            checksum=hashlib.sha256(data).hexdigest(),
            size=len(data),
        )
    check_repodata(repo)


def test_repomd_has_the_records_of_a_build_update_pack(tmp_path: Path, built_rpms: list[Path]) -> None:
    repo = make_repo(tmp_path, built_rpms)
    ns = {"r": "http://linux.duke.edu/metadata/repo"}

    root = ET.parse(write(repo)).getroot()

    assert root.findtext("r:revision", namespaces=ns) == str(EPOCH)
    records = {d.get("type", ""): d for d in root.iterfind("r:data", ns)}
    assert sorted(records) == ["filelists", "group", "group_gz", "other", "primary"]  # no sqlite
    for record in records.values():
        assert record.find("r:checksum", ns).get("type") == "sha256"  # type: ignore[union-attr]
        assert record.findtext("r:timestamp", namespaces=ns) == str(EPOCH)
    hrefs = {t: r.find("r:location", ns).get("href") for t, r in records.items()}  # type: ignore[union-attr]
    assert hrefs == {
        "primary": "repodata/primary.xml.gz",
        "filelists": "repodata/filelists.xml.gz",
        "other": "repodata/other.xml.gz",
        "group": "repodata/groups.xml",
        "group_gz": "repodata/groups.xml.gz",
    }
    assert sorted(p.name for p in (repo / "repodata").iterdir()) == sorted(
        [Path(h).name for h in hrefs.values()] + ["repomd.xml"]
    )
    assert gzip.decompress((repo / "repodata" / "groups.xml.gz").read_bytes()) == groups().encode()


def test_xml_metadata_is_gzip_and_names_fit_joliet(tmp_path: Path, built_rpms: list[Path]) -> None:
    repo = make_repo(tmp_path, built_rpms)

    write(repo)

    for name in ("primary.xml.gz", "filelists.xml.gz", "other.xml.gz", "groups.xml.gz"):
        data = (repo / "repodata" / name).read_bytes()
        assert data[:2] == b"\x1f\x8b", name
        ET.fromstring(gzip.decompress(data))
    assert all(len(p.name) <= 64 for p in (repo / "repodata").iterdir())
    assert all(len(p.name) <= 64 for p in (repo / "Packages").iterdir())


def test_primary_records_no_copy_time(tmp_path: Path, built_rpms: list[Path]) -> None:
    repo = make_repo(tmp_path, built_rpms)

    write(repo)

    primary = gzip.decompress((repo / "repodata" / "primary.xml.gz").read_bytes()).decode()
    assert re.findall(r'<time file="(\d+)"', primary) == [str(EPOCH)] * 3


def test_same_rpms_give_byte_identical_repodata(tmp_path: Path, built_rpms: list[Path]) -> None:
    first = make_repo(tmp_path / "one", built_rpms, mtime=EPOCH + 1)
    second = make_repo(tmp_path / "two", built_rpms, mtime=EPOCH + 999_999)

    write(first)
    write(second)

    assert tree_bytes(first / "repodata") == tree_bytes(second / "repodata")
    for path in (second / "repodata").iterdir():
        assert path.stat().st_mtime == EPOCH, path.name


def test_rewriting_replaces_repodata_and_leaves_no_scratch(tmp_path: Path, built_rpms: list[Path]) -> None:
    repo = make_repo(tmp_path, built_rpms[:2])
    write(repo)
    shutil.copyfile(built_rpms[2], repo / "Packages" / built_rpms[2].name)

    write(repo)

    assert [p.name for p in read_repodata(repo)] == ["demo-data", "demo-tools", "update-demo"]
    assert sorted(p.name for p in repo.iterdir()) == ["Packages", "repodata"]
    check_repodata(repo)


def test_failed_write_keeps_the_old_repodata(tmp_path: Path, built_rpms: list[Path]) -> None:
    repo = make_repo(tmp_path, built_rpms)
    write(repo)
    before = tree_bytes(repo / "repodata")
    (repo / "Packages" / "broken-1-1.noarch.rpm").write_bytes(b"not an rpm")

    with pytest.raises(BuildError, match=r"broken-1-1\.noarch\.rpm"):
        write(repo)

    assert tree_bytes(repo / "repodata") == before
    assert sorted(p.name for p in repo.iterdir()) == ["Packages", "repodata"]


def test_write_refuses_groups_without_drivers(tmp_path: Path, built_rpms: list[Path]) -> None:
    repo = make_repo(tmp_path, built_rpms)
    only_update = groups().split("  <group>\n    <id>drivers</id>")[0] + "</comps>\n"

    with pytest.raises(BuildError, match="no group 'drivers'"):
        write_repodata(repo, groups_xml=only_update, epoch=EPOCH)
    assert not (repo / "repodata").exists()


def test_write_refuses_an_empty_pack(tmp_path: Path) -> None:
    (tmp_path / "Packages").mkdir()

    with pytest.raises(BuildError, match="no RPMs"):
        write_repodata(tmp_path, groups_xml=groups(), epoch=EPOCH)


@pytest.mark.parametrize("tamper", ["append", "flip"])
def test_tampered_rpm_fails_check(tmp_path: Path, built_rpms: list[Path], tamper: str) -> None:
    repo = make_repo(tmp_path, built_rpms)
    write(repo)
    rpm = repo / "Packages" / "demo-data-1.0-1.noarch.rpm"
    data = bytearray(rpm.read_bytes())
    if tamper == "append":
        data += b"\0"
    else:
        data[-1] ^= 0xFF
    rpm.write_bytes(bytes(data))

    expected = r"\d+ bytes, the repodata says" if tamper == "append" else "sha256 .*, the repodata says"
    with pytest.raises(BuildError, match=rf"Packages/demo-data-1\.0-1\.noarch\.rpm has {expected}"):
        check_repodata(repo)


def test_unlisted_and_missing_rpms_fail_check(tmp_path: Path, built_rpms: list[Path]) -> None:
    repo = make_repo(tmp_path, built_rpms)
    write(repo)
    (repo / "Packages" / "demo-tools-0.3-4.noarch.rpm").unlink()
    shutil.copyfile(built_rpms[0], repo / "Packages" / "extra-1-1.noarch.rpm")

    with pytest.raises(BuildError) as caught:
        check_repodata(repo)

    assert "Packages/extra-1-1.noarch.rpm is not in the repodata" in caught.value.message
    assert "Packages/demo-tools-0.3-4.noarch.rpm is listed in primary but missing" in caught.value.message


def test_changed_groups_file_fails_check(tmp_path: Path, built_rpms: list[Path]) -> None:
    repo = make_repo(tmp_path, built_rpms)
    write(repo)
    (repo / "repodata" / "groups.xml").write_text(groups().replace("<id>drivers</id>", "<id>other</id>"))

    with pytest.raises(BuildError) as caught:
        check_repodata(repo)

    assert re.search(r"repodata/groups\.xml has \d+ bytes, the repodata says \d+", caught.value.message)
    assert "repodata/groups.xml.gz differs from repodata/groups.xml" in caught.value.message
    assert "repodata/groups.xml has no group 'drivers'" in caught.value.message


def test_group_naming_a_package_not_in_the_pack_fails_check(tmp_path: Path, built_rpms: list[Path]) -> None:
    repo = make_repo(tmp_path, built_rpms)
    write_repodata(repo, groups_xml=render_groups_xml(LABEL, ["update-other"]), epoch=EPOCH)

    with pytest.raises(BuildError, match="group 'update' needs update-other, which is not in the repository"):
        check_repodata(repo)


def test_read_refuses_plain_primary(tmp_path: Path, built_rpms: list[Path]) -> None:
    repo = make_repo(tmp_path, built_rpms)
    write(repo)
    primary = repo / "repodata" / "primary.xml.gz"
    primary.write_bytes(gzip.decompress(primary.read_bytes()))

    with pytest.raises(BuildError, match=r"'primary' .* is not gzip"):
        read_repodata(repo)


def test_read_refuses_other_checksums(tmp_path: Path, built_rpms: list[Path]) -> None:
    repo = make_repo(tmp_path, built_rpms)
    repomd = write(repo)
    repomd.write_text(repomd.read_text().replace('type="sha256"', 'type="sha1"'))

    with pytest.raises(BuildError, match="'primary' has a sha1 checksum, not sha256"):
        read_repodata(repo)


@pytest.mark.parametrize("record", ["primary", "group", "group_gz"])
def test_read_refuses_a_missing_record(tmp_path: Path, built_rpms: list[Path], record: str) -> None:
    repo = make_repo(tmp_path, built_rpms)
    repomd = write(repo)
    text = re.sub(rf'\s*<data type="{record}">.*?</data>', "", repomd.read_text(), flags=re.S)
    repomd.write_text(text)

    with pytest.raises(BuildError, match=f"no '{record}' record"):
        read_repodata(repo)


def test_read_refuses_missing_repodata(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match=r"repomd\.xml is missing"):
        read_repodata(tmp_path)


@pytest.mark.parametrize("group", ["update", "drivers"])
def test_dnf_installs_the_group(tmp_path: Path, built_rpms: list[Path], group: str) -> None:
    repo = make_repo(tmp_path, built_rpms)
    write(repo)
    root = tmp_path / "root"
    root.mkdir()
    config = tmp_path / "dnf.conf"
    # Nothing from the host's dnf configuration: no repos, no plugins, no gpg, a private cache.
    config.write_text("[main]\ngpgcheck=0\ninstall_weak_deps=0\nkeepcache=0\n")
    # dnf refuses to install as a normal user; a user namespace makes the runner root there.
    as_root = [] if os.geteuid() == 0 else ["unshare", "--map-root-user"]

    run(
        [
            *as_root,
            "dnf",
            f"--config={config}",
            f"--installroot={root}",
            "--releasever=8.2",
            "--noplugins",
            "--setopt=reposdir=/dev/null",
            f"--setopt=cachedir={tmp_path / 'cache'}",
            f"--repofrompath=pack,{repo}",
            "--repo=pack",
            "--nogpgcheck",
            "--setopt=tsflags=noscripts",
            "--assumeyes",
            "install",
            f"@{group}",
        ],
        quiet=True,
    )

    installed = run(["rpm", "--root", root, "-qa", "--qf", "%{NAME}\n"], quiet=True).stdout.decode().split()
    assert sorted(installed) == ["demo-data", "demo-tools", "update-demo"]
    assert (root / "usr/share/demo/data.txt").read_text() == "hello\n"
