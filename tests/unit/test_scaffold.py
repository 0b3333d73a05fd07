"""inv new's drafting and writing, called as functions: names, versions, TOML text, files copied, refusals.

The end-to-end runs (inv new --from, then inv build-rpms) are in tests/integration/test_new_from.py.
"""

from __future__ import annotations

import datetime as dt
import shutil
import tomllib
from pathlib import Path

import pytest
from support import make_tarball

from driverpack import scaffold
from driverpack.draft import DraftKey, blank_draft, choose_name, rpm_name, rpm_safe_version, split_tarball_name
from driverpack.errors import PackError
from driverpack.load import load_pack
from driverpack.scaffold import new_pack, toml_string

SPECS = Path(__file__).resolve().parents[1] / "data" / "specs"
KBUILD_SOURCE = {"Kbuild": "obj-m := hello.o\n", "hello.c": 'MODULE_LICENSE("GPL");\n'}


# names and versions


@pytest.mark.parametrize(
    ("file_name", "expected"),
    [
        ("igb-5.3.5.tar.gz", ("igb", "5.3.5")),
        ("bnxt_en-1.10.2-223.0.167.0.tar.gz", ("bnxt_en", "1.10.2-223.0.167.0")),
        ("acme_nic_2.1.tgz", ("acme_nic", "2.1")),
        ("driver-v1.2.tar.xz", ("driver", "1.2")),
        ("qla2xxx-src-v10.02.09.00-k.tar.bz2", ("qla2xxx-src", "10.02.09.00-k")),
        ("driver.tar.gz", ("driver", None)),
        ("Vendor_Driver.tar", ("Vendor_Driver", None)),
    ],
)
def test_split_tarball_name(file_name: str, expected: tuple[str, str | None]) -> None:
    assert split_tarball_name(file_name) == expected


@pytest.mark.parametrize(
    ("text", "safe", "changed"),
    [
        ("5.3.5", "5.3.5", False),
        ("2.22.20-rc1", "2.22.20_rc1", True),
        ("1.0 beta", "1.0_beta", True),
        ("1.0^git", "1.0_git", True),
        ("1.0~rc1", "1.0~rc1", False),
    ],
)
def test_rpm_safe_version(text: str, safe: str, changed: bool) -> None:
    version, note = rpm_safe_version(text)
    assert version == safe
    assert bool(note) == changed
    if "-" in text:
        assert "'-' is not allowed" in note


@pytest.mark.parametrize(
    ("modules", "base", "name", "why"),
    [
        (("igb",), "intel-igb", "igb", "the module its Kbuild builds"),
        (("cmulti_net", "cmulti_storage"), "cmulti", "cmulti", "builds 2 modules: cmulti_net, cmulti_storage"),
        (("bnxt_en", "bnxt_re"), "bnxt-en", "bnxt_en", "named like the tarball"),
        ((), "My Driver", "My-Driver", "no module name could be read"),
        ((), "...", "driver", "the tarball's name"),
    ],
)
def test_choose_name(modules: tuple[str, ...], base: str, name: str, why: str) -> None:
    chosen, reason = choose_name(modules, base)
    assert chosen == name
    assert why in reason


def test_rpm_name() -> None:
    assert rpm_name("acme nic/2") == "acme-nic-2"


# TOML text


@pytest.mark.parametrize("text", ['say "hi"', "back\\slash", "tab\there", "two\nlines", "ctl\x01\x7f", "ünïcode ✓"])
def test_toml_string_round_trips(text: str) -> None:
    assert tomllib.loads(f"v = {toml_string(text)}")["v"] == text


def test_with_keys_replaces_in_place_and_appends() -> None:
    draft = blank_draft("demo").with_keys(DraftKey("version", "2.0"), DraftKey("make_args", ["A=1"], ("why",)))
    keys = [k.key for k in draft.keys]
    assert keys[:3] == ["name", "version", "release"]
    assert keys[-1] == "make_args"
    assert draft.value("version") == "2.0"
    assert draft.model_input()["make_args"] == ["A=1"]


# new_pack


def test_blank_pack_loads_with_today_s_changelog(tmp_path: Path) -> None:
    result = new_pack(tmp_path, "demo")
    loaded = load_pack(result.path.parent)
    assert loaded.pack.target.kernel == "auto"
    assert loaded.pack.drivers[0].changelog[0].date == dt.date.today()
    text = result.path.read_text()
    assert '#   kernel = "4.19.0+1"' in text and "kernel_devel" in text
    assert any("put the driver's tarball beside pack.toml" in line for line in result.report)


def spec_case(tmp_path: Path, case: str, sources: dict[str, str | None]) -> Path:
    """Copy tests/data/specs/<case>/ to tmp_path; write `sources` beside it (None: a Kbuild tarball)."""
    folder = tmp_path / "in" / case
    shutil.copytree(SPECS / case, folder)
    for name, text in sources.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if text is None:
            tree = tmp_path / "tree" / name
            for member, content in KBUILD_SOURCE.items():
                (tree / "top" / member).parent.mkdir(parents=True, exist_ok=True)
                (tree / "top" / member).write_text(content)
            make_tarball(tree, path)
        else:
            path.write_text(text)
    (spec,) = folder.glob("*.spec")
    return spec


def test_from_a_ddk_example_spec(tmp_path: Path) -> None:
    spec = spec_case(tmp_path, "ddk-example", {"hello-world-1.0.tar.gz": None})
    result = new_pack(tmp_path, "hw", spec=spec)
    loaded = load_pack(result.path.parent)
    driver = loaded.pack.drivers[0]
    assert (driver.name, driver.version, driver.release, driver.source) == (
        "hello-world",
        "1.0",
        "1",
        "hello-world-1.0.tar.gz",
    )
    assert driver.spec == ""  # the generated spec does all this one did
    assert driver.description == "hello-world: an example Linux device driver."
    assert [(e.date, e.author) for e in driver.changelog] == [
        (dt.date(2019, 2, 10), "Sam Example <sam@example.com>"),
        (dt.date(2019, 1, 27), "Sam Example <sam@example.com>"),
    ]
    assert driver.changelog[0].text == "Version 1.0: the example driver, with 100% less code"
    assert (result.path.parent / "hello-world-1.0.tar.gz").is_file()
    report = "\n".join(result.report)
    assert "not carried (no pack key; the generated spec does without): Provides: vendor-driver" in report
    assert "is a Sun, not a Sat" in report


def test_from_a_ch82_spec_in_an_rpmbuild_tree(tmp_path: Path) -> None:
    spec = spec_case(
        tmp_path,
        "ch82-driver",
        {"fix-build-on-4.19.patch": "p0\n", "../SOURCES/ptp-queue-fix.patch": "p1\n"},
    )
    # An rpmbuild tree: SPECS/ and SOURCES/ side by side.
    specs = spec.parent.parent / "SPECS"
    spec.parent.rename(specs)
    spec = specs / spec.name
    (specs / "fix-build-on-4.19.patch").rename(specs.parent / "SOURCES" / "fix-build-on-4.19.patch")
    result = new_pack(tmp_path, "e40x", spec=spec)
    folder = result.path.parent
    driver = load_pack(folder).pack.drivers[0]
    assert driver.spec == "acme-e40x.spec"
    assert driver.patches == ("fix-build-on-4.19.patch", "ptp-queue-fix.patch", "0001-compat-newer-kernels.patch")
    assert sorted(p.name for p in folder.iterdir()) == [
        "acme-e40x.spec",
        "fix-build-on-4.19.patch",
        "pack.toml",
        "ptp-queue-fix.patch",
    ]
    assert len(driver.changelog) == 4
    report = "\n".join(result.report)
    assert "spec acme-e40x.spec: kept, because the pack file cannot express:" in report
    assert "%build: 'KSRC=" in report
    assert "put acme-e40x-3.4.7.tar.gz beside pack.toml" in report
    assert "put 0001-compat-newer-kernels.patch beside pack.toml" in report


def test_from_a_vendor_tarball_spec_keeps_the_spec_and_its_vendor(tmp_path: Path) -> None:
    spec = spec_case(tmp_path, "vendor-tarball", {"acmegb-6.1.2.tar.gz": None})
    result = new_pack(tmp_path, "gb", spec=spec)
    loaded = load_pack(result.path.parent)
    assert loaded.pack.pack.vendor == "Acme Corporation"
    assert loaded.pack.drivers[0].spec == "acmegb.spec"
    assert loaded.pack.drivers[0].changelog[0].date == dt.date.today()
    report = "\n".join(result.report)
    for section in ("%build", "%install", "%files -f file.list", "%post", "%preun", "%package -n acme_auxiliary"):
        assert f"      {section}: " in report


def test_a_spec_whose_name_needs_rpm_is_refused(tmp_path: Path) -> None:
    spec = tmp_path / "odd.spec"
    spec.write_text("Name: %(echo odd)\nVersion: 1\n")
    with pytest.raises(PackError, match=r"Name: '%\(echo odd\)' uses macros"):
        new_pack(tmp_path, "odd", spec=spec)
    assert not (tmp_path / "packs").exists()


def test_an_existing_pack_is_never_overwritten(tmp_path: Path) -> None:
    first = new_pack(tmp_path, "demo").path
    content = first.read_text()
    with pytest.raises(PackError, match="already exists"):
        new_pack(tmp_path, "demo")
    assert first.read_text() == content


def test_a_different_file_in_the_pack_folder_is_refused(tmp_path: Path) -> None:
    spec = spec_case(tmp_path, "ddk-example", {"hello-world-1.0.tar.gz": None})
    folder = tmp_path / "packs" / "hw"
    folder.mkdir(parents=True)
    (folder / "hello-world-1.0.tar.gz").write_text("something else")
    with pytest.raises(PackError, match="already exists and differs"):
        new_pack(tmp_path, "hw", spec=spec)
    assert (folder / "hello-world-1.0.tar.gz").read_text() == "something else"
    assert not (folder / "pack.toml").exists()


def test_the_same_file_already_in_the_pack_folder_is_used(tmp_path: Path) -> None:
    spec = spec_case(tmp_path, "ddk-example", {"hello-world-1.0.tar.gz": None})
    folder = tmp_path / "packs" / "hw"
    folder.mkdir(parents=True)
    shutil.copy(spec.parent / "hello-world-1.0.tar.gz", folder)
    new_pack(tmp_path, "hw", spec=spec)
    assert load_pack(folder).pack.drivers[0].source == "hello-world-1.0.tar.gz"


def test_a_failed_write_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = spec_case(tmp_path, "ch82-driver", {"fix-build-on-4.19.patch": "p0\n", "ptp-queue-fix.patch": "p1\n"})

    def fail(dest: Path, text: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(scaffold, "write_text", fail)
    with pytest.raises(OSError, match="disk full"):
        new_pack(tmp_path, "e40x", spec=spec)
    assert not (tmp_path / "packs" / "e40x").exists()


def test_two_inputs_for_one_file_name_are_refused(tmp_path: Path) -> None:
    one, two = tmp_path / "a", tmp_path / "b"
    for folder in (one, two):
        (folder / "top").mkdir(parents=True)
        for member, content in KBUILD_SOURCE.items():
            (folder / "top" / member).write_text(content)
        make_tarball(folder, folder / "hello-1.0.tar.gz")
    with pytest.raises(PackError, match=r"would both be copied as hello-1\.0\.tar\.gz"):
        new_pack(tmp_path, "twice", tarballs=[one / "hello-1.0.tar.gz", two / "hello-1.0.tar.gz"])


def test_a_missing_input_is_named(tmp_path: Path) -> None:
    with pytest.raises(PackError, match=r"--from .*nosuch-1\.0\.tar\.gz: no such file"):
        new_pack(tmp_path, "x", tarballs=[tmp_path / "nosuch-1.0.tar.gz"])
    with pytest.raises(PackError, match=r"--from-spec .*nosuch\.spec: no such file"):
        new_pack(tmp_path, "x", spec=tmp_path / "nosuch.spec")
