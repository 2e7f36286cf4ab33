"""Text pairs as BERT reads them: ``[CLS] a [SEP] b [SEP]``, token types 0 then 1, longest_first truncation.

The reference is the Hugging Face fast tokenizer called on pairs as sentence-transformers' CrossEncoder calls it
(``padding=True, truncation="longest_first", max_length=...``); its truncation rule is
``tokenizers/src/utils/truncation.rs``, reproduced in ``pair_lengths``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from embedrt.tokenizer import TokenizerError, check_texts

# [CLS], [SEP], [SEP]
_SPECIAL_TOKENS = 3


class PairTokenizer(Protocol):
    """What pair encoding needs of a tokenizer."""

    @property
    def cls_id(self) -> int: ...  # noqa: D102

    @property
    def sep_id(self) -> int: ...  # noqa: D102

    @property
    def pad_id(self) -> int: ...  # noqa: D102

    def tokenize_ids(self, text: str) -> list[int]: ...  # noqa: D102


def pair_lengths(n1: int, n2: int, budget: int) -> tuple[int, int]:
    """How many tokens of each text stay under longest_first truncation to ``budget`` tokens in all.

    The shorter text keeps all of its tokens when the longer one can give up enough; otherwise both are cut to
    half the budget, an odd token going to the longer text (the second on a tie). This is the reference's rule,
    with its special case for a shorter text that is itself over the budget.
    """
    if n1 + n2 <= budget:
        return n1, n2
    swap = n1 > n2
    short, _ = (n2, n1) if swap else (n1, n2)
    long = short if short > budget else max(short, budget - short)
    if short + long > budget:
        short = budget // 2
        long = short + budget % 2
    return (long, short) if swap else (short, long)


def check_pairs(pairs: Sequence[Sequence[str]]) -> list[tuple[str, str]]:
    """``pairs`` as a list of (str, str), or a TypeError naming the first bad index."""
    if isinstance(pairs, (str, bytes)) or not isinstance(pairs, Sequence):
        raise TypeError(f"pairs must be a list of (text, text) pairs, got {type(pairs).__name__}")
    out = []
    for i, pair in enumerate(pairs):
        if isinstance(pair, (str, bytes)) or not isinstance(pair, Sequence) or len(pair) != 2:
            raise TypeError(f"pairs[{i}] must be a pair of two texts, got {type(pair).__name__}")
        first, second = pair
        check_texts([first, second])
        out.append((first, second))
    return out


def encode_pairs(
    tokenizer: PairTokenizer, pairs: Sequence[tuple[str, str]], max_length: int
) -> tuple[list[list[int]], list[int]]:
    """Each pair's ids, unpadded, and where its second segment starts (token type 1 from there on)."""
    rows, starts, _ = encode_pairs_truncated(tokenizer, pairs, max_length)
    return rows, starts


def encode_pairs_truncated(
    tokenizer: PairTokenizer, pairs: Sequence[tuple[str, str]], max_length: int
) -> tuple[list[list[int]], list[int], list[bool]]:
    """``encode_pairs``, and per pair whether its texts had more tokens than fit (so it was cut)."""
    if max_length < _SPECIAL_TOKENS:
        raise TokenizerError(f"max_length must be >= {_SPECIAL_TOKENS} for pairs, got {max_length}")
    rows, starts, truncated = [], [], []
    cls_id, sep_id = tokenizer.cls_id, tokenizer.sep_id
    ids: dict[str, list[int]] = {}  # a query shared by many pairs is tokenized once
    for first, second in pairs:
        a = ids[first] if first in ids else ids.setdefault(first, tokenizer.tokenize_ids(first))
        b = tokenizer.tokenize_ids(second)
        n1, n2 = pair_lengths(len(a), len(b), max_length - _SPECIAL_TOKENS)
        rows.append([cls_id, *a[:n1], sep_id, *b[:n2], sep_id])
        starts.append(n1 + 2)
        truncated.append(n1 + n2 < len(a) + len(b))
    return rows, starts, truncated


def pad_pairs(pad_id: int, rows: Sequence[Sequence[int]], starts: Sequence[int]) -> dict[str, np.ndarray]:
    """input_ids, attention_mask and token_type_ids (int64), right-padded to the longest row."""
    width = max((len(r) for r in rows), default=0)
    input_ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    attention_mask = np.zeros((len(rows), width), dtype=np.int64)
    token_type_ids = np.zeros((len(rows), width), dtype=np.int64)
    for i, (row, start) in enumerate(zip(rows, starts, strict=True)):
        input_ids[i, : len(row)] = row
        attention_mask[i, : len(row)] = 1
        token_type_ids[i, start : len(row)] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
