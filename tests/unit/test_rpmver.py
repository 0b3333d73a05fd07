"""rpm's version ordering in pure Python, on pairs known to trip naive comparisons, checked against the real rpm."""

from __future__ import annotations

import json

import pytest

from driverpack.rpmver import Evr, vercmp
from driverpack.run import run, which

# (a, b, rpm's answer): numbers by value, digits beat letters, separators only split, ~ and ^.
PAIRS = [
    ("1.0", "1.0", 0),
    ("1.0", "1.1", -1),
    ("1.10", "1.9", 1),
    ("1.010", "1.10", 0),  # leading zeros do not count
    ("1.0", "1.0.0", -1),  # more segments win
    ("1.a", "1.1", -1),  # a number beats letters
    ("1.0a", "1.0", 1),
    ("a", "b", -1),
    ("B", "a", -1),  # letters compare as bytes: upper case first
    ("1_0", "1.0", 0),  # any separator is only a separator
    ("1..0", "1.0", 0),
    ("1.0~rc1", "1.0", -1),  # tilde sorts before the end
    ("1.0~rc1", "1.0~rc2", -1),
    ("1.0~~", "1.0~", -1),
    ("1.0^", "1.0", 1),  # caret sorts after the end...
    ("1.0^git1", "1.0.1", -1),  # ...but before a further segment
    ("1.0^git1", "1.0^git2", -1),
    ("2.9.21", "2.9.21", 0),
    ("07.713.01.00+rc1", "07.713.01.00", 1),
    ("1.10.0_216.0.119.1", "1.10.1_216.1.123.0", -1),
    ("10.02.06.02_k", "10.01.00.54.80.0_k", 1),
    ("3", "3.xcpng8.2", -1),
    ("4", "3.xcpng8.2", 1),
    ("3.1", "3.xcpng8.2", 1),  # a number beats the letters of a dist suffix
    ("20240101", "2.0", 1),
]

EVRS = [
    ("2.9.22-1", "2.9.21-3", 1),
    ("2.9.21-3", "2.9.21-3", 0),
    ("2.9.21-4", "2.9.21-3", 1),
    ("2.9.21-3.1", "2.9.21-3", 1),
    ("3.0-1", "1:2.0.0.89-1", -1),  # the epoch decides first
    ("1:2.0.0.90-1", "1:2.0.0.89-1", 1),
    ("0:1.0-1", "1.0-1", 0),  # no epoch is epoch 0
    ("1.0~rc1-1", "1.0-1", -1),
]


@pytest.mark.parametrize(("a", "b", "expected"), PAIRS)
def test_vercmp(a: str, b: str, expected: int) -> None:
    assert vercmp(a, b) == expected
    assert vercmp(b, a) == -expected


@pytest.mark.parametrize(("a", "b", "expected"), EVRS)
def test_evr_compare(a: str, b: str, expected: int) -> None:
    assert Evr.parse(a).compare(Evr.parse(b)) == expected
    assert Evr.parse(b).compare(Evr.parse(a)) == -expected


@pytest.mark.parametrize("bad", ["1.0", "x:1.0-1", "-1", "1.0-"])
def test_evr_parse_refuses(bad: str) -> None:
    with pytest.raises(ValueError):
        Evr.parse(bad)


def test_evr_text() -> None:
    assert str(Evr.parse("1:2.0-3")) == "1:2.0-3" and str(Evr.parse("2.0-3")) == "2.0-3"


def test_the_real_rpm_agrees() -> None:
    """Every pair, both ways, through rpm's own rpm.vercmp (one rpm call)."""
    pairs = [(a, b) for a, b, _ in PAIRS + EVRS] + [(b, a) for a, b, _ in PAIRS + EVRS]
    lua = "".join(f"print(rpm.vercmp({json.dumps(a)}, {json.dumps(b)}) .. ' ') " for a, b in pairs)
    out = run([which("rpm"), "--eval", f"%{{lua: {lua}}}"], quiet=True).stdout.decode().split()
    ours = [Evr.parse(a).compare(Evr.parse(b)) if "-" in a else vercmp(a, b) for a, b in pairs]
    assert [int(x) for x in out] == ours
