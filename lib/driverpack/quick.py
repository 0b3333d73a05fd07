"""A no-op rerun in a few milliseconds, from the record of the last successful run of the same task.

The record holds what that run actually read and wrote, as the pipeline declared it: every path with
its size, modification time and inode (pack.toml, the sources, the kernel tree, driverpack's own
code...), which file each tool resolved to, the environment variables read, and every output. When
all of that is unchanged there is nothing to do. Nothing here knows the pack format: pack.toml is just
one of the paths read. Only the standard library is imported, so the answer comes before pydantic and
the steps are loaded; anything that differs falls through to the pipeline, whose digests decide.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

_VERSION = 2


def _stat(path: str) -> list[int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return [info.st_size, info.st_mtime_ns, info.st_ino]


def _record_path(root: Path, folder: Path, task: str) -> Path:
    key = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:16]
    return root / "build" / ".quick" / f"{key}-{task}.json"


def _load(root: Path, folder: Path, task: str) -> dict[str, Any] | None:
    try:
        saved = json.loads(_record_path(root, folder, task).read_text())
    except (OSError, ValueError):
        return None
    return saved if isinstance(saved, dict) and saved.get("version") == _VERSION else None


def first_change(saved: Mapping[str, Any]) -> str | None:
    """What differs from the recorded run (None: nothing); for `inv status` and the quick answer."""
    for path, stat in saved.get("watched", {}).items():
        if _stat(path) != stat:
            return f"{path} changed" if stat is not None else f"{path} appeared"
    for tool, found in saved.get("tools", {}).items():
        if (shutil.which(tool) or "") != found:
            return f"tool {tool} is now {shutil.which(tool) or 'missing'}"
    for variable, value in saved.get("env", {}).items():
        if os.environ.get(variable, "") != value:
            return f"${variable} changed"
    outputs = saved.get("outputs", {})
    if not outputs:
        return "no outputs recorded"
    for path, stat in outputs.items():
        if _stat(path) != stat:
            return f"output {path} was changed or removed"
    return None


def up_to_date(root: Path, folder: Path, task: str) -> str | None:
    """The pack's label when `task` last succeeded with exactly these inputs and its outputs are untouched."""
    saved = _load(root, folder, task)
    if saved is None or first_change(saved) is not None:
        return None
    return str(saved.get("label", folder.name))


def explain(root: Path, folder: Path, task: str) -> str:
    """Whether `task` would answer from the quick check, and if not, the first reason."""
    saved = _load(root, folder, task)
    if saved is None:
        return f"no successful '{task}' recorded yet"
    change = first_change(saved)
    return "nothing changed since it last succeeded" if change is None else change


def record(
    root: Path,
    folder: Path,
    task: str,
    label: str,
    watched: Mapping[str, tuple[int, int, int] | None],
    tools: Mapping[str, str],
    env: Mapping[str, str],
    outputs: Iterable[Path],
) -> None:
    """Remember a successful run: what it read (as it was when read) and what it wrote (as it is now)."""
    dest = _record_path(root, folder, task)
    seen = {path: list(stat) if stat is not None else None for path, stat in watched.items()}
    if any(_stat(path) != stat for path, stat in seen.items()):
        dest.unlink(missing_ok=True)  # an input changed while building: let the next run look closely
        return
    data = {
        "version": _VERSION,
        "label": label,
        "watched": seen,
        "tools": dict(tools),
        "env": dict(env),
        "outputs": {str(p): _stat(str(p)) for p in outputs},
    }
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, dest)


def forget(root: Path, folder: Path) -> None:
    for stamp in _record_path(root, folder, "x").parent.glob(_record_path(root, folder, "*").name):
        stamp.unlink(missing_ok=True)


def pack_folders(selector: str | None, root: Path) -> list[Path] | None:
    """The folders --pack names, found the way load.pack_folder does; None when unsure (the slow path decides)."""
    if selector is None:
        return sorted(p.parent for p in (root / "packs").glob("*/pack.toml")) or None
    for candidate in (root / "packs" / selector, Path(selector).expanduser()):
        if (candidate / "pack.toml").is_file():
            return [candidate.resolve()]
    return None
