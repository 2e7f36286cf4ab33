"""The former home of grapheme segmentation: now :mod:`embedrt.tokenizers.graphemes` (kept for old imports)."""

from embedrt.tokenizers.graphemes import category, graphemes, multi_char_spans

__all__ = ["category", "graphemes", "multi_char_spans"]
