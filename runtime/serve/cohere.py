"""Cohere's rerank API: ``/v2/rerank`` as ``cohere.ClientV2`` calls it, and the answers of both versions.

Both versions answer ``results`` of ``{"index", "relevance_score", "document"?}``, best first and cut to top_n,
with ``document`` as Cohere's ``{"text": ...}`` object when ``return_documents`` is true: Cohere's SDK parses it
into ``document.text``, and infinity-emb's client takes the field without checking its type. ``/v1/rerank`` keeps
infinity-emb's keys beside Cohere's (``object``, ``created``, ``model``, ``usage``).
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import orjson

from embedrt.serve.errors import ApiError
from embedrt.serve.protocol import RerankRequest, _describe, cohere_rerank_request

DOCUMENTS_PER_SEARCH_UNIT = 100  # Cohere bills one search unit per query of up to 100 documents


def cohere_v2_rerank_request(data: dict[str, Any], max_inputs: int, max_length: int) -> RerankRequest:
    """Validate a /v2/rerank body: ``model``, ``query``, ``documents``, ``top_n``, ``max_tokens_per_doc``.

    Pairs are cut to the model's ``max_length`` tokens, so a ``max_tokens_per_doc`` of at least that changes
    nothing and a smaller one is refused; ``relevant_spans`` is refused; ``priority`` is taken and ignored (one
    queue serves every request). ``return_documents`` and ``raw_scores`` are accepted as on /v1/rerank.
    """
    per_doc = data.get("max_tokens_per_doc")
    if per_doc is not None and (not _is_int(per_doc) or per_doc < max_length):
        raise ApiError(
            400,
            f"'max_tokens_per_doc' must be an integer >= {max_length} (this model's max_length: each pair is cut "
            f"to it), found {_describe(per_doc)}",
            param="max_tokens_per_doc",
        )
    if data.get("relevant_spans") not in (None, False):
        raise ApiError(400, "'relevant_spans' is not supported by this server", param="relevant_spans")
    priority = data.get("priority")
    if priority is not None and not _is_int(priority):
        raise ApiError(400, f"'priority' must be an integer, found {_describe(priority)}", param="priority")
    return cohere_rerank_request(data, max_inputs)  # the fields both versions share, checked as on /v1/rerank


def cohere_v1_rerank_body(
    order: list[int], scores: np.ndarray, documents: list[str] | None, model: str, tokens: int, request_id: str
) -> bytes:
    """The /v1/rerank answer: Cohere v1's ``id``, ``results`` and ``meta``, and infinity-emb's other keys."""
    body = {
        "object": "rerank",
        "id": request_id,
        "created": int(time.time()),
        "model": model,
        "results": _results(order, scores, documents),
        "meta": _meta("1", len(scores), tokens),
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


def cohere_v2_rerank_body(
    order: list[int], scores: np.ndarray, documents: list[str] | None, tokens: int, request_id: str
) -> bytes:
    """The /v2/rerank answer: ``{"id", "results", "meta"}``."""
    body = {"id": request_id, "results": _results(order, scores, documents), "meta": _meta("2", len(scores), tokens)}
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


def _results(order: list[int], scores: np.ndarray, documents: list[str] | None) -> list[dict[str, Any]]:
    if documents is None:
        return [{"index": i, "relevance_score": scores[i]} for i in order]
    return [{"index": i, "relevance_score": scores[i], "document": {"text": documents[i]}} for i in order]


def _meta(version: str, documents: int, tokens: int) -> dict[str, Any]:
    units = math.ceil(documents / DOCUMENTS_PER_SEARCH_UNIT)
    return {
        "api_version": {"version": version},
        "billed_units": {"search_units": units},
        "tokens": {"input_tokens": tokens, "output_tokens": 0},
    }


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
