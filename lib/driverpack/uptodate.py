"""Up-to-date checks: a step records a digest of its inputs and is skipped when nothing changed."""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import os
import pickle
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

from driverpack.atomic import write_bytes
from driverpack.run import run

T = TypeVar("T")
_STAMP_VERSION = 1


class Digest:
    """An incremental sha256 over labelled inputs."""

    def __init__(self, *parts: str) -> None:
        self._hash = hashlib.sha256()
        for part in parts:
            self.text(part)

    def text(self, value: str) -> Digest:
        data = value.encode()
        self._hash.update(len(data).to_bytes(8, "big") + data)
        return self

    def file(self, path: Path) -> Digest:
        self.text(f"file:{path}")
        self.text(file_digest(path) if path.is_file() else "missing")
        return self

    def tree(self, folder: Path) -> Digest:
        self.text(f"tree:{folder}")
        if folder.is_dir():
            for path in sorted(folder.rglob("*")):
                self.text(path.relative_to(folder).as_posix())
                if path.is_file():
                    self.text(f"{path.stat().st_mode & 0o111:o}")
                    self.text(file_digest(path))
        return self

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


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
    """Keep the entries whose files still look the same; written atomically."""
    if _cache.path is None or not _cache.changed:
        return
    live = {}
    for key, value in _cache.entries.items():
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
    """driverpack's own code and templates, and the versions of the libraries it writes with."""
    digest = Digest()
    package = Path(__file__).parent
    for path in sorted(package.rglob("*")):
        if path.is_file() and path.suffix in {".py", ".j2", ".toml"}:
            digest.text(path.relative_to(package).as_posix()).text(file_digest(path))
    for dist in ("pycdlib", "createrepo_c", "rpmfile", "jinja2"):
        try:
            digest.text(f"{dist}={importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            digest.text(f"{dist}=none")
    return digest.hexdigest()


@functools.cache
def tool_version(tool: str) -> str:
    proc = run([tool, "--version"], check=False, quiet=True)
    return proc.stdout.decode(errors="replace").splitlines()[0] if proc.stdout else f"{tool}: unknown"


def _fingerprint(paths: Iterable[Path]) -> list[tuple[str, int, int]]:
    prints = []
    for path in paths:
        try:
            info = path.stat()
        except FileNotFoundError:
            return []
        prints.append((str(path), info.st_size, info.st_mtime_ns))
    return prints


def cached(
    stamp: Path,
    digest: str,
    outputs: Callable[[T], Iterable[Path]],
    work: Callable[[], T],
    on_skip: Callable[[], None],
) -> tuple[T, bool]:
    """Run `work` unless the stamp has the same input digest and its outputs are untouched.

    Returns (result, ran). The stamp is removed before work starts, so an interrupted step
    is never mistaken for a finished one.
    """
    if stamp.is_file():
        try:
            saved = pickle.loads(stamp.read_bytes())
            if (
                saved["version"] == _STAMP_VERSION
                and saved["digest"] == digest
                and saved["outputs"]
                and saved["outputs"] == _fingerprint(Path(p) for p, _, _ in saved["outputs"])
            ):
                on_skip()
                return saved["result"], False
        except Exception:
            pass
        stamp.unlink(missing_ok=True)
    result = work()
    prints = _fingerprint(outputs(result))
    write_bytes(
        stamp,
        pickle.dumps({"version": _STAMP_VERSION, "digest": digest, "outputs": prints, "result": result}),
    )
    return result, True


def kernel_identity(build_dir: Path) -> Digest:
    """What identifies the kernel build tree the modules are compiled against."""
    digest = Digest(f"kernel-build-dir:{os.path.realpath(build_dir)}")
    for name in ("include/generated/utsrelease.h", ".config", "Module.symvers", "Makefile"):
        digest.file(build_dir / name)
    return digest
