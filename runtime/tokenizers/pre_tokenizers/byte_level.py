r"""tokenizers' ``ByteLevel`` pre-tokenizer (GPT-2, RoBERTa, ModernBERT): GPT-2's split, then bytes as characters.

The split is GPT-2's regex, which the reference runs with Oniguruma::

    's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+

Python's ``re`` has neither ``\p{L}`` nor Oniguruma's ``\s``: the classes are built from tables measured on the
reference (``tables/byte_level.py``), and ``re``'s backtracking alternation is Oniguruma's, so the pieces are the
same. Every character is in one of the four classes, so the matches cover the text (``findall`` is the Isolated
split). Each piece's UTF-8 bytes then become GPT-2's printable characters (``bytes_to_unicode``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from embedrt.config import require
from embedrt.tokenizers.base import TokenizerError

__all__ = ["GPT2_PATTERN", "ByteLevel", "byte_translation", "bytes_to_unicode"]

# The pattern as tokenizers writes it, in ByteLevel's source and in the Split(Regex) of newer files.
GPT2_PATTERN = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"


def _char_class(ranges: tuple[tuple[int, int], ...]) -> str:
    """The body of an ``re`` character class (no brackets) holding the code point ranges."""
    return "".join(f"\\U{a:08X}" if a == b else f"\\U{a:08X}-\\U{b:08X}" for a, b in ranges)


@functools.cache
def _gpt2_regex() -> re.Pattern[str]:
    """GPT-2's regex over the reference's classes; compiled on first use (tens of ms), not at import."""
    from embedrt.tokenizers.tables import byte_level as _tables

    letters, numbers = _char_class(_tables.LETTERS), _char_class(_tables.NUMBERS)
    space = _char_class(_tables.WHITESPACE)
    return re.compile(
        rf"'s|'t|'re|'ve|'m|'ll|'d| ?[{letters}]+| ?[{numbers}]+| ?[^{space}{letters}{numbers}]+"
        rf"|[{space}]+(?![^{space}])|[{space}]+"
    )


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's map of the 256 byte values to printable characters (printable Latin-1 to itself, the rest from 256)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    mapping = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


def byte_translation() -> dict[int, str]:
    """``str.translate`` table from a piece's UTF-8 bytes read as Latin-1 to GPT-2's characters."""
    return {b: c for b, c in bytes_to_unicode().items() if chr(b) != c}


_TRANSLATE = byte_translation()


@dataclass(frozen=True)
class ByteLevel:
    """The file's pre-tokenizer: ``ByteLevel``, or a ``Sequence`` of a GPT-2 ``Split`` and ``ByteLevel``.

    ``prefix_first``: a space is put before each segment that does not start with one, before the split
    (``ByteLevel(add_prefix_space=true)``); ``prefix_pieces``: before each piece after the split (the same flag on a
    ByteLevel that follows a Split in a Sequence); ``split``: whether GPT-2's regex splits at all.
    """

    prefix_first: bool = False
    prefix_pieces: bool = False
    split: bool = True

    @classmethod
    def from_spec(cls, spec: Any, source: str, add_prefix_space: bool | None = None) -> ByteLevel:
        """Read the pre_tokenizer; ``add_prefix_space`` overrides a top-level ByteLevel's (transformers does)."""
        where = f"{source}: pre_tokenizer"
        kind = spec.get("type") if isinstance(spec, Mapping) else spec
        if kind == "ByteLevel":
            prefix = bool(spec.get("add_prefix_space", True)) if add_prefix_space is None else add_prefix_space
            return cls(prefix_first=prefix, split=bool(spec.get("use_regex", True)))
        if kind != "Sequence":
            raise TokenizerError(
                f"{where} is {kind!r}; embedrt's BPE tokenizer supports ByteLevel, or a Sequence of "
                "Split(GPT-2 regex, isolated) and ByteLevel(use_regex=false)"
            )
        inner = require(spec, "pretokenizers", where, list)
        kinds = [p.get("type") if isinstance(p, Mapping) else p for p in inner]
        if kinds == ["ByteLevel"]:
            return cls.from_spec(inner[0], f"{source}: pre_tokenizer.pretokenizers[0]")
        if kinds != ["Split", "ByteLevel"]:
            raise TokenizerError(
                f"{where} is a Sequence of {kinds}; embedrt supports [Split, ByteLevel] or [ByteLevel] there"
            )
        split, byte_level = inner
        at = f"{where}.pretokenizers[0]"
        pattern = require(split, "pattern", at, Mapping)
        if pattern.get("Regex") != GPT2_PATTERN:
            raise TokenizerError(
                f"{at}: pattern {dict(pattern)!r}; embedrt supports only GPT-2's regex {GPT2_PATTERN!r}"
            )
        if split.get("behavior") != "Isolated" or split.get("invert", False):
            raise TokenizerError(
                f"{at}: behavior {split.get('behavior')!r}, invert {split.get('invert', False)!r}; embedrt supports "
                "Isolated, not inverted"
            )
        if byte_level.get("use_regex", True):
            raise TokenizerError(f"{where}.pretokenizers[1]: ByteLevel after a Split must set use_regex false")
        return cls(prefix_pieces=bool(byte_level.get("add_prefix_space", True)))

    def pieces(self, segment: str) -> list[str]:
        """The pieces of one normalized segment (between added tokens), in order, before the byte mapping."""
        if self.prefix_first and not segment.startswith(" "):
            segment = " " + segment
        return _gpt2_regex().findall(segment) if self.split else [segment]

    def word(self, piece: str) -> str:
        """A piece's byte-level word: its UTF-8 bytes as GPT-2's characters (after the prefix space, if any)."""
        if self.prefix_pieces and not piece.startswith(" "):
            piece = " " + piece
        return piece.encode("utf-8").decode("latin-1").translate(_TRANSLATE)

    def words(self, segment: str) -> list[str]:
        """The byte-level words of one normalized segment, in order."""
        return [self.word(p) for p in self.pieces(segment)]
