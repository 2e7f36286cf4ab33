"""Text pairs as the post-processor's pair template lays them out, with longest_first truncation.

BERT's template is ``[CLS] a [SEP] b [SEP]``, token types 0 then 1; XLM-R's (RobertaProcessing, or the
TemplateProcessing its converter writes) is ``<s> a </s></s> b </s>``, token types all 0. The template's special
tokens are taken off the budget first (3 for BERT, 4 for XLM-R), and the texts share what is left.

The reference is the Hugging Face fast tokenizer called on pairs as sentence-transformers' CrossEncoder calls it
(``tokenizer(firsts, seconds, padding=True, truncation="longest_first", max_length=...)``); its truncation rule is
``tokenizers/src/utils/truncation.rs``, reproduced in ``pair_lengths``. That call is a batch call, which keeps an
empty second text (``<s> a </s></s></s>``) where a call on one pair drops it: the batch behaviour is the one here.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from embedrt.tokenizers.base import TokenizerError, TruncationSide, check_texts
from embedrt.tokenizers.processors import Template


class PairTokenizer(Protocol):
    """What pair encoding needs of a tokenizer."""

    @property
    def template(self) -> Template: ...  # noqa: D102

    @property
    def pad_id(self) -> int: ...  # noqa: D102

    def tokenize_ids(self, text: str) -> list[int]: ...  # noqa: D102

    def encode_within(self, text: str, need: int, side: TruncationSide) -> tuple[list[int], bool]: ...  # noqa: D102


@dataclass(frozen=True)
class PairLayout:
    """A pair template compiled for encoding: the special ids before, between and after the two texts.

    Token types are 0 up to ``type_one`` and 1 from there to the end of the row (``type_one`` None: all 0); that
    covers BERT's and RoBERTa's templates. ``type_one`` counts the fixed ids before the switch, and whether the
    first text (and the second) come before it.
    """

    before: tuple[int, ...]
    between: tuple[int, ...]
    after: tuple[int, ...]
    type_one: tuple[int, bool, bool] | None

    @property
    def specials(self) -> int:
        """The template's special tokens: what a pair's texts cannot use of ``max_length``."""
        return len(self.before) + len(self.between) + len(self.after)

    def type_one_start(self, n1: int, n2: int) -> int:
        """Where token type 1 starts in a row of texts of ``n1`` and ``n2`` tokens (the row's length: nowhere)."""
        if self.type_one is None:
            return n1 + n2 + self.specials
        fixed, with_first, with_second = self.type_one
        return fixed + (n1 if with_first else 0) + (n2 if with_second else 0)

    @classmethod
    def of(cls, template: Template) -> PairLayout:
        """Compile ``template.pair``; a TokenizerError for a template this encoder cannot lay out."""
        items, types = template.pair, template.pair_types or (0,) * len(template.pair)
        names = [i for i in items if isinstance(i, str)]
        if names != ["A", "B"] or len(types) != len(items):
            raise TokenizerError(
                f"post_processor pair template {items!r}: embedrt lays out pairs with the sequence A, then B, once each"
            )
        first, second = items.index("A"), items.index("B")
        if any(t not in (0, 1) for t in types) or list(types) != sorted(types):
            raise TokenizerError(
                f"post_processor pair template gives token types {list(types)}; embedrt supports 0s, then 1s"
            )

        def ids(part: Sequence[str | tuple[int, ...]]) -> tuple[int, ...]:
            return tuple(i for item in part if isinstance(item, tuple) for i in item)

        type_one = None
        if 1 in types:
            at = types.index(1)
            type_one = (len(ids(items[:at])), first < at, second < at)
        return cls(ids(items[:first]), ids(items[first + 1 : second]), ids(items[second + 1 :]), type_one)


class PairText:
    """One text of pairs, checked and tokenized once as far as truncation to ``max_length`` can need.

    A query shared by many documents is one PairText: its check and its tokens are not redone per pair (a 2 MB
    query costs its first few thousand characters, once). ``ids`` are the text's first (``right``) or last
    (``left``) tokens: all of them, or one more than the pair budget (``max_length`` less the template's special
    tokens) where it has more; the whole text's token count, which the reference's rule needs only when both
    texts of a pair are over the budget and the budget is odd, is computed on first use.
    """

    def __init__(
        self, tokenizer: PairTokenizer, text: str, max_length: int, side: str | TruncationSide = "right"
    ) -> None:
        self.budget = pair_budget(tokenizer, max_length)
        check_texts([text])
        self.text = text
        self.side = TruncationSide.parse(side)
        self.max_length = max_length
        self.ids, self.dropped = tokenizer.encode_within(text, self.budget + 1, self.side)
        self._tokenizer = tokenizer
        self._count: int | None = None
        self._lock = threading.Lock()

    @property
    def over(self) -> bool:
        """Whether the text alone has more tokens than a pair's budget (``max_length`` less the special tokens)."""
        return self.dropped or len(self.ids) > self.budget

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


@functools.lru_cache(maxsize=16)
def pair_layout(template: Template) -> PairLayout:
    """``PairLayout.of(template)``, compiled once per template (the tokenizers' templates are few and frozen)."""
    return PairLayout.of(template)


def layout_of(tokenizer: PairTokenizer) -> PairLayout:
    """The tokenizer's pair layout; a template it cannot lay out is a TokenizerError naming the tokenizer's file."""
    try:
        return pair_layout(tokenizer.template)
    except TokenizerError as exc:
        raise TokenizerError(f"{getattr(tokenizer, 'source', 'tokenizer.json')}: {exc}") from None


def pair_budget(tokenizer: PairTokenizer, max_length: int) -> int:
    """The tokens a pair's two texts share: ``max_length`` less the pair template's special tokens."""
    specials = layout_of(tokenizer).specials
    if not isinstance(max_length, int) or isinstance(max_length, bool) or max_length < specials:
        raise TokenizerError(
            f"max_length must be an int >= {specials} for pairs (the template's special tokens), got {max_length!r}"
        )
    return max_length - specials


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
    """Each pair's ids, unpadded, and where token type 1 starts (BERT: the second text; XLM-R: the row's end)."""
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
    budget = pair_budget(tokenizer, max_length)
    layout = layout_of(tokenizer)
    before, between, after = layout.before, layout.between, layout.after
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
        rows.append([*before, *a.kept(n1), *between, *b.kept(n2), *after])
        starts.append(layout.type_one_start(n1, n2))
        truncated.append(a.dropped or b.dropped or n1 < len(a.ids) or n2 < len(b.ids))
    return rows, starts, truncated


def pad_pairs(pad_id: int, rows: Sequence[Sequence[int]], starts: Sequence[int]) -> dict[str, np.ndarray]:
    """input_ids, attention_mask and token_type_ids (int64), right-padded to the longest row.

    The mask comes from the rows' lengths, never from ``input_ids != pad_id``: a literal ``<pad>`` in a text is the
    pad id and is attended to, as in the reference.
    """
    width = max((len(r) for r in rows), default=0)
    input_ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    attention_mask = np.zeros((len(rows), width), dtype=np.int64)
    token_type_ids = np.zeros((len(rows), width), dtype=np.int64)
    for i, (row, start) in enumerate(zip(rows, starts, strict=True)):
        input_ids[i, : len(row)] = row
        attention_mask[i, : len(row)] = 1
        token_type_ids[i, start : len(row)] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
