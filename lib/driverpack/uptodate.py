"""Up-to-date checks: a unit records the digest of its declared inputs and is skipped when nothing changed."""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import os
import pickle
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from driverpack.atomic import write_bytes
from driverpack.inputs import Inputs, digest_of
from driverpack.run import run

T = TypeVar("T")
_STAMP_VERSION = 2


def file_digest(path: Path) -> str:
    """sha256 of a file, remembered per (path, size, mtime, inode), across runs once a cache is loaded."""
    info = path.stat()
    key = f"{path}\0{info.st_size}\0{info.st_mtime_ns}\0{info.st_ino}"
    found = _cache.entries.get(key)
    if found is None:
        with path.open("rb") as f:
            found = hashlib.file_digest(f, "sha256").hexdigest()
        _cache.entries[key] = found
        _cache.changed = True
    return found


class _DigestCache:
    """Digests of large inputs (firmware, tarballs) so an unchanged 1 GiB file is not hashed on every run."""

    def __init__(self) -> None:
        self.entries: dict[str, str] = {}
        self.path: Path | None = None
        self.changed = False


_cache = _DigestCache()


def load_digest_cache(path: Path) -> None:
    _cache.path = path
    try:
        loaded = json.loads(path.read_text())
        _cache.entries.update({k: v for k, v in loaded.items() if isinstance(v, str)})
    except (OSError, ValueError, AttributeError):
        pass


def save_digest_cache() -> None:
    """Merge this run's digests into the file, keeping entries whose files still look the same.

    Concurrent runs (other packs, other terminals) save under a lock, each merging with what the
    others saved, so none loses the others' entries; the file is replaced atomically.
    """
    from driverpack.locks import file_lock

    if _cache.path is None or not _cache.changed:
        return
    with file_lock(_cache.path.with_name(_cache.path.name + ".lock")):
        merged = dict(_cache.entries)
        try:
            on_disk = json.loads(_cache.path.read_text())
            merged.update({k: v for k, v in on_disk.items() if isinstance(v, str)})
        except (OSError, ValueError, AttributeError):
            pass
        live = {}
        for key, value in merged.items():
            name, size, mtime, inode = key.split("\0")
            try:
                info = os.stat(name)
            except OSError:
                continue
            if (str(info.st_size), str(info.st_mtime_ns), str(info.st_ino)) == (size, mtime, inode):
                live[key] = value
        write_bytes(_cache.path, json.dumps(live, sort_keys=True).encode())
    _cache.changed = False


@functools.cache
def code_digest() -> str:
    """driverpack's own code, templates and data, and the versions of the libraries it writes with."""
    digest = hashlib.sha256()
    package = Path(__file__).parent
    for path in sorted(package.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(f"{path.relative_to(package).as_posix()}={file_digest(path)}\n".encode())
    for dist in ("pycdlib", "createrepo_c", "rpmfile", "jinja2", "pydantic"):
        try:
            digest.update(f"{dist}={importlib.metadata.version(dist)}\n".encode())
        except importlib.metadata.PackageNotFoundError:
            digest.update(f"{dist}=none\n".encode())
    return digest.hexdigest()


@functools.cache
def tool_version(tool: str) -> str:
    proc = run([tool, "--version"], check=False, quiet=True)
    return proc.stdout.decode(errors="replace").splitlines()[0] if proc.stdout else f"{tool}: unknown"


def _output_prints(paths: Iterable[Path]) -> list[tuple[str, int, int]] | None:
    prints = []
    for path in paths:
        try:
            info = path.stat()
        except FileNotFoundError:
            return None
        prints.append((str(path), info.st_size, info.st_mtime_ns))
    return prints


@dataclass(frozen=True)
class Verdict:
    """Whether a unit is up to date, and if not, why (for the step lines and `inv status`)."""

    fresh: bool
    reasons: tuple[str, ...]


def read_stamp(stamp: Path) -> dict[str, Any] | None:
    try:
        saved = pickle.loads(stamp.read_bytes())
    except Exception:  # a stamp from another version, truncated, or absent: the unit simply reruns
        return None
    return saved if isinstance(saved, dict) and saved.get("version") == _STAMP_VERSION else None


def judge(saved: dict[str, Any] | None, now: dict[str, str], digest: str) -> Verdict:
    """Compare a unit's stamp with its inputs' fingerprints now: which inputs changed, which outputs are gone."""
    if saved is None:
        return Verdict(False, ("not built yet",))
    reasons: list[str] = []
    if saved["digest"] != digest:
        before: dict[str, str] = saved.get("fingerprints", {})
        reasons += [f"{name} changed" for name in now if name in before and before[name] != now[name]]
        reasons += [f"{name} is new" for name in now if name not in before]
        reasons += [f"{name} is gone" for name in before if name not in now]
        if not reasons:
            reasons.append("driverpack's stamp format changed")
    else:
        for path, size, mtime in saved["outputs"]:
            try:
                info = os.stat(path)
            except FileNotFoundError:
                reasons.append(f"output {path} is missing")
                continue
            if (info.st_size, info.st_mtime_ns) != (size, mtime):
                reasons.append(f"output {path} was changed")
    return Verdict(not reasons, tuple(reasons))


def forget(stamp: Path) -> list[Path]:
    """Remove a unit's stamp; return the outputs it recorded (for the caller to remove)."""
    saved = read_stamp(stamp)
    stamp.unlink(missing_ok=True)
    return [Path(path) for path, _, _ in saved["outputs"]] if saved else []


@dataclass(frozen=True)
class UnitState:
    """A unit's stamp judged against its declaration, before it runs (or is reused)."""

    stamp: Path
    fingerprints: dict[str, str]
    digest: str
    verdict: Verdict
    result: Any  # the recorded result, when fresh
    last: Any  # the recorded result, fresh or not (what `inv status` assumes a rerun gives)

    @property
    def fresh(self) -> bool:
        return self.verdict.fresh

    @property
    def reasons(self) -> tuple[str, ...]:
        return self.verdict.reasons


def unit_state(stamp: Path, inputs: Inputs) -> UnitState:
    fingerprints = inputs.fingerprints()
    digest = digest_of(inputs.unit, fingerprints)
    saved = read_stamp(stamp)
    verdict = judge(saved, fingerprints, digest)
    last = saved["result"] if saved is not None else None
    return UnitState(stamp, fingerprints, digest, verdict, last if verdict.fresh else None, last)


def record(state: UnitState, outputs: Iterable[Path], result: object) -> None:
    """Stamp a unit that just ran: its digest, each input's fingerprint, its outputs as they are now."""
    prints = _output_prints(outputs)
    if prints is None:  # an output is already gone: nothing to reuse next time
        state.stamp.unlink(missing_ok=True)
        return
    saved = {
        "version": _STAMP_VERSION,
        "digest": state.digest,
        "fingerprints": state.fingerprints,
        "outputs": prints,
        "result": result,
    }
    write_bytes(state.stamp, pickle.dumps(saved))


KERNEL_TREE_FILES = ("include/generated/utsrelease.h", ".config", "Module.symvers", "Makefile")
"""What identifies the kernel build tree modules are compiled against."""
