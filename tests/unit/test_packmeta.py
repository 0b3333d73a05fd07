"""update.xml and the update-/control- specs, against golden files and the real rpm tools.

Golden files live in tests/unit/golden/packmeta/<case>/. After an intended change to the
rendering, regenerate them and review the diff:

    UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_packmeta.py

The rpm tests run rpmspec and rpmbuild for real; a missing tool fails them, it never skips.
"""

from __future__ import annotations

import dataclasses
import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from driverpack.errors import PackError
from driverpack.packmeta import (
    PayloadRpm,
    UpdateMeta,
    changelog_date,
    check,
    control_rpm_name,
    has_control,
    installation_size,
    render_control_spec,
    render_update_spec,
    render_update_xml,
    update_rpm_name,
)
from driverpack.run import run, which

GOLDEN = Path(__file__).parent / "golden" / "packmeta"
UPDATE_GOLDEN = os.environ.get("UPDATE_GOLDEN") == "1"

UUID = "4a3f1c2e-9b7d-4e21-8c55-0f6a2d9e7b13"

BASE = UpdateMeta(
    label="helloworld",
    text="Hello world example driver",
    uuid=UUID,
    version="1.0.0",
    build="1",
    vendor="Example Corp",
    after_apply=(),
    key_name="RPM-GPG-KEY-driverpack-test",
    base_requires=None,
    payload=(PayloadRpm(name="helloworld", epoch=None, version="1.0", release="1", installed_size=24576),),
    changelog_date=changelog_date(1704067200),
)

CASES = {
    "no-control": BASE,
    "control-restart": UpdateMeta(
        label="helloworld",
        text="Hello world example driver",
        uuid=UUID,
        version="1.0.0",
        build="1",
        vendor="Example Corp",
        after_apply=("restartHost", "restartXAPI"),
        key_name="RPM-GPG-KEY-driverpack-test",
        base_requires="product-version = 8.2.1",
        payload=(
            PayloadRpm(name="helloworld", epoch=None, version="1.0", release="1", installed_size=24576),
            PayloadRpm(name="helloworld-data", epoch=2, version="1.0", release="3", installed_size=1000),
        ),
        changelog_date=changelog_date(1704067200),
    ),
}

# Everything that shell, rpm or XML could interpret: it must come out literally.
HOSTILE_TEXT = (
    "Fast & <safe> \"driver\" 'quoted' 100% done, %{name} %(echo RPM-EXPANDED) %[1+1] %% %\n"
    "%files\n"
    "  %include /etc/hostname\n"
    "%ENDIF\n"
    "# not a comment\n"
    "$(echo SHELL-EXPANDED) `echo SHELL-EXPANDED` $HOME ${PATH} \\$\n"
    "EOF\n"
    "'EOF'\n"
    "ends with a backslash \\\n"
    "tab\there, ]]> and &amp;\n"
    "last line"
)
HOSTILE = UpdateMeta(
    label="hostile_pack-1",
    text=HOSTILE_TEXT,
    uuid="0b5e7d43-51f6-4a8c-9d2e-6c1f0e8a7b29",
    version="2.0",
    build="7",
    vendor="Vendor 100% $(echo X) `id`",
    after_apply=("restartHost",),
    key_name="RPM-GPG-KEY-driverpack-test",
    base_requires="product-version >= 8.2.0",
    payload=(PayloadRpm(name="hostile", epoch=None, version="2.0", release="1", installed_size=10),),
    changelog_date="Mon Jan 01 2024",
)


def _rendered(meta: UpdateMeta) -> dict[str, str]:
    files = {"update.xml": render_update_xml(meta), "update.spec": render_update_spec(meta)}
    if has_control(meta):
        files["control.spec"] = render_control_spec(meta)
    return files


GOLDEN_FILES = [(case, name) for case, meta in CASES.items() for name in _rendered(meta)]


@pytest.mark.parametrize(("case", "name"), GOLDEN_FILES, ids=[f"{c}/{n}" for c, n in GOLDEN_FILES])
def test_matches_golden(case: str, name: str) -> None:
    text = _rendered(CASES[case])[name]
    path = GOLDEN / case / name
    if UPDATE_GOLDEN:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode())
    assert path.exists(), f"no golden file {path}: run with UPDATE_GOLDEN=1"
    assert text == path.read_bytes().decode()


def test_golden_folder_has_no_stale_files() -> None:
    on_disk = {(p.parent.name, p.name) for p in GOLDEN.glob("*/*")}
    assert on_disk == set(GOLDEN_FILES)


@pytest.mark.parametrize("meta", [*CASES.values(), HOSTILE], ids=[*CASES, "hostile"])
def test_update_xml_has_what_xapi_requires(meta: UpdateMeta) -> None:
    xml = render_update_xml(meta)
    assert not xml.lstrip().startswith("<?xml"), "build-update writes no XML declaration"
    root = ET.fromstring(xml)
    assert root.tag == "update"
    assert root.get("uuid") == meta.uuid
    assert root.get("name-label") == meta.label
    assert root.get("version") == meta.version
    assert root.get("installation-size") == str(installation_size(meta))
    assert root.get("key") == meta.key_name
    assert root.get("control") == (f"control-{meta.label}" if meta.base_requires else None)
    assert root.get("after-apply-guidance") == (",".join(meta.after_apply) or None)
    expected = {"name-label", "uuid", "version", "installation-size", "key"}
    expected |= {"after-apply-guidance"} if meta.after_apply else set()
    expected |= {"control"} if meta.base_requires else set()
    assert set(root.attrib) == expected
    assert [child.tag for child in root] == ["name-description"]
    description = root.find("name-description")
    assert description is not None
    assert description.text == meta.text
    assert description.text.strip()


def test_update_xml_layout_is_build_updates() -> None:
    assert render_update_xml(CASES["control-restart"]) == (
        '  <update after-apply-guidance="restartHost,restartXAPI" control="control-helloworld"'
        ' installation-size="25576" key="RPM-GPG-KEY-driverpack-test" name-label="helloworld"'
        f' uuid="{UUID}" version="1.0.0">\n'
        "  <name-description>Hello world example driver</name-description>\n"
        "  </update>\n"
    )


def test_names_and_sizes() -> None:
    meta = CASES["control-restart"]
    assert update_rpm_name(meta) == "update-helloworld-1.0.0-1.noarch.rpm"
    assert control_rpm_name(meta) == "control-helloworld-1.0.0-1.noarch.rpm"
    assert installation_size(meta) == 24576 + 1000
    assert "Requires: helloworld-data >= 2:1.0-3\n" in render_update_spec(meta)
    assert "Requires: helloworld >= 1.0-1\n" in render_update_spec(meta)


def test_changelog_date() -> None:
    assert changelog_date(0) == "Thu Jan 01 1970"
    assert changelog_date(1704067200) == "Mon Jan 01 2024"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"uuid": "4A3F1C2E-9B7D-4E21-8C55-0F6A2D9E7B13"}, "uuid"),
        ({"uuid": "x; rm -rf /"}, "uuid"),
        ({"label": "hello world"}, "label"),
        ({"version": "1.0-1"}, "version"),
        ({"text": " \n"}, "text"),
        ({"text": "bell\x07"}, "text"),
        ({"vendor": "two\nlines"}, "vendor"),
        ({"key_name": "keys/RPM-GPG-KEY"}, "key_name"),
        ({"base_requires": "a\nb"}, "base_requires"),
        ({"after_apply": ("reboot",)}, "after_apply"),
        ({"after_apply": ("restartHost", "restartHost")}, "after_apply"),
        ({"payload": ()}, "payload"),
        ({"payload": (PayloadRpm("a b", None, "1", "1", 0),)}, "payload[0].name"),
        ({"payload": (PayloadRpm("a", None, "1", "1-2", 0),)}, "payload[0].release"),
        ({"changelog_date": "Tue Jan 01 2024"}, "changelog_date"),
        ({"changelog_date": "2024-01-01"}, "changelog_date"),
    ],
)
def test_refuses_unsafe_metadata(change: dict[str, Any], field: str) -> None:
    meta = dataclasses.replace(BASE, **change)
    problems = check(meta)
    assert len(problems) == 1 and problems[0].startswith(field), problems
    with pytest.raises(PackError, match=field.replace("[", r"\[").replace("]", r"\]")):
        render_update_spec(meta)


def test_control_spec_needs_base_requires() -> None:
    with pytest.raises(ValueError, match="base_requires"):
        render_control_spec(BASE)


def test_heredoc_delimiter_avoids_lines_of_the_text() -> None:
    spec = render_update_spec(HOSTILE)
    assert "<<'EOF_1'\n" in spec
    assert "\nEOF_1\n" in spec


# Real tools from here on.


@pytest.mark.parametrize("meta", [*CASES.values(), HOSTILE], ids=[*CASES, "hostile"])
def test_specs_parse_with_rpmspec(meta: UpdateMeta, tmp_path: Path) -> None:
    for name, text in _rendered(meta).items():
        if not name.endswith(".spec"):
            continue
        spec = tmp_path / name
        spec.write_text(text)
        proc = run([which("rpmspec"), "-P", spec], quiet=True)
        assert b"warning" not in proc.stderr.lower(), proc.stderr.decode()
        parsed = proc.stdout.decode()
        assert "%files" in parsed and "%changelog" in parsed


@pytest.mark.slow
def test_built_rpms_have_the_reference_shape(tmp_path: Path) -> None:
    meta = CASES["control-restart"]
    update = _build(tmp_path, "update.spec", render_update_spec(meta))
    control = _build(tmp_path, "control.spec", render_control_spec(meta))
    assert update.name == update_rpm_name(meta)
    assert control.name == control_rpm_name(meta)

    tags = "%{NAME}|%{VERSION}|%{RELEASE}|%{ARCH}|%{LICENSE}|%{SUMMARY}|%{PAYLOADCOMPRESSOR}|%{SIZE}"
    assert _query(update, tags) == "update-helloworld|1.0.0|1|noarch|Proprietary|helloworld|xz|0"
    assert _query(control, tags) == (
        "control-helloworld|1.0.0|1|noarch|Proprietary|Control package for helloworld|xz|0"
    )
    assert _query(update, "[%{FILENAMES}\n]") == ""
    assert _query(update, "%{DESCRIPTION}") == meta.text
    assert _query(update, "[%{PROVIDENEVRS}\n]").splitlines() == [UUID, "update-helloworld = 1.0.0-1"]
    requires = _query(update, "[%{REQUIRENEVRS}\n]").splitlines()
    assert "helloworld >= 1.0-1" in requires
    assert "helloworld-data >= 2:1.0-3" in requires
    assert [r for r in _query(control, "[%{REQUIRENEVRS}\n]").splitlines() if not r.startswith("rpmlib(")] == [
        "product-version = 8.2.1"
    ]
    assert _query(control, "%{POSTTRANS}%{POSTUN}%{PRETRANS}") == "(none)(none)(none)"
    assert _query(update, "%{POSTUN}") == (
        f"if [ $1 -eq 0 -a -e /var/update/{UUID}/.remove ]; then\n  rm -f /var/update/applied/{UUID}\nfi"
    )
    assert _query(update, "%{POSTTRANS}") == (
        "mkdir -p /var/update/applied\n"
        f"cat >/var/update/applied/{UUID} <<'EOF'\n"
        f"{render_update_xml(meta)}"
        "EOF\n"
        f"echo {UUID} >>/run/reboot-required.hfxs"
    )


@pytest.mark.slow
def test_hostile_text_comes_out_literally(tmp_path: Path) -> None:
    rpm = _build(tmp_path, "update.spec", render_update_spec(HOSTILE))
    update_xml = render_update_xml(HOSTILE)
    assert ET.fromstring(update_xml).findtext("name-description") == HOSTILE_TEXT

    scripts = run([which("rpm"), "-qp", "--nosignature", "--scripts", rpm], quiet=True).stdout.decode()
    assert update_xml in scripts
    assert "RPM-EXPANDED" in scripts and "%(echo RPM-EXPANDED)" in scripts
    assert _query(rpm, "%{VENDOR}") == HOSTILE.vendor
    # The RPM description keeps every line, with a zero-width space before a leading % or #.
    assert _query(rpm, "%{DESCRIPTION}").replace("\u200b", "") == HOSTILE_TEXT

    # Run the scripts as the host would, with the host's paths moved into tmp_path.
    host = tmp_path / "host"
    (host / "update" / HOSTILE.uuid).mkdir(parents=True)
    (host / "run").mkdir()
    posttrans = _on_host(_query(rpm, "%{POSTTRANS}"), host)
    run([which("sh"), "-c", posttrans], cwd=tmp_path, quiet=True)
    applied = host / "update" / "applied" / HOSTILE.uuid
    assert applied.read_bytes() == update_xml.encode()
    assert (host / "run" / "reboot-required.hfxs").read_text() == HOSTILE.uuid + "\n"

    postun = _on_host(_query(rpm, "%{POSTUN}"), host)
    run([which("sh"), "-c", postun, "postun", "0"], quiet=True)
    assert applied.exists(), "without the .remove marker the applied record stays"
    (host / "update" / HOSTILE.uuid / ".remove").touch()
    run([which("sh"), "-c", postun, "postun", "1"], quiet=True)
    assert applied.exists(), "an upgrade ($1 = 1) keeps the applied record"
    run([which("sh"), "-c", postun, "postun", "0"], quiet=True)
    assert not applied.exists()


def _build(tmp_path: Path, name: str, spec_text: str) -> Path:
    topdir = tmp_path / "rpmbuild"
    spec = tmp_path / name
    spec.write_text(spec_text)
    before = set(topdir.glob("RPMS/*/*.rpm"))
    run([which("rpmbuild"), "-bb", "--define", f"_topdir {topdir}", "--nodeps", spec], quiet=True)
    (built,) = set(topdir.glob("RPMS/*/*.rpm")) - before
    return built


def _query(rpm: Path, queryformat: str) -> str:
    proc = run([which("rpm"), "-qp", "--nosignature", "--qf", queryformat, rpm], quiet=True)
    return proc.stdout.decode()


def _on_host(script: str, host: Path) -> str:
    return script.replace("/var/update", f"{host}/update").replace("/run/", f"{host}/run/")
