"""Cohere's API: rerank (``/v1/rerank``, ``/v2/rerank``) and embed (``/v1/embed``, ``/v2/embed``), as its SDK calls it.

Both versions answer ``results`` of ``{"index", "relevance_score", "document"?}``, best first and cut to top_n,
with ``document`` as Cohere's ``{"text": ...}`` object when ``return_documents`` is true: Cohere's SDK parses it
into ``document.text``, and infinity-emb's client takes the field without checking its type. ``/v1/rerank`` keeps
infinity-emb's keys beside Cohere's (``object``, ``created``, ``model``, ``usage``).

Embed takes ``texts`` (not images), maps ``input_type`` ``search_query`` / ``search_document`` onto the model's
``query`` / ``document`` prompt when it has one, and answers ``float`` and ``base64`` (little-endian float32)
embeddings; Cohere's quantized types are refused.
"""

from __future__ import annotations

import base64
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from embedrt.encoder import Encoder
from embedrt.serve.errors import ApiError
from embedrt.serve.protocol import (
    EmbedRequest,
    RerankRequest,
    _describe,
    _json_type,
    _texts,
    cohere_rerank_request,
    float_rows,
)
from embedrt.tokenizers import TruncationSide

DOCUMENTS_PER_SEARCH_UNIT = 100  # Cohere bills one search unit per query of up to 100 documents
INPUT_TYPES = {"search_query": "query", "search_document": "document", "classification": None, "clustering": None}
EMBEDDING_TYPES = ("float", "base64")  # Cohere's int8, uint8, binary and ubinary are not served
# Cohere's truncate: END cuts the end (keeps the start), START cuts the start (keeps the end), NONE refuses.
TRUNCATE = {
    "END": (True, TruncationSide.RIGHT),
    "START": (True, TruncationSide.LEFT),
    "NONE": (False, TruncationSide.RIGHT),
}


@dataclass(frozen=True)
class CohereEmbedRequest:
    """A /v1/embed or /v2/embed body after validation."""

    embed: EmbedRequest
    input_type: str | None
    embedding_types: tuple[str, ...] | None  # None: v1's plain list of float vectors
    model: str | None


def cohere_v2_rerank_request(data: dict[str, Any], max_inputs: int, max_length: int) -> RerankRequest:
    """Validate a /v2/rerank body: ``model``, ``query``, ``documents``, ``top_n``, ``max_tokens_per_doc``.

    Pairs are cut to the model's ``max_length`` tokens, so a ``max_tokens_per_doc`` of at least that changes
    nothing and a smaller one is refused; ``relevant_spans`` is refused; ``priority`` is taken and ignored (one
    queue serves every request). ``return_documents`` and ``raw_scores`` are accepted as on /v1/rerank.
    """
    _token_cap(data, "max_tokens_per_doc", max_length)
    if data.get("relevant_spans") not in (None, False):
        raise ApiError(400, "'relevant_spans' is not supported by this server", param="relevant_spans")
    _priority(data)
    return cohere_rerank_request(data, max_inputs)  # the fields both versions share, checked as on /v1/rerank


def cohere_embed_request(
    data: dict[str, Any], max_inputs: int, dimension: int, max_seq_length: int, *, v2: bool
) -> CohereEmbedRequest:
    """Validate an embed body: ``texts``, ``model``, ``input_type``, ``embedding_types``, ``truncate``.

    On v2 also ``output_dimension`` (the first N values, as /embed's ``dimensions``), ``max_tokens`` (at least
    the model's max_seq_length, since texts are cut to it) and ``priority`` (ignored).
    """
    for name in ("images", "inputs"):
        if data.get(name) is not None:
            raise ApiError(400, f"'{name}' is not supported by this server; send 'texts'", param=name)
    model = data.get("model")
    if model is not None and not isinstance(model, str):
        raise ApiError(400, f"'model' must be a string, found {_json_type(model)}", param="model")
    input_type = data.get("input_type")
    if input_type is not None and input_type not in INPUT_TYPES:
        raise ApiError(
            400, f"'input_type' must be one of {sorted(INPUT_TYPES)}, found {_describe(input_type)}", param="input_type"
        )
    truncate = data.get("truncate", "END")
    if truncate not in TRUNCATE:
        raise ApiError(
            400, f"'truncate' must be 'END', 'START' or 'NONE', found {_describe(truncate)}", param="truncate"
        )
    dimensions = data.get("output_dimension") if v2 else None
    if dimensions is not None and (not _is_int(dimensions) or not 1 <= dimensions <= dimension):
        raise ApiError(
            400,
            f"'output_dimension' must be an integer from 1 to {dimension}, found {_describe(dimensions)}",
            param="output_dimension",
        )
    if v2:
        _token_cap(data, "max_tokens", max_seq_length)
        _priority(data)
    texts = _texts(data, "texts", max_inputs)
    truncate_on, truncation = TRUNCATE[truncate]
    embed = EmbedRequest(texts, dimensions=dimensions, truncate=truncate_on, truncation=truncation)
    return CohereEmbedRequest(embed, input_type, _embedding_types(data.get("embedding_types"), v2), model)


def cohere_prompt(input_type: str | None, encoder: Encoder) -> str | None:
    """The prompt name for Cohere's ``input_type``: ``query`` or ``document`` when the model has it, else None."""
    name = INPUT_TYPES.get(input_type) if input_type is not None else None
    if name is None:
        return None
    try:
        encoder.resolve_prompt(name)
    except ValueError:  # not one of the model's prompts
        return None
    return name


def cohere_embed_body(vectors: np.ndarray, req: CohereEmbedRequest, tokens: int, request_id: str, *, v2: bool) -> bytes:
    """The embed answer: ``embeddings`` as a list (v1 without ``embedding_types``) or by type, the texts, meta."""
    embeddings: list[Any] | dict[str, Any]
    if req.embedding_types is None:
        response_type, embeddings = "embeddings_floats", float_rows(vectors)
    else:
        by_type: dict[str, Any] = {"float": float_rows(vectors)} if "float" in req.embedding_types else {}
        if "base64" in req.embedding_types:
            little = vectors.astype("<f4", copy=False)
            by_type["base64"] = [base64.b64encode(row.tobytes()).decode("ascii") for row in little]
        response_type, embeddings = "embeddings_by_type", by_type
    meta = {
        "api_version": {"version": "2" if v2 else "1"},
        "billed_units": {"input_tokens": tokens},
        "tokens": {"input_tokens": tokens, "output_tokens": 0},
    }
    body = {
        "id": request_id,
        "response_type": response_type,
        "embeddings": embeddings,
        "texts": req.embed.texts,
        "meta": meta,
    }
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


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


def _embedding_types(value: Any, v2: bool) -> tuple[str, ...] | None:
    if value is None:
        return ("float",) if v2 else None
    if not isinstance(value, list) or not value:
        raise ApiError(
            400, f"'embedding_types' must be a non-empty list, found {_json_type(value)}", param="embedding_types"
        )
    for i, kind in enumerate(value):
        if kind not in EMBEDDING_TYPES:
            raise ApiError(
                400,
                f"'embedding_types[{i}]' must be one of {list(EMBEDDING_TYPES)} (this server does not quantize), "
                f"found {_describe(kind)}",
                param=f"embedding_types[{i}]",
            )
    return tuple(value)


def _token_cap(data: dict[str, Any], name: str, window: int) -> None:
    """Texts are cut to the model's window: a cap of at least that changes nothing, a smaller one is refused."""
    cap = data.get(name)
    if cap is not None and (not _is_int(cap) or cap < window):
        raise ApiError(
            400,
            f"'{name}' must be an integer >= {window} (this model's length: every input is cut to it), "
            f"found {_describe(cap)}",
            param=name,
        )


def _priority(data: dict[str, Any]) -> None:
    priority = data.get("priority")
    if priority is not None and not _is_int(priority):
        raise ApiError(400, f"'priority' must be an integer, found {_describe(priority)}", param="priority")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
