"""A no-op rerun in a few milliseconds: when no input file and no output file has changed since the
same task last succeeded (by size and modification time), there is nothing to do.

Only the standard library is imported here: the point is to answer before the models (pydantic)
and the step modules are loaded. Anything that does not match falls through to the real pipeline,
whose content digests decide what to redo.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tomllib
from pathlib import Path
from typing import Any

_TOOLS = ("rpmbuild", "rpmsign", "gpg", "make", "gcc", "patch", "rpm", "xorriso", "isoinfo")
_KERNEL_FILES = ("Makefile", ".config", "Module.symvers", "include/generated/utsrelease.h")
_VERSION = 1


def _stat(path: Path) -> list[int] | None:
    try:
        info = path.stat()
    except OSError:
        return None
    return [info.st_size, info.st_mtime_ns, info.st_ino]


def _tree(folder: Path, into: dict[str, Any]) -> None:
    if folder.is_dir():
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                into[str(path)] = _stat(path)
    else:
        into[str(folder)] = _stat(folder)


def _dist_stamp(name: str) -> list[int] | None:
    """A library's installed metadata, by size and time: an upgrade changes it (cheaper than importing it)."""
    for site in sys.path:
        if site and "-packages" in site:
            for meta in Path(site).glob(f"{name}-*.dist-info"):
                return _stat(meta / "RECORD")
    return None


def _pack_paths(folder: Path, raw: dict[str, Any]) -> list[Path]:
    def resolve(value: object) -> Path | None:
        if not isinstance(value, str) or not value:
            return None
        path = Path(os.path.expanduser(value))
        return path if path.is_absolute() else folder / path

    values: list[object] = []
    pack = raw.get("pack", {})
    target = raw.get("target", {})
    if isinstance(pack, dict):
        values.append(pack.get("signing_key"))
    if isinstance(target, dict):
        values += [target.get("kernel_devel"), target.get("build_dir")]
    for driver in raw.get("drivers", []) if isinstance(raw.get("drivers"), list) else []:
        if isinstance(driver, dict):
            values += [driver.get("source"), driver.get("spec"), *list(driver.get("patches", []) or [])]
    for rpm in raw.get("rpms", []) if isinstance(raw.get("rpms"), list) else []:
        if isinstance(rpm, dict):
            values.append(rpm.get("path"))
    return [p for p in (resolve(v) for v in values) if p is not None]


def inputs(folder: Path, root: Path) -> dict[str, Any] | None:
    """Size and mtime of everything a build reads; None when the pack file cannot be read quickly."""
    try:
        raw = tomllib.loads((folder / "pack.toml").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    seen: dict[str, Any] = {}
    _tree(folder, seen)
    for path in _pack_paths(folder, raw):
        _tree(path, seen)
    _tree(Path(__file__).parent, seen)  # driverpack itself
    _tree(root / "keys", seen)
    for tool in _TOOLS:
        found = shutil.which(tool)
        seen[f"tool:{tool}"] = _stat(Path(found)) if found else None
    for build in sorted(Path("/lib/modules").glob("*/build")):
        for name in _KERNEL_FILES:
            seen[str(build / name)] = _stat(build / name)
    seen["env:SOURCE_DATE_EPOCH"] = os.environ.get("SOURCE_DATE_EPOCH", "")
    for dist in ("pycdlib", "createrepo_c", "rpmfile", "jinja2", "pydantic", "invoke"):
        seen[f"lib:{dist}"] = _dist_stamp(dist)
    seen["python"] = sys.version
    return seen


def _stamp(root: Path, folder: Path, task: str) -> Path:
    key = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:16]
    return root / "build" / ".quick" / f"{key}-{task}.json"


def up_to_date(root: Path, folder: Path, task: str) -> bool:
    """True when `task` last succeeded with exactly these inputs and its outputs are untouched."""
    stamp = _stamp(root, folder, task)
    try:
        saved = json.loads(stamp.read_text())
    except (OSError, ValueError):
        return False
    if saved.get("version") != _VERSION or saved.get("inputs") != inputs(folder, root):
        return False
    outputs = saved.get("outputs", {})
    return bool(outputs) and all(_stat(Path(p)) == s for p, s in outputs.items())


def record(root: Path, folder: Path, task: str, before: dict[str, Any] | None, outputs: list[Path]) -> None:
    """Remember a successful run, with the inputs as they were when it started."""
    stamp = _stamp(root, folder, task)
    if before is None or inputs(folder, root) != before:
        stamp.unlink(missing_ok=True)  # an input changed while building: let the next run look closely
        return
    stamp.parent.mkdir(parents=True, exist_ok=True)
    data = {"version": _VERSION, "inputs": before, "outputs": {str(p): _stat(p) for p in outputs}}
    tmp = stamp.with_name(f".{stamp.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, stamp)


def forget(root: Path, folder: Path) -> None:
    for stamp in _stamp(root, folder, "x").parent.glob(_stamp(root, folder, "*").name):
        stamp.unlink(missing_ok=True)


def label_of(folder: Path) -> str:
    """The pack's label as the models would give it (for messages only)."""
    try:
        raw = tomllib.loads((folder / "pack.toml").read_text(encoding="utf-8"))
        label = raw.get("pack", {}).get("label") or raw["drivers"][0]["name"]
    except (OSError, ValueError, KeyError, IndexError, TypeError, AttributeError):
        return folder.name
    return str(label)


def pack_folders(selector: str | None, root: Path) -> list[Path] | None:
    """The folders --pack names, found the way load.pack_folder does; None when unsure (the slow path decides)."""
    if selector is None:
        return sorted(p.parent for p in (root / "packs").glob("*/pack.toml")) or None
    for candidate in (root / "packs" / selector, Path(selector).expanduser()):
        if (candidate / "pack.toml").is_file():
            return [candidate.resolve()]
    return None
