"""tokenizers' ``NFC`` normalizer: Python's NFC, with what the reference's older tables do not know hidden.

The reference composes with its own fork of unicode-normalization, whose tables predate Python's ``unicodedata``:
100 characters that Python treats as combining marks, decomposable or composable are plain characters to it
(``tables/nfc.py``, measured on every code point by ``scripts/gen_nfc_tables.py``, which also checks that Python
agrees on everything else). Hidden behind private-use characters (plain to both) while Python composes, they give
the reference's output.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass

from embedrt.tokenizers.base import TokenizerError
from embedrt.tokenizers.normalizers.alignments import Origins

__all__ = ["NFC"]

_PRIVATE_USE = re.compile("[\U000f0000-\U0010fffd]")  # where the placeholders are taken from


@functools.cache
def _inert() -> tuple[str, re.Pattern[str]]:
    """The characters to hide (in order) and a pattern finding any of them."""
    from embedrt.tokenizers.tables import nfc as _tables

    chars = "".join(chr(cp) for first, last in _tables.INERT for cp in range(first, last + 1))
    return chars, re.compile("[" + "".join(f"\\U{ord(c):08X}" for c in chars) + "]")


@dataclass(frozen=True)
class NFC:
    """tokenizers' ``NFC``: canonical composition, as the reference's tables have it."""

    def __call__(self, text: str) -> str:
        """The normalized text."""
        if text.isascii():
            return text
        chars, pattern = _inert()
        if pattern.search(text) is None:
            return unicodedata.normalize("NFC", text)
        start = 0xF0000
        if _PRIVATE_USE.search(text) is not None:  # placeholders must not be in the text already
            used = set(text)
            while any(chr(start + i) in used for i in range(len(chars))):
                start += len(chars)
        hide = {ord(c): chr(start + i) for i, c in enumerate(chars)}
        show = {start + i: c for i, c in enumerate(chars)}
        return unicodedata.normalize("NFC", text.translate(hide)).translate(show)

    def track(self, text: str, origins: Origins) -> tuple[str, Origins]:
        """Alignments through NFC are not reproduced (only Unigram's prepend_scheme "first" needs them)."""
        raise TokenizerError("the NFC normalizer does not track alignments")
