"""The former home of the grapheme tables: now :mod:`embedrt.tokenizers.tables.grapheme` (kept for old imports)."""

from embedrt.tokenizers.tables.grapheme import CATEGORIES, GRAPHEME_CATEGORY, INCB_EXTEND, INCB_LINKER, UNICODE_VERSION

__all__ = ["CATEGORIES", "GRAPHEME_CATEGORY", "INCB_EXTEND", "INCB_LINKER", "UNICODE_VERSION"]
