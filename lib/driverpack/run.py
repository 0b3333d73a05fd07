"""The only place that starts processes: argv lists, a fixed locale and clock, readable failures."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess  # noqa: TID251 - this module is the one allowed user
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from driverpack.errors import ToolError

_TAIL_LINES = 15

# Which distribution package brings each tool, for "not found" messages.
TOOL_PACKAGES: dict[str, tuple[str, str]] = {
    # tool: (Debian/Ubuntu package, Fedora/RHEL package)
    "rpmbuild": ("rpm", "rpm-build"),
    "rpmspec": ("rpm", "rpm-build"),
    "rpmsign": ("rpm", "rpm-sign"),
    "rpmkeys": ("rpm", "rpm"),
    "rpm": ("rpm", "rpm"),
    "gpg": ("gnupg", "gnupg2"),
    "gpgconf": ("gpgconf", "gnupg2"),
    "gpg-connect-agent": ("gpgconf", "gnupg2"),
    "make": ("make", "make"),
    "gcc": ("gcc", "gcc"),
    "patch": ("patch", "patch"),
    "cpio": ("cpio", "cpio"),
    "rpm2cpio": ("rpm", "rpm"),
    "depmod": ("kmod", "kmod"),
    "modinfo": ("kmod", "kmod"),
    "isoinfo": ("genisoimage", "genisoimage"),
    "xorriso": ("xorriso", "xorriso"),
    "dnf": ("dnf", "dnf"),
}


_step_log = threading.local()  # the log of the step running on this thread, for calls that name none
# -v/--verbose: also print each tool's `+ argv` on screen. One switch for the whole process (tool
# calls run on worker threads too); set only through commands_on_screen().
_commands_on_screen = False


@contextlib.contextmanager
def commands_on_screen(on: bool) -> Iterator[None]:
    """While active, print `+ argv` of every tool call on standard error too, not only in the step's log."""
    global _commands_on_screen
    previous = _commands_on_screen
    _commands_on_screen = on
    try:
        yield
    finally:
        _commands_on_screen = previous


@contextlib.contextmanager
def logging_to(log: Path) -> Iterator[None]:
    """Append the output of every tool this thread runs (without a log of its own) to `log`."""
    previous = getattr(_step_log, "path", None)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.unlink(missing_ok=True)
    _step_log.path = log
    try:
        yield
    finally:
        _step_log.path = previous


def tool_hint(tool: str) -> str:
    deb, rpm = TOOL_PACKAGES.get(tool, (tool, tool))
    return f"install it: 'apt-get install {deb}' (Debian/Ubuntu) or 'dnf install {rpm}' (Fedora/RHEL)"


def which(tool: str) -> str:
    """The absolute path of a tool, or a ToolError naming its package."""
    found = shutil.which(tool) or (shutil.which(tool, path="/usr/sbin:/sbin") if tool == "depmod" else None)
    if not found:
        raise ToolError(f"required tool '{tool}' was not found on PATH", tool_hint(tool))
    return found


def base_env(source_date_epoch: int | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"LC_ALL": "C", "LANG": "C", "TZ": "UTC"})
    env.pop("LANGUAGE", None)
    if source_date_epoch is not None:
        env["SOURCE_DATE_EPOCH"] = str(source_date_epoch)
    return env


def run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    cwd: Path | None = None,
    log: Path | None = None,
    env: Mapping[str, str] | None = None,
    source_date_epoch: int | None = None,
    input: bytes | None = None,
    check: bool = True,
    quiet: bool = False,
    stdout_to: Path | None = None,
    pass_fds: Sequence[int] = (),
) -> subprocess.CompletedProcess[bytes]:
    """Run argv; write `+ argv` and the output to `log`; raise ToolError on failure when `check`.

    `+ argv` reaches the screen only under commands_on_screen(True), and never for `quiet` probes.
    `stdout_to` streams standard output into that file instead of memory (large payloads).
    `pass_fds` stay open in the process (every other descriptor is closed).
    """
    args = [os.fspath(a) for a in argv]
    log = log if log is not None else getattr(_step_log, "path", None)
    if _commands_on_screen and not quiet:
        print("+ " + " ".join(_quote(a) for a in args), file=sys.stderr, flush=True)
    full_env = base_env(source_date_epoch)
    if env:
        full_env.update(env)
    try:
        if stdout_to is not None:
            with stdout_to.open("wb") as out:
                proc = subprocess.run(
                    args,
                    cwd=cwd,
                    env=full_env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.PIPE,
                    check=False,
                    pass_fds=tuple(pass_fds),
                )
            proc.stdout = b""
        else:
            proc = subprocess.run(
                args,
                cwd=cwd,
                env=full_env,
                input=input,
                stdin=None if input is not None else subprocess.DEVNULL,
                capture_output=True,
                check=False,
                pass_fds=tuple(pass_fds),
            )
    except FileNotFoundError:
        raise ToolError(f"required tool '{args[0]}' was not found", tool_hint(Path(args[0]).name)) from None
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as f:
            f.write(b"+ " + " ".join(_quote(a) for a in args).encode() + b"\n")
            f.write(proc.stdout)
            f.write(proc.stderr)
    if check and proc.returncode != 0:
        raise ToolError(failure_message(args, proc.returncode, proc.stderr or proc.stdout, log))
    return proc


def failure_message(args: Sequence[str], code: int, output: bytes, log: Path | None) -> str:
    tail = output.decode(errors="replace").rstrip().splitlines()[-_TAIL_LINES:]
    text = f"'{Path(args[0]).name}' failed with exit code {code}: {' '.join(_quote(a) for a in args)}"
    if tail:
        text += "\n" + "\n".join("  | " + line for line in tail)
    if log is not None:
        text += f"\n  full log: {log}"
    return text


def _quote(arg: str) -> str:
    if arg and all(c.isalnum() or c in "-_./=:,+@%" for c in arg):
        return arg
    return "'" + arg.replace("'", "'\\''") + "'"
