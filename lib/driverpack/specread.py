"""Read an existing kernel-module spec (a vendor's or a DDK example) without rpm: the facts a pack carries over.

A small pure parser: preamble tags, simple `%define`/`%global` macros, the %changelog entries, and
which sections do more than the spec driverpack generates would (those make a pack keep the spec).
Conditionals are not evaluated: both branches are read and the first value of a tag wins.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

# Sections that start a new part of a spec (rpm's build/parseSpec.c list).
SECTIONS = frozenset(
    {
        "package",
        "description",
        "prep",
        "generate_buildrequires",
        "conf",
        "build",
        "install",
        "check",
        "clean",
        "files",
        "changelog",
        "pre",
        "post",
        "preun",
        "postun",
        "pretrans",
        "posttrans",
        "preuntrans",
        "postuntrans",
        "verifyscript",
        "triggerprein",
        "triggerin",
        "triggerun",
        "triggerpostun",
        "filetriggerin",
        "filetriggerun",
        "filetriggerpostun",
        "transfiletriggerin",
        "transfiletriggerun",
        "transfiletriggerpostun",
        "sepolicy",
        "patchlist",
        "sourcelist",
    }
)
_SECTION = re.compile(r"^%(" + "|".join(sorted(SECTIONS, key=len, reverse=True)) + r")(?![A-Za-z0-9_])(.*)$")
_TAG = re.compile(r"^([A-Za-z][A-Za-z0-9]*)(\([^)]*\))?\s*:\s*(.*)$")
_DEFINE = re.compile(r"^%(define|global)\s+([A-Za-z_]\w*)(\([^)]*\))?\s*(.*)$", re.S)
_CONDITIONAL = re.compile(r"^%(if|ifarch|ifnarch|ifos|ifnos|elif|elifarch|elifos|else|endif)\b")
_CHANGELOG_HEAD = re.compile(r"^\*\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s*(.*)$")
_MONTHS = {
    month: number
    for number, month in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), start=1
    )
}
_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MAX_DEPTH = 16

# Lines the generated spec does itself, per section: a spec whose sections hold only these
# loses nothing when the pack's generated spec replaces it.
_KBUILD_MAKE = re.compile(r"^(?:make|%\{?__make\}?|%\{?make_build\}?)\b.*\b(?:M|SUBDIRS)=")
_STANDARD_LINES: dict[str, tuple[re.Pattern[str], ...]] = {
    "prep": (
        re.compile(r"^%\{?(?:setup|autosetup)\b"),
        re.compile(r"^%\{?patch(?:\d+)?\b.*-p\s*1\b"),
    ),
    "build": (_KBUILD_MAKE, re.compile(r"^cd\s+\S+$")),
    "install": (
        re.compile(r"^(?:make|%\{?__make\}?|%\{?make_build\}?)\b.*\bmodules_install\b"),
        re.compile(r"^(?:rm|%\{?__rm\}?)\s+-r?f\s+\S*(?:buildroot|RPM_BUILD_ROOT)\S*\s*$"),
        re.compile(r"^(?:rm|%\{?__rm\}?|find)\b.*\bmodules\.\S*"),
        re.compile(r"^find\b.*\.ko\b.*\b(?:chmod|strip)\b"),
        re.compile(r"^(?:install|%\{?__install\}?|mkdir|%\{?__mkdir_p\}?)\s+(?:-d|-p)\b"),
        re.compile(r"^(?:install|%\{?__install\}?)\b.*\.ko\b"),
        re.compile(r"^cd\s+\S+$"),
    ),
    "files": (
        re.compile(r"^%defattr\b"),
        re.compile(r"^%doc\s*$"),
        re.compile(r"^(?:%dir\s+|%attr\([^)]*\)\s*)?/lib/modules/"),
    ),
    "post": (re.compile(r"depmod\b"), re.compile(r"^%\{?\??regenerate_initrd_\w+\}?$")),
    "postun": (re.compile(r"depmod\b"), re.compile(r"^%\{?\??regenerate_initrd_\w+\}?$")),
    "posttrans": (re.compile(r"^%\{?\??regenerate_initrd_\w+\}?$"), re.compile(r"dracut\b")),
    "clean": (re.compile(r"^(?:rm|%\{?__rm\}?)\s+-r?f\s+\S*(?:buildroot|RPM_BUILD_ROOT)\S*\s*$"),),
}
# Preamble tags a pack does not carry, but that change what the package does on a host.
_DEPENDENCY_TAGS = ("requires", "provides", "conflicts", "obsoletes", "epoch", "supplements", "recommends")
_OPTIONAL_MACROS = re.compile(r"^(?:%\{\?[^}]*\}\s*)+")
_GENERATED_REQUIRES = re.compile(r"^(?:kernel-uname-r\b|/s?bin/depmod$|/usr/sbin/depmod$)")


@dataclass(frozen=True)
class ChangelogItem:
    """One %changelog entry as rpm would read it."""

    date: dt.date
    author: str
    text: str


@dataclass(frozen=True)
class SpecFacts:
    """What a spec says that a pack file can carry, and what it cannot."""

    name: str | None = None
    version: str | None = None
    release: str | None = None
    summary: str | None = None
    license: str | None = None
    vendor: str | None = None
    source0: str | None = None
    patches: tuple[str, ...] = ()
    """PatchN values in N order."""
    description: str | None = None
    changelog: tuple[ChangelogItem, ...] = ()
    changelog_problems: tuple[str, ...] = ()
    """Entries rpm would refuse (left out), and corrections made to carried ones."""
    custom_sections: tuple[str, ...] = ()
    """`%section: first line the generated spec does not do`, for each such section."""
    not_carried: tuple[str, ...] = ()
    """Preamble lines with no pack key (Provides:, Requires: ...), as written."""
    unexpanded: Mapping[str, str] = field(default_factory=dict)
    """Carried tags whose value still holds a macro this parser cannot expand: tag -> raw value."""


def parse_spec(text: str) -> SpecFacts:
    """The facts of one spec file's text."""
    macros: dict[str, str | None] = {}
    tags: dict[str, str] = {}
    raw_tags: dict[str, str] = {}
    patches: dict[int, str] = {}
    not_carried: list[str] = []
    sections: list[tuple[str, str, list[str]]] = []  # (name, arguments, body lines)
    current: list[str] | None = None
    depth = 0  # of %if blocks around the line

    for line in _logical_lines(text):
        stripped = line.strip()
        conditional = _CONDITIONAL.match(stripped)
        if conditional:
            depth += {"endif": -1}.get(conditional.group(1), 1 if conditional.group(1).startswith("if") else 0)
            depth = max(depth, 0)
        section = _SECTION.match(stripped)
        if section:
            current = []
            sections.append((section.group(1), section.group(2).strip(), current))
            continue
        define = _DEFINE.match(stripped)
        if define:
            name, params, body = define.group(2), define.group(3), define.group(4)
            # Which branch of an %if holds depends on the build (a fallback for a macro the build
            # defines, typically): such a macro's value is unknown here, as is a parametric one's.
            if name not in macros or depth:
                macros[name] = None if params is not None or depth else body.strip()
            continue
        if current is not None:
            current.append(line)
            continue
        tag = _TAG.match(stripped)
        if not tag or _CONDITIONAL.match(stripped):
            continue
        key, value = tag.group(1).lower(), tag.group(3).strip()
        if key in ("name", "version", "release") and key not in tags and key not in macros:
            # rpm defines %{name}, %{version} and %{release} from these tags once it has read them.
            expanded, complete = expand(value, macros)
            macros[key] = expanded.strip() if complete else None
        if (key.startswith("patch") and key[5:].isdigit()) or key == "patch":
            number = int(key[5:] or 0)
            patches.setdefault(number, value)
        elif key in ("source", "source0"):
            tags.setdefault("source0", value)
            raw_tags.setdefault("source0", value)
        elif key in _DEPENDENCY_TAGS:
            expanded, complete = expand(value, macros)
            if key != "requires" or not _GENERATED_REQUIRES.match(expanded):
                not_carried.append(f"{tag.group(1)}{tag.group(2) or ''}: {expanded if complete else value}")
        elif key not in tags:
            tags[key] = value
            raw_tags[key] = value

    values: dict[str, str | None] = {}
    unexpanded: dict[str, str] = {}
    for key in ("name", "version", "release", "summary", "license", "vendor", "source0"):
        if key not in tags:
            values[key] = None
            continue
        expanded, complete = expand(tags[key], macros)
        values[key] = expanded.strip() if complete else None
        if not complete:
            unexpanded[key] = raw_tags[key]
    patch_values = []
    for number in sorted(patches):
        expanded, complete = expand(patches[number], macros)
        if complete:
            patch_values.append(expanded.strip())
        else:
            unexpanded[f"patch{number}"] = patches[number]

    description = None
    changelog: tuple[ChangelogItem, ...] = ()
    changelog_problems: tuple[str, ...] = ()
    custom: list[str] = []
    for name, arguments, body in sections:
        if name == "description" and not arguments and description is None:
            expanded, complete = expand("\n".join(body).strip(), macros)
            description = expanded if complete else None
            if not complete:
                unexpanded["description"] = "\n".join(body).strip()
        elif name == "changelog":
            changelog, changelog_problems = parse_changelog(body, macros)
        elif name == "description":
            continue  # a subpackage's: reported with its %package
        else:
            reason = _custom_reason(name, arguments, body)
            if reason:
                custom.append(f"%{name}{' ' + arguments if arguments else ''}: {reason}")

    return SpecFacts(
        name=values["name"],
        version=values["version"],
        release=values["release"],
        summary=values["summary"],
        license=values["license"],
        vendor=values["vendor"],
        source0=values["source0"],
        patches=tuple(patch_values),
        description=description,
        changelog=changelog,
        changelog_problems=changelog_problems,
        custom_sections=tuple(custom),
        not_carried=tuple(not_carried),
        unexpanded=unexpanded,
    )


def _logical_lines(text: str) -> list[str]:
    """Lines, with a `%define`'s backslash-continued body joined into one."""
    lines: list[str] = []
    pending = ""
    for line in text.replace("\r\n", "\n").split("\n"):
        if pending:
            pending = pending[:-1] + "\n" + line
            if not pending.endswith("\\"):
                lines.append(pending)
                pending = ""
            continue
        if _DEFINE.match(line.strip()) and line.endswith("\\"):
            pending = line
            continue
        lines.append(line)
    if pending:
        lines.append(pending)
    return lines


def expand(text: str, macros: Mapping[str, str | None], depth: int = 0) -> tuple[str, bool]:
    """Expand simple macros as rpm would; (text, False) when some macro cannot be expanded here.

    `%{?x}` is empty when x is undefined (as `%{?dist}` is outside a distribution's build),
    `%{?x:text}` / `%{!?x:text}` test it; `%(shell)`, `%{lua:...}`, parametric and unknown
    macros are left as written and make the result incomplete.
    """
    if depth > _MAX_DEPTH:
        return text, False
    out: list[str] = []
    complete = True
    i = 0
    while i < len(text):
        char = text[i]
        if char != "%" or i + 1 >= len(text):
            out.append(char)
            i += 1
            continue
        following = text[i + 1]
        if following == "%":
            out.append("%")
            i += 2
            continue
        if following == "{":
            end = _closing(text, i + 1, "{", "}")
            if end < 0:
                return text, False
            value, ok = _expand_braced(text[i + 2 : end], macros, depth)
            out.append(value)
            complete = complete and ok
            i = end + 1
            continue
        if following == "(":
            end = _closing(text, i + 1, "(", ")")
            out.append(text[i : (end + 1 if end >= 0 else len(text))])
            complete = False
            i = end + 1 if end >= 0 else len(text)
            continue
        match = re.match(r"[A-Za-z_]\w*", text[i + 1 :])
        if not match:
            out.append(char)
            i += 1
            continue
        name = match.group(0)
        body = macros.get(name)
        if body is None:
            out.append("%" + name)
            complete = False
        else:
            value, ok = expand(body, macros, depth + 1)
            out.append(value)
            complete = complete and ok
        i += 1 + len(name)
    return "".join(out), complete


def _expand_braced(inner: str, macros: Mapping[str, str | None], depth: int) -> tuple[str, bool]:
    if inner.startswith("expand:"):
        return expand(inner[len("expand:") :], macros, depth + 1)
    test = re.match(r"^(!?)\?([A-Za-z_]\w*)(?::(.*))?$", inner, re.S)
    if test:
        negate, name, then = test.group(1) == "!", test.group(2), test.group(3)
        defined = name in macros
        if macros.get(name, "") is None:
            return "%{" + inner + "}", False
        if then is None:
            if negate or not defined:
                return "", True
            return expand(macros[name] or "", macros, depth + 1)
        if defined != negate:
            return expand(then, macros, depth + 1)
        return "", True
    name_match = re.match(r"^[A-Za-z_]\w*$", inner)
    if name_match and macros.get(inner) is not None:
        return expand(macros[inner] or "", macros, depth + 1)
    return "%{" + inner + "}", False


def _closing(text: str, start: int, opening: str, closing: str) -> int:
    """Index of the bracket closing the one at `start`, or -1."""
    level = 0
    for index in range(start, len(text)):
        if text[index] == opening:
            level += 1
        elif text[index] == closing:
            level -= 1
            if level == 0:
                return index
    return -1


def parse_changelog(
    lines: list[str], macros: Mapping[str, str | None]
) -> tuple[tuple[ChangelogItem, ...], tuple[str, ...]]:
    """Entries in order; problems name the entries rpm would refuse (left out) and what was corrected."""
    entries: list[ChangelogItem] = []
    problems: list[str] = []
    blocks: list[tuple[str, list[str]]] = []
    for line in lines:
        if line.startswith("*"):
            blocks.append((line.strip(), []))
        elif blocks:
            blocks[-1][1].append(line)
        elif line.strip() and not _CONDITIONAL.match(line.strip()):
            problems.append(f"%changelog: text before the first '*' entry line, left out: {line.strip()[:60]!r}")
    for head, body in blocks:
        entry, problem = _changelog_entry(head, body, macros)
        if problem:
            problems.append(f"%changelog entry '{head[:70]}': {problem}")
        if entry is not None:
            entries.append(entry)
    return tuple(entries), tuple(problems)


def _changelog_entry(head: str, body: list[str], macros: Mapping[str, str | None]) -> tuple[ChangelogItem | None, str]:
    match = _CHANGELOG_HEAD.match(head)
    if not match:
        return None, "not '* Day Mon DD YYYY Name <email>'; rpm refuses it, left out"
    weekday, month, day, year, rest = match.groups()
    try:
        date = dt.date(int(year), _MONTHS[month], int(day))
    except (KeyError, ValueError):
        return None, f"'{weekday} {month} {day} {year}' is not a date; rpm refuses it, left out"
    author = _author(expand(rest, macros)[0])
    if not author:
        return None, "no author; rpm refuses it, left out"
    lines = [expand(line.strip(), macros)[0] for line in body if line.strip()]
    if not lines:
        return None, "no text; left out"
    lines[0] = lines[0].removeprefix("-").strip() or lines[0]
    problem = ""
    if weekday != _WEEKDAYS[date.weekday()]:
        problem = (
            f"{date.isoformat()} is a {_WEEKDAYS[date.weekday()]}, not a {weekday} (rpm warns 'bogus date'); "
            "carried with the right weekday"
        )
    return ChangelogItem(date, author, "\n".join(lines)), problem


def _author(rest: str) -> str:
    """The name and email of an entry line, without the version-release that often follows."""
    rest = rest.strip()
    if ">" in rest:
        return rest[: rest.rindex(">") + 1].strip()
    return rest.split(" - ", 1)[0].strip()


def _custom_reason(name: str, arguments: str, body: list[str]) -> str:
    """Why a section does more than the generated spec would ("" when it does not)."""
    # Optional macros (%{?_cov_wrap}) are empty outside the build system that defines them.
    lines = [_OPTIONAL_MACROS.sub("", line.strip(), count=1).strip() for line in body]
    lines = [line for line in lines if line and not line.startswith("#") and not _CONDITIONAL.match(line)]
    if name == "package":
        return "a subpackage the pack file cannot describe"
    if name == "files" and ("-n" in arguments.split() or (arguments and not arguments.startswith("-"))):
        return "the files of a subpackage"
    if name == "files" and "-f" in arguments.split():
        return "a file list made during the build (-f)"
    if not lines:
        return ""
    allowed = _STANDARD_LINES.get(name)
    if allowed is None:
        return f"runs '{_short(lines[0])}'"
    for line in lines:
        if not any(pattern.search(line) for pattern in allowed):
            return f"'{_short(line)}'"
    return ""


def _short(line: str, width: int = 70) -> str:
    return line if len(line) <= width else line[: width - 3] + "..."
