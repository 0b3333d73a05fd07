"""The in-box driver table of Citrix Hypervisor 8.2, and the rules that keep a pack's modules apart from it."""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path

import pytest

from driverpack import guidance, inbox
from driverpack.load import load_pack
from driverpack.models import Pack

VENDOR_DRIVERS_82 = {  # xcp-ng-rpms/vendor-drivers SOURCES/requires, the 8.2 list
    "areca-arcmsr", "avago-megaraid-sas", "avago-mpt3sas", "broadcom-bnxt-en", "cisco-enic", "cisco-fnic",
    "emulex-be2net", "emulex-lpfc", "hp-hpsa", "intel-e1000e", "intel-fm10k", "intel-i40e", "intel-i40evf",
    "intel-igb", "intel-igbvf", "intel-ixgbe", "intel-ixgbevf", "mellanox-mlnxen", "microsemi-aacraid",
    "qlogic-fastlinq", "qlogic-netxtreme2", "qlogic-qla2xxx", "qlogic-qlcnic", "qlogic-qlge", "solarflare-sfc",
}  # fmt: skip


def pack(drivers: str) -> Pack:
    return Pack.model_validate(
        tomllib.loads('[pack]\ntext = "t"\nuuid = "7a1b4bfe-3ac5-4c3f-9a3e-2b0f6d1c5e01"\nversion = "1"\n' + drivers)
    )


def driver(name: str, version: str, extra: str = "") -> str:
    return f'\n[[drivers]]\nname = "{name}"\nversion = "{version}"\nsource = "x.tar.gz"\nsummary = "s"\n{extra}'


# the table


def test_table_parses_and_names_its_sources() -> None:
    text = resources.files("driverpack").joinpath("data", inbox.TABLE_FILE).read_text()
    assert "xcp-ng-rpms/vendor-drivers" in text and "SOURCES/requires" in text  # the header names its sources
    packages = inbox.inbox_packages()
    names = [p.name.removesuffix("-4.19.0+1-modules") for p in packages]
    assert set(names) == VENDOR_DRIVERS_82
    assert len(names) == len(set(names))
    modules = [inbox.module_key(m) for p in packages for m in p.modules]
    assert len(modules) == len(set(modules)), "a module is owned by one package"
    for package in packages:
        assert package.source.startswith(f"xcp-ng-rpms/{package.name.removesuffix('-4.19.0+1-modules')} SPECS/")
        assert package.evr is not None or package.note, f"{package.name}: an unknown EVR says why"


def test_table_is_package_data() -> None:
    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    assert "data/*.toml" in pyproject["tool"]["setuptools"]["package-data"]["driverpack"]


@pytest.mark.parametrize(
    ("module", "owner"),
    [
        ("i40e", "intel-i40e"),
        ("i40e.ko", "intel-i40e"),
        ("/lib/modules/4.19.0+1/updates/i40e.ko", "intel-i40e"),
        ("megaraid-sas.ko", "avago-megaraid-sas"),  # modprobe treats - and _ alike
        ("qede", "qlogic-fastlinq"),
        ("bnx2x", "qlogic-netxtreme2-4.19.0+1-modules"),
        ("helloworld", None),
    ],
)
def test_owner_of(module: str, owner: str | None) -> None:
    found = inbox.owner_of(module)
    assert (found.name if found else None) == owner


def test_epoch_is_kept() -> None:
    fnic = inbox.find_package("cisco-fnic")
    assert fnic is not None and fnic.evr is not None and str(fnic.evr) == "1:2.0.0.89-1"


# collisions


def test_module_of_another_package_is_refused_with_both_ways_out() -> None:
    (problem,) = inbox.module_problems(["acme.ko", "i40e.ko"], "acme-i40e", "pack.toml: drivers[0]")
    assert problem.startswith("pack.toml: drivers[0]: builds i40e.ko, which Citrix Hypervisor 8.2 ships in its ")
    assert "package intel-i40e (2.9.21-3)" in problem
    assert 'set replaces = "intel-i40e"' in problem
    assert "rename the module" in problem


def test_module_of_the_replaced_package_is_fine() -> None:
    assert inbox.module_problems(["i40e"], "intel-i40e", "w") == []


def test_module_of_a_package_not_replaced_is_refused() -> None:
    (problem,) = inbox.module_problems(["i40e", "ixgbe"], "intel-i40e", "w")
    assert "builds ixgbe.ko" in problem and "intel-ixgbe" in problem


# replaces


def test_replaces_unknown_package_lists_close_names() -> None:
    (problem,) = inbox.replaces_problems(pack(driver("acme", "3.0", 'replaces = "intel-i40"\n')), "pack.toml")
    assert problem.startswith("pack.toml: drivers[0].replaces: 'intel-i40' is not one of Citrix Hypervisor 8.2's")
    assert "close names: intel-i40e" in problem


def test_replaces_unknown_package_without_close_names_lists_all() -> None:
    (problem,) = inbox.replaces_problems(pack(driver("acme", "3.0", 'replaces = "zzz"\n')), "pack.toml")
    assert "the in-box packages are: areca-arcmsr, " in problem


@pytest.mark.parametrize(
    ("version", "extra", "ok"),
    [
        ("2.9.22", "", True),
        ("2.9.21", 'release = "3"\n', False),
        ("2.9.21", 'release = "4"\n', True),
        ("2.9.3", "", False),  # 3 < 21: not a string comparison
    ],
)
def test_replaces_needs_a_higher_evr(version: str, extra: str, ok: bool) -> None:
    problems = inbox.replaces_problems(pack(driver("acme", version, 'replaces = "intel-i40e"\n' + extra)), "p")
    assert (problems == []) is ok
    if not ok:
        assert "so the host would keep the in-box driver; raise version or release" in problems[0]


def test_replacing_a_package_with_an_epoch_says_so() -> None:
    (problem,) = inbox.replaces_problems(pack(driver("acme", "9.0", 'replaces = "cisco-fnic"\n')), "p")
    assert "replaces cisco-fnic 1:2.0.0.89-1, but 9.0-1 is not higher" in problem
    assert "set epoch = 1" in problem
    assert inbox.replaces_problems(pack(driver("acme", "2.0.0.90", 'replaces = "cisco-fnic"\nepoch = 1\n')), "p") == []


def test_replaces_a_package_whose_evr_is_unknown_warns() -> None:
    replacing = pack(driver("acme", "1.0", 'replaces = "broadcom-bnxt-en"\n'))
    assert inbox.replaces_problems(replacing, "p") == []
    (warning,) = inbox.replaces_warnings(replacing)
    assert "'rpm -q broadcom-bnxt-en' on the host" in warning


@pytest.mark.parametrize(("version", "warned"), [("2.9.22", True), ("2.22.20", True), ("2.22.21", False)])
def test_replacement_below_a_known_hotfix_is_warned(version: str, warned: bool) -> None:
    """intel-i40e: 8.2 shipped 2.9.21-3 and a later hotfix 2.22.20-5; between the two, hotfixed hosts keep theirs."""
    replacing = pack(driver("acme", version, 'replaces = "intel-i40e"\n'))
    assert inbox.replaces_problems(replacing, "p") == []
    warnings = inbox.replaces_warnings(replacing)
    assert bool(warnings) == warned
    if warned:
        assert "but not above 2.22.20-5, which a later Citrix Hypervisor 8.2 hotfix ships" in warnings[0]


def test_two_drivers_replacing_one_package_collide() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=r"package name 'intel-i40e' at drivers\[1\]\.replaces is already used"):
        pack(driver("a", "3", 'replaces = "intel-i40e"\n') + driver("b", "3", 'replaces = "intel-i40e"\n'))


# guidance


@pytest.mark.parametrize(
    ("declared", "modules", "expected"),
    [
        (None, True, ("restartHost",)),
        (None, False, ()),
        ((), True, ()),  # an explicit value is kept
        (("restartXAPI",), True, ("restartXAPI",)),
    ],
)
def test_after_apply(declared: tuple[str, ...] | None, modules: bool, expected: tuple[str, ...]) -> None:
    assert guidance.effective_after_apply(declared, modules) == expected


def test_messages(tmp_path: Path) -> None:
    folder = tmp_path / "p"
    folder.mkdir()
    (folder / "pack.toml").write_text(
        '[pack]\ntext = "t"\nuuid = "7a1b4bfe-3ac5-4c3f-9a3e-2b0f6d1c5e01"\nversion = "1"\n'
        '[target]\nmodule_dir = "extra"\n' + driver("acme", "1")
    )
    lines = guidance.messages(load_pack(folder), carries_modules=True)
    assert len(lines) == 2
    assert lines[0].startswith("warning: ") and "target.module_dir: 'extra'" in lines[0]
    assert "'search updates extra built-in'" in lines[0]
    assert lines[1].startswith("note: ") and "restartHost" in lines[1]
