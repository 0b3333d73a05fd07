"""Which build route a vendor tree asks for, read from what the tarball holds (nothing is extracted or run).

`propose_route(tarball)` gives the [[drivers]] keys a new pack should carry and why: from a dkms.conf
(MAKE, PRE_BUILD, BUILT_MODULE_NAME/LOCATION), a vendor spec's %build, Intel's kcompat-generator.sh,
Broadcom-style Makefile.alt, or a Makefile that asks for KSRC/KVER and runs Kbuild itself. The same
findings explain a failed compile (`route_advice`) and let `inv check` warn when a pack ignores its
tree's dkms.conf (`dkms_disagreements`).
"""

from __future__ import annotations

import functools
import json
import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from driverpack.adapters.tarball import SourceTree, TarballLayout, inspect_tarball, read_tree
from driverpack.models import Driver
from driverpack.routes import KERNEL_BUILD_DIR_NAMES, KERNEL_RELEASE_NAMES

KCOMPAT_GENERATOR = "kcompat-generator.sh"
VENDOR_MAKEFILE = "Makefile.alt"
_MAKEFILES = ("Makefile", "GNUmakefile", "makefile")
_ROUTE_KEYS = ("build", "makefile", "targets", "module_folders", "make_args")
# A Makefile that asks the build host for the kernel, unless one of these is set.
_ASKS_HOST = re.compile(r"uname\s+-r|\b(?:KSRC|KVER|KDIR|KERNELDIR|KERNEL_SRC|BUILD_KERNEL)\b")
_RUNS_KBUILD = re.compile(r"-C\s*\S+.*\b(?:M|SUBDIRS)=")


@dataclass(frozen=True)
class Finding:
    """One thing in the tree that says how it builds, and the pack keys that take that route."""

    marker: str  # the file that says so, relative to the top directory
    keys: Mapping[str, Any]
    reason: str
    decides_route: bool = True  # False for a prepare step that goes with any route


@dataclass(frozen=True)
class RouteProposal:
    """The [[drivers]] keys for a tarball's route, and one line per reason (what was found, what was chosen)."""

    keys: Mapping[str, Any]
    reasons: tuple[str, ...]
    considered: tuple[str, ...] = field(default=())  # the Kbuild folder candidates, when the choice was a guess

    def toml(self) -> str:
        """The keys as lines of a [[drivers]] table (JSON strings and lists are valid TOML)."""
        return "".join(f"{key} = {_toml_value(value)}\n" for key, value in self.keys.items())


def _toml_value(value: Any) -> str:
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(value)


# reading the tree


def _wanted(path: str) -> bool:
    name = PurePosixPath(path).name
    return name == "dkms.conf" or name.endswith(".spec") or name in _MAKEFILES or name == VENDOR_MAKEFILE


def read_markers(tarball: Path) -> SourceTree:
    """The tree's file names and the texts route proposals read (dkms.conf, specs, Makefiles).

    Remembered while the file is unchanged: the preflight and a failed compile read it in one run.
    """
    try:
        info = tarball.stat()
    except OSError:
        return read_tree(tarball, _wanted)
    return _read_markers_cached(tarball, info.st_size, info.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _read_markers_cached(tarball: Path, size: int, mtime_ns: int) -> SourceTree:
    return read_tree(tarball, _wanted)


def _folder_of(path: str) -> str:
    parent = PurePosixPath(path).parent.as_posix()
    return "" if parent == "." else parent


def _shallowest(paths: Sequence[str]) -> list[str]:
    return sorted(paths, key=lambda p: (p.count("/"), p))


# dkms.conf

_DKMS_LINE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)(?:\[(\d+)\])?=(.*)$")


@dataclass(frozen=True)
class DkmsConf:
    path: str
    values: Mapping[str, Mapping[int, str]]  # NAME -> {index: value}; a plain NAME has index 0

    def first(self, name: str) -> str:
        return self.values.get(name, {}).get(0, "")

    def indexed(self, name: str) -> list[str]:
        found = self.values.get(name, {})
        return [found[i] for i in sorted(found)]


def parse_dkms_conf(path: str, text: str) -> DkmsConf:
    """dkms.conf's assignments (a shell file; only NAME=value and NAME[i]=value lines are read)."""
    values: dict[str, dict[int, str]] = {}
    for line in text.replace("\\\n", " ").splitlines():
        match = _DKMS_LINE.match(line)
        if not match:
            continue
        name, index, raw = match.groups()
        try:
            words = shlex.split(raw, comments=True)
        except ValueError:
            continue
        values.setdefault(name, {})[int(index or 0)] = " ".join(words)
    return DkmsConf(path, values)


def dkms_package_name(tarball: Path) -> str:
    """PACKAGE_NAME of the tree's (shallowest) dkms.conf, "" when it has none."""
    tree = read_markers(tarball)
    confs = _shallowest([p for p in tree.texts if PurePosixPath(p).name == "dkms.conf"])
    return parse_dkms_conf(confs[0], tree.texts[confs[0]]).first("PACKAGE_NAME") if confs else ""


def _dkms_word(word: str) -> str | None:
    """A word of a dkms command with dkms's variables as placeholders; None when another variable remains."""
    text = re.sub(
        r"\$\{?dkms_tree\}?/\$\{?(PACKAGE_NAME|MODULE_NAME)\}?/\$\{?(PACKAGE_VERSION|MODULE_VERSION)\}?/build",
        "{source_dir}",
        word,
    )
    text = re.sub(r"\$\{?kernelver\}?", "{kernel}", text)
    text = re.sub(r"\$\{?kernel_source_dir\}?", "{kernel_build_dir}", text)
    text = re.sub(r"\$\(\s*pwd\s*\)|\$\{?PWD\}?", "{source_dir}", text)
    return None if "$" in text or "`" in text else text


def _spec_word(word: str) -> str | None:
    """A word of a vendor spec's %build: the smp flags and rpm's make macro understood, other macros not."""
    if word in ("%{?_smp_mflags}", "%{_smp_mflags}", "%_smp_mflags"):
        return ""
    if word in ("%{__make}", "%__make", "%{make_build}"):
        return "make"
    return None if "%" in word or "$" in word or "`" in word else word


@dataclass(frozen=True)
class _MakeCall:
    folder: str | None  # -C <folder of the tree>, "" for none
    kernel_dir: bool  # -C names the kernel build dir
    module_folder: str | None  # M= / SUBDIRS=
    makefile: str
    variables: tuple[str, ...]
    targets: tuple[str, ...]


def _relative(path: str) -> str | None:
    """A folder of the tree from a placeholder path ({source_dir}/src, src, ./src); None outside it."""
    text = path.removeprefix("{source_dir}").strip("/").removeprefix("./")
    if "{" in text or ".." in text.split("/") or text.startswith("/"):
        return None
    return text.rstrip("/")


def _make_calls(command: str, mapper: Callable[[str], str | None]) -> list[_MakeCall] | str:
    """The make invocations of a shell command line (joined by && or ;), or why they cannot be mapped."""
    calls = []
    for part in re.split(r"&&|;", command):
        try:
            words = shlex.split(part)
        except ValueError:
            return f"cannot read {part.strip()!r}"
        mapped = [mapper(w) for w in words]
        if any(w is None for w in mapped):
            return f"{part.strip()!r} uses variables driverpack cannot map"
        words = [w for w in mapped if w]
        if not words:
            continue
        if PurePosixPath(words[0]).name != "make" or any(c in part for c in "|<>`"):
            return f"{part.strip()!r} is not a plain make command"
        folder, kernel_dir, module_folder, makefile = "", False, None, ""
        variables: list[str] = []
        targets: list[str] = []
        rest = iter(words[1:])
        for word in rest:
            if word == "-C":
                where = next(rest, "")
                kernel_dir = where == "{kernel_build_dir}"
                folder = "" if kernel_dir else (_relative(where) or "")
            elif word == "-f":
                makefile = next(rest, "")
            elif re.fullmatch(r"-j\d*|-s|--no-print-directory", word):
                continue
            elif word.startswith(("M=", "SUBDIRS=")):
                module_folder = _relative(word.split("=", 1)[1])
            elif "=" in word and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", word.split("=", 1)[0]):
                variables.append(word)
            elif word.startswith("-"):
                return f"{part.strip()!r} passes the option {word}"
            else:
                targets.append(word)
        calls.append(_MakeCall(folder, kernel_dir, module_folder, makefile, tuple(variables), tuple(targets)))
    return calls


def _route_of_calls(calls: list[_MakeCall], where: str) -> tuple[dict[str, Any], str] | str:
    """The pack keys for a list of make calls: Kbuild when each names the kernel and a module folder."""
    calls = [c for c in calls if c.targets != ("clean",)]
    if not calls:
        return f"{where} has no make command"
    variables = list(dict.fromkeys(v for c in calls for v in c.variables if not _exported(v)))
    if all(c.kernel_dir and c.module_folder is not None for c in calls):
        keys: dict[str, Any] = {"module_folders": [c.module_folder for c in calls]}
        if variables:
            keys["make_args"] = variables
        return keys, f"{where} runs Kbuild in {', '.join(_shown(c.module_folder or '') for c in calls)}"
    if len(calls) > 1:
        return f"{where} runs several vendor make commands"
    (call,) = calls
    if call.kernel_dir:
        return f"{where} runs Kbuild without M="
    keys = {"build": "vendor", "module_folders": [call.folder]}
    if call.makefile:
        keys["makefile"] = call.makefile
    if call.targets:
        keys["targets"] = list(call.targets)
    if variables:
        keys["make_args"] = variables
    return keys, f"{where} runs the vendor's own make in {_shown(call.folder or '')}"


def _exported(variable: str) -> bool:
    """KVER={kernel} and the like: driverpack exports those already (a Makefile's own assignment still wins)."""
    name, value = variable.split("=", 1)
    names = KERNEL_RELEASE_NAMES + KERNEL_BUILD_DIR_NAMES
    return name in names and value in ("{kernel}", "{kernel_build_dir}")


def _shown(folder: str) -> str:
    return f"{folder}/" if folder else "the top directory"


def _dkms_finding(conf: DkmsConf, layout: TarballLayout, tree: SourceTree) -> list[Finding]:
    found = []
    where = f"{conf.path} MAKE[0]"
    make = conf.first("MAKE")
    keys: dict[str, Any] = {}
    if make:
        calls = _make_calls(make, _dkms_word)
        route = calls if isinstance(calls, str) else _route_of_calls(calls, where)
        if isinstance(route, str):
            reason = f"{route}; kept the Kbuild route"
        else:
            keys, reason = route
    else:
        reason = f"{conf.path} has no MAKE: dkms runs Kbuild in the top directory"
        if any(f.path == "" for f in layout.folders):
            keys = {"module_folders": [""]}
    locations = [loc.strip("/") for loc in conf.indexed("BUILT_MODULE_LOCATION")]
    names = conf.indexed("BUILT_MODULE_NAME")
    if names:
        reason += f"; builds {', '.join(n + '.ko' for n in names)}"
        if "module_folders" not in keys and locations:
            keys["module_folders"] = list(dict.fromkeys(locations))
    found.append(Finding(conf.path, keys, reason))
    pre_build = conf.first("PRE_BUILD")
    if pre_build:
        step = _script_step(pre_build, _folder_of(conf.path), tree, _dkms_word)
        if isinstance(step, str):
            found.append(Finding(conf.path, {}, f"{conf.path} PRE_BUILD {step}; add a prepare step by hand", False))
        else:
            reason = f"{conf.path} runs PRE_BUILD={pre_build!r} before the build"
            found.append(Finding(conf.path, {"prepare": [step]}, reason, decides_route=False))
    return found


def _script_step(
    command: str, folder: str, tree: SourceTree, mapper: Callable[[str], str | None]
) -> dict[str, Any] | str:
    try:
        words = [mapper(w) for w in shlex.split(command)]
    except ValueError:
        return f"{command!r} cannot be read"
    if not words or any(w is None for w in words):
        return f"{command!r} uses variables driverpack cannot map"
    script, *args = (w for w in words if w is not None)
    script = script.removeprefix("./")
    if "/".join(p for p in (folder, script) if p) not in tree.files:
        return f"names {script!r}, which is not in the tarball"
    shell = script.endswith(".sh") or tree.texts.get(script, "").startswith(("#!/bin/sh", "#!/bin/bash"))
    step: dict[str, Any] = {"run": ["bash", script, *args] if shell else [script, *args]}
    if folder:
        step = {"folder": folder, **step}
    return step


# vendor markers


def _spec_findings(tree: SourceTree) -> list[Finding]:
    found = []
    for path in _shallowest([p for p in tree.texts if p.endswith(".spec")])[:1]:
        build = _spec_section(tree.texts[path], "build")
        lines = [ln.strip() for ln in build.replace("\\\n", " ").splitlines()]
        makes = [ln for ln in lines if re.match(r"^(make|%\{?__make\}?|%\{make_build\})\b", ln)]
        if not makes:
            continue
        calls = _make_calls(" && ".join(makes), _spec_word)
        route = calls if isinstance(calls, str) else _route_of_calls(calls, f"{path} %build")
        if isinstance(route, str):
            found.append(Finding(path, {}, f"{path} %build: {route}; kept the Kbuild route", False))
        else:
            found.append(Finding(path, route[0], route[1]))
    return found


def _spec_section(text: str, name: str) -> str:
    match = re.search(
        rf"^%{name}\b[^\n]*\n(.*?)(?=^%(?:install|check|clean|files|changelog|post|pre)\b|\Z)",
        text,
        re.MULTILINE | re.DOTALL,
    )
    return match.group(1) if match else ""


def _marker_findings(tree: SourceTree, layout: TarballLayout) -> list[Finding]:
    found = []
    generators = _shallowest([p for p in tree.files if PurePosixPath(p).name == KCOMPAT_GENERATOR])
    if generators:
        folder = _folder_of(generators[0])
        step: dict[str, Any] = {
            "run": ["bash", KCOMPAT_GENERATOR],
            "env": {"OUT": "kcompat_generated_defs.h", "CONFFILE": "{kernel_build_dir}/.config"},
        }
        if folder:
            step = {"folder": folder, **step}
        reason = (
            f"{generators[0]} (Intel's generator of kcompat_generated_defs.h from the target kernel's tree) "
            "runs before the build; KSRC is exported as the kernel build dir"
        )
        found.append(Finding(generators[0], {"prepare": [step]}, reason, decides_route=False))
    alternates = _shallowest([p for p in tree.files if PurePosixPath(p).name == VENDOR_MAKEFILE])
    if alternates:
        folder = _folder_of(alternates[0])
        keys = {"build": "vendor", "makefile": VENDOR_MAKEFILE, "module_folders": [folder]}
        reason = f"{alternates[0]}: the vendor's own Makefile probes the kernel and runs Kbuild with its flags"
        found.append(Finding(alternates[0], keys, reason))
    asking = [
        p
        for p in _shallowest([p for p in tree.texts if PurePosixPath(p).name in _MAKEFILES])
        if _ASKS_HOST.search(tree.texts[p]) and _RUNS_KBUILD.search(tree.texts[p])
    ]
    if asking:
        folder = _folder_of(asking[0])
        keys = {"build": "vendor", "module_folders": [folder]}
        reason = (
            f"{asking[0]} reads KSRC/KVER (else asks the build host's uname -r) and runs Kbuild itself: "
            "its own route, with the target kernel exported under those names"
        )
        found.append(Finding(asking[0], keys, reason))
    configures = _shallowest([p for p in tree.files if PurePosixPath(p).name == "configure"])
    if configures:
        folder = _folder_of(configures[0])
        step = {"folder": folder, "run": ["./configure"]} if folder else {"run": ["./configure"]}
        reason = f"{configures[0]}: a configure script (check which options it needs)"
        found.append(Finding(configures[0], {"prepare": [step]}, reason, decides_route=False))
    return found


def findings(tree: SourceTree, layout: TarballLayout) -> list[Finding]:
    """Everything in the tree that says how it builds, most explicit first (dkms.conf, spec, markers)."""
    confs = _shallowest([p for p in tree.texts if PurePosixPath(p).name == "dkms.conf"])
    found: list[Finding] = []
    if confs:
        found += _dkms_finding(parse_dkms_conf(confs[0], tree.texts[confs[0]]), layout, tree)
    found += _spec_findings(tree)
    found += _marker_findings(tree, layout)
    return found


def propose_route(tarball: Path, name: str | None = None) -> RouteProposal:
    """The build route keys for a new pack's [[drivers]] table, read from the tarball, with the reasons."""
    from driverpack.routes import choose_folders

    layout = inspect_tarball(tarball)
    tree = read_markers(tarball)
    keys: dict[str, Any] = {}
    reasons: list[str] = []
    route_found = prepare_found = False
    for finding in findings(tree, layout):
        if finding.decides_route and finding.keys and not route_found:
            route_found = True
            keys.update(finding.keys)
            reasons.append(f"chose: {finding.reason}")
        elif not finding.decides_route and finding.keys.get("prepare") and not prepare_found:
            if finding.marker.endswith("/configure") or finding.marker == "configure":
                reasons.append(f"not used: {finding.reason}")
                continue
            prepare_found = True
            keys = {"prepare": finding.keys["prepare"], **keys}
            reasons.append(f"chose: {finding.reason}")
        else:
            reasons.append(f"not used: {finding.reason}")
    # The folders Kbuild would pick by itself are not written down; a guess is said to be one.
    driver_name = name or (layout.modules[0] if layout.modules else "driver")
    probe_keys = {k: v for k, v in keys.items() if k != "module_folders"}
    probe = Driver.model_validate(
        {"name": _rpm_like(driver_name), "version": "0", "source": tarball.name, "summary": "probe", **probe_keys}
    )
    choice = choose_folders(probe, layout)
    considered: tuple[str, ...] = ()
    if "module_folders" in keys and tuple(keys["module_folders"]) == choice.folders:
        del keys["module_folders"]
    elif "module_folders" not in keys:
        if choice.is_guess:
            considered = choice.candidates
            reasons.append(f"guessed: {choice.describe()}; name the right one with module_folders")
        else:
            reasons.append(f"chose: {_shown(choice.folders[0])} ({choice.reason})")
    return RouteProposal(keys=keys, reasons=tuple(reasons), considered=considered)


def _rpm_like(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]", "_", name) or "driver"


# checking a pack against its tree


def route_advice(driver: Driver, tree: SourceTree) -> list[str]:
    """For a failed compile: the routes the tree's markers point to that the pack does not take, as keys."""
    if not tree.files:
        return []
    try:
        found = findings(tree, _no_layout())
    except ValueError:
        return []
    advice = []
    for finding in found:
        keys = finding.keys
        if not keys:
            continue
        if "prepare" in keys and driver.prepare:
            continue
        if finding.decides_route and all(_same(driver, k, v) for k, v in keys.items()):
            continue
        lines = "; ".join(f"{k} = {_toml_value(v)}" for k, v in keys.items())
        advice.append(f"the tree has {finding.marker}: {finding.reason}; to take that route set {lines}")
    return advice


def dkms_disagreements(driver: Driver, tree: SourceTree, layout: TarballLayout) -> list[str]:
    """What the tree's dkms.conf says that the pack's route does not do (inv check warns)."""
    confs = _shallowest([p for p in tree.texts if PurePosixPath(p).name == "dkms.conf"])
    if not confs:
        return []
    from driverpack.routes import plan_route

    plan = plan_route(driver, layout)
    found = _dkms_finding(parse_dkms_conf(confs[0], tree.texts[confs[0]]), layout, tree)
    problems = []
    for finding in found:
        if "prepare" in finding.keys and not driver.prepare:
            problems.append(f"{finding.reason}, but the pack has no prepare step; add {_keys(finding.keys)}")
        route = {k: v for k, v in finding.keys.items() if k in _ROUTE_KEYS}
        if not route:
            continue
        wanted_folders = route.get("module_folders")
        differs = (route.get("build", "kbuild") != driver.build) or (
            wanted_folders is not None and tuple(wanted_folders) != plan.module_folders
        )
        if differs:
            problems.append(
                f"{finding.reason}, but the pack's route does otherwise; dkms.conf's route is {_keys(route)}"
            )
    return problems


def route_problems(driver: Driver, tree: SourceTree, layout: TarballLayout) -> list[str]:
    """Route keys naming what the tarball does not hold: a folder, a Makefile, a prepare step's script."""
    from driverpack.models import INTERPRETERS

    files = set(tree.files)
    folders = {_folder_of(f) for f in files} | {""}
    folders |= {"/".join(f.split("/")[:i]) for f in files for i in range(1, f.count("/") + 1)}
    kbuild_folders = {f.path for f in layout.folders}
    problems = []
    for j, folder in enumerate(driver.module_folders):
        if folder not in folders:
            problems.append(f"module_folders[{j}]: the tarball has no folder {folder!r}")
        elif driver.build == "kbuild" and folder not in kbuild_folders:
            known = ", ".join(repr(f) for f in sorted(kbuild_folders))
            problems.append(
                f"module_folders[{j}]: {folder!r} has no Kbuild or Makefile with obj- lines (those with: {known})"
            )
    if driver.makefile:
        from driverpack.routes import choose_folders

        for folder in choose_folders(driver, layout).folders:
            path = "/".join(p for p in (folder, driver.makefile) if p)
            if path not in files:
                problems.append(f"makefile: the tarball has no {path}")
    for j, step in enumerate(driver.prepare):
        if step.folder not in folders:
            problems.append(f"prepare[{j}].folder: the tarball has no folder {step.folder!r}")
            continue
        script = step.run[1] if step.run[0] in INTERPRETERS else step.run[0]
        path = "/".join(p for p in (step.folder, script.removeprefix("./")) if p)
        if "{" not in script and path not in files:
            problems.append(f"prepare[{j}].run: the tarball has no {path} (paths are relative to the step's folder)")
    return problems


def _keys(keys: Mapping[str, Any]) -> str:
    return "; ".join(f"{k} = {_toml_value(v)}" for k, v in keys.items())


def _same(driver: Driver, key: str, value: Any) -> bool:
    have = getattr(driver, key)
    if key == "module_folders" and not have:
        return True  # the folder driverpack picks by itself; a wrong pick is reported on its own
    return list(have) == list(value) if isinstance(value, list) else bool(have == value)


def _no_layout() -> TarballLayout:
    return TarballLayout(top_dir=None, build_dir="", build_file="")
