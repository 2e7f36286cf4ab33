"""Text pairs as BERT reads them: ``[CLS] a [SEP] b [SEP]``, token types 0 then 1, longest_first truncation.

The reference is the Hugging Face fast tokenizer called on pairs as sentence-transformers' CrossEncoder calls it
(``padding=True, truncation="longest_first", max_length=...``); its truncation rule is
``tokenizers/src/utils/truncation.rs``, reproduced in ``pair_lengths``.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from embedrt.tokenizers.base import TokenizerError, TruncationSide, check_texts

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

    def encode_within(self, text: str, need: int, side: TruncationSide) -> tuple[list[int], bool]: ...  # noqa: D102


class PairText:
    """One text of pairs, checked and tokenized once as far as truncation to ``max_length`` can need.

    A query shared by many documents is one PairText: its check and its tokens are not redone per pair (a 2 MB
    query costs its first few thousand characters, once). ``ids`` are the text's first (``right``) or last
    (``left``) tokens: all of them, or ``max_length - 2`` where it has more; the whole text's token count, which
    the reference's rule needs only when both texts of a pair are over the budget and the budget is odd, is
    computed on first use.
    """

    def __init__(
        self, tokenizer: PairTokenizer, text: str, max_length: int, side: str | TruncationSide = "right"
    ) -> None:
        if max_length < _SPECIAL_TOKENS:
            raise TokenizerError(f"max_length must be >= {_SPECIAL_TOKENS} for pairs, got {max_length}")
        check_texts([text])
        self.text = text
        self.side = TruncationSide.parse(side)
        self.max_length = max_length
        self.ids, self.dropped = tokenizer.encode_within(text, max_length - _SPECIAL_TOKENS + 1, self.side)
        self._tokenizer = tokenizer
        self._count: int | None = None
        self._lock = threading.Lock()

    @property
    def over(self) -> bool:
        """Whether the text alone has more tokens than a pair's budget (``max_length`` - 3)."""
        return self.dropped or len(self.ids) > self.max_length - _SPECIAL_TOKENS

    def count(self) -> int:
        """The whole text's token count (tokenized in full once, on first use, only when over the budget)."""
        if not self.over or self.dropped:  # a dropped run is never read: its ids so far stand for it
            return len(self.ids)
        with self._lock:
            if self._count is None:
                self._count = len(self._tokenizer.tokenize_ids(self.text))
            return self._count

    def kept(self, n: int) -> list[int]:
        """The ``n`` tokens truncation keeps: the first, or with ``left`` the last."""
        return self.ids[:n] if self.side is TruncationSide.RIGHT else self.ids[max(0, len(self.ids) - n) :]


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


Text = str | PairText


def check_pairs(pairs: Sequence[Sequence[Text]]) -> list[tuple[Text, Text]]:
    """``pairs`` as a list of (text, text), or a TypeError naming the first bad index (a PairText is checked)."""
    if isinstance(pairs, (str, bytes)) or not isinstance(pairs, Sequence):
        raise TypeError(f"pairs must be a list of (text, text) pairs, got {type(pairs).__name__}")
    out = []
    checked: set[int] = set()  # a text object shared by many pairs (the query) is checked once
    for i, pair in enumerate(pairs):
        if isinstance(pair, (str, bytes)) or not isinstance(pair, Sequence) or len(pair) != 2:
            raise TypeError(f"pairs[{i}] must be a pair of two texts, got {type(pair).__name__}")
        first, second = pair
        for j, text in enumerate((first, second)):
            if isinstance(text, PairText) or id(text) in checked:
                continue
            try:
                check_texts([text])
            except (TypeError, ValueError) as exc:
                raise type(exc)(str(exc).replace("texts[0]", f"pairs[{i}][{j}]", 1)) from None
            checked.add(id(text))
        out.append((first, second))
    return out


def encode_pairs(
    tokenizer: PairTokenizer, pairs: Sequence[tuple[Text, Text]], max_length: int
) -> tuple[list[list[int]], list[int]]:
    """Each pair's ids, unpadded, and where its second segment starts (token type 1 from there on)."""
    rows, starts, _ = encode_pairs_truncated(tokenizer, pairs, max_length)
    return rows, starts


def encode_pairs_truncated(
    tokenizer: PairTokenizer,
    pairs: Sequence[tuple[Text, Text]],
    max_length: int,
    side: str | TruncationSide = "right",
) -> tuple[list[list[int]], list[int], list[bool]]:
    """``encode_pairs``, and per pair whether its texts had more tokens than fit (so it was cut).

    ``side`` is which end of each text longest_first truncation keeps (the reference's truncation direction);
    a :class:`PairText` given in ``pairs`` must have been made for the same ``max_length`` and side.
    """
    side = TruncationSide.parse(side)
    budget = max_length - _SPECIAL_TOKENS
    cls_id, sep_id = tokenizer.cls_id, tokenizer.sep_id
    made: dict[str, PairText] = {}  # a text shared by many pairs (the query) is tokenized once per call

    def prepared(text: Text) -> PairText:
        if isinstance(text, PairText):
            if (text.max_length, text.side) != (max_length, side):
                raise ValueError(
                    f"a PairText made for max_length {text.max_length}, {text.side.value} truncation was given "
                    f"to pairs of max_length {max_length}, {side.value} truncation"
                )
            return text
        found = made.get(text)
        return found if found is not None else made.setdefault(text, PairText(tokenizer, text, max_length, side))

    rows, starts, truncated = [], [], []
    for first, second in pairs:
        a, b = prepared(first), prepared(second)
        # The exact counts matter only for which text gets the odd token when both are over the budget.
        exact = a.over and b.over and budget % 2
        n1, n2 = pair_lengths(a.count() if exact else len(a.ids), b.count() if exact else len(b.ids), budget)
        rows.append([cls_id, *a.kept(n1), sep_id, *b.kept(n2), sep_id])
        starts.append(n1 + 2)
        truncated.append(a.dropped or b.dropped or n1 < len(a.ids) or n2 < len(b.ids))
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
