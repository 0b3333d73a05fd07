"""What a unit of work reads, declared once.

A unit (the specs of one driver, its compile, its RPMs, the ISO, the zip) lists its inputs as
named items. From that one declaration come: the digest that decides whether the unit reruns,
the per-input fingerprints that `inv status` compares to say *which* input changed, and the paths
whose size, time and inode the quick no-op check looks at before anything else is loaded.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Kind = Literal["value", "file", "tree", "listing", "tool", "env", "unit", "code"]
Stat = tuple[int, int, int]  # size, mtime in ns, inode


@dataclass(frozen=True)
class Input:
    name: str  # as a user reads it: "drivers[0].patches[1]", "tool gcc", "compile helloworld"
    kind: Kind
    value: str  # the text, the path, the tool or variable name, the upstream unit's digest


@dataclass
class Inputs:
    """The declaration of one unit's inputs, built with the chaining methods below."""

    unit: str
    items: list[Input] = field(default_factory=list)

    def _add(self, name: str, kind: Kind, value: str) -> Inputs:
        self.items.append(Input(name, kind, value))
        return self

    def value(self, name: str, text: str) -> Inputs:
        """A pack key or a value derived from it (compared as text)."""
        return self._add(name, "value", text)

    def file(self, name: str, path: Path) -> Inputs:
        """A file's bytes (a missing file counts as an input too)."""
        return self._add(name, "file", os.fspath(path))

    def tree(self, name: str, folder: Path) -> Inputs:
        """A folder's files: names, bytes and executable bits."""
        return self._add(name, "tree", os.fspath(folder))

    def listing(self, name: str, folder: Path) -> Inputs:
        """The names in a folder (a glob's result, the installed kernels), not their contents."""
        return self._add(name, "listing", os.fspath(folder))

    def tool(self, tool: str) -> Inputs:
        """A program on PATH: its version, and which file it is."""
        return self._add(f"tool {tool}", "tool", tool)

    def env(self, variable: str) -> Inputs:
        return self._add(f"${variable}", "env", variable)

    def unit_digest(self, name: str, digest: str) -> Inputs:
        """Another unit this one builds on (its inputs, hence its outputs)."""
        return self._add(name, "unit", digest)

    def code(self) -> Inputs:
        """driverpack's own code, templates and data, and the libraries it writes with."""
        return self._add("driverpack", "code", "")

    def fingerprints(self) -> dict[str, str]:
        """Each input's content fingerprint, by name: what `inv status` compares."""
        return {item.name: fingerprint(item) for item in self.items}

    def digest(self) -> str:
        return digest_of(self.unit, self.fingerprints())

    def watched(self) -> dict[str, Stat | None]:
        """Every path this declaration reads, with its stat: the quick check's record."""
        seen: dict[str, Stat | None] = {}
        for item in self.items:
            for path in watched_paths(item):
                seen[path] = stat_of(path)
        return seen

    def tools(self) -> dict[str, str]:
        """The programs this declaration runs, and which file each resolved to."""
        return {item.value: shutil.which(item.value) or "" for item in self.items if item.kind == "tool"}

    def variables(self) -> dict[str, str]:
        return {item.value: os.environ.get(item.value, "") for item in self.items if item.kind == "env"}


def digest_of(unit: str, fingerprints: dict[str, str]) -> str:
    digest = hashlib.sha256(unit.encode() + b"\0")
    for name, print_ in fingerprints.items():
        digest.update(f"{len(name)}:{name}={print_}\n".encode())
    return digest.hexdigest()


def stat_of(path: str) -> Stat | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_size, info.st_mtime_ns, info.st_ino)


def fingerprint(item: Input) -> str:
    from driverpack.uptodate import code_digest, file_digest, tool_version

    if item.kind in ("value", "unit"):
        return hashlib.sha256(item.value.encode()).hexdigest()
    if item.kind == "file":
        path = Path(item.value)
        return file_digest(path) if path.is_file() else "missing"
    if item.kind == "tree":
        return _tree_digest(Path(item.value))
    if item.kind == "listing":
        folder = Path(item.value)
        names = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else ["<missing>"]
        return hashlib.sha256("\0".join(names).encode()).hexdigest()
    if item.kind == "tool":
        return tool_version(item.value)
    if item.kind == "env":
        return os.environ.get(item.value, "")
    return code_digest()


def _tree_digest(folder: Path) -> str:
    from driverpack.uptodate import file_digest

    digest = hashlib.sha256()
    if not folder.is_dir():
        return "missing"
    for path in sorted(folder.rglob("*")):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        if path.is_file():
            digest.update(f"{path.stat().st_mode & 0o111:o}:{file_digest(path)}\n".encode())
    return digest.hexdigest()


def watched_paths(item: Input) -> Iterator[str]:
    if item.kind == "file" or item.kind == "listing":
        yield item.value
    elif item.kind == "tree":
        yield item.value
        folder = Path(item.value)
        if folder.is_dir():
            for path in sorted(folder.rglob("*")):
                yield os.fspath(path)
    elif item.kind == "tool":
        found = shutil.which(item.value)
        if found:
            yield found
    elif item.kind == "code":
        yield from code_files()


@functools.cache
def code_files() -> tuple[str, ...]:
    """driverpack's files and the entry points of the libraries it writes with (an upgrade changes them)."""
    import importlib.util

    package = Path(__file__).parent
    files = [os.fspath(p) for p in sorted(package.rglob("*")) if p.is_file() and "__pycache__" not in p.parts]
    for name in ("pycdlib", "createrepo_c", "rpmfile", "jinja2", "pydantic"):
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.origin:
            files.append(spec.origin)
    return tuple(files)
