"""inv verify's lookups: which public key checks the signatures, which kernel the modules are checked against."""

from __future__ import annotations

from pathlib import Path

from driverpack.adapters.rpminfo import RpmFileEntry, RpmInfo
from driverpack.steps.verify import public_key_for, target_kernel


def test_public_key_lookup(tmp_path: Path) -> None:
    iso = tmp_path / "pack.iso"
    (tmp_path / "RPM-GPG-KEY-acme").write_text("key")
    assert public_key_for(iso, "RPM-GPG-KEY-acme", None) == (tmp_path / "RPM-GPG-KEY-acme", "")
    assert public_key_for(iso, "other", tmp_path / "RPM-GPG-KEY-acme") == (tmp_path / "RPM-GPG-KEY-acme", "")
    assert "not beside the ISO" in public_key_for(iso, "missing.crt", None)[1]
    assert "names no key file" in public_key_for(iso, "", None)[1]
    # update.xml comes from the ISO under test: it names a file, never a path.
    assert "is not a file name" in public_key_for(iso, "../../etc/passwd", None)[1]
    assert public_key_for(iso, "../../etc/passwd", None)[0] is None


def rpm_with(requires: tuple[str, ...], kernel_in_path: str) -> RpmInfo:
    module = RpmFileEntry(f"/lib/modules/{kernel_in_path}/updates/acme.ko", 0o100644, 10, False, False)
    return RpmInfo(
        path=Path("acme-1.0-1.x86_64.rpm"),
        name="acme",
        epoch=None,
        version="1.0",
        release="1",
        arch="x86_64",
        group="System Environment/Kernel",
        summary="acme",
        license="GPL",
        requires=requires,
        provides=(),
        payload_compressor="gzip",
        installed_size=10,
        is_source=False,
        files=(module,),
        scripts={},
    )


def test_target_kernel_lookup() -> None:
    info = rpm_with(("/sbin/depmod", "kernel-uname-r = 4.19.0+1"), "4.19.0+1")
    assert target_kernel(info, ("5.0.0", "--kernel"), {"4.19.0+1"}) == ("5.0.0", "--kernel")
    assert target_kernel(info, None, {"4.19.0+1"}) == ("4.19.0+1", "the RPMs' Requires: kernel-uname-r")
    plain = rpm_with(("/sbin/depmod",), "6.1.0-9-amd64")
    assert target_kernel(plain, None, {"6.1.0-9-amd64"}) == ("6.1.0-9-amd64", "the module paths")
