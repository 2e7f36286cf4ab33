"""Extended grapheme clusters as Rust's unicode-segmentation 1.12 finds them (what tokenizers 0.22 uses).

Only the Precompiled normalizer needs them, and only for clusters of more than one character: every other
character is its own cluster. :func:`multi_char_spans` therefore reports just those, and answers an empty list
without a per-character loop when the text holds no character that can join a cluster.

The rules are a port of the crate's pairwise cursor (``GraphemeCursor::next_boundary`` with the whole string
as one chunk): UAX #29 GB3-GB13 with GB9c (Indic conjunct clusters), on the crate's own Unicode 16.0 tables,
frozen into ``embedrt.tokenizers.tables.grapheme`` by ``scripts/gen_grapheme_tables.py``.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from itertools import pairwise

from embedrt.tokenizers.tables import grapheme as _tables

__all__ = ["category", "graphemes", "multi_char_spans"]

(ANY, CR, LF, CONTROL, EXTEND, ZWJ, RI, PREPEND, SPACING_MARK, L, V, T, LV, LVT, PICTOGRAPHIC, CONSONANT) = range(16)
assert _tables.CATEGORIES[CONSONANT] == "InCB_Consonant" and _tables.CATEGORIES[RI] == "Regional_Indicator"

_STARTS = [a for a, _, _ in _tables.GRAPHEME_CATEGORY]
_ENDS = [b for _, b, _ in _tables.GRAPHEME_CATEGORY]
_CATS = [c for _, _, c in _tables.GRAPHEME_CATEGORY]
_INCB_EXTEND_STARTS = [a for a, _ in _tables.INCB_EXTEND]
_INCB_EXTEND_ENDS = [b for _, b in _tables.INCB_EXTEND]
_LINKERS = frozenset(map(chr, _tables.INCB_LINKER))
_CACHE_CAP = 65_536
_category_cache: dict[str, int] = {}

# What the pair (before, after) decides: break, no break, or a look back (GB9c, GB11, GB12/13).
_BREAK, _JOIN, _CONJUNCT, _EMOJI, _REGIONAL = range(5)


def _pair_rule(before: int, after: int) -> int:
    """The crate's ``check_pair`` in extended mode, in its order."""
    if before == CR and after == LF:
        return _JOIN  # GB3
    if before in (CONTROL, CR, LF) or after in (CONTROL, CR, LF):
        return _BREAK  # GB4, GB5
    if (
        (before == L and after in (L, V, LV, LVT))
        or (before in (LV, V) and after in (V, T))
        or (before in (LVT, T) and after == T)
    ):
        return _JOIN  # GB6-GB8
    if after in (EXTEND, ZWJ, SPACING_MARK) or before == PREPEND:
        return _JOIN  # GB9, GB9a, GB9b
    if after == CONSONANT:
        return _CONJUNCT  # GB9c
    if before == ZWJ and after == PICTOGRAPHIC:
        return _EMOJI  # GB11
    if before == RI and after == RI:
        return _REGIONAL  # GB12, GB13
    return _BREAK  # GB999


_PAIRS = [_pair_rule(before, after) for before in range(16) for after in range(16)]


def _char_class(code_points: list[int]) -> str:
    ranges: list[list[int]] = []
    for cp in sorted(code_points):
        if ranges and ranges[-1][1] == cp - 1:
            ranges[-1][1] = cp
        else:
            ranges.append([cp, cp])
    return "".join(f"\\U{a:08x}" if a == b else f"\\U{a:08x}-\\U{b:08x}" for a, b in ranges)


# A cluster of two or more characters needs one of these (GB3 needs CR LF; every other joining pair has one of
# these categories on one side, or a linker, which is Extend, before GB9c's consonant).
_JOINERS = (EXTEND, ZWJ, SPACING_MARK, PREPEND, L, V, T, RI)
_MAY_JOIN = re.compile(
    "\r\n|["
    + _char_class([cp for a, b, c in _tables.GRAPHEME_CATEGORY if c in _JOINERS for cp in range(a, b + 1)])
    + "]"
)


def category(char: str) -> int:
    """The crate's grapheme category of one character (an index into ``tables.grapheme.CATEGORIES``)."""
    cat = _category_cache.get(char)
    if cat is None:
        cp = ord(char)
        i = bisect_right(_STARTS, cp) - 1
        cat = _CATS[i] if i >= 0 and cp <= _ENDS[i] else ANY
        if len(_category_cache) < _CACHE_CAP:
            _category_cache[char] = cat
    return cat


def _is_incb_extend(char: str) -> bool:
    cp = ord(char)
    i = bisect_right(_INCB_EXTEND_STARTS, cp) - 1
    return i >= 0 and cp <= _INCB_EXTEND_ENDS[i]


def _conjunct_joins(text: str, end: int) -> bool:
    """GB9c: ``text[:end]`` ends with a consonant, then InCB Extend/Linker characters holding a linker."""
    linkers = 0
    for i in range(end - 1, -1, -1):
        char = text[i]
        if char in _LINKERS:
            linkers += 1
        elif not _is_incb_extend(char):
            return linkers > 0 and category(char) == CONSONANT
    return False


def _emoji_joins(cats: list[int], end: int) -> bool:
    """GB11: ``cats[:end]`` ends with ZWJ after Extended_Pictographic Extend*."""
    for i in range(end - 2, -1, -1):  # cats[end - 1] is the ZWJ
        if cats[i] == PICTOGRAPHIC:
            return True
        if cats[i] != EXTEND:
            return False
    return False


def _boundaries(text: str) -> list[int]:
    """Every cluster boundary strictly inside ``text``."""
    cats = [category(c) for c in text]
    pairs = _PAIRS
    cuts = []
    regional = 0  # regional indicators right before the position
    for i in range(1, len(text)):
        before, after = cats[i - 1], cats[i]
        regional = regional + 1 if before == RI else 0
        rule = pairs[before * 16 + after]
        if rule == _JOIN:
            continue
        if rule == _BREAK:
            cuts.append(i)
        elif rule == _CONJUNCT:
            if not _conjunct_joins(text, i):
                cuts.append(i)
        elif rule == _EMOJI:
            if not _emoji_joins(cats, i):
                cuts.append(i)
        elif regional % 2 == 0:  # GB12/GB13: pairs of regional indicators
            cuts.append(i)
    return cuts


def graphemes(text: str) -> list[str]:
    """The extended grapheme clusters of ``text``, in order."""
    if not text:
        return []
    edges = [0, *_boundaries(text), len(text)]
    return [text[a:b] for a, b in pairwise(edges)]


def multi_char_spans(text: str) -> list[tuple[int, int]]:
    """(start, stop) of each cluster of ``text`` longer than one character."""
    if _MAY_JOIN.search(text) is None:
        return []
    edges = [0, *_boundaries(text), len(text)]
    return [(a, b) for a, b in pairwise(edges) if b - a > 1]
