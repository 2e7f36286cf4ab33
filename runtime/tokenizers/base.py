r"""What every tokenizer shares: errors, text checks, the per-piece cache bound and ``BatchEncoder``.

``BatchEncoder`` does the batching, truncation on either side, the long-text cut that tokenizes only what
truncation keeps, and padding.

Lone surrogates (e.g. ``"a\ud800b"``): the reference cannot convert such a string to Rust and raises
``TypeError``; the tokenizers raise :class:`TokenizerError` (a ``ValueError``) naming the text's index and
the position, instead of producing ids the reference would never produce.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from itertools import chain
from typing import Any

import numpy as np

from embedrt.config import Choice

__all__ = ["BatchEncoder", "TokenizerError", "TruncationSide", "cache_add", "check_texts"]

_SURROGATE = re.compile("[\ud800-\udfff]")
# Bounds the models' per-piece caches (entries, and characters of the pieces kept); each model decides which pieces
# are worth keeping (WordPiece: a piece longer than a word can be is [UNK] after a length check, never kept).
_CACHE_CAP = 200_000
_CACHE_CHARS = 2_000_000
# The first chunk of a long text that _encode_within tokenizes (at least 8 characters per id it needs).
_MIN_CHUNK_CHARS = 4096


class TokenizerError(ValueError):
    """A tokenizer file that cannot be reproduced, or a text the reference tokenizer cannot encode."""


def cache_add(cache: dict[str, Any], key: str, value: Any, chars: int) -> int:
    """Add one entry to a per-piece cache, emptying it first when full (entries or characters); the new count."""
    if len(cache) >= _CACHE_CAP or chars + len(key) > _CACHE_CHARS:
        cache.clear()
        chars = 0
    cache[key] = value
    return chars + len(key)


class TruncationSide(Choice):
    """Which end of a text truncation keeps: its start (``right``: the end is cut) or its end (``left``)."""

    RIGHT = "right"
    LEFT = "left"


class BatchEncoder:
    """Batching, truncation and padding shared by the tokenizers, as the reference does them.

    A subclass sets ``_prefix_ids`` / ``_suffix_ids`` (the special tokens its post-processor puts around a single
    text) and ``pad_id``, and gives ``_encode`` (a whole text's ids) and ``_find_cut``: positions where a text can
    be cut so that the ids of the two parts joined are the ids of the whole (no normalizer step, added token or
    pre-tokenizer piece reaches across). With them, only as much of a long text is tokenized as its truncation
    needs (``_encode_within``).
    """

    _prefix_ids: tuple[int, ...] = ()
    _suffix_ids: tuple[int, ...] = ()
    # Where no cut exists within this many chunk sizes, the text is cut anyway there and the rest is dropped
    # unread (as text-embeddings-inference caps characters); None: runs without a cut are cheap, read them all.
    _run_cap: int | None = None

    @property
    def pad_id(self) -> int:
        """Id used to pad rows to the longest one."""
        raise NotImplementedError

    def _encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def _find_cut(self, text: str, lo: int, hi: int, last: bool) -> int:
        """A position in [lo, hi) where ``text`` can be cut exactly: the first (or with ``last`` the last), or -1."""
        raise NotImplementedError

    def _forced_cut(self, text: str, pos: int) -> int:
        """Where to cut near ``pos`` when no exact cut is within reach (only with ``_run_cap``)."""
        return pos

    def tokenize_ids(self, text: str) -> list[int]:
        """Token ids of one text, without the special tokens around it and not truncated."""
        if not isinstance(text, str):
            raise TypeError(f"text is {type(text).__name__}; expected str")
        _check_surrogates(text, "text")
        return self._encode(text)

    def encode_within(
        self, text: str, need: int, side: str | TruncationSide = TruncationSide.RIGHT
    ) -> tuple[list[int], bool]:
        """Ids of the start (``right``) or end (``left``) of a checked text, and whether characters were dropped.

        The ids are all of them, or at least ``need`` where the text has more; characters are dropped unread only
        past a run with no cut (see ``_run_cap``), which counts as truncation. Tokenizes growing chunks between
        exact cuts from the kept end, so a 3 MB text costs about what its first (or last) few thousand characters
        cost.
        """
        size = max(_MIN_CHUNK_CHARS, 8 * need)
        if len(text) <= size:
            return self._encode(text), False
        if TruncationSide.parse(side) is TruncationSide.LEFT:
            return self._encode_end(text, need, size)
        return self._encode_start(text, need, size)

    def _encode_start(self, text: str, need: int, size: int) -> tuple[list[int], bool]:
        ids: list[int] = []
        start, n = 0, len(text)
        while start < n and len(ids) < need:
            reach = n if self._run_cap is None else min(n, start + self._run_cap * size)
            end = self._find_cut(text, start + size, reach, False) if start + size < n else n
            if end < 0 and reach < n:
                end = self._forced_cut(text, reach)
                return ids + self._encode(text[start:end]), True
            end = n if end < 0 else end
            ids += self._encode(text[start:end])
            start, size = end, size * 2
        return ids, False

    def _encode_end(self, text: str, need: int, size: int) -> tuple[list[int], bool]:
        chunks: list[list[int]] = []
        count, end = 0, len(text)
        dropped = False
        while end > 0 and count < need:
            reach = 0 if self._run_cap is None else max(0, end - self._run_cap * size)
            start = self._find_cut(text, max(reach, 1), end - size + 1, True) if end - size > 0 else 0
            if start < 0 and reach > 0:
                start, dropped = self._forced_cut(text, reach), True
            start = max(start, 0)
            chunks.append(self._encode(text[start:end]))
            count += len(chunks[-1])
            end, size = start, size * 2
            if dropped:
                break
        return list(chain.from_iterable(reversed(chunks))), dropped

    def encode_batch(
        self, texts: Sequence[str], max_length: int, side: str | TruncationSide = TruncationSide.RIGHT
    ) -> list[list[int]]:
        """Per text: the special tokens around its first (or with ``left`` last) max_length - their count ids."""
        return self.encode_batch_truncated(texts, max_length, side)[0]

    def encode_batch_truncated(
        self, texts: Sequence[str], max_length: int, side: str | TruncationSide = TruncationSide.RIGHT
    ) -> tuple[list[list[int]], list[bool]]:
        """``encode_batch``, and per text whether it had more tokens than fit (so it was truncated).

        Only as much of a long text is tokenized as the cut needs (see ``encode_within``).
        """
        prefix, suffix = self._prefix_ids, self._suffix_ids
        keep = _check_max_length(max_length) - len(prefix) - len(suffix)
        if keep < 0:
            raise TokenizerError(
                f"max_length {max_length} leaves no room for the {len(prefix) + len(suffix)} special tokens"
            )
        side = TruncationSide.parse(side)
        rows, truncated = [], []
        for text in check_texts(texts):
            ids, dropped = self.encode_within(text, keep + 1, side)
            kept = ids[:keep] if side is TruncationSide.RIGHT else ids[max(0, len(ids) - keep) :]
            rows.append([*prefix, *kept, *suffix])
            truncated.append(dropped or len(ids) > keep)
        return rows, truncated

    def pad(self, rows: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
        """(input_ids, attention_mask), int64, (n, longest): rows padded on the right with the pad id."""
        if len(rows) == 1:  # nothing to pad: the single-text call, where every microsecond shows in latency
            input_ids = np.array(rows, dtype=np.int64)
            return input_ids, np.ones_like(input_ids)
        lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        width = int(lengths.max()) if len(rows) else 0
        mask = np.arange(width, dtype=np.int64)[None, :] < lengths[:, None]
        input_ids = np.full((len(rows), width), self.pad_id, dtype=np.int64)
        # Boolean assignment fills in row-major order, which is the order of the concatenated rows.
        input_ids[mask] = np.fromiter(chain.from_iterable(rows), dtype=np.int64, count=int(lengths.sum()))
        return input_ids, mask.astype(np.int64)

    def __call__(self, texts: Sequence[str], max_length: int) -> tuple[np.ndarray, np.ndarray]:
        """Return (input_ids, attention_mask) like the reference with padding=True, truncation=longest_first.

        Raises:
            TypeError: ``texts`` is not a list/tuple of str (the message names the first bad index).
            TokenizerError: a text holds a lone surrogate, or ``max_length`` < 2.

        """
        return self.pad(self.encode_batch(texts, max_length))


def _check_max_length(max_length: int) -> int:
    if not isinstance(max_length, int) or isinstance(max_length, bool) or max_length < 2:
        raise TokenizerError(f"max_length must be an int >= 2 (room for [CLS] and [SEP]), got {max_length!r}")
    return max_length


def check_texts(texts: Sequence[str]) -> Sequence[str]:
    """Return ``texts`` if it is a list/tuple of valid str, else raise naming the first bad index."""
    # The exact-type test first: an ABC isinstance check costs microseconds on every single-text call.
    if type(texts) not in (list, tuple) and (
        isinstance(texts, (str, bytes, bytearray)) or not isinstance(texts, Sequence)
    ):
        raise TypeError(f"texts must be a list or tuple of str, got {type(texts).__name__}")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{i}] is {type(text).__name__}; expected str")
        _check_surrogates(text, f"texts[{i}]")
    return texts


def _check_surrogates(text: str, name: str) -> None:
    if text.isascii():
        return
    match = _SURROGATE.search(text)
    if match is not None:
        raise TokenizerError(
            f"{name} contains a lone surrogate U+{ord(match.group()):04X} at position {match.start()}; "
            "it is not valid Unicode text and the reference tokenizer cannot encode it either "
            "(decode bytes with errors='replace' or remove it)"
        )
