"""The files of a data folder, at the paths they install to; read from wherever the pack keeps them."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from driverpack.models import data_path_allowed, is_spec_safe_path


@dataclass(frozen=True)
class DataFile:
    path: str  # install path without the leading '/'
    mode: str  # octal, e.g. "0644"
    is_config: bool


def printable(text: str) -> str:
    """A name from the disk as a message may show it (names that are not UTF-8 or hold control characters quoted)."""
    return text if text.isprintable() else repr(text)


def scan_data_folder(folder: Path, shown: str) -> tuple[list[DataFile], list[str]]:
    """The folder's files (sorted) and every reason one of them cannot be packed, each naming `shown`/<file>.

    Nothing is followed out of the folder: a link inside it is refused, whatever it points at.
    """
    files: list[DataFile] = []
    problems: list[str] = []

    def unreadable(exc: OSError) -> None:
        problems.append(f"{shown}/{printable(os.path.relpath(exc.filename or folder, folder))}: cannot be read")

    for dirpath, dirnames, filenames in os.walk(folder, onerror=unreadable):
        dirnames.sort()
        for name in sorted([*filenames, *(d for d in dirnames if os.path.islink(os.path.join(dirpath, d)))]):
            path = Path(dirpath) / name
            rel = path.relative_to(folder).as_posix()
            where = f"{shown}/{printable(rel)}"
            info = path.lstat()
            if not stat.S_ISREG(info.st_mode):
                problems.append(f"{where} is not a regular file (links are not packed)")
            elif not data_path_allowed(PurePosixPath("/" + rel)):
                problems.append(
                    f"{where} would install to /{printable(rel)}, outside the allowed trees "
                    "(lib/firmware, etc, usr/share/doc)"
                )
            elif not is_spec_safe_path(rel):
                problems.append(f"{where}: rename it using letters, digits and . _ + - only")
            elif not os.access(path, os.R_OK):
                problems.append(f"{where}: cannot be read")
            else:
                mode = "0755" if info.st_mode & 0o111 else "0644"
                files.append(DataFile(path=rel, mode=mode, is_config=rel.startswith("etc/")))
    files.sort(key=lambda f: f.path)
    if not files and not problems:
        problems.append(f"{shown}/ holds no files")
    return files, problems
