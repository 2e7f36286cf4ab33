"""What a model's tokenizer makes of single texts, for callers that show tokens (the server's /tokenize)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from embedrt.tokenizers import TruncationSide


class TokenView:
    """Token ids of single texts as the model sees them, and the token each id stands for.

    Mixed into :class:`~embedrt.encoder.Encoder` and :class:`~embedrt.reranker.Reranker`, which set ``tokenizer``
    and give ``_token_limit`` (max_seq_length, or a cross-encoder's max_length).
    """

    tokenizer: Any

    @property
    def _token_limit(self) -> int:
        raise NotImplementedError

    def token_ids(
        self, texts: Sequence[str], add_special_tokens: bool = True, truncation: str | TruncationSide = "right"
    ) -> list[list[int]]:
        """Each text's token ids, unpadded, truncated to the model's limit; [CLS] and [SEP] unless told not to.

        ``truncation`` ``right`` keeps a long text's start, ``left`` its end.
        """
        rows = self.tokenizer.encode_batch(texts, self._token_limit, TruncationSide.parse(truncation))
        return rows if add_special_tokens else [row[1:-1] for row in rows]

    @functools.cached_property
    def id_tokens(self) -> dict[int, str]:
        """Each id's token text, to show what ``token_ids`` returned."""
        return dict(self.tokenizer.tokens_by_id())

    @property
    def special_ids(self) -> frozenset[int]:
        """Ids of the tokenizer's special tokens ([CLS], [SEP], [PAD], [UNK], added tokens)."""
        return frozenset(self.tokenizer.special_ids)
