"""Build route planning (driverpack.routes) and proposals (driverpack.proposal): pure, nothing runs.

The same plan drives the compile step and the spec's %build, so these tests pin the plan's argv,
environment and folders, and the shell lines it renders into (parsed by the real rpmspec).
"""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

from driverpack.adapters.tarball import KbuildFolder, TarballLayout, inspect_tarball
from driverpack.models import Driver
from driverpack.proposal import dkms_disagreements, parse_dkms_conf, propose_route, read_markers, route_problems
from driverpack.routes import (
    KERNEL_BUILD_DIR_NAMES,
    KERNEL_RELEASE_NAMES,
    Placeholder,
    choose_folders,
    command_env,
    parse_template,
    plan_route,
    render_build_script,
    resolve,
)

VALUES = {
    Placeholder.KERNEL: "4.19.0+1",
    Placeholder.KERNEL_BUILD_DIR: "/k/build",
    Placeholder.JOBS: "3",
    Placeholder.SOURCE_DIR: "/src/top",
}


def driver(**keys: Any) -> Driver:
    return Driver.model_validate({"name": "acme", "version": "1.0", "source": "acme.tar.gz", "summary": "s", **keys})


def layout(*folders: tuple[str, tuple[str, ...], tuple[str, ...]]) -> TarballLayout:
    found = tuple(KbuildFolder(path, "Makefile", modules, subdirs) for path, modules, subdirs in folders)
    return TarballLayout(top_dir="acme-1.0", build_dir=found[0].path, build_file="Makefile", folders=found)


def argv(d: Driver, lay: TarballLayout, index: int = 0) -> list[str]:
    return [resolve(w, VALUES) for w in plan_route(d, lay).commands[index].argv]


def env(d: Driver, lay: TarballLayout, index: int = 0) -> dict[str, str]:
    plan = plan_route(d, lay)
    return command_env(plan, plan.commands[index], VALUES)


ONE = layout(("", ("acme",), ()))


# the plan


def test_kbuild_route() -> None:
    assert argv(driver(), ONE) == [
        "make",
        "-j3",
        "-C",
        "/k/build",
        "M=/src/top",
        "SHELL=/bin/bash",
        "PWD=/src/top",
        "modules",
    ]


def test_vendor_route_with_makefile_and_targets() -> None:
    d = driver(build="vendor", makefile="Makefile.alt", targets=["default", "extra"], make_args=["A=b c"])
    assert argv(d, ONE) == [
        "make",
        "-j3",
        "-f",
        "Makefile.alt",
        "SHELL=/bin/bash",
        "PWD=/src/top",
        "A=b c",
        "default",
        "extra",
    ]


def test_kernel_is_exported_under_every_name_and_pwd_is_the_folder() -> None:
    found = env(driver(), layout(("src", ("acme",), ())))
    assert {k: found[k] for k in KERNEL_RELEASE_NAMES} == dict.fromkeys(KERNEL_RELEASE_NAMES, "4.19.0+1")
    assert {k: found[k] for k in KERNEL_BUILD_DIR_NAMES} == dict.fromkeys(KERNEL_BUILD_DIR_NAMES, "/k/build")
    assert {"KVER", "KSRC", "KDIR", "KERNELDIR", "KERNEL_SRC", "BUILD_KERNEL", "kernelver"} <= set(found)
    assert "KERNELRELEASE" not in found  # Makefiles take it to mean "inside Kbuild"
    assert found["PWD"] == "/src/top/src"


def test_module_folders_in_order_with_extra_symbols() -> None:
    lay = layout(("core", ("acme_core",), ()), ("eth", ("acme_eth",), ()), ("rdma", ("acme_rdma",), ()))
    d = driver(module_folders=["core", "eth", "rdma"])
    plan = plan_route(d, lay)
    assert [c.folder for c in plan.build] == ["core", "eth", "rdma"]
    assert "KBUILD_EXTRA_SYMBOLS" not in env(d, lay, 0)
    assert env(d, lay, 1)["KBUILD_EXTRA_SYMBOLS"] == "/src/top/core/Module.symvers"
    assert env(d, lay, 2)["KBUILD_EXTRA_SYMBOLS"] == "/src/top/core/Module.symvers /src/top/eth/Module.symvers"
    assert "M=/src/top/eth" in argv(d, lay, 1)


def test_prepare_runs_tree_files_with_placeholders() -> None:
    step = {
        "folder": "src",
        "run": ["bash", "gen.sh", "--kernel={kernel}"],
        "env": {"CONF": "{kernel_build_dir}/.config"},
    }
    d = driver(prepare=[step, {"run": ["configure", "--jobs={jobs}"]}])
    assert argv(d, ONE, 0) == ["bash", "gen.sh", "--kernel=4.19.0+1"]
    assert env(d, ONE, 0)["CONF"] == "/k/build/.config"
    assert env(d, ONE, 0)["PWD"] == "/src/top/src"
    assert argv(d, ONE, 1) == ["./configure", "--jobs=3"]  # a file of the tree, never a program found on PATH
    assert [c.what for c in plan_route(d, ONE).commands] == ["prepare[0]", "prepare[1]", "build in the top directory"]


# choosing the Kbuild folder (case 8)


def test_folder_naming_the_module_beats_the_shallowest() -> None:
    lay = layout(
        ("drivers/scsi", ("scsi_mod", "acme_compat"), ()),
        ("drivers/net/ethernet/acme/acme", ("acme",), ()),
    )
    choice = choose_folders(driver(), lay)
    assert choice.folders == ("drivers/net/ethernet/acme/acme",)
    assert not choice.is_guess
    assert "acme.o" in choice.reason


def test_folder_naming_the_module_beats_the_top_that_reaches_it() -> None:
    lay = layout(("", (), ("net", "compat")), ("compat", ("other",), ()), ("net", ("acme_nic",), ()))
    assert choose_folders(driver(name="acme-nic"), lay).folders == ("net",)


def test_module_named_by_a_token_of_the_driver_name() -> None:
    lay = layout(("", (), ("drv",)), ("compat", ("other",), ()), ("drv", (), ("acme",)), ("drv/acme", (), ()))
    lay = TarballLayout(
        "t", "", "Kbuild", folders=(*lay.folders[:3], KbuildFolder("drv/acme", "Kbuild", ("qede",), ()))
    )
    assert choose_folders(driver(name="qlogic-qede"), lay).folders == ("drv/acme",)


def test_guess_names_the_candidates() -> None:
    lay = layout(("a", ("foo",), ()), ("b/c", ("bar",), ()))
    choice = choose_folders(driver(), lay)
    assert choice.is_guess and choice.folders == ("a",)
    assert choice.describe() == ("driverpack built in a/ (the shallowest folder with obj- lines; candidates: a/, b/c/)")


def test_pack_names_the_folder() -> None:
    lay = layout(("a", ("acme",), ()), ("b", ("bar",), ()))
    choice = choose_folders(driver(module_folders=["b"]), lay)
    assert choice.folders == ("b",) and choice.reason == "module_folders in the pack"


# the spec's %build


def test_rendered_script_quotes_and_escapes(tmp_path: Path) -> None:
    d = driver(
        make_args=["EXTRA_CFLAGS=-DFOO -DBAR", "PCT=50%"],
        prepare=[{"run": ["bash", "gen.sh", "it's {kernel}"], "env": {"OUT": "x y.h"}}],
    )
    script = render_build_script(plan_route(d, ONE))
    prefix = '(cd "${driverpack_top}" && PWD="${driverpack_top}" OUT=\'x y.h\' '
    assert prefix + "bash gen.sh 'it'\\''s '\"%{kernel_version}\")" in script
    assert "'EXTRA_CFLAGS=-DFOO -DBAR' 'PCT=50%%' modules)" in script
    assert 'export KSRC="%{kernel_build_dir}"' in script
    # The real shell, after rpm's expansion, sees the words intact.
    expanded = script.replace("%%", "%").replace("%{kernel_version}", "4.19.0+1").replace("%{kernel_build_dir}", "/k")
    expanded = expanded.replace("%{?_smp_mflags}", "-j5")
    probe = tmp_path / "probe.sh"
    probe.write_text(
        "make() { printf '<%s>' make \"$@\"; printf '\\n'; }\n"
        'bash() { printf \'<%s>\' bash "$@"; printf \'[%s]\\n\' "$OUT" "$KSRC" "$PWD"; }\n' + expanded
    )
    out = subprocess.run(["sh", str(probe)], cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    assert f"<bash><gen.sh><it's 4.19.0+1>[x y.h]\n[/k]\n[{tmp_path}]\n" in out
    assert "<-j5>" in out and "<EXTRA_CFLAGS=-DFOO -DBAR><PCT=50%><modules>" in out


def test_template_errors() -> None:
    assert parse_template("a{{b}}{kernel}") == ("a{b}", Placeholder.KERNEL)
    for bad in ("{nope}", "{", "a}b"):
        with pytest.raises(ValueError):
            parse_template(bad)


# the pack keys


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"prepare": [{"run": ["bash", "-c", "rm -rf /"]}]}, "must be followed by a script"),
        ({"prepare": [{"run": ["/bin/rm", "-rf", "/"]}]}, "neither a file of the source tree"),
        ({"prepare": [{"run": ["../escape.sh"]}]}, "neither a file of the source tree"),
        ({"prepare": [{"run": ["gen.sh", "$(id)"]}]}, "holds '$'"),
        ({"prepare": [{"run": ["gen.sh"], "env": {"LD_PRELOAD": "x"}}]}, "may not be set"),
        ({"prepare": [{"run": ["gen.sh"], "env": {"KSRC": "x"}}]}, "already exported"),
        ({"prepare": [{"run": []}]}, "at least 1"),
        ({"module_folders": ["/abs"]}, "inside the source tree"),
        ({"module_folders": ["a/../b"]}, "inside the source tree"),
        ({"module_folders": ["a", "a"]}, "listed twice"),
        ({"makefile": "Makefile.alt"}, 'for build = "vendor"'),
        ({"build": "vendor", "makefile": "../Makefile"}, "not a file name"),
        ({"build": "vendor", "targets": ["-n"]}, "not a make target"),
        ({"build": "cmake"}, "kbuild"),
        ({"make_args": ["A={{x,y}}"]}, "literal brace"),
        ({"make_args": ["A=x;y"]}, "plain NAME=value"),
    ],
)
def test_route_keys_refused(keys: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=None) as caught:
        driver(**keys)
    assert message in str(caught.value), str(caught.value)


# proposals and checks over a tarball


def tarball(path: Path, files: dict[str, str]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            info = tarfile.TarInfo(name)
            data = text.encode()
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


DKMS_VENDOR = """\
PACKAGE_NAME="acme"
PACKAGE_VERSION="2.0"
MAKE[0]="make -C src -f Makefile.vendor KVER=${kernelver} KSRC=${kernel_source_dir} DEBUG=0 all"
PRE_BUILD="gen-config.sh ${kernelver}"
BUILT_MODULE_NAME[0]="acme"
BUILT_MODULE_LOCATION[0]="src/"
DEST_MODULE_LOCATION[0]="/kernel/drivers/net"
"""


def test_proposal_from_dkms_conf_with_a_vendor_make(tmp_path: Path) -> None:
    path = tarball(
        tmp_path / "acme-2.0.tar.gz",
        {
            "acme-2.0/dkms.conf": DKMS_VENDOR,
            "acme-2.0/gen-config.sh": "#!/bin/sh\n",
            "acme-2.0/src/Makefile.vendor": "all:\n\t$(MAKE) -C $(KSRC) M=$(CURDIR)\n",
            "acme-2.0/src/Makefile": "obj-m += acme.o\n",
        },
    )
    proposal = propose_route(path, "acme")
    assert dict(proposal.keys) == {
        "prepare": [{"run": ["bash", "gen-config.sh", "{kernel}"]}],
        "build": "vendor",
        "makefile": "Makefile.vendor",
        "targets": ["all"],
        "make_args": ["DEBUG=0"],
    }
    assert proposal.reasons[0].startswith("chose: dkms.conf MAKE[0] runs the vendor's own make in src/")
    assert 'prepare = [{ run = ["bash", "gen-config.sh", "{kernel}"] }]' in proposal.toml()
    driver(**proposal.keys)  # what it writes is a valid pack


def test_dkms_conf_make_that_cannot_be_mapped(tmp_path: Path) -> None:
    conf = 'MAKE[0]="cd src && ./build.sh $(nproc)"\nBUILT_MODULE_NAME[0]="acme"\n'
    path = tarball(tmp_path / "a.tar.gz", {"a/dkms.conf": conf, "a/Kbuild": "obj-m := acme.o\n"})
    proposal = propose_route(path, "acme")
    assert dict(proposal.keys) == {}
    assert any("kept the Kbuild route" in r for r in proposal.reasons), proposal.reasons


def test_parse_dkms_conf_continuations_and_arrays() -> None:
    conf = parse_dkms_conf(
        "dkms.conf", 'MAKE[0]="make -C a \\\n  M=b"\nBUILT_MODULE_NAME[1]="y"\nBUILT_MODULE_NAME[0]=x\n'
    )
    assert conf.first("MAKE") == "make -C a    M=b"
    assert conf.indexed("BUILT_MODULE_NAME") == ["x", "y"]


def test_vendor_spec_build_section(tmp_path: Path) -> None:
    spec = (
        "Name: acme\n%build\nmake -C src %{?_smp_mflags} clean\nmake -C src %{?_smp_mflags}\n%install\nmake install\n"
    )
    path = tarball(tmp_path / "a.tar.gz", {"a/acme.spec": spec, "a/src/Makefile": "obj-m += acme.o\nall:\n\t@true\n"})
    proposal = propose_route(path, "acme")
    assert dict(proposal.keys) == {"build": "vendor"}  # src/ is the folder Kbuild would pick anyway
    assert "acme.spec %build runs the vendor's own make in src/" in proposal.reasons[0]


def test_guess_is_reported(tmp_path: Path) -> None:
    path = tarball(tmp_path / "a.tar.gz", {"a/x/Kbuild": "obj-m := foo.o\n", "a/y/z/Kbuild": "obj-m := bar.o\n"})
    proposal = propose_route(path, "acme")
    assert proposal.considered == ("x", "y/z")
    assert any(r.startswith("guessed: driverpack built in x/") for r in proposal.reasons)


def test_dkms_disagreement_and_route_problems(tmp_path: Path) -> None:
    kbuild = "make -C ${kernel_source_dir} M=${dkms_tree}/${PACKAGE_NAME}/${PACKAGE_VERSION}/build"
    conf = f'MAKE[0]="{kbuild}/core modules && {kbuild}/eth modules"\n'
    path = tarball(
        tmp_path / "a.tar.gz",
        {"a/dkms.conf": conf, "a/core/Kbuild": "obj-m := acme_core.o\n", "a/eth/Kbuild": "obj-m := acme.o\n"},
    )
    lay, tree = inspect_tarball(path), read_markers(path)
    (warning,) = dkms_disagreements(driver(), tree, lay)
    assert 'dkms.conf\'s route is module_folders = ["core", "eth"]' in warning
    assert dkms_disagreements(driver(module_folders=["core", "eth"]), tree, lay) == []
    problems = route_problems(driver(module_folders=["core", "nope"], prepare=[{"run": ["gen.sh"]}]), tree, lay)
    assert problems == [
        "module_folders[1]: the tarball has no folder 'nope'",
        "prepare[0].run: the tarball has no gen.sh (paths are relative to the step's folder)",
    ]


# the README's examples


def test_readme_examples_are_the_test_packs() -> None:
    """Each [[drivers]] example of the README's "Vendor drivers" section is a case of tests/data/routes/."""
    import re
    import tomllib

    repo = Path(__file__).resolve().parents[2]
    readme = (repo / "README.md").read_text()
    section = readme.split("## Vendor drivers\n", 1)[1].split("\n## ", 1)[0]
    cases = {}
    for path in (repo / "tests" / "data" / "routes").glob("*/driver.toml"):
        raw = tomllib.loads(path.read_text())
        cases[raw["name"]] = raw
    examples = [tomllib.loads(block)["drivers"][0] for block in re.findall(r"```toml\n(.*?)```", section, re.S)]
    assert len(examples) >= 7
    for example in examples:
        case = cases[example["name"]]
        for key, value in example.items():
            expected = case["tarball"] if key == "source" else case[key]
            assert value == expected, (example["name"], key)
        route_keys = {"build", "makefile", "targets", "module_folders", "prepare", "make_args"}
        assert {k for k in case if k in route_keys} <= set(example), example["name"]
