"""tokenizers' ``BertNormalizer``: clean_text, handle_chinese_chars, strip_accents and lowercase.

clean_text and handle_chinese_chars are one ``str.translate`` over a lazily filled table; strip_accents is NFD
(the reference's, see ``nfd``) and then mark dropping, merged with lowercasing into a second ``str.translate``.
"""

from __future__ import annotations

import re
import unicodedata

from embedrt.tokenizers.charsets import LazyTable, RangeSet
from embedrt.tokenizers.normalizers.simple import LOWER
from embedrt.tokenizers.tables import unicode as _tables

__all__ = ["BertNormalizer", "nfd"]

_NFD_EXCEPTIONS = {chr(cp): out for cp, out in _tables.NFD_EXCEPTIONS.items()}
_NFD_EXCEPTION_RE = re.compile("(" + "|".join(map(re.escape, _NFD_EXCEPTIONS)) + ")") if _NFD_EXCEPTIONS else None


def nfd(text: str) -> str:
    """NFD as the reference's Rust crate does it: Python's, except where the frozen tables say otherwise.

    The exceptions are starters, so normalizing the text between them on its own cannot change the result.
    """
    if _NFD_EXCEPTION_RE is None or _NFD_EXCEPTION_RE.search(text) is None:
        return unicodedata.normalize("NFD", text)
    parts = _NFD_EXCEPTION_RE.split(text)
    return "".join(_NFD_EXCEPTIONS[p] if i % 2 else unicodedata.normalize("NFD", p) for i, p in enumerate(parts))


class BertNormalizer:
    """The normalizer of a BERT tokenizer.json, with its flags resolved (``strip_accents`` None follows lowercase).

    ``pre_lowercase`` is sentence_bert_config.json's ``do_lower_case``: sentence-transformers >= 5 prepends a
    per-character ``Lowercase`` normalizer (older versions called ``str.lower()`` on the whole text).
    """

    def __init__(
        self,
        *,
        clean_text: bool,
        handle_chinese_chars: bool,
        strip_accents: bool,
        lowercase: bool,
        pre_lowercase: bool = False,
    ) -> None:
        self._pre_lower = LOWER if pre_lowercase else None
        self._clean_map = self._clean_table(clean_text, handle_chinese_chars)
        self._strip_accents = strip_accents
        self._marks_lower_map = self._mark_lower_table(strip_accents, lowercase)

    def __call__(self, text: str) -> str:
        """The normalized text."""
        if self._pre_lower is not None:
            text = text.translate(self._pre_lower)
        if self._clean_map is not None:
            text = text.translate(self._clean_map)
        if self._strip_accents and not text.isascii():
            text = nfd(text)
        if self._marks_lower_map:
            text = text.translate(self._marks_lower_map)
        return text

    @staticmethod
    def _clean_table(clean_text: bool, handle_chinese_chars: bool) -> LazyTable | None:
        """clean_text and handle_chinese_chars are both per-character maps, so they compose into one table."""
        if not (clean_text or handle_chinese_chars):
            return None
        delete = RangeSet(_tables.CLEAN_DELETE) if clean_text else RangeSet(())
        space = RangeSet(_tables.CLEAN_TO_SPACE) if clean_text else RangeSet(())
        cjk = RangeSet(_tables.CJK) if handle_chinese_chars else RangeSet(())

        def compute(cp: int) -> str | None:
            if cp in delete:
                return None
            if cp in space:
                return " "
            return f" {chr(cp)} " if cp in cjk else chr(cp)

        return LazyTable(compute)

    @staticmethod
    def _mark_lower_table(strip_accents: bool, lowercase: bool) -> dict[int, str | None]:
        """Merge mark dropping and lowercasing: a mark is dropped before lowercase could see it."""
        table: dict[int, str | None] = {}
        if lowercase:
            table.update(_tables.LOWERCASE)
        if strip_accents:
            for a, b in _tables.STRIP_MARKS:
                table.update(dict.fromkeys(range(a, b + 1)))
        return table
