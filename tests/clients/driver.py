"""Run the real client libraries against a running `embedrt serve`; print one JSON object of results.

Runs in .venv-clients (tests/clients/requirements.txt), never in the project venv: tests/test_serve_clients.py
starts the server, pipes a JSON job to this script's standard input and checks what it prints. Each scenario is
called as the client's documentation shows it. A scenario's result is ``{"ok": true, ...values}`` or, when the
client raised, ``{"ok": false, "error": class name, "status": HTTP status if the exception has one, "message"}``.
Sockets may only connect to the loopback address: anything else (telemetry, a hub) fails here at once.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import sys
import traceback
from collections.abc import Callable
from typing import Any

LOOPBACK = ("127.0.0.1", "::1", "localhost")
for name, value in {
    "HAYSTACK_TELEMETRY_ENABLED": "False",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "LANGCHAIN_TRACING_V2": "false",
    "DO_NOT_TRACK": "1",
}.items():
    os.environ[name] = value


def _loopback_only() -> None:
    """Refuse every connection and name lookup that is not the loopback address."""
    connect = socket.socket.connect
    lookup = socket.getaddrinfo

    def guarded_connect(self: socket.socket, address: Any) -> Any:
        if self.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in LOOPBACK:
            raise OSError(f"driver: connection to {address[0]} refused (loopback only)")
        return connect(self, address)

    def guarded_lookup(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in (*LOOPBACK, None) and not str(host).startswith("127."):
            raise socket.gaierror(f"driver: lookup of {host} refused (loopback only)")
        return lookup(host, *args, **kwargs)

    socket.socket.connect = guarded_connect  # type: ignore[method-assign]
    socket.getaddrinfo = guarded_lookup


def _status(exc: BaseException) -> int | None:
    for holder in (exc, getattr(exc, "response", None), exc.__cause__):
        for attr in ("status_code", "status"):
            value = getattr(holder, attr, None)
            if isinstance(value, int):
                return value
        response = getattr(holder, "response", None)
        if isinstance(getattr(response, "status_code", None), int):
            return response.status_code
    return None


def _run(scenario: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    try:
        return {"ok": True, **scenario()}
    except Exception as exc:
        return {
            "ok": False,
            "error": type(exc).__name__,
            "status": _status(exc),
            "message": str(exc)[:600],
            "where": traceback.format_exc(limit=-2)[-600:],
        }


def _rows(values: Any) -> list[list[float]]:
    return [[float(x) for x in row] for row in values]


def embedding_scenarios(job: dict[str, Any]) -> dict[str, Callable[[], dict[str, Any]]]:
    """Every embedding client, named by what it calls."""
    url, key, texts, model = job["url"], job["key"], job["texts"], job["model"]
    long_text = job["long_text"]

    def openai_float() -> dict[str, Any]:
        from openai import OpenAI

        client = OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)
        response = client.embeddings.create(input=texts, model=model, encoding_format="float")
        return {"vectors": [item.embedding for item in response.data], "tokens": response.usage.total_tokens}

    def openai_base64() -> dict[str, Any]:
        import numpy as np
        from openai import OpenAI

        client = OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)
        decoded = client.embeddings.create(input=texts, model=model)  # the client asks base64 and decodes it
        raw = client.embeddings.with_raw_response.create(input=texts, model=model, encoding_format="base64")
        strings = [item["embedding"] for item in json.loads(raw.http_response.text)["data"]]
        by_hand = [np.frombuffer(base64.b64decode(s), dtype="<f4").tolist() for s in strings]
        return {"vectors": [item.embedding for item in decoded.data], "by_hand": by_hand}

    def openai_too_many() -> dict[str, Any]:
        from openai import OpenAI

        OpenAI(base_url=url + "/v1", api_key=key, max_retries=0).embeddings.create(
            input=["x"] * (job["max_inputs"] + 1), model=model
        )
        return {}

    def langchain_openai() -> dict[str, Any]:
        from langchain_openai import OpenAIEmbeddings

        embeddings = OpenAIEmbeddings(model=model, base_url=url + "/v1", api_key=key, check_embedding_ctx_length=False)
        return {"vectors": embeddings.embed_documents(texts), "query": embeddings.embed_query(texts[0])}

    def hub_client() -> Any:
        from huggingface_hub import InferenceClient

        return InferenceClient(base_url=url, api_key=key)

    def hub_feature_extraction() -> dict[str, Any]:
        client = hub_client()
        return {
            "vectors": _rows(client.feature_extraction(texts)),
            "single": _rows(client.feature_extraction(texts[0])),
            "raw": _rows(client.feature_extraction(texts, normalize=False)),
        }

    def hub_too_long() -> dict[str, Any]:
        hub_client().feature_extraction(long_text, truncate=False)
        return {}

    def hub_left_truncation() -> dict[str, Any]:
        return {"vectors": _rows(hub_client().feature_extraction(long_text, truncation_direction="left"))}

    def hub_similarity_empty() -> dict[str, Any]:
        hub_client().sentence_similarity(texts[0], other_sentences=[])
        return {}

    def langchain_openai_too_many() -> dict[str, Any]:
        from langchain_openai import OpenAIEmbeddings

        embeddings = OpenAIEmbeddings(
            model=model, base_url=url + "/v1", api_key=key, check_embedding_ctx_length=False, max_retries=0
        )
        embeddings.embed_documents(["x"] * (job["max_inputs"] + 1))
        return {}

    def haystack_text_embedder_too_long() -> dict[str, Any]:
        from haystack.utils import Secret
        from haystack_integrations.components.embedders.huggingface_api import HuggingFaceAPITextEmbedder

        embedder = HuggingFaceAPITextEmbedder(
            api_type="text_embeddings_inference", api_params={"url": url}, token=Secret.from_token(key), truncate=False
        )
        embedder.run(long_text)
        return {}

    def haystack_document_embedder_too_long() -> dict[str, Any]:
        from haystack import Document
        from haystack.utils import Secret
        from haystack_integrations.components.embedders.huggingface_api import HuggingFaceAPIDocumentEmbedder

        embedder = HuggingFaceAPIDocumentEmbedder(
            api_type="text_embeddings_inference", api_params={"url": url}, token=Secret.from_token(key), truncate=False
        )
        embedder.run([Document(content=long_text)])
        return {}

    def langchain_huggingface_too_long() -> dict[str, Any]:
        from langchain_huggingface import HuggingFaceEndpointEmbeddings

        embeddings = HuggingFaceEndpointEmbeddings(
            model=url, task="feature-extraction", huggingfacehub_api_token=key, model_kwargs={"truncate": False}
        )
        embeddings.embed_documents([long_text])
        return {}

    def llama_index_openai_too_many() -> dict[str, Any]:
        from llama_index.embeddings.openai import OpenAIEmbedding

        embeddings = OpenAIEmbedding(model_name=model, api_base=url + "/v1", api_key=key, max_retries=0)
        embeddings.get_text_embedding_batch(["x"] * (job["max_inputs"] + 1))
        return {}

    def cohere_v1_embed_too_long() -> dict[str, Any]:
        import cohere

        cohere.Client(api_key=key, base_url=url).embed(texts=[long_text], model=model, truncate="NONE")
        return {}

    def hub_sentence_similarity() -> dict[str, Any]:
        return {"scores": hub_client().sentence_similarity(texts[0], other_sentences=texts[1:])}

    def hub_endpoint_info() -> dict[str, Any]:
        from huggingface_hub import InferenceClient

        # these two refuse a client without a provider (huggingface_hub 1.x); a TEI endpoint is "hf-inference"
        client = InferenceClient(base_url=url, api_key=key, provider="hf-inference")
        return {"info": client.get_endpoint_info(), "healthy": client.health_check()}

    def haystack_text_embedder() -> dict[str, Any]:
        from haystack.utils import Secret
        from haystack_integrations.components.embedders.huggingface_api import HuggingFaceAPITextEmbedder

        embedder = HuggingFaceAPITextEmbedder(
            api_type="text_embeddings_inference", api_params={"url": url}, token=Secret.from_token(key)
        )
        return {"vectors": [embedder.run(text)["embedding"] for text in texts]}

    def haystack_document_embedder() -> dict[str, Any]:
        from haystack import Document
        from haystack.utils import Secret
        from haystack_integrations.components.embedders.huggingface_api import HuggingFaceAPIDocumentEmbedder

        embedder = HuggingFaceAPIDocumentEmbedder(
            api_type="text_embeddings_inference", api_params={"url": url}, token=Secret.from_token(key)
        )
        documents = embedder.run([Document(content=text) for text in texts])["documents"]
        return {"vectors": [d.embedding for d in documents]}

    def langchain_huggingface() -> dict[str, Any]:
        from langchain_huggingface import HuggingFaceEndpointEmbeddings

        embeddings = HuggingFaceEndpointEmbeddings(model=url, task="feature-extraction", huggingfacehub_api_token=key)
        return {"vectors": embeddings.embed_documents(texts), "query": embeddings.embed_query(texts[0])}

    def llama_index_tei() -> dict[str, Any]:
        from llama_index.embeddings.text_embeddings_inference import TextEmbeddingsInference

        embeddings = TextEmbeddingsInference(model_name=model, base_url=url, auth_token=key, embed_batch_size=4)
        return {
            "vectors": embeddings.get_text_embedding_batch(texts),
            "query": embeddings.get_query_embedding(texts[0]),
        }

    def llama_index_tei_too_long() -> dict[str, Any]:
        from llama_index.embeddings.text_embeddings_inference import TextEmbeddingsInference

        embeddings = TextEmbeddingsInference(model_name=model, base_url=url, auth_token=key, truncate_text=False)
        return {"vector": embeddings.get_text_embedding(long_text)}

    def llama_index_openai() -> dict[str, Any]:
        from llama_index.embeddings.openai import OpenAIEmbedding

        embeddings = OpenAIEmbedding(model_name=model, api_base=url + "/v1", api_key=key, max_retries=0)
        return {
            "vectors": embeddings.get_text_embedding_batch(texts),
            "query": embeddings.get_query_embedding(texts[0]),
        }

    def cohere_v1_embed() -> dict[str, Any]:
        import cohere

        client = cohere.Client(api_key=key, base_url=url)
        response = client.embed(texts=texts, model=model, input_type="search_document")
        return {"vectors": response.embeddings, "type": response.response_type}

    def cohere_v2_embed() -> dict[str, Any]:
        import cohere
        import numpy as np

        client = cohere.ClientV2(api_key=key, base_url=url)
        response = client.embed(
            texts=texts, model=model, input_type="search_query", embedding_types=["float", "base64"]
        )
        decoded = [np.frombuffer(base64.b64decode(s), dtype="<f4").tolist() for s in response.embeddings.base64]
        tokens = response.meta.billed_units.input_tokens if response.meta and response.meta.billed_units else None
        return {"vectors": response.embeddings.float_, "base64": decoded, "tokens": tokens}

    def cohere_v2_embed_quantized() -> dict[str, Any]:
        import cohere

        cohere.ClientV2(api_key=key, base_url=url).embed(
            texts=texts, model=model, input_type="search_query", embedding_types=["int8"]
        )
        return {}

    return {name: scenario for name, scenario in locals().items() if callable(scenario) and name != "hub_client"}


def rerank_scenarios(job: dict[str, Any]) -> dict[str, Callable[[], dict[str, Any]]]:
    """Every rerank client, named by what it calls."""
    url, key, query, documents, model = job["url"], job["key"], job["query"], job["documents"], job["model"]

    def haystack_tei_ranker() -> dict[str, Any]:
        from haystack import Document
        from haystack.utils import Secret
        from haystack_integrations.components.rankers.huggingface_api import HuggingFaceTEIRanker

        ranker = HuggingFaceTEIRanker(url=url, token=Secret.from_token(key), top_k=len(documents))
        ranked = ranker.run(query=query, documents=[Document(content=d) for d in documents])["documents"]
        return {"ranked": [[documents.index(d.content), d.score] for d in ranked]}

    def cohere_v1() -> dict[str, Any]:
        import cohere

        client = cohere.Client(api_key=key, base_url=url)
        response = client.rerank(model=model, query=query, documents=documents, top_n=3, return_documents=True)
        return {
            "ranked": [[r.index, r.relevance_score] for r in response.results],
            "documents": [r.document.text if r.document is not None else None for r in response.results],
            "id": response.id,
        }

    def cohere_v2() -> dict[str, Any]:
        import cohere

        client = cohere.ClientV2(api_key=key, base_url=url)
        response = client.rerank(model=model, query=query, documents=documents)
        meta = response.meta
        tokens = meta.tokens.input_tokens if meta is not None and meta.tokens is not None else None
        return {"ranked": [[r.index, r.relevance_score] for r in response.results], "id": response.id, "tokens": tokens}

    def cohere_v2_top_n() -> dict[str, Any]:
        import cohere

        client = cohere.ClientV2(api_key=key, base_url=url)
        response = client.rerank(model=model, query=query, documents=documents, top_n=2, max_tokens_per_doc=4096)
        return {"ranked": [[r.index, r.relevance_score] for r in response.results]}

    def haystack_tei_ranker_too_many() -> dict[str, Any]:
        from haystack import Document
        from haystack.utils import Secret
        from haystack_integrations.components.rankers.huggingface_api import HuggingFaceTEIRanker

        ranker = HuggingFaceTEIRanker(url=url, token=Secret.from_token(key))
        ranker.run(query=query, documents=[Document(content=f"{i} {d}") for i in range(9) for d in documents])
        return {}

    def cohere_v1_bad_top_n() -> dict[str, Any]:
        import cohere

        cohere.Client(api_key=key, base_url=url).rerank(model=model, query=query, documents=documents, top_n=0)
        return {}

    def infinity_client_empty() -> dict[str, Any]:
        from infinity_client import AuthenticatedClient
        from infinity_client.api.default import rerank
        from infinity_client.models import RerankInput

        client = AuthenticatedClient(base_url=url + "/v1", token=key)
        response = rerank.sync_detailed(client=client, body=RerankInput(query=query, documents=[], model=model))
        return {"status": int(response.status_code), "parsed": str(response.parsed)}

    def cohere_v2_empty() -> dict[str, Any]:
        import cohere

        cohere.ClientV2(api_key=key, base_url=url).rerank(model=model, query=query, documents=[])
        return {}

    def infinity_client() -> dict[str, Any]:
        from infinity_client import AuthenticatedClient
        from infinity_client.api.default import rerank
        from infinity_client.models import RerankInput

        client = AuthenticatedClient(base_url=url + "/v1", token=key)
        body = RerankInput(query=query, documents=documents, return_documents=True, model=model)
        response = rerank.sync(client=client, body=body)
        return {
            "ranked": [[r.index, r.relevance_score] for r in response.results],
            "documents": [r.document for r in response.results],
        }

    return {name: scenario for name, scenario in locals().items() if callable(scenario)}


def main() -> None:
    """Read the job from standard input, run its scenarios, print the results as one JSON object."""
    job = json.load(sys.stdin)
    _loopback_only()
    scenarios = embedding_scenarios(job) if job["kind"] == "embedding" else rerank_scenarios(job)
    chosen = job.get("only") or list(scenarios)
    json.dump({name: _run(scenarios[name]) for name in chosen}, sys.stdout)


if __name__ == "__main__":
    main()
