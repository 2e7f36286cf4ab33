"""Request bodies of the APIs, checked field by field, and the answers' JSON forms.

``/v1/embeddings`` follows OpenAI's embeddings API as the official client sends it; ``/embed`` and ``/rerank``
follow text-embeddings-inference; ``/v1/rerank`` follows Cohere's rerank API as Cohere and infinity-emb take it
(its answers and /v2/rerank: ``embedrt.serve.cohere``; /similarity and /info's TEI fields: ``embedrt.serve.tei``).
Every refusal is an :class:`ApiError` naming the field (and the index in a list), never quoting a text.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from embedrt.config import Choice
from embedrt.serve.errors import ApiError
from embedrt.tokenizers import TruncationSide, check_texts

# Answers with more rows than this are written row by row (``float_rows``); fewer, by one orjson call.
FRAGMENT_ROWS = 8


class EncodingFormat(Choice):
    """How /v1/embeddings writes a vector: a list of floats, or base64 of little-endian float32 bytes."""

    FLOAT = "float"
    BASE64 = "base64"


@dataclass(frozen=True)
class EmbedRequest:
    """What either route asks of the model, after validation.

    ``normalize`` None keeps the model's own choice (its Normalize module); ``dimensions`` keeps the first N
    values and then re-normalizes when the vector is normalized (on /v1/embeddings always, as OpenAI does).
    """

    texts: list[str]
    normalize: bool | None = None
    dimensions: int | None = None
    truncate: bool = True
    prompt_name: str | None = None
    encoding_format: EncodingFormat | None = None  # None: float
    model: str | None = None
    truncation: TruncationSide = TruncationSide.RIGHT  # text-embeddings-inference's truncation_direction


@dataclass(frozen=True)
class RerankRequest:
    """What either rerank route asks, after validation: a query, its documents and how to answer."""

    query: str
    documents: list[str]
    raw_scores: bool = False  # the logits instead of their sigmoid
    return_documents: bool = False  # /rerank's return_text, /v1/rerank's return_documents
    truncate: bool = True  # False: a pair longer than the model takes is a 413
    top_n: int | None = None  # /v1/rerank: keep the best N
    model: str | None = None
    truncation: TruncationSide = TruncationSide.RIGHT  # text-embeddings-inference's truncation_direction


def parse_body(body: bytes) -> dict[str, Any]:
    """The body's JSON object; 400 for anything else (garbage, NaN, a list, invalid UTF-8)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = _parse_strict(body)  # orjson refuses lone surrogate escapes, which get a precise error later
    if not isinstance(data, dict):
        raise ApiError(400, f"the body must be a JSON object, found {_json_type(data)}")
    return data


def openai_request(data: dict[str, Any], max_inputs: int, dimension: int) -> EmbedRequest:
    """Validate a /v1/embeddings body."""
    model = data.get("model")
    if model is not None and not isinstance(model, str):
        raise ApiError(400, f"'model' must be a string, found {_json_type(model)}", param="model")
    fmt = data.get("encoding_format")
    fmt = "float" if fmt is None else fmt
    if not isinstance(fmt, str) or fmt not in ("float", "base64"):
        raise ApiError(
            400, f"'encoding_format' must be 'float' or 'base64', got {_short(fmt)}", param="encoding_format"
        )
    dimensions = _dimensions(data.get("dimensions"), dimension)
    return EmbedRequest(
        texts=_texts(data, "input", max_inputs),
        normalize=True if dimensions is not None else None,  # OpenAI's shortened vectors are unit vectors
        dimensions=dimensions,
        encoding_format=EncodingFormat(fmt),
        model=model,
    )


def tokenize_request(data: dict[str, Any], max_inputs: int) -> tuple[list[str], bool]:
    """Validate a /tokenize body (text-embeddings-inference): the texts and ``add_special_tokens``."""
    return _texts(data, "inputs", max_inputs), _flag(data, "add_special_tokens", True)


def tei_request(data: dict[str, Any], max_inputs: int, dimension: int) -> EmbedRequest:
    """Validate an /embed body (text-embeddings-inference)."""
    prompt_name = data.get("prompt_name")
    if prompt_name is not None and not isinstance(prompt_name, str):
        raise ApiError(400, f"'prompt_name' must be a string, found {_json_type(prompt_name)}", param="prompt_name")
    return EmbedRequest(
        texts=_texts(data, "inputs", max_inputs),
        normalize=_flag(data, "normalize", True),
        dimensions=_dimensions(data.get("dimensions"), dimension),
        truncate=_flag(data, "truncate", True),
        prompt_name=prompt_name,
        truncation=truncation_direction(data),
    )


def tei_rerank_request(data: dict[str, Any], max_inputs: int) -> RerankRequest:
    """Validate a /rerank body (text-embeddings-inference).

    Fields: query, texts, raw_scores, return_text, truncate, truncation_direction.
    """
    return RerankRequest(
        query=_query(data),
        documents=_documents(data, "texts", max_inputs, objects=False),
        raw_scores=_flag(data, "raw_scores", False),
        return_documents=_flag(data, "return_text", False),
        truncate=_flag(data, "truncate", True),  # as /embed: text-embeddings-inference's --auto-truncate default
        truncation=truncation_direction(data),
    )


def cohere_rerank_request(data: dict[str, Any], max_inputs: int) -> RerankRequest:
    """Validate a /v1/rerank body (Cohere, Jina, infinity-emb): query, documents, top_n, return_documents, model."""
    model = data.get("model")
    if model is not None and not isinstance(model, str):
        raise ApiError(400, f"'model' must be a string, found {_json_type(model)}", param="model")
    top_n = data.get("top_n")
    if top_n is not None and (not isinstance(top_n, int) or isinstance(top_n, bool) or top_n < 1):
        raise ApiError(400, f"'top_n' must be an integer >= 1, found {_describe(top_n)}", param="top_n")
    return RerankRequest(
        query=_query(data),
        documents=_documents(data, "documents", max_inputs, objects=True),
        raw_scores=_flag(data, "raw_scores", False),
        return_documents=_flag(data, "return_documents", False),
        top_n=top_n,
        model=model,
    )


def truncation_direction(data: dict[str, Any]) -> TruncationSide:
    """text-embeddings-inference's ``truncation_direction``: ``right`` (default) keeps the start, ``left`` the end.

    Its clients send either case ("Left" in older huggingface_hub releases).
    """
    value = data.get("truncation_direction")
    if value is None:
        return TruncationSide.RIGHT
    if isinstance(value, str) and value.lower() in ("right", "left"):
        return TruncationSide(value.lower())
    found = "another string" if isinstance(value, str) else _describe(value)  # never a client's text back
    raise ApiError(
        400, f"'truncation_direction' must be 'right' or 'left', found {found}", param="truncation_direction"
    )


def tei_rerank_body(order: list[int], scores: np.ndarray, texts: list[str] | None) -> bytes:
    """The /rerank response: ``[{"index", "text"?, "score"}]`` in ``order``; texts only when asked for."""
    items = [
        {"index": i, "text": texts[i], "score": scores[i]} if texts is not None else {"index": i, "score": scores[i]}
        for i in order
    ]
    return orjson.dumps(items, option=orjson.OPT_SERIALIZE_NUMPY)


def float_rows(vectors: np.ndarray) -> list[Any]:
    """The rows of ``vectors`` for orjson to write as lists of floats: the same bytes whatever their number.

    Up to ``FRAGMENT_ROWS`` rows are the array's rows (orjson writes them without a copy). More are each written
    by an orjson call of its own into an ``orjson.Fragment`` (pasted into the answer as is): orjson holds the GIL
    for a whole call, and one call over 2,048 vectors of 384 floats holds it for about 40 ms, while a thread
    encoding a large answer must let the event loop's thread take the GIL (within the switch interval) to serve
    other requests meanwhile.
    """
    if len(vectors) <= FRAGMENT_ROWS:
        return list(vectors)
    return [orjson.Fragment(orjson.dumps(row, option=orjson.OPT_SERIALIZE_NUMPY)) for row in vectors]


def openai_body(vectors: np.ndarray, fmt: EncodingFormat, model: str, tokens: int) -> bytes:
    """The /v1/embeddings response."""
    if fmt is EncodingFormat.BASE64:
        little = vectors.astype("<f4", copy=False)
        items: list[Any] = [base64.b64encode(row.tobytes()).decode("ascii") for row in little]
    else:
        items = float_rows(vectors)
    data = [{"object": "embedding", "index": i, "embedding": item} for i, item in enumerate(items)]
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    return orjson.dumps(
        {"object": "list", "data": data, "model": model, "usage": usage}, option=orjson.OPT_SERIALIZE_NUMPY
    )


def tei_body(vectors: np.ndarray) -> bytes:
    """The /embed response: a list of vectors."""
    return orjson.dumps(float_rows(vectors), option=orjson.OPT_SERIALIZE_NUMPY)


def _parse_strict(body: bytes) -> Any:
    def refuse_constant(name: str) -> None:
        raise ValueError(f"{name} is not valid JSON")

    try:
        return json.loads(body.decode("utf-8"), parse_constant=refuse_constant)
    except UnicodeDecodeError as exc:
        raise ApiError(400, f"the body is not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    except RecursionError:  # orjson stops at depth 1024 and the standard library then runs out of stack
        raise ApiError(400, "the body's JSON is nested too deeply") from None
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        raise ApiError(400, f"the body is not valid JSON: {exc}") from None


def _texts(data: dict[str, Any], param: str, max_inputs: int) -> list[str]:
    if param not in data:
        raise ApiError(400, f"'{param}' is required: a string or a list of strings", param=param)
    value = data[param]
    if isinstance(value, str):
        texts = [value]
    elif isinstance(value, list):
        texts = _text_list(value, param)
    else:
        raise ApiError(400, f"'{param}' must be a string or a list of strings, found {_json_type(value)}", param=param)
    if len(texts) > max_inputs:
        raise ApiError(
            413, f"'{param}' holds {len(texts)} texts; at most {max_inputs} per request", param=param, code="too_many"
        )
    try:
        check_texts(texts)
    except ValueError as exc:  # a lone surrogate: the message names texts[i] and the position
        message = str(exc).replace("texts[", f"{param}[", 1)
        raise ApiError(400, message, param=param) from None
    return texts


def _text_list(value: list[Any], param: str) -> list[str]:
    if not value:
        raise ApiError(400, f"'{param}' must not be an empty list", param=param, code="empty")
    if all(_is_token_id(v) for v in value) or all(
        isinstance(v, list) and v and all(_is_token_id(x) for x in v) for v in value
    ):
        raise ApiError(
            400,
            f"'{param}' holds token-id arrays, which this server does not support; send the texts as strings",
            param=param,
            code="token_ids_not_supported",
        )
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise ApiError(400, f"'{param}[{i}]' is {_json_type(item)}; expected a string", param=f"{param}[{i}]")
    return value


def _query(data: dict[str, Any]) -> str:
    if "query" not in data:
        raise ApiError(400, "'query' is required: a string", param="query")
    query = data["query"]
    if not isinstance(query, str):
        raise ApiError(400, f"'query' must be a string, found {_json_type(query)}", param="query")
    try:
        check_texts([query])
    except ValueError as exc:  # a lone surrogate: the message names the position, not the text
        raise ApiError(400, str(exc).replace("texts[0]", "query", 1), param="query") from None
    return query


def _documents(data: dict[str, Any], param: str, max_inputs: int, *, objects: bool) -> list[str]:
    """A rerank request's list of documents; with ``objects``, a document may also be ``{"text": "..."}``."""
    expected = 'a list of strings or of {"text": string} objects' if objects else "a list of strings"
    if param not in data:
        raise ApiError(400, f"'{param}' is required: {expected}", param=param)
    value = data[param]
    if not isinstance(value, list):
        raise ApiError(400, f"'{param}' must be {expected}, found {_json_type(value)}", param=param)
    if not value:
        raise ApiError(400, f"'{param}' must not be an empty list", param=param, code="empty")
    if len(value) > max_inputs:
        raise ApiError(
            413, f"'{param}' holds {len(value)} texts; at most {max_inputs} per request", param=param, code="too_many"
        )
    texts = []
    for i, item in enumerate(value):
        text = item.get("text") if objects and isinstance(item, dict) else item
        if not isinstance(text, str):
            found = "an object without a string 'text'" if objects and isinstance(item, dict) else _json_type(item)
            wanted = "a string or an object with a string 'text'" if objects else "a string"
            raise ApiError(400, f"'{param}[{i}]' is {found}; expected {wanted}", param=f"{param}[{i}]")
        try:
            check_texts([text])
        except ValueError as exc:  # a lone surrogate: the message names the position, not the text
            raise ApiError(400, str(exc).replace("texts[0]", f"{param}[{i}]", 1), param=f"{param}[{i}]") from None
        texts.append(text)
    return texts


def _is_token_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _dimensions(value: Any, dimension: int) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= dimension:
        raise ApiError(
            400, f"'dimensions' must be an integer from 1 to {dimension}, got {_short(value)}", param="dimensions"
        )
    return value


def _flag(data: dict[str, Any], name: str, default: bool) -> bool:
    value = data.get(name, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ApiError(400, f"'{name}' must be true or false, found {_json_type(value)}", param=name)
    return value


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _describe(value: Any) -> str:
    """A value of a non-text field for an error message: numbers and booleans as they are, else only their type."""
    if isinstance(value, (bool, int, float)):
        return _short(value)
    return _json_type(value)


def _short(value: Any) -> str:
    """A value for an error message, cut short: never a whole text back to the client."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
