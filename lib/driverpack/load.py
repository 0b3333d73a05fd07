"""The only reader of pack files: pack.toml -> validated models, every problem reported at once."""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from driverpack.errors import PackError
from driverpack.models import Driver, Pack

PACK_FILE = "pack.toml"
PACKS_DIR = "packs"


@dataclass(frozen=True)
class LoadedPack:
    """A validated pack and the folder it came from."""

    pack: Pack
    folder: Path  # absolute
    file: Path  # as shown to the user (relative to the current directory when possible)

    @property
    def label(self) -> str:
        return self.pack.label

    def resolve(self, relative_or_absolute: str) -> Path:
        """A path from the pack file: relative to the pack folder, or absolute (~ expanded)."""
        path = Path(os.path.expanduser(relative_or_absolute))
        return path if path.is_absolute() else self.folder / path

    def data_folder(self, driver: Driver) -> Path:
        """Where a driver's data files are read from (never written: SOURCES gets them under a fixed name)."""
        return self.resolve(driver.data_folder())


def display_path(path: Path) -> Path:
    try:
        return path.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return path


def find_pack_folders(root: Path) -> list[Path]:
    """Every folder under <root>/packs/ holding a pack.toml, sorted."""
    packs = root / PACKS_DIR
    if not packs.is_dir():
        return []
    return sorted(p.parent for p in packs.glob(f"*/{PACK_FILE}"))


def pack_folder(selector: str, root: Path) -> Path:
    """--pack value -> folder: a label under packs/, or a path to a pack folder or pack.toml."""
    as_path = Path(selector).expanduser()
    if as_path.name == PACK_FILE and as_path.is_file():
        return as_path.parent.resolve()
    if (as_path / PACK_FILE).is_file() and (os.sep in selector or selector.startswith(".")):
        return as_path.resolve()
    by_label = root / PACKS_DIR / selector
    if (by_label / PACK_FILE).is_file():
        return by_label.resolve()
    if (as_path / PACK_FILE).is_file():
        return as_path.resolve()
    known = ", ".join(p.name for p in find_pack_folders(root)) or "none"
    raise PackError(
        [f"--pack {selector}: no pack found (no {PACKS_DIR}/{selector}/{PACK_FILE} and no such pack folder)"],
        hint=f"packs under {PACKS_DIR}/: {known}; create one with 'inv new LABEL'",
    )


def load_pack(folder: Path) -> LoadedPack:
    """Read and validate <folder>/pack.toml; PackError lists every problem, one line each."""
    file = folder / PACK_FILE
    shown = display_path(file)
    try:
        raw = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PackError([f"{shown}: file not found"], hint="create it with 'inv new LABEL'") from None
    except UnicodeDecodeError as exc:
        raise PackError(
            [f"{shown}: {where}: not UTF-8 text ({exc.reason})" for where in _undecodable(file.read_bytes(), exc)],
            hint="save the file as UTF-8",
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise PackError([f"{shown}: TOML syntax error: {exc}"], hint="fix the line it names") from None
    try:
        pack = Pack.model_validate(raw)
    except ValidationError as exc:
        raise PackError([f"{shown}: {line}" for line in format_validation_errors(exc)]) from None
    return LoadedPack(pack=pack, folder=folder.resolve(), file=shown)


def _undecodable(data: bytes, exc: UnicodeDecodeError) -> list[str]:
    """Where the bytes that are not UTF-8 are: the keys whose values hold them, else the line."""
    text = data.decode("utf-8", errors="replace")
    if "\ufffd" not in data.decode("utf-8", errors="ignore"):
        try:
            keys = sorted(set(_keys_holding(tomllib.loads(text), "\ufffd", "")))
        except tomllib.TOMLDecodeError:
            keys = []
        if keys:
            return keys
    line = data.count(b"\n", 0, exc.start) + 1
    key = _key_on_line(text.splitlines()[:line], line)
    return [f"{key} (line {line})" if key else f"line {line}"]


_TABLE = re.compile(r"\s*(\[\[?)\s*([A-Za-z0-9_.-]+)\s*\]\]?\s*(#.*)?")
_KEY = re.compile(r"\s*([A-Za-z0-9_-]+)\s*=")


def _key_on_line(lines: list[str], line: int) -> str:
    """The key a line of a pack file sets, by its tables (for a file too broken to parse)."""
    counts: dict[str, int] = {}
    table = ""
    for text in lines[:-1]:
        match = _TABLE.fullmatch(text)
        if match:
            name = match.group(2)
            if match.group(1) == "[[":
                counts[name] = counts.get(name, 0) + 1
                table = f"{name}[{counts[name] - 1}]"
            else:
                head, _, rest = name.partition(".")
                table = f"{head}[{counts[head] - 1}].{rest}" if rest and head in counts else name
    found = _KEY.match(lines[line - 1]) if len(lines) >= line else None
    if not found:
        return ""
    return f"{table}.{found.group(1)}" if table else found.group(1)


def _keys_holding(value: object, needle: str, loc: str) -> list[str]:
    if isinstance(value, str):
        return [loc] if needle in value else []
    if isinstance(value, dict):
        return [k for key, item in value.items() for k in _keys_holding(item, needle, f"{loc}.{key}" if loc else key)]
    if isinstance(value, list):
        return [k for i, item in enumerate(value) for k in _keys_holding(item, needle, f"{loc}[{i}]")]
    return []


def format_validation_errors(exc: ValidationError) -> list[str]:
    errors = exc.errors(include_url=False)
    lines = []
    for err in errors:
        loc = _location(err["loc"])
        nested = any(len(o["loc"]) > len(err["loc"]) and o["loc"][: len(err["loc"])] == err["loc"] for o in errors)
        if err["type"] == "too_short" and nested:
            continue  # the items' own errors say more than "too few items"
        lines.append(f"{loc}: {_message(err, loc)}" if loc else _message(err, loc))
    return lines


def _location(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif str(part).startswith("function-after") or str(part) in {"literal_error"}:
            continue
        else:
            text += ("." if text else "") + str(part)
    return text


def _message(err: Any, loc: str) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        key = loc.rsplit(".", 1)[-1]
        return f"unknown key {key!r} (check the spelling; see the pack file reference in the README)"
    if kind == "missing":
        return "required key is missing"
    if kind == "value_error":
        message = str(err["msg"])
        return message.removeprefix("Value error, ")
    if kind == "literal_error":
        return f"{err['input']!r} is not allowed: {err['msg'].removeprefix('Input should be ')}"
    if kind == "too_short" and loc == "drivers":
        return "a pack needs at least one [[drivers]] table"
    if kind in {"string_type", "int_type", "date_type", "date_from_datetime_parsing", "date_parsing"}:
        return f"{err['msg']} (got {err['input']!r})"
    if kind in {"model_type", "tuple_type"}:
        return f"{err['msg']} (got {type(err['input']).__name__})"
    return str(err["msg"])
