"""The former home of pair encoding: now :mod:`embedrt.tokenizers.pairs`.

Kept so that ``from embedrt.pairs import ...`` goes on working; new code imports from ``embedrt.tokenizers.pairs``.
"""

from embedrt.tokenizers.pairs import (
    PairText,
    PairTokenizer,
    Text,
    check_pairs,
    encode_pairs,
    encode_pairs_truncated,
    pad_pairs,
    pair_lengths,
)

__all__ = [
    "PairText",
    "PairTokenizer",
    "Text",
    "check_pairs",
    "encode_pairs",
    "encode_pairs_truncated",
    "pad_pairs",
    "pair_lengths",
]
