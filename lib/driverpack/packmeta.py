"""The pack metadata Citrix's build-update writes: update.xml and the update-/control- RPM specs.

Pure text rendering, no processes. docs/reference-pack.md compares the output field by field
with two real build-update packs.

Pack text reaches three places and is carried literally into each:
- update.xml: XML-escaped; '%' opening a line is written as '&#37;' (the same character to an
  XML parser) because rpm would read such a line of the %posttrans heredoc as a spec directive;
- the %posttrans heredoc that writes update.xml on the host: a quoted heredoc (the shell expands
  nothing), '%' doubled (rpm expands nothing), so the applied file equals update.xml byte for byte;
- the update RPM's %description: '%' doubled; rpm drops lines starting with '#' and reads lines
  starting with '%' as directives even after escaping, so those lines get a zero-width space first.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import jinja2

from driverpack.errors import PackError
from driverpack.spectext import escape, escape_block

AFTER_APPLY_VALUES = ("restartHost", "restartXAPI", "restartPV", "restartHVM")

# build-update's spec templates hard-code release 1 for both generated packages.
RELEASE = "1"

CHANGELOG_DATE_FORMAT = "%a %b %d %Y"

_LABEL = re.compile(r"[A-Za-z0-9_-]+")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_RPM_FIELD = re.compile(r"[A-Za-z0-9._+~]+")
_RPM_NAME = re.compile(r"[A-Za-z0-9._+-]+")
# Characters XML 1.0 cannot carry at all, not even as character references.
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_LINE_START_PERCENT = re.compile(r"(?<=\n)([ \t]*)%")

_TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    autoescape=False,
)


@dataclass(frozen=True)
class PayloadRpm:
    """One payload RPM as the update RPM requires it (read from the built RPM's header)."""

    name: str
    epoch: int | None
    version: str
    release: str
    installed_size: int


@dataclass(frozen=True)
class UpdateMeta:
    """Everything update.xml and the update-/control- specs are made of."""

    label: str
    text: str
    uuid: str
    version: str
    build: str  # PACK_BUILD: build-update has no place for it, neither in update.xml nor the RPMs
    vendor: str
    after_apply: tuple[str, ...]  # restartHost|restartXAPI|restartPV|restartHVM
    key_name: str  # basename of the public key file, e.g. "RPM-GPG-KEY-driverpack-test"
    base_requires: str | None  # e.g. "product-version = 8.2.1"; -> control-<label> RPM + control attribute
    payload: tuple[PayloadRpm, ...]
    changelog_date: str  # e.g. "Mon Jan 01 2024", from SOURCE_DATE_EPOCH (see changelog_date())


def changelog_date(source_date_epoch: int) -> str:
    """The %changelog date of a moment, in UTC and rpm's format."""
    return time.strftime(CHANGELOG_DATE_FORMAT, time.gmtime(source_date_epoch))


def update_package_name(meta: UpdateMeta) -> str:
    return f"update-{meta.label}"


def control_package_name(meta: UpdateMeta) -> str:
    return f"control-{meta.label}"


def update_rpm_name(meta: UpdateMeta) -> str:
    return f"{update_package_name(meta)}-{meta.version}-{RELEASE}.noarch.rpm"


def control_rpm_name(meta: UpdateMeta) -> str:
    return f"{control_package_name(meta)}-{meta.version}-{RELEASE}.noarch.rpm"


def has_control(meta: UpdateMeta) -> bool:
    return meta.base_requires is not None


def installation_size(meta: UpdateMeta) -> int:
    """update.xml's installation-size: what the payload takes once installed, in bytes."""
    return sum(rpm.installed_size for rpm in meta.payload)


def payload_requirement(rpm: PayloadRpm) -> str:
    """`name >= [epoch:]version-release`, as build-update writes it for every payload RPM."""
    epoch = "" if rpm.epoch is None else f"{rpm.epoch}:"
    return f"{rpm.name} >= {epoch}{rpm.version}-{rpm.release}"


def check(meta: UpdateMeta) -> list[str]:
    """Every reason the metadata cannot be rendered safely, each naming its field."""
    problems: list[str] = []
    if not _LABEL.fullmatch(meta.label):
        problems.append(f"label {meta.label!r}: use only letters, digits, '_' and '-'")
    if not _UUID.fullmatch(meta.uuid):
        problems.append(f"uuid {meta.uuid!r}: expected a lowercase canonical uuid")
    if not _RPM_FIELD.fullmatch(meta.version):
        problems.append(f"version {meta.version!r}: expected an RPM version (no '-', spaces or '%')")
    if not meta.text.strip():
        problems.append("text: must not be empty (xapi rejects an empty name-description)")
    if _XML_INVALID.search(meta.text):
        problems.append("text: contains a control character that XML cannot carry")
    for field, value in (
        ("vendor", meta.vendor),
        ("key_name", meta.key_name),
        ("base_requires", meta.base_requires or ""),
    ):
        if any(c in value for c in "\r\n") or _XML_INVALID.search(value):
            problems.append(f"{field} {value!r}: must be one line without control characters")
    if not meta.vendor.strip():
        problems.append("vendor: must not be empty")
    if not meta.key_name or "/" in meta.key_name or meta.key_name.strip() != meta.key_name:
        problems.append(f"key_name {meta.key_name!r}: expected the base name of the public key file")
    if meta.base_requires is not None and not meta.base_requires.strip():
        problems.append("base_requires: must not be empty when set")
    for value in meta.after_apply:
        if value not in AFTER_APPLY_VALUES:
            problems.append(f"after_apply {value!r}: expected one of {', '.join(AFTER_APPLY_VALUES)}")
    if len(set(meta.after_apply)) != len(meta.after_apply):
        problems.append("after_apply: lists a value twice")
    if not meta.payload:
        problems.append("payload: the update requires at least one RPM")
    for i, rpm in enumerate(meta.payload):
        if not _RPM_NAME.fullmatch(rpm.name):
            problems.append(f"payload[{i}].name {rpm.name!r}: not an RPM name")
        for field, value in (("version", rpm.version), ("release", rpm.release)):
            if not _RPM_FIELD.fullmatch(value):
                problems.append(f"payload[{i}].{field} {value!r}: not an RPM {field}")
        if rpm.epoch is not None and rpm.epoch < 0:
            problems.append(f"payload[{i}].epoch {rpm.epoch}: must not be negative")
        if rpm.installed_size < 0:
            problems.append(f"payload[{i}].installed_size {rpm.installed_size}: must not be negative")
    if not _is_changelog_date(meta.changelog_date):
        problems.append(
            f"changelog_date {meta.changelog_date!r}: expected rpm's format with the right weekday,"
            " e.g. 'Mon Jan 01 2024'"
        )
    return problems


def render_update_xml(meta: UpdateMeta) -> str:
    """update.xml formatted the way build-update writes it.

    build-update uses Python 2's minidom `writexml(indent="  ")`: no XML declaration, sorted
    attributes, every line indented by two spaces (the root too), a closing newline.
    """
    _require_valid(meta)
    attributes = {
        "name-label": meta.label,
        "uuid": meta.uuid,
        "version": meta.version,
        "installation-size": str(installation_size(meta)),
        "key": meta.key_name,
    }
    if meta.after_apply:
        attributes["after-apply-guidance"] = ",".join(meta.after_apply)
    if has_control(meta):
        attributes["control"] = control_package_name(meta)
    rendered = " ".join(f'{name}="{_xml_attribute(value)}"' for name, value in sorted(attributes.items()))
    return f"  <update {rendered}>\n  <name-description>{_xml_text(meta.text)}</name-description>\n  </update>\n"


def render_update_spec(meta: UpdateMeta) -> str:
    """The spec of update-<label>: requires the payload, records the update as applied on the host."""
    update_xml = render_update_xml(meta)
    return _TEMPLATES.get_template("update.spec.j2").render(
        name=update_package_name(meta),
        version=escape(meta.version),
        release=RELEASE,
        summary=escape(meta.label),
        vendor=escape(meta.vendor),
        uuid=meta.uuid,
        requires=[escape(payload_requirement(rpm)) for rpm in meta.payload],
        description=_description(meta.text),
        update_xml=escape(update_xml),
        heredoc_end=_heredoc_delimiter(update_xml),
        needs_reboot="restartHost" in meta.after_apply,
        changelog_date=meta.changelog_date,
        changelog_text=escape(f"{update_package_name(meta)} {meta.version}"),
    )


def render_control_spec(meta: UpdateMeta) -> str:
    """The spec of control-<label>: carries the base requirement (only when base_requires is set)."""
    _require_valid(meta)
    if meta.base_requires is None:
        raise ValueError("render_control_spec needs base_requires; check has_control() first")
    return _TEMPLATES.get_template("control.spec.j2").render(
        name=control_package_name(meta),
        version=escape(meta.version),
        release=RELEASE,
        summary=escape(f"Control package for {meta.label}"),
        vendor=escape(meta.vendor),
        requires=escape(meta.base_requires),
        changelog_date=meta.changelog_date,
        changelog_text=escape(f"{control_package_name(meta)} {meta.version}"),
    )


def _require_valid(meta: UpdateMeta) -> None:
    problems = check(meta)
    if problems:
        raise PackError([f"pack metadata: {p}" for p in problems], "fix these values in pack.toml")


def _is_changelog_date(value: str) -> bool:
    try:
        parsed = datetime.strptime(value, CHANGELOG_DATE_FORMAT)
    except ValueError:
        return False
    return parsed.strftime(CHANGELOG_DATE_FORMAT) == value


def _xml_escape(value: str) -> str:
    # Quotes are escaped in text too, as minidom did in the reference packs.
    return (
        value.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("\r", "&#13;")
    )


def _xml_attribute(value: str) -> str:
    return _xml_escape(value).replace("\n", "&#10;").replace("\t", "&#9;")


def _xml_text(value: str) -> str:
    return _LINE_START_PERCENT.sub(r"\1&#37;", _xml_escape(value))


def _description(text: str) -> str:
    return escape_block(text)


def _heredoc_delimiter(body: str) -> str:
    """EOF, as build-update uses, unless the text has a line that would end the heredoc early."""
    lines = set(body.split("\n"))
    delimiter, n = "EOF", 0
    while delimiter in lines:
        n += 1
        delimiter = f"EOF_{n}"
    return delimiter
