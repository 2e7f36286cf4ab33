"""Character sets shared by the normalizers and pre-tokenizers: ranges, regex classes, lazy translate tables."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Sequence

__all__ = ["WHITE_SPACE", "LazyTable", "RangeSet", "Ranges", "char_class", "ranges"]

Ranges = Sequence[tuple[int, int]]

# Rust's char::is_whitespace and regex \s: the White_Space property (Python's str.isspace adds U+001C-U+001F).
WHITE_SPACE = "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"  # noqa: E501
# Entries a lazily filled translate table keeps (past it, code points are computed on every use).
_TRANSLATE_CAP = 65_536


class RangeSet:
    """Membership in sorted inclusive ranges (the CJK and private-use sets are too big for a ``set``)."""

    def __init__(self, ranges: Ranges) -> None:
        self._starts = [a for a, _ in ranges]
        self._ends = [b for _, b in ranges]

    def __contains__(self, cp: int) -> bool:
        i = bisect_right(self._starts, cp) - 1
        return i >= 0 and cp <= self._ends[i]


class LazyTable(dict[int, "str | None"]):
    """A ``str.translate`` table computed on first use of each code point, so lookups stay in C afterwards."""

    def __init__(self, compute: Callable[[int], str | None]) -> None:
        super().__init__()
        self._compute = compute
        for cp in range(128):
            self[cp] = compute(cp)

    def __missing__(self, cp: int) -> str | None:
        value = self._compute(cp)
        if len(self) < _TRANSLATE_CAP:
            self[cp] = value
        return value


def ranges(points: Sequence[int]) -> list[tuple[int, int]]:
    """Sorted code points as inclusive ranges."""
    out: list[tuple[int, int]] = []
    for cp in points:
        if out and out[-1][1] == cp - 1:
            out[-1] = (out[-1][0], cp)
        else:
            out.append((cp, cp))
    return out


def char_class(ranges: Ranges) -> str:
    """The inclusive ranges as the inside of a regex character class."""
    return "".join(f"\\U{a:08x}" if a == b else f"\\U{a:08x}-\\U{b:08x}" for a, b in ranges)
