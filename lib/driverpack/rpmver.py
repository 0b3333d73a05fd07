"""rpm's version comparison (rpmvercmp) and epoch:version-release ordering, in pure Python.

Follows rpmvercmp() of rpm's lib/rpmvercmp.c: versions are split into runs of digits and runs
of letters, everything else separates them; digits beat letters; numbers compare by value;
'~' sorts before anything (even the end), '^' after the end but before any further segment.
tests/unit/test_rpmver.py checks it against the real rpm on tricky pairs.
"""

from __future__ import annotations

from dataclasses import dataclass


def vercmp(a: str, b: str) -> int:
    """-1, 0 or 1 as rpm orders two version (or release) strings."""
    if a == b:
        return 0
    i = j = 0
    while i < len(a) or j < len(b):
        while i < len(a) and not _isalnum(a[i]) and a[i] not in "~^":
            i += 1
        while j < len(b) and not _isalnum(b[j]) and b[j] not in "~^":
            j += 1
        one = a[i] if i < len(a) else ""
        two = b[j] if j < len(b) else ""
        if one == "~" or two == "~":
            if one != "~":
                return 1
            if two != "~":
                return -1
            i, j = i + 1, j + 1
            continue
        if one == "^" or two == "^":
            if not one:
                return -1
            if not two:
                return 1
            if one != "^":
                return 1
            if two != "^":
                return -1
            i, j = i + 1, j + 1
            continue
        if not (one and two):
            break
        is_num = _isdigit(one)
        kind = _isdigit if is_num else _isalpha
        end_i, end_j = i, j
        while end_i < len(a) and kind(a[end_i]):
            end_i += 1
        while end_j < len(b) and kind(b[end_j]):
            end_j += 1
        if end_j == j:  # a numeric segment beats an alphabetic one
            return 1 if is_num else -1
        seg_a, seg_b = a[i:end_i], b[j:end_j]
        if is_num:
            seg_a, seg_b = seg_a.lstrip("0"), seg_b.lstrip("0")
            if len(seg_a) != len(seg_b):
                return 1 if len(seg_a) > len(seg_b) else -1
        if seg_a != seg_b:
            return 1 if seg_a > seg_b else -1
        i, j = end_i, end_j
    if i >= len(a) and j >= len(b):
        return 0
    return -1 if i >= len(a) else 1


def _isalnum(c: str) -> bool:
    return c.isascii() and c.isalnum()


def _isdigit(c: str) -> bool:
    return c in "0123456789"


def _isalpha(c: str) -> bool:
    return c.isascii() and c.isalpha()


@dataclass(frozen=True, order=False)
class Evr:
    """An epoch:version-release as rpm compares them (no epoch counts as 0)."""

    epoch: int | None
    version: str
    release: str

    @classmethod
    def parse(cls, text: str) -> Evr:
        """'[epoch:]version-release'; ValueError when it is not one."""
        epoch: int | None = None
        rest = text
        if ":" in text:
            head, rest = text.split(":", 1)
            if not head.isdigit():
                raise ValueError(f"{text!r}: the epoch before ':' must be a number")
            epoch = int(head)
        version, sep, release = rest.rpartition("-")
        if not sep or not version or not release:
            raise ValueError(f"{text!r} is not epoch:version-release")
        return cls(epoch, version, release)

    def compare(self, other: Evr) -> int:
        """-1, 0 or 1: how rpm (and so yum) orders this EVR against `other`."""
        mine, theirs = self.epoch or 0, other.epoch or 0
        if mine != theirs:
            return 1 if mine > theirs else -1
        return vercmp(self.version, other.version) or vercmp(self.release, other.release)

    def __str__(self) -> str:
        return (
            f"{self.epoch}:{self.version}-{self.release}"
            if self.epoch is not None
            else f"{self.version}-{self.release}"
        )
