"""A pack of prebuilt RPMs only: what Koji, COPR or mock built from driverpack's SRPMs, fed back to `inv iso`."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from driverpack import pipeline
from driverpack.adapters.iso import read_iso
from driverpack.errors import BuildError
from driverpack.load import load_pack

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
CARRY = """\
[pack]
label = "carry"
text = "Drivers built elsewhere"
uuid = "3c7e1f0a-9b2d-4e6f-8a15-7d0c4b9e2f31"
version = "2.0"
{target}
[[rpms]]
path = "results/*.rpm"
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example pack's SRPMs rebuilt the way a distributed builder does (rpmbuild --rebuild)."""
    root = tmp_path_factory.mktemp("builder")
    shutil.copytree(REPO / "packs" / "helloworld", root / "packs" / "helloworld")
    srpms = pipeline.srpms(load_pack(root / "packs" / "helloworld"), root)
    top = root / "koji"
    for srpm in srpms:
        subprocess.run(
            ["rpmbuild", "--rebuild", "--nodeps", "--define", f"_topdir {top}", str(srpm)],
            check=True,
            capture_output=True,
        )
    return top / "RPMS"


def carry_pack(root: Path, results: Path, target: str = "") -> Path:
    folder = root / "packs" / "carry"
    shutil.copytree(results, folder / "results", dirs_exist_ok=True)
    for rpm in list((folder / "results").rglob("*.rpm")):
        rpm.rename(folder / "results" / rpm.name)
    (folder / "pack.toml").write_text(CARRY.format(target=target))
    return folder


def test_prebuilt_rpms_make_a_pack(tmp_path: Path, built: Path) -> None:
    folder = carry_pack(tmp_path, built)
    result = pipeline.release_zip(load_pack(folder), tmp_path)
    assert result.zip.name == "carry-2.0.zip"
    names = {f.path for f in read_iso(tmp_path / "dist" / "carry.iso").files}
    assert {
        "Packages/helloworld-1.0-1.x86_64.rpm",
        "Packages/helloworld-data-1.0-1.noarch.rpm",
        "Packages/update-carry-2.0-1.noarch.rpm",
        "update.xml",
        "repodata/repomd.xml.asc",
    } <= names


def test_prebuilt_modules_for_another_kernel_are_refused(tmp_path: Path, built: Path) -> None:
    folder = carry_pack(tmp_path, built, target='\n[target]\nkernel = "4.19.0+1"\n')
    with pytest.raises(BuildError) as caught:
        pipeline.build_rpms(load_pack(folder), tmp_path)
    assert "helloworld-1.0-1.x86_64.rpm" in caught.value.message
    assert "4.19.0+1" in caught.value.message
