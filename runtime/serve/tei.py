"""What text-embeddings-inference's clients read beyond /embed and /rerank: /similarity, /info's fields, errors.

huggingface_hub's ``InferenceClient(base_url=URL)`` posts every task to the bare URL, as do haystack's and
langchain-huggingface's Hugging Face embedders; text-embeddings-inference answers ``POST /`` with the model's
default route. Its errors are ``{"error": message, "error_type": kind}``, 422 for a request it validated and
refused (an input too long with truncate off, too many inputs, a field of the wrong type) and 400 for an empty
batch; huggingface_hub shows ``error`` as the message of the exception it raises.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from embedrt.config import PoolingMode
from embedrt.encoder import Encoder
from embedrt.manifest import MANIFEST_NAME, Manifest, Variant
from embedrt.reranker import Reranker
from embedrt.serve.batcher import CYCLE_INPUTS, input_too_long
from embedrt.serve.config import ServeConfig
from embedrt.serve.errors import ApiError
from embedrt.serve.protocol import EmbedRequest, _flag, _json_type, _texts, truncation_direction

SOURCE = "source_sentence"
SENTENCES = "sentences"
_DTYPES = {Variant.FP32: "float32", Variant.FP16: "float16", Variant.INT8: "int8"}
_POOLING = {PoolingMode.LASTTOKEN: "last_token"}  # text-embeddings-inference's name; the others are the same


@dataclass(frozen=True)
class SimilarityRequest:
    """A /similarity body after validation: the source sentence, then the others, as an unnormalized /embed."""

    embed: EmbedRequest


def similarity_request(data: dict[str, Any], max_inputs: int) -> SimilarityRequest:
    """Validate ``{"inputs": {"source_sentence", "sentences"}, "parameters": {...}}`` (text-embeddings-inference).

    ``parameters`` may hold ``truncate`` (default true, as /embed), ``truncation_direction`` and ``prompt_name``;
    the source sentence counts toward ``max_inputs`` as text-embeddings-inference counts it.
    """
    inputs = data.get("inputs")
    if not isinstance(inputs, dict):
        raise ApiError(
            400,
            f"'inputs' must be an object with '{SOURCE}' and '{SENTENCES}', found {_json_type(inputs)}",
            param="inputs",
        )
    source = inputs.get(SOURCE)
    if not isinstance(source, str):
        raise ApiError(400, f"'inputs.{SOURCE}' must be a string, found {_json_type(source)}", param=f"inputs.{SOURCE}")
    sentences = _texts({f"inputs.{SENTENCES}": inputs.get(SENTENCES)}, f"inputs.{SENTENCES}", max_inputs - 1)
    parameters = data.get("parameters")
    if parameters is None:
        parameters = {}
    if not isinstance(parameters, dict):
        raise ApiError(400, f"'parameters' must be an object, found {_json_type(parameters)}", param="parameters")
    texts = [*_texts({f"inputs.{SOURCE}": source}, f"inputs.{SOURCE}", 1), *sentences]
    prompt_name = parameters.get("prompt_name")
    if prompt_name is not None and not isinstance(prompt_name, str):
        found = _json_type(prompt_name)
        raise ApiError(400, f"'parameters.prompt_name' must be a string, found {found}", param="parameters.prompt_name")
    try:
        truncation = truncation_direction(parameters)
    except ApiError as exc:
        raise ApiError(400, f"'parameters.{exc.message[1:]}", param="parameters.truncation_direction") from None
    truncate = _flag(parameters, "truncate", True)
    embed = EmbedRequest(texts, normalize=False, truncate=truncate, prompt_name=prompt_name, truncation=truncation)
    return SimilarityRequest(embed)


def similarity_too_long(max_seq_length: int, index: int) -> ApiError:
    """The too-long error of /embed, naming ``inputs.source_sentence`` or ``inputs.sentences[i]``."""
    name = f"inputs.{SOURCE}" if index == 0 else f"inputs.{SENTENCES}[{index - 1}]"
    return renamed_too_long(max_seq_length, index, name)


def renamed_too_long(max_seq_length: int, index: int, name: str, status: int | None = None) -> ApiError:
    """/embed's error for ``inputs[index]`` past the model's length, naming the text ``name`` (with ``status``)."""
    error = input_too_long(max_seq_length, index)
    message = error.message.replace(f"inputs[{index}]", name, 1)
    return ApiError(status or error.status, message, param=name, code=error.code)


def cosine_to_first(vectors: np.ndarray) -> list[float]:
    """Cosine similarity of each row after the first to the first (0 where either vector is zero)."""
    norms = np.linalg.norm(vectors.astype(np.float64), axis=1)
    dots = vectors[1:].astype(np.float64) @ vectors[0].astype(np.float64)
    scale = norms[1:] * norms[0]
    return [float(d / s) if s > 0 else 0.0 for d, s in zip(dots, scale, strict=True)]


def tei_info(model: Encoder | Reranker, config: ServeConfig, workers: int) -> dict[str, Any]:
    """text-embeddings-inference's /info fields (its ``Info`` struct) for this model and these limits.

    ``model_id`` and ``model_sha`` are the hub id and commit the export came from when it came from the hub (else
    the served name and null); ``max_concurrent_requests`` is the queue limit in inputs, as text-embeddings-inference
    takes one permit per input; ``max_batch_requests`` is the most inputs one model cycle takes.
    """
    source = _source(model)
    return {
        "model_id": source.get("hub_id") or config.model_name,
        "model_sha": source.get("commit"),
        "model_dtype": _DTYPES.get(model.variant, model.variant.value),
        "served_model_name": config.model_name,
        "model_type": _model_type(model),
        "max_concurrent_requests": config.max_queue,
        "max_input_length": model.max_length if isinstance(model, Reranker) else model.max_seq_length,
        "max_batch_tokens": config.max_batch_tokens,
        "max_batch_requests": CYCLE_INPUTS,
        "max_client_batch_size": config.max_inputs,
        "auto_truncate": True,
        "tokenization_workers": workers,
        "sha": None,
        "docker_label": None,
    }


def tei_error(exc: ApiError) -> tuple[int, dict[str, Any]]:
    """The status and body text-embeddings-inference's clients expect for ``exc``.

    A field refused (the wrong type or value, an input too long with truncate off, too many inputs) is 422
    ``Validation``; an empty list stays 400 ``Empty``; everything else keeps its status. ``param`` and ``code``
    ride along beside TEI's two keys.
    """
    status = exc.status
    if exc.code in ("input_too_long", "too_many") or (status == 400 and exc.param is not None and exc.code != "empty"):
        status = 422
    kind = {400: "Validation", 401: "Unauthorized", 408: "Timeout", 413: "Validation", 422: "Validation"}
    kind |= {429: "Overloaded", 503: "Unhealthy"}
    error_type = "Empty" if exc.code == "empty" else kind.get(status, "Backend" if status >= 500 else "Validation")
    return status, {"error": exc.message, "error_type": error_type, "param": exc.param, "code": exc.code}


def _source(model: Encoder | Reranker) -> dict[str, Any]:
    path = model.model_dir / MANIFEST_NAME
    return Manifest.from_file(path).source if path.is_file() else {}


def _model_type(model: Encoder | Reranker) -> dict[str, Any]:
    if isinstance(model, Encoder):
        modes = model.config.pooling.modes
        return {"embedding": {"pooling": "+".join(_POOLING.get(m, m.value) for m in modes)}}
    labels = {str(i): f"LABEL_{i}" for i in range(model.num_labels)}
    kind = "reranker" if model.num_labels == 1 else "classifier"
    return {kind: {"id2label": labels, "label2id": {name: int(i) for i, name in labels.items()}}}
