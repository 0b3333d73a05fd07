"""The pack-file contract: what load_pack accepts, and the exact path and message of what it refuses.

Every test writes a pack.toml into tmp_path and runs from there, so problem lines start with
`pack.toml: ` and can be compared whole.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from driverpack.errors import PackError
from driverpack.load import LoadedPack, load_pack
from driverpack.models import Pack

UUID = "7a1b4bfe-3ac5-4c3f-9a3e-2b0f6d1c5e01"
UUID_HINT = "make one with 'python3 -c \"import uuid; print(uuid.uuid4())\"'"
VERSION_CHARS = "use letters, digits and . _ + only"

VALID = f"""\
[pack]
label = "demo"
text = "Demo driver"
uuid = "{UUID}"
version = "1.0.0"

[[drivers]]
name = "demo"
version = "1.0"
source = "demo-1.0.tar.gz"
summary = "Demo kernel module"
"""


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Problem lines name the file relative to the current directory: make that `pack.toml`."""
    monkeypatch.chdir(tmp_path)


def edit(text: str, old: str, new: str) -> str:
    """VALID with one exact line (or block) replaced; fails loudly when the base changes."""
    assert text.count(old) == 1, f"{old!r} is not in the base pack exactly once"
    return text.replace(old, new)


def load(tmp_path: Path, text: str) -> LoadedPack:
    (tmp_path / "pack.toml").write_text(text, encoding="utf-8")
    return load_pack(tmp_path)


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(PackError) as caught:
        load(tmp_path, text)
    assert caught.value.exit_code == 2
    assert caught.value.message == "\n".join(caught.value.problems)
    return caught.value.problems


def only_problem(tmp_path: Path, text: str) -> str:
    found = problems(tmp_path, text)
    assert len(found) == 1, found
    return found[0]


def test_valid_pack_loads(tmp_path: Path) -> None:
    loaded = load(tmp_path, VALID)
    assert loaded.label == "demo"
    assert loaded.folder == tmp_path.resolve()
    assert loaded.file == Path("pack.toml")
    assert loaded.resolve("demo-1.0.tar.gz") == tmp_path.resolve() / "demo-1.0.tar.gz"
    assert loaded.resolve("/srv/sources/demo.tar.gz") == Path("/srv/sources/demo.tar.gz")


def test_defaults(tmp_path: Path) -> None:
    pack = load(tmp_path, VALID + '\n[drivers.data]\nversion = "2.0"\n').pack
    driver = pack.drivers[0]
    assert driver.release == "1"
    assert driver.license == "GPL"
    assert driver.patches == ()
    assert driver.make_args == ()
    assert driver.changelog == ()
    assert pack.pack.build == "1"
    assert pack.pack.after_apply is None  # restartHost when the pack carries modules (guidance.py)
    assert pack.pack.base_requires is None
    assert pack.pack.signing_key is None
    assert pack.target.kernel == "auto"
    assert pack.target.build_dir == ""
    assert pack.target.module_dir == "updates"
    assert pack.rpms == ()
    assert driver.replaces is None and driver.epoch is None
    assert driver.rpm_name == "demo"
    assert driver.data is not None
    assert driver.data.release == "1"
    assert driver.data_name == "demo-data"
    assert driver.data_folder() == "demo-data-2.0"


@pytest.mark.parametrize("folder", ["firmware", "../shared/fw", "/srv/fw", "~/fw", "../../../../tmp/x y's %{z}"])
def test_data_folder_is_read_from_anywhere_but_named_by_the_package(tmp_path: Path, folder: str) -> None:
    text = VALID + f'\n[drivers.data]\nversion = "2.0"\nfolder = "{folder}"\n'
    loaded = load(tmp_path, text)
    driver = loaded.pack.drivers[0]
    assert driver.data_folder() == folder
    expected = Path(folder).expanduser() if folder.startswith(("/", "~")) else tmp_path.resolve() / folder
    assert loaded.data_folder(driver) == expected
    # What SOURCES, the tarball and the spec see: made of validated names only.
    assert driver.data_dir_name == "demo-data-2.0"
    assert driver.data_source() == "demo-data-2.0.tar"


def test_the_shipped_example_loads() -> None:
    loaded = load_pack(Path(__file__).resolve().parents[2] / "packs" / "helloworld")
    assert loaded.label == "helloworld"
    assert loaded.pack.drivers[0].data is not None


# [pack]


def test_unknown_key(tmp_path: Path) -> None:
    text = edit(VALID, 'label = "demo"', 'lable = "demo"')
    assert only_problem(tmp_path, text) == (
        "pack.toml: pack.lable: unknown key 'lable' (check the spelling; see the pack file reference in the README)"
    )


def test_unknown_key_in_a_driver(tmp_path: Path) -> None:
    text = VALID + 'sumary = "typo"\n'
    assert only_problem(tmp_path, text).startswith("pack.toml: drivers[0].sumary: unknown key 'sumary'")


@pytest.mark.parametrize("bad", ["nope", "7a1b4bfe3ac54c3f9a3e2b0f6d1c5e01", "{" + UUID + "}", UUID + "0"])
def test_bad_uuid(tmp_path: Path, bad: str) -> None:
    text = edit(VALID, f'uuid = "{UUID}"', f'uuid = "{bad}"')
    assert (
        only_problem(tmp_path, text) == f"pack.toml: pack.uuid: {bad!r} is not a canonical lowercase uuid; {UUID_HINT}"
    )


def test_uppercase_uuid_says_lowercase(tmp_path: Path) -> None:
    text = edit(VALID, f'uuid = "{UUID}"', f'uuid = "{UUID.upper()}"')
    assert only_problem(tmp_path, text) == (
        f"pack.toml: pack.uuid: {UUID.upper()!r} is not a canonical lowercase uuid (use lowercase); {UUID_HINT}"
    )


def test_missing_uuid(tmp_path: Path) -> None:
    text = edit(VALID, f'uuid = "{UUID}"\n', "")
    assert only_problem(tmp_path, text) == "pack.toml: pack.uuid: required key is missing"


@pytest.mark.parametrize("bad", ["hello world", "hello.world", "hello/world", "héllo", ""])
def test_bad_label(tmp_path: Path, bad: str) -> None:
    text = edit(VALID, 'label = "demo"', f'label = "{bad}"')
    assert only_problem(tmp_path, text) == (
        f"pack.toml: pack.label: {bad!r} is not a valid label: use letters, digits, '_' and '-' only "
        "(it becomes update-<label>, the yum repo id and the ISO volume id)"
    )


@pytest.mark.parametrize("good", ["demo", "Acme_NIC-2", "x", "a" * 40])
def test_good_label(tmp_path: Path, good: str) -> None:
    assert load(tmp_path, edit(VALID, 'label = "demo"', f'label = "{good}"')).label == good


def test_label_defaults_to_the_first_drivers_name(tmp_path: Path) -> None:
    text = edit(VALID, 'label = "demo"\n', "")
    text = edit(text, 'name = "demo"', 'name = "acme-nic"')
    loaded = load(tmp_path, text)
    assert loaded.pack.pack.label is None
    assert loaded.label == "acme-nic"
    assert loaded.pack.label == "acme-nic"


def test_default_label_invalid_when_the_driver_name_has_a_dot(tmp_path: Path) -> None:
    text = edit(VALID, 'label = "demo"\n', "")
    text = edit(text, 'name = "demo"', 'name = "acme.nic"')
    problem = only_problem(tmp_path, text)
    assert problem.startswith("pack.toml: pack.label: "), problem
    assert "'acme.nic'" in problem
    assert "drivers[0].name" in problem


def test_default_label_invalid_is_refused(tmp_path: Path) -> None:
    """Whatever the wording, a driver name that cannot be a label is refused when label is unset."""
    text = edit(VALID, 'label = "demo"\n', "")
    text = edit(text, 'name = "demo"', 'name = "acme.nic"')
    problem = only_problem(tmp_path, text)
    assert "'acme.nic' is not a valid label" in problem
    # With a label set, the same driver name is fine: rpm names may hold dots.
    assert load(tmp_path, edit(text, "[pack]\n", '[pack]\nlabel = "acme"\n')).label == "acme"


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ('["restartHost"]', ("restartHost",)),
        ('["restartXAPI", "restartPV", "restartHVM"]', ("restartXAPI", "restartPV", "restartHVM")),
        ("[]", ()),
    ],
)
def test_after_apply_values(tmp_path: Path, values: str, expected: tuple[str, ...]) -> None:
    text = edit(VALID, 'version = "1.0.0"\n', f'version = "1.0.0"\nafter_apply = {values}\n')
    assert load(tmp_path, text).pack.pack.after_apply == expected


@pytest.mark.parametrize(
    ("values", "index", "bad"), [('["reboot"]', 0, "reboot"), ('["restartHost", "restarthost"]', 1, "restarthost")]
)
def test_after_apply_bad_value(tmp_path: Path, values: str, index: int, bad: str) -> None:
    text = edit(VALID, 'version = "1.0.0"\n', f'version = "1.0.0"\nafter_apply = {values}\n')
    assert only_problem(tmp_path, text) == (
        f"pack.toml: pack.after_apply[{index}]: {bad!r} is not allowed: "
        "'restartHost', 'restartXAPI', 'restartPV' or 'restartHVM'"
    )


def test_after_apply_must_be_a_list(tmp_path: Path) -> None:
    text = edit(VALID, 'version = "1.0.0"\n', 'version = "1.0.0"\nafter_apply = "restartHost"\n')
    assert only_problem(tmp_path, text).startswith("pack.toml: pack.after_apply: ")


@pytest.mark.parametrize("bad", ["two\\nlines", "ends with a break\\n", "carriage\\rreturn"])
def test_text_with_a_line_break_is_refused(tmp_path: Path, bad: str) -> None:
    text = edit(VALID, 'text = "Demo driver"', f'text = "{bad}"')
    assert only_problem(tmp_path, text) == (
        "pack.toml: pack.text: must be one line (it goes into an rpm header tag); remove the line break"
    )


@pytest.mark.parametrize(("bad", "message"), [("", "must not be empty"), ("bell\\u0007", "contains control")])
def test_text_empty_or_control_characters(tmp_path: Path, bad: str, message: str) -> None:
    text = edit(VALID, 'text = "Demo driver"', f'text = "{bad}"')
    assert only_problem(tmp_path, text).startswith(f"pack.toml: pack.text: {message}")


def test_text_may_hold_what_a_spec_or_xml_would_interpret(tmp_path: Path) -> None:
    """It is escaped where it is used, so the pack file need not refuse it."""
    hostile = '100% <b>&amp;</b> %{name} $(id) `id` "quoted" \\'
    text = edit(VALID, 'text = "Demo driver"', f"text = '{hostile}'")
    assert load(tmp_path, text).pack.pack.text == hostile


def test_pack_version_with_dash(tmp_path: Path) -> None:
    text = edit(VALID, 'version = "1.0.0"', 'version = "1.0-0"')
    assert only_problem(tmp_path, text) == (
        "pack.toml: pack.version: '1.0-0' contains '-', which rpm does not allow in a version "
        "(use 1.0.1 or put the suffix in release)"
    )


def test_base_requires_with_percent(tmp_path: Path) -> None:
    text = edit(VALID, 'version = "1.0.0"\n', 'version = "1.0.0"\nbase_requires = "product-version = %{x}"\n')
    problem = only_problem(tmp_path, text)
    assert problem.startswith("pack.toml: pack.base_requires: must not contain '%'")


# [[drivers]] versions and releases


def test_driver_version_with_dash(tmp_path: Path) -> None:
    text = edit(VALID, 'version = "1.0"\n', 'version = "1.0-1"\n')
    assert only_problem(tmp_path, text) == (
        "pack.toml: drivers[0].version: '1.0-1' contains '-', which rpm does not allow in a version "
        "(use 1.0.1 or put the suffix in release)"
    )


def test_driver_release_with_dash(tmp_path: Path) -> None:
    text = edit(VALID, 'version = "1.0"\n', 'version = "1.0"\nrelease = "1-2"\n')
    assert only_problem(tmp_path, text) == (
        "pack.toml: drivers[0].release: '1-2' contains '-', which rpm does not allow in a release (use 1.1 or 1_1)"
    )


@pytest.mark.parametrize(
    ("toml_value", "shown"),
    [
        ('"1 0"', "'1 0'"),
        ('" 1.0"', "' 1.0'"),
        ('"1.0%{x}"', "'1.0%{x}'"),
        ('"100%"', "'100%'"),
        ('"1\\n0"', "'1\\n0'"),
        ('"1,0"', "'1,0'"),
        ('"1.0^git1"', "'1.0^git1'"),
    ],
)
@pytest.mark.parametrize("key", ["version", "release"])
def test_driver_version_characters(tmp_path: Path, key: str, toml_value: str, shown: str) -> None:
    text = edit(VALID, 'version = "1.0"\n', 'version = "1.0"\nrelease = "1"\n')
    text = edit(text, f'{key} = "{"1.0" if key == "version" else "1"}"\n', f"{key} = {toml_value}\n")
    example = "1.0.1" if key == "version" else "1"
    assert only_problem(tmp_path, text) == (
        f"pack.toml: drivers[0].{key}: {shown} is not a valid rpm {key}: {VERSION_CHARS} (e.g. {example})"
    )


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ('version = "1.0"\n', 'version = "1.0\\n"\n', "drivers[0].version"),
        ('source = "demo-1.0.tar.gz"\n', 'source = "demo-1.0.tar.gz"\nrelease = "1\\n"\n', "drivers[0].release"),
        ('name = "demo"', 'name = "demo\\n"', "drivers[0].name"),
        ('label = "demo"', 'label = "demo\\n"', "pack.label"),
        (f'uuid = "{UUID}"', f'uuid = "{UUID}\\n"', "pack.uuid"),
        ('version = "1.0.0"', 'version = "1.0.0\\n"', "pack.version"),
    ],
    ids=["version", "release", "name", "label", "uuid", "pack-version"],
)
def test_trailing_newline_is_refused(tmp_path: Path, old: str, new: str, key: str) -> None:
    assert only_problem(tmp_path, edit(VALID, old, new)).startswith(f"pack.toml: {key}: ")


def test_kernel_with_trailing_newline_is_refused(tmp_path: Path) -> None:
    problem = only_problem(tmp_path, VALID + '\n[target]\nkernel = "4.19.0+1\\n"\n')
    assert problem.startswith("pack.toml: target.kernel: ")


def test_empty_version(tmp_path: Path) -> None:
    text = edit(VALID, 'version = "1.0"\n', 'version = ""\n')
    assert only_problem(tmp_path, text) == "pack.toml: drivers[0].version: the version is empty (use e.g. 1.0.1)"


@pytest.mark.parametrize("good", ["1.0", "2.4.1_rc1", "1.0+git20240101", "1.0~beta", "5"])
def test_good_versions(tmp_path: Path, good: str) -> None:
    text = edit(VALID, 'version = "1.0"\n', f'version = "{good}"\nrelease = "{good}"\n')
    driver = load(tmp_path, text).pack.drivers[0]
    assert (driver.version, driver.release) == (good, good)


def test_data_version_with_dash(tmp_path: Path) -> None:
    text = VALID + '\n[drivers.data]\nversion = "1.0"\nrelease = "2-1"\n'
    assert only_problem(tmp_path, text) == (
        "pack.toml: drivers[0].data.release: '2-1' contains '-', which rpm does not allow in a release (use 1.1 or 1_1)"
    )


@pytest.mark.parametrize("bad", ["demo driver", "-demo", ".demo", "+demo", "demo%", "démo"])
def test_bad_driver_name(tmp_path: Path, bad: str) -> None:
    text = edit(VALID, 'name = "demo"', f'name = "{bad}"')
    assert only_problem(tmp_path, text) == (
        f"pack.toml: drivers[0].name: {bad!r} is not a valid rpm package name "
        "(letters, digits and . _ + - only, starting with a letter, digit or _)"
    )


def test_summary_with_a_line_break(tmp_path: Path) -> None:
    text = edit(VALID, 'summary = "Demo kernel module"', 'summary = "Demo\\nmodule"')
    assert only_problem(tmp_path, text).startswith("pack.toml: drivers[0].summary: must be one line")


def test_empty_source(tmp_path: Path) -> None:
    text = edit(VALID, 'source = "demo-1.0.tar.gz"', 'source = ""')
    assert only_problem(tmp_path, text) == "pack.toml: drivers[0].source: must not be empty"


def test_changelog_bad_date(tmp_path: Path) -> None:
    text = VALID + 'changelog = [{ date = "2024-13-01", author = "A <a@example.com>", text = "x" }]\n'
    problem = only_problem(tmp_path, text)
    assert problem.startswith("pack.toml: drivers[0].changelog[0].date: ")
    assert "'2024-13-01'" in problem


# duplicate package names


def test_two_drivers_with_the_same_name(tmp_path: Path) -> None:
    second = '\n[[drivers]]\nname = "demo"\nversion = "2.0"\nsource = "other.tar.gz"\nsummary = "Other"\n'
    assert only_problem(tmp_path, VALID + second) == (
        "pack.toml: package name 'demo' at drivers[1].name is already used at drivers[0].name; rename one"
    )


def test_driver_named_like_the_update_package(tmp_path: Path) -> None:
    second = '\n[[drivers]]\nname = "update-demo"\nversion = "2.0"\nsource = "other.tar.gz"\nsummary = "Other"\n'
    assert only_problem(tmp_path, VALID + second) == (
        "pack.toml: package name 'update-demo' at pack.label is already used at drivers[1].name; rename one"
    )


def test_driver_named_like_the_control_package(tmp_path: Path) -> None:
    text = edit(VALID, 'name = "demo"', 'name = "control-demo"')
    problem = only_problem(tmp_path, text)
    assert "'control-demo'" in problem and "pack.label" in problem and "drivers[0].name" in problem


def test_driver_named_like_another_drivers_data_package(tmp_path: Path) -> None:
    text = VALID + '\n[drivers.data]\nversion = "1.0"\n'
    text += '\n[[drivers]]\nname = "demo-data"\nversion = "2.0"\nsource = "other.tar.gz"\nsummary = "Other"\n'
    assert only_problem(tmp_path, text) == (
        "pack.toml: package name 'demo-data' at drivers[0].data is already used at drivers[1].name; rename one"
    )


# [target]


@pytest.mark.parametrize("value", ["extra", "updates"])
def test_module_dir_values(tmp_path: Path, value: str) -> None:
    text = VALID + f'\n[target]\nmodule_dir = "{value}"\n'
    assert load(tmp_path, text).pack.target.module_dir == value


@pytest.mark.parametrize("bad", ["kernel", "Extra", "extra/net", ""])
def test_module_dir_bad_value(tmp_path: Path, bad: str) -> None:
    text = VALID + f'\n[target]\nmodule_dir = "{bad}"\n'
    assert only_problem(tmp_path, text) == f"pack.toml: target.module_dir: {bad!r} is not allowed: 'extra' or 'updates'"


@pytest.mark.parametrize("good", ["auto", "4.19.0+1", "6.1.0-9-amd64", "5.14.0-362.el9.x86_64"])
def test_kernel_values(tmp_path: Path, good: str) -> None:
    assert load(tmp_path, VALID + f'\n[target]\nkernel = "{good}"\n').pack.target.kernel == good


def test_kernel_bad_value(tmp_path: Path) -> None:
    assert only_problem(tmp_path, VALID + '\n[target]\nkernel = "4.19 0"\n') == (
        "pack.toml: target.kernel: '4.19 0' is not a kernel release (uname -r of the target, e.g. '4.19.0+1')"
    )


# the file as a whole


def test_toml_syntax_error_names_the_line(tmp_path: Path) -> None:
    text = edit(VALID, 'text = "Demo driver"', "text = ")
    problem = only_problem(tmp_path, text)
    assert problem.startswith("pack.toml: TOML syntax error: ")
    assert "line 3" in problem


def test_toml_syntax_error_hint(tmp_path: Path) -> None:
    (tmp_path / "pack.toml").write_text("[pack\n")
    with pytest.raises(PackError) as caught:
        load_pack(tmp_path)
    assert "line 1" in caught.value.problems[0]
    assert caught.value.hint


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PackError) as caught:
        load_pack(tmp_path)
    assert caught.value.problems == ["pack.toml: file not found"]
    assert "inv new" in caught.value.hint


def test_not_utf8_names_the_key(tmp_path: Path) -> None:
    (tmp_path / "pack.toml").write_bytes(VALID.encode().replace(b"Demo driver", b"D\xe9mo driver"))
    with pytest.raises(PackError) as caught:
        load_pack(tmp_path)
    assert caught.value.problems == ["pack.toml: pack.text: not UTF-8 text (invalid continuation byte)"]
    assert caught.value.hint == "save the file as UTF-8"


def test_not_utf8_outside_a_value_names_the_line(tmp_path: Path) -> None:
    (tmp_path / "pack.toml").write_bytes(VALID.encode() + b"# caf\xe9\n")
    with pytest.raises(PackError) as caught:
        load_pack(tmp_path)
    assert caught.value.problems == ["pack.toml: line 12: not UTF-8 text (invalid continuation byte)"]


def test_empty_drivers_list(tmp_path: Path) -> None:
    text = "drivers = []\n" + VALID.split("[[drivers]]")[0]
    assert (
        only_problem(tmp_path, text)
        == "pack.toml: drivers: a pack needs at least one [[drivers]] table (or [[rpms]] to carry)"
    )


@pytest.mark.parametrize("has_label", [True, False], ids=["label", "no-label"])
def test_no_drivers_table(tmp_path: Path, has_label: bool) -> None:
    text = VALID.split("[[drivers]]")[0]
    if not has_label:
        text = edit(text, 'label = "demo"\n', "")
    assert (
        only_problem(tmp_path, text)
        == "pack.toml: drivers: a pack needs at least one [[drivers]] table (or [[rpms]] to carry)"
    )


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = """\
[pack]
lable = "demo"
text = "two\\nlines"
uuid = "ABC"
version = "1-1"
after_apply = ["reboot"]

[target]
module_dir = "kernel"

[[drivers]]
name = "demo driver"
version = "1.0-1"
release = "1 2"
source = ""
summary = "Demo kernel module"
"""
    found = problems(tmp_path, text)
    keys = [line.split(": ")[1] for line in found]
    assert sorted(keys) == sorted(
        [
            "pack.lable",
            "pack.text",
            "pack.uuid",
            "pack.version",
            "pack.after_apply[0]",
            "target.module_dir",
            "drivers[0].name",
            "drivers[0].version",
            "drivers[0].release",
            "drivers[0].source",
        ]
    )
    assert all(line.startswith("pack.toml: ") and "\n" not in line for line in found)


def test_problems_in_two_drivers_name_their_index(tmp_path: Path) -> None:
    second = '\n[[drivers]]\nname = "other"\nversion = "2-0"\nsource = "other.tar.gz"\nsummary = "Other"\n'
    text = edit(VALID, 'version = "1.0"\n', 'version = "1-0"\n') + second
    keys = [line.split(": ")[1] for line in problems(tmp_path, text)]
    assert keys == ["drivers[0].version", "drivers[1].version"]


def test_file_is_named_relative_to_the_current_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "packs" / "demo"
    folder.mkdir(parents=True)
    (folder / "pack.toml").write_text(edit(VALID, 'version = "1.0"\n', 'version = "1-0"\n'))
    with pytest.raises(PackError) as caught:
        load_pack(folder)
    assert caught.value.problems[0].startswith("packs/demo/pack.toml: drivers[0].version: ")


# SOURCE_DATE_EPOCH


def test_source_date_epoch_is_the_newest_changelog_date(tmp_path: Path) -> None:
    text = VALID + (
        "changelog = [\n"
        '  { date = "2024-03-05", author = "A <a@example.com>", text = "Newest, listed first" },\n'
        '  { date = "2023-12-31", author = "A <a@example.com>", text = "Older" },\n'
        "]\n"
        '\n[[drivers]]\nname = "other"\nversion = "2.0"\nsource = "other.tar.gz"\nsummary = "Other"\n'
        'changelog = [{ date = "2024-01-01", author = "B <b@example.com>", text = "x" }]\n'
    )
    pack = load(tmp_path, text).pack
    epoch = pack.source_date_epoch()
    assert epoch == 1709596800
    assert dt.datetime.fromtimestamp(epoch, dt.UTC) == dt.datetime(2024, 3, 5, tzinfo=dt.UTC)


def test_source_date_epoch_without_changelog(tmp_path: Path) -> None:
    assert load(tmp_path, VALID).pack.source_date_epoch() == 946684800  # 2000-01-01 UTC


def test_models_are_frozen(tmp_path: Path) -> None:
    pack: Pack = load(tmp_path, VALID).pack
    with pytest.raises(ValueError, match="frozen"):
        pack.pack.label = "other"  # type: ignore[misc]


# containment: the shape of every value that becomes a path, a file name, a spec line or a shell word
# (docs/pack-values.md)


@pytest.mark.parametrize(
    ("old", "new", "key", "what"),
    [
        ('name = "demo"', f'name = "{"d" * 65}"', "drivers[0].name", "package name"),
        ('version = "1.0"\n', f'version = "{"1" * 65}"\n', "drivers[0].version", "version"),
        ('label = "demo"', f'label = "{"l" * 65}"', "pack.label", "label"),
        ('version = "1.0.0"', f'version = "{"1" * 65}"', "pack.version", "version"),
    ],
)
def test_names_longer_than_64_characters_are_refused(tmp_path: Path, old: str, new: str, key: str, what: str) -> None:
    value = new.split('"')[1]
    assert only_problem(tmp_path, edit(VALID, old, new)) == (
        f"pack.toml: {key}: {value!r} is too long for a {what}: "
        "use at most 64 characters (it becomes part of file names)"
    )


def test_names_of_64_characters_are_fine(tmp_path: Path) -> None:
    text = edit(edit(VALID, 'name = "demo"', f'name = "{"d" * 64}"'), 'label = "demo"', f'label = "{"l" * 64}"')
    assert load(tmp_path, text).label == "l" * 64


@pytest.mark.parametrize("bad", ["-r", ".", "..", "~1", "k" * 65])
def test_kernel_release_starts_with_a_letter_or_digit(tmp_path: Path, bad: str) -> None:
    assert only_problem(tmp_path, VALID + f'\n[target]\nkernel = "{bad}"\n').startswith("pack.toml: target.kernel: ")


PATH_KEYS = [
    ('source = "demo-1.0.tar.gz"', "source = {}", "drivers[0].source"),
    ('source = "demo-1.0.tar.gz"', 'source = "demo-1.0.tar.gz"\npatches = [{}]', "drivers[0].patches[0]"),
    ('source = "demo-1.0.tar.gz"', 'source = "demo-1.0.tar.gz"\nspec = {}', "drivers[0].spec"),
    ("", '\n[drivers.data]\nversion = "1"\nfolder = {}\n', "drivers[0].data.folder"),
    ("", "\n[target]\nbuild_dir = {}\n", "target.build_dir"),
    ("", "\n[target]\nkernel_devel = {}\n", "target.kernel_devel"),
    ("", "\n[[rpms]]\npath = {}\n", "rpms[0].path"),
]


def with_path(old: str, new: str, toml_value: str) -> str:
    return edit(VALID, old, new.format(toml_value)) if old else VALID + new.format(toml_value)


@pytest.mark.parametrize(("old", "new", "key"), PATH_KEYS, ids=[k for _, _, k in PATH_KEYS])
@pytest.mark.parametrize(
    ("toml_value", "message"),
    [
        ('"a\\nb.tar.gz"', "'a\\nb.tar.gz' is not a usable file path (it holds a line break or a control character)"),
        ('"a\\u0000b"', "'a\\x00b' is not a usable file path (it holds a line break or a control character)"),
        (f'"x/{"n" * 256}/y"', f"{('x/' + 'n' * 256)[:120]!r}... (260 characters) has a name longer than Linux allows"),
        (f'"{"a/" * 2049}"', "the path is longer than Linux allows (4096 bytes)"),
    ],
    ids=["newline", "nul", "long-name", "long-path"],
)
def test_path_keys_refuse_what_no_path_can_be(
    tmp_path: Path, old: str, new: str, key: str, toml_value: str, message: str
) -> None:
    problem = only_problem(tmp_path, with_path(old, new, toml_value))
    assert problem.startswith(f"pack.toml: {key}: {message}"), problem


@pytest.mark.parametrize(("old", "new", "key"), PATH_KEYS, ids=[k for _, _, k in PATH_KEYS])
@pytest.mark.parametrize("value", ["../../elsewhere/x", "/abs/x", "~/x", "a b/it's $(x) %{y}.tar.gz", "é/ü"])
def test_path_keys_may_point_anywhere(tmp_path: Path, old: str, new: str, key: str, value: str) -> None:
    # Reading from anywhere the user names is fine: only what driverpack writes is held inside build/ and dist/.
    load(tmp_path, with_path(old, new, json.dumps(value, ensure_ascii=False)))


@pytest.mark.parametrize("key", ["summary", "license"])
def test_data_text_is_one_line(tmp_path: Path, key: str) -> None:
    text = VALID + f'\n[drivers.data]\nversion = "1"\n{key} = "x\\n%install\\nrm -rf ~"\n'
    assert only_problem(tmp_path, text).startswith(f"pack.toml: drivers[0].data.{key}: must be one line")


def test_multi_line_text_refuses_control_characters(tmp_path: Path) -> None:
    text = VALID + 'description = "a\\u0000b"\n'
    text += 'changelog = [{ date = 2024-01-01, author = "A", text = "x\\u001b[31m" }]\n'
    assert problems(tmp_path, text) == [
        "pack.toml: drivers[0].description: contains control characters; remove them",
        "pack.toml: drivers[0].changelog[0].text: contains control characters; remove them",
    ]


def test_multi_line_text_takes_windows_line_ends(tmp_path: Path) -> None:
    driver = load(tmp_path, VALID + 'description = "one\\r\\ntwo"\n').pack.drivers[0]
    assert driver.description == "one\ntwo"


@pytest.mark.parametrize(
    ("source", "patches", "source_name", "patch_names"),
    [
        ("demo-1.0.tar.gz", ["fix.patch"], "demo-1.0.tar.gz", ("fix.patch",)),
        ("../up/Demo_1.0+x~y.tar.xz", ["/abs/a.diff"], "Demo_1.0+x~y.tar.xz", ("a.diff",)),
        (
            "~/dl/demo (1).tar.bz2",
            ["it's.patch", "$(x).diff"],
            "demo-1.0.tar.bz2",
            ("demo-1.0-patch0.patch", "demo-1.0-patch1.patch"),
        ),
        ("x/.hidden.tar.gz", ["-p0.patch"], "demo-1.0.tar.gz", ("demo-1.0-patch0.patch",)),
        ("~", ["%{x}.patch"], "demo-1.0.tar.gz", ("demo-1.0-patch0.patch",)),
        (f"{'s' * 129}.tar", [f"{'p' * 200}.patch"], "demo-1.0.tar", ("demo-1.0-patch0.patch",)),
    ],
)
def test_sources_keep_safe_names_and_get_derived_ones_otherwise(
    tmp_path: Path, source: str, patches: list[str], source_name: str, patch_names: tuple[str, ...]
) -> None:
    text = edit(VALID, 'source = "demo-1.0.tar.gz"', f"source = {json.dumps(source)}\npatches = {json.dumps(patches)}")
    driver = load(tmp_path, text).pack.drivers[0]
    assert (driver.source_name(), driver.patch_names()) == (source_name, patch_names)


def test_two_files_with_one_name_in_sources_are_refused(tmp_path: Path) -> None:
    text = edit(
        VALID, 'source = "demo-1.0.tar.gz"', 'source = "demo-1.0.tar.gz"\npatches = ["a/fix.patch", "b/fix.patch"]'
    )
    assert only_problem(tmp_path, text) == (
        "pack.toml: drivers[0].patches[1]: its file name in rpmbuild's SOURCES, 'fix.patch', is also that of "
        "drivers[0].patches[0]; rename one of the two files"
    )


def test_one_file_used_twice_is_fine(tmp_path: Path) -> None:
    second = '\n[[drivers]]\nname = "other"\nversion = "1"\nsource = "demo-1.0.tar.gz"\nsummary = "Other"\n'
    assert len(load(tmp_path, VALID + second).pack.drivers) == 2


def test_rpms_path_refuses_any_depth(tmp_path: Path) -> None:
    assert only_problem(tmp_path, VALID + '\n[[rpms]]\npath = "/**/*.rpm"\n') == (
        "pack.toml: rpms[0].path: '/**/*.rpm': '**' (any depth) is not supported; name the folder holding the RPMs"
    )


def test_not_utf8_in_a_file_too_broken_to_parse_names_the_key_by_its_line(tmp_path: Path) -> None:
    text = VALID.encode() + b'\n[drivers.data]\nversion = "1"\nfolder = "x\xff\n"\n'
    (tmp_path / "pack.toml").write_bytes(text)
    with pytest.raises(PackError) as caught:
        load_pack(tmp_path)
    assert caught.value.problems == ["pack.toml: drivers[0].data.folder (line 15): not UTF-8 text (invalid start byte)"]


@pytest.mark.parametrize("key", ["version", "release"])
def test_versions_with_two_dots_in_a_row_are_refused(tmp_path: Path, key: str) -> None:
    text = edit(VALID, 'version = "1.0"\n', 'version = "1.0"\nrelease = "1"\n')
    text = edit(text, f'{key} = "{"1.0" if key == "version" else "1"}"\n', f'{key} = "1..0"\n')
    assert only_problem(tmp_path, text).startswith(
        f"pack.toml: drivers[0].{key}: '1..0' holds '..', which rpm does not allow in a {key}"
    )


@pytest.mark.parametrize("good", ["product-version = 8.2.1", "a >= 1:2.0-3, b", "xenserver-release", "/usr/bin/x"])
def test_base_requires_takes_rpm_requirements(tmp_path: Path, good: str) -> None:
    text = edit(VALID, 'version = "1.0.0"\n', f'version = "1.0.0"\nbase_requires = "{good}"\n')
    assert load(tmp_path, text).pack.pack.base_requires == good


@pytest.mark.parametrize("bad", ["....", "(a or b)", "a >=", "-a", "a = = 1"])
def test_base_requires_refuses_what_rpm_cannot_read(tmp_path: Path, bad: str) -> None:
    text = edit(VALID, 'version = "1.0.0"\n', f'version = "1.0.0"\nbase_requires = "{bad}"\n')
    assert only_problem(tmp_path, text).startswith(f"pack.toml: pack.base_requires: {bad!r} is not an rpm requirement")
