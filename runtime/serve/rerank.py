"""Serving a cross-encoder: pair scores with each pair's tokens and truncation, the score convention, the order.

Both rerank routes score a one-label model as text-embeddings-inference and infinity-emb do: the sigmoid of the
logit, or the logit itself with ``raw_scores``; results are sorted by score, highest first, ties in input order.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from embedrt.config import Activation
from embedrt.dense import activate
from embedrt.reranker import Reranker
from embedrt.serve.batcher import ENCODE_BATCH_SIZE, Compute, Rows
from embedrt.serve.errors import ApiError
from embedrt.tokenizers import TruncationSide
from embedrt.tokenizers.pairs import Text

PAIR_SPECIAL_TOKENS = 3  # BERT's [CLS] query [SEP] document [SEP]; XLM-R's template has 4
SCORES = "sigmoid(logit); the logit with raw_scores true"


@dataclass(frozen=True)
class RerankKind:
    """The batcher's group key of rerank requests: requests that truncate the same way share model calls."""

    truncation: TruncationSide = TruncationSide.RIGHT


def pair_scores(
    reranker: Reranker,
    pairs: Sequence[tuple[Text, str]],
    batch_size: int = ENCODE_BATCH_SIZE,
    truncation: TruncationSide = TruncationSide.RIGHT,
) -> Rows:
    """The logits (n, num_labels), and per pair its tokens (after truncation, specials included) and truncation."""
    out = reranker.score(pairs, batch_size, truncation=truncation)
    return Rows(out.logits, out.tokens, out.truncated)


def rerank_compute(reranker: Reranker) -> Compute:
    """The batcher's compute function for a cross-encoder: (query, document) pairs in, logits out.

    The query is a :class:`~embedrt.tokenizers.pairs.PairText` shared by the request's pairs (checked and
    tokenized once).
    """

    def compute(pairs: list[Any], kind: Hashable) -> Rows:
        truncation = kind.truncation if isinstance(kind, RerankKind) else TruncationSide.RIGHT
        return pair_scores(reranker, pairs, truncation=truncation)

    return compute


def pair_sizes(query: str, documents: Sequence[str]) -> list[int]:
    """Each pair's share of the queue budget: its document's characters, the query's counted once (on the first).

    The pairs share one query string, so a long query held once is not counted once per document (which could
    make a request that fits the body limit never fit the queue budget).
    """
    sizes = [len(d) for d in documents]
    if sizes:
        sizes[0] += len(query)
    return sizes


def pair_too_long(param: str, max_length: int, index: int, *, specials: int = PAIR_SPECIAL_TOKENS) -> ApiError:
    """413 for ``param[index]``, which with the query has more tokens than the model takes (truncate false).

    ``specials``: the pair template's special tokens (3 for BERT's, 4 for XLM-R's ``<s> q </s></s> d </s>``).
    """
    around = "[CLS] and the two [SEP]" if specials == PAIR_SPECIAL_TOKENS else f"the {specials} special tokens"
    return ApiError(
        413,
        f"{param}[{index}] with the query has more than {max_length - specials} tokens besides {around} "
        f"(max_length {max_length}); send it shorter or with truncate true",
        param=f"{param}[{index}]",
        code="input_too_long",
    )


def check_reranker(model: Reranker) -> None:
    """Refuse the rerank routes for a model with more than one label, as text-embeddings-inference does."""
    if model.num_labels != 1:
        raise ApiError(
            400,
            f"this server's cross-encoder has {model.num_labels} labels (a classifier); /rerank and /v1/rerank "
            "need a one-label relevance model, as text-embeddings-inference's /rerank does",
            code="not_a_reranker",
        )


def relevance(logits: np.ndarray, raw_scores: bool) -> np.ndarray:
    """(n,) float32 scores of a one-label model: the sigmoid of each logit, or the logit with ``raw_scores``."""
    column = np.ascontiguousarray(logits[:, 0])
    return column if raw_scores else activate(column, Activation.SIGMOID)


def ranking(scores: np.ndarray) -> list[int]:
    """Indices by score, highest first; equal scores keep their input order (NaN, which never occurs, last)."""
    return [int(i) for i in np.argsort(-scores, kind="stable")]


def scores_info(model: Reranker) -> dict[str, Any]:
    """/info's ``scores``: what each rerank route returns, and the model's own convention."""
    usable = model.num_labels == 1
    route = SCORES if usable else f"unavailable: the model has {model.num_labels} labels; rerank needs one"
    return {
        "rerank": route,
        "v1/rerank": route,
        "activation": model.activation.value,  # what Reranker.predict applies by default
        "num_labels": model.num_labels,
    }
