"""The linters as tests: ruff (lint and format) and mypy strict, run at the repository root.

They use the tools installed beside the running Python (the venv's bin dir), so the versions
are the ones pyproject.toml pins for the test extra. A failure shows the tool's full output.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

LINTERS = {
    "ruff-check": ["ruff", "check", "--no-cache", "."],
    "ruff-format": ["ruff", "format", "--no-cache", "--check", "."],
    "mypy": ["mypy"],  # what to check comes from [tool.mypy] in pyproject.toml
}


@pytest.mark.parametrize("argv", LINTERS.values(), ids=LINTERS.keys())
def test_linter_passes(argv: list[str]) -> None:
    tool = BIN / argv[0]
    assert tool.is_file(), f"{tool} is missing: install the test extra (pip install -e '.[test]')"
    proc = subprocess.run(
        [str(tool), *argv[1:]],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
        check=False,
    )
    assert proc.returncode == 0, f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}"
