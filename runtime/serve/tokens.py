"""The /tokenize answer (text-embeddings-inference's shape), built as JSON bytes off the event loop.

A request may ask for 2,048 texts of up to max_seq_length tokens each: a dict per token would be hundreds of MB
of Python objects for one answer. Each token's JSON object is made once per id instead, and a row is those
bytes joined.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import orjson


class TokenModel(Protocol):
    """What /tokenize needs of an Encoder or a Reranker (their public API)."""

    @property
    def id_tokens(self) -> dict[int, str]: ...  # noqa: D102

    @property
    def special_ids(self) -> frozenset[int]: ...  # noqa: D102

    def token_ids(self, texts: Sequence[str], add_special_tokens: bool = True) -> list[list[int]]: ...  # noqa: D102


class TokenJson:
    """Each text's tokens as ``[{"id", "text", "special", "start", "stop"}]`` JSON, one object per id made once."""

    def __init__(self, model: TokenModel) -> None:
        self._model = model
        self._objects: dict[int, bytes] = {}  # at most one entry per vocabulary id

    def body(self, texts: Sequence[str], add_special_tokens: bool) -> bytes:
        """The whole answer for ``texts``: a JSON list with one list of token objects per text."""
        rows = self._model.token_ids(texts, add_special_tokens)
        objects = self._objects
        missing = {i for row in rows for i in row if i not in objects}
        if missing:
            tokens, special = self._model.id_tokens, self._model.special_ids
            for i in missing:
                entry = {"id": i, "text": tokens.get(i, ""), "special": i in special, "start": None, "stop": None}
                objects[i] = orjson.dumps(entry)
        return b"[" + b",".join(b"[" + b",".join([objects[i] for i in row]) + b"]" for row in rows) + b"]"
