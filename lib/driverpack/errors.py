"""One exception base for every failure a user can see; tasks.py turns it into an exit code."""

from __future__ import annotations


class DriverpackError(Exception):
    """A failure with a message for the user, an optional hint, and an exit code."""

    exit_code = 1

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def render(self) -> str:
        text = self.message
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


class PackError(DriverpackError):
    """The pack file or its inputs are wrong: the user fixes the pack."""

    exit_code = 2

    def __init__(self, problems: list[str], hint: str = "") -> None:
        super().__init__("\n".join(problems), hint)
        self.problems = problems


class ToolError(DriverpackError):
    """An external tool failed or is missing."""

    exit_code = 3


class BuildError(DriverpackError):
    """A build step produced something wrong (compile failure, bad RPM, bad ISO)."""

    exit_code = 4


class BusyError(DriverpackError):
    """Another run holds the pack, and waiting for it was bounded."""

    exit_code = 5
