"""embedrt serve on a cross-encoder export, in a subprocess on 127.0.0.1: /rerank (text-embeddings-inference) and
/v1/rerank (Cohere-style, as infinity-emb), against Reranker.predict and sentence-transformers' CrossEncoder."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import TOKENIZER_FILES
from serve_helpers import error_of, start_server

from embedrt.reranker import Reranker

KEY = "rerank-key-0123456789"
QUERY = "What is the capital of France?"
DOCUMENTS = [
    "Paris is the capital and most populous city of France.",
    "Berlin is the capital of Germany.",
    "",
    "Ünïcödé, CJK 東京, emoji 🚀 and [SEP] inside.",
    "The weather is lovely today.",
    "word " * 100,  # past the model's 64 tokens with the query: truncated
    "France's capital city is Paris.",
]
MAX_INPUTS = 40


def _hf_cross_encoder(root: Path, minilm_dir: Path, num_labels: int) -> Path:
    """A random BertForSequenceClassification (hidden 32, 2 layers, 64 positions) with MiniLM's tokenizer, its
    weights wide enough that the pairs' logits spread over a few units.

    Its configured activation is Identity, as the hub's cross-encoder/ms-marco-* models: the rerank routes
    still answer the sigmoid of the logit, as text-embeddings-inference does.
    """
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(num_labels)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
        num_labels=num_labels,
        initializer_range=0.5,  # BERT's 0.02 scores every pair within 1e-5 of the others: no order to check
    )
    BertForSequenceClassification(config).save_pretrained(root, safe_serialization=True)
    for name in TOKENIZER_FILES:
        shutil.copy(minilm_dir / name, root / name)
    settings = json.loads((root / "config.json").read_text())
    settings["sbert_ce_default_activation_function"] = "torch.nn.modules.linear.Identity"
    (root / "config.json").write_text(json.dumps(settings))
    return root


@pytest.fixture(scope="module")
def cross_encoders(tmp_path_factory, minilm_dir):
    """{labels: (source dir, export dir)} for a one-label reranker and a three-label classifier (fp32 only)."""
    from embedrt.export import export

    built = {}
    for labels in (1, 3):
        tmp = tmp_path_factory.mktemp(f"serve-ce-{labels}")
        source = _hf_cross_encoder(tmp / "hf", minilm_dir, labels)
        built[labels] = source, export(source, tmp / "ce", variants="fp32", progress=False)
    return built


@pytest.fixture(scope="module")
def source(cross_encoders):
    return cross_encoders[1][0]


@pytest.fixture(scope="module")
def reranker(cross_encoders):
    return Reranker.load(cross_encoders[1][1], variant="fp32")


@pytest.fixture(scope="module")
def server(cross_encoders):
    limits = ["--max-inputs", str(MAX_INPUTS), "--max-request-bytes", "65536"]
    srv = start_server(cross_encoders[1][1], "--variant", "fp32", "--model-name", "ce", *limits, key=KEY)
    yield srv
    assert srv.stop() == 0


@pytest.fixture(scope="module")
def embedding_server(tiny_export):
    srv = start_server(tiny_export, "--variant", "fp32")
    yield srv
    assert srv.stop() == 0


@pytest.fixture(scope="module")
def reference(source):
    """sentence-transformers' CrossEncoder on the source model: (sigmoid scores, logits) of pairs."""
    import torch
    from sentence_transformers import CrossEncoder

    model = CrossEncoder(str(source), device="cpu")

    def scores(pairs):
        sigmoid = model.predict(pairs, activation_fn=torch.nn.Sigmoid())
        logits = model.predict(pairs, activation_fn=torch.nn.Identity())
        return np.asarray(sigmoid, dtype=np.float64), np.asarray(logits, dtype=np.float64)

    return scores


def _pairs(query, documents):
    return [(query, d) for d in documents]


def _check_ranked(rows, expected, score="score", atol=1e-4):
    """Rows sorted by score, highest first, each index's score the expected one: the order is the model's (torch
    and onnxruntime may order two scores closer than atol differently, so the ranking is not compared as a list)."""
    indices = [r["index"] for r in rows]
    got = np.array([r[score] for r in rows])
    assert len(set(indices)) == len(indices)
    assert np.all(np.diff(got) <= 0), got
    np.testing.assert_allclose(got, np.asarray(expected)[indices], atol=atol)
    best = np.sort(np.asarray(expected))[::-1][: len(rows)]  # with top_n: the best ones, not any
    np.testing.assert_allclose(got, best, atol=atol)


def test_tei_rerank_scores_match_the_reranker_and_cross_encoder(server, reranker, reference):
    sigmoid, logits = reference(_pairs(QUERY, DOCUMENTS))
    in_process = reranker.predict(_pairs(QUERY, DOCUMENTS), activation="Sigmoid")
    got = server.post("/rerank", {"query": QUERY, "texts": DOCUMENTS})
    assert got.status_code == 200, got.text
    body = got.json()
    assert [set(r) for r in body] == [{"index", "score"}] * len(DOCUMENTS)  # no text unless asked for
    _check_ranked(body, sigmoid)
    _check_ranked(body, in_process, atol=1e-6)

    raw = server.post("/rerank", {"query": QUERY, "texts": DOCUMENTS, "raw_scores": True, "return_text": True})
    rows = raw.json()
    _check_ranked(rows, logits)
    assert [r["text"] for r in rows] == [DOCUMENTS[r["index"]] for r in rows]
    assert [r["index"] for r in rows] == [r["index"] for r in body]  # the sigmoid keeps the logits' order


def test_v1_rerank_top_n_documents_usage(server, reranker, reference, source):
    from transformers import AutoTokenizer

    sigmoid, logits = reference(_pairs(QUERY, DOCUMENTS))
    documents = [d if i % 2 else {"text": d} for i, d in enumerate(DOCUMENTS)]  # strings and Cohere's objects
    response = server.post("/v1/rerank", {"query": QUERY, "documents": documents, "top_n": 3, "model": "ce"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "rerank" and body["model"] == "ce"
    assert body["id"] == response.headers["x-request-id"]
    results = body["results"]
    assert len(results) == 3 and all(set(r) == {"index", "relevance_score"} for r in results)
    _check_ranked(results, sigmoid, "relevance_score")
    tokenizer = AutoTokenizer.from_pretrained(str(source))
    encoded = tokenizer([QUERY] * len(DOCUMENTS), DOCUMENTS, truncation="longest_first", max_length=64)
    tokens = sum(len(ids) for ids in encoded["input_ids"])  # every pair counts, not only the top_n returned
    assert body["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}

    everything = server.post(
        "/v1/rerank", {"query": QUERY, "documents": DOCUMENTS, "return_documents": True, "raw_scores": True}
    ).json()
    results = everything["results"]
    assert everything["model"] == "ce" and len(results) == len(DOCUMENTS)
    _check_ranked(results, logits, "relevance_score")
    # Cohere's object, which Cohere's SDK parses into document.text (infinity-emb's client takes it unchecked)
    assert [r["document"] for r in results] == [{"text": DOCUMENTS[r["index"]]} for r in results]
    assert everything["meta"]["api_version"] == {"version": "1"}
    big = server.post("/v1/rerank", {"query": QUERY, "documents": DOCUMENTS[:2], "top_n": 50}).json()
    assert len(big["results"]) == 2


def test_ties_keep_input_order_and_single_documents(server):
    texts = ["same text", "other text", "same text", "same text"]
    body = server.post("/rerank", {"query": QUERY, "texts": texts}).json()
    same = [r["index"] for r in body if texts[r["index"]] == "same text"]
    assert same == [0, 2, 3]
    assert len({r["score"] for r in body if r["index"] in same}) == 1
    one = server.post("/v1/rerank", {"query": "", "documents": [""]}).json()
    assert [r["index"] for r in one["results"]] == [0]


def test_truncation(server, reference):
    long = ["short", "word " * 100]
    refused = server.post("/rerank", {"query": QUERY, "texts": long, "truncate": False})
    assert refused.status_code == 422, refused.text  # text-embeddings-inference's status
    error = error_of(refused)
    assert error["param"] == "texts[1]" and error["code"] == "input_too_long"
    assert error["message"].startswith("texts[1] with the query has more than 61 tokens besides [CLS] and the two")
    sigmoid, _ = reference(_pairs(QUERY, long))
    for body in ({"query": QUERY, "texts": long}, {"query": QUERY, "texts": long, "truncate": None}):
        _check_ranked(server.post("/rerank", body).json(), sigmoid)  # the default, as /embed: truncate
    fits = server.post("/rerank", {"query": QUERY, "texts": ["short"], "truncate": False})
    assert fits.status_code == 200
    assert server.post("/v1/rerank", {"query": QUERY, "documents": long}).status_code == 200  # always truncates
    right = server.post("/rerank", {"query": QUERY, "texts": long, "truncation_direction": "Right"})
    assert right.status_code == 200


def test_left_truncation_keeps_the_end_of_each_text(server, source):
    """truncation_direction left (either case, as huggingface_hub versions send it) scores what CrossEncoder scores
    with its tokenizer truncating from the left; right keeps the start, as before."""
    import torch
    from sentence_transformers import CrossEncoder

    model = CrossEncoder(str(source), device="cpu")
    documents = ["word " * 100 + "the capital of France is Paris", "short", "Paris " + "filler " * 80, ""]
    query = "what is the capital of France? " * 12  # over half the budget: the query is cut too
    right = model.predict(_pairs(query, documents), activation_fn=torch.nn.Sigmoid())
    model.tokenizer.truncation_side = "left"
    left = model.predict(_pairs(query, documents), activation_fn=torch.nn.Sigmoid())
    assert not np.allclose(left, right, atol=1e-3)  # the case tells the two apart
    for direction in ("left", "Left"):
        body = {"query": query, "texts": documents, "truncation_direction": direction}
        _check_ranked(server.post("/rerank", body).json(), left)
    _check_ranked(server.post("/rerank", {"query": query, "texts": documents}).json(), right)


SECRET_QUERY = "SECRET-QUERY-TEXT"
# /rerank answers as text-embeddings-inference does: 422 for a field refused, 400 for an empty list
SECRET_DOC = "SECRET-DOCUMENT-TEXT"
BAD = [
    ("/rerank", {"texts": [SECRET_DOC]}, 422, "query"),
    ("/rerank", {"query": None, "texts": [SECRET_DOC]}, 422, "query"),
    ("/rerank", {"query": 3, "texts": [SECRET_DOC]}, 422, "query"),
    ("/rerank", {"query": [SECRET_QUERY], "texts": [SECRET_DOC]}, 422, "query"),
    ("/rerank", {"query": "a\ud800b", "texts": [SECRET_DOC]}, 422, "query"),
    ("/rerank", {"query": SECRET_QUERY}, 422, "texts"),
    ("/rerank", {"query": SECRET_QUERY, "texts": SECRET_DOC}, 422, "texts"),
    ("/rerank", {"query": SECRET_QUERY, "texts": None}, 422, "texts"),
    ("/rerank", {"query": SECRET_QUERY, "texts": []}, 400, "texts"),
    ("/rerank", {"query": SECRET_QUERY, "texts": {"text": SECRET_DOC}}, 422, "texts"),
    ("/rerank", {"query": SECRET_QUERY, "texts": [SECRET_DOC, 5]}, 422, "texts[1]"),
    ("/rerank", {"query": SECRET_QUERY, "texts": [SECRET_DOC, {"text": SECRET_DOC}]}, 422, "texts[1]"),
    ("/rerank", {"query": SECRET_QUERY, "texts": [SECRET_DOC, "x\udfffy"]}, 422, "texts[1]"),
    ("/rerank", {"query": SECRET_QUERY, "texts": [SECRET_DOC] * (MAX_INPUTS + 1)}, 422, "texts"),
    ("/rerank", {"query": SECRET_QUERY, "texts": [SECRET_DOC], "raw_scores": "yes"}, 422, "raw_scores"),
    ("/rerank", {"query": SECRET_QUERY, "texts": [SECRET_DOC], "return_text": 1}, 422, "return_text"),
    ("/rerank", {"query": SECRET_QUERY, "texts": [SECRET_DOC], "truncate": "false"}, 422, "truncate"),
    ("/rerank", {"query": SECRET_QUERY, "texts": [SECRET_DOC], "truncation_direction": SECRET_DOC}, 422, "truncation"),
    ("/v1/rerank", {"documents": [SECRET_DOC]}, 400, "query"),
    ("/v1/rerank", {"query": {"text": SECRET_QUERY}, "documents": [SECRET_DOC]}, 400, "query"),
    ("/v1/rerank", {"query": SECRET_QUERY}, 400, "documents"),
    ("/v1/rerank", {"query": SECRET_QUERY, "documents": SECRET_DOC}, 400, "documents"),
    ("/v1/rerank", {"query": SECRET_QUERY, "documents": []}, 400, "documents"),
    ("/v1/rerank", {"query": SECRET_QUERY, "documents": [SECRET_DOC, None]}, 400, "documents[1]"),
    ("/v1/rerank", {"query": SECRET_QUERY, "documents": [SECRET_DOC, [SECRET_DOC]]}, 400, "documents[1]"),
    ("/v1/rerank", {"query": SECRET_QUERY, "documents": [{"txt": SECRET_DOC}]}, 400, "documents[0]"),
    ("/v1/rerank", {"query": SECRET_QUERY, "documents": [{"text": 7}]}, 400, "documents[0]"),
    ("/v1/rerank", {"query": SECRET_QUERY, "documents": [SECRET_DOC] * (MAX_INPUTS + 1)}, 413, "documents"),
    ("/v1/rerank", {"query": SECRET_QUERY, "documents": [SECRET_DOC], "top_n": 0}, 400, "top_n"),
    ("/v1/rerank", {"query": SECRET_QUERY, "documents": [SECRET_DOC], "top_n": -2}, 400, "top_n"),
    ("/v1/rerank", {"query": SECRET_QUERY, "documents": [SECRET_DOC], "top_n": 1.5}, 400, "top_n"),
    ("/v1/rerank", {"query": SECRET_QUERY, "documents": [SECRET_DOC], "top_n": True}, 400, "top_n"),
    ("/v1/rerank", {"query": SECRET_QUERY, "documents": [SECRET_DOC], "top_n": SECRET_DOC}, 400, "top_n"),
    ("/v1/rerank", {"query": SECRET_QUERY, "documents": [SECRET_DOC], "return_documents": "no"}, 400, "return_doc"),
    ("/v1/rerank", {"query": SECRET_QUERY, "documents": [SECRET_DOC], "raw_scores": 0}, 400, "raw_scores"),
    ("/v1/rerank", {"query": SECRET_QUERY, "documents": [SECRET_DOC], "model": 7}, 400, "model"),
    ("/v1/rerank", {"query": SECRET_QUERY, "documents": [SECRET_DOC], "model": "other"}, 404, "model"),
    ("/v2/rerank", {"documents": [SECRET_DOC]}, 400, "query"),
    ("/v2/rerank", {"query": SECRET_QUERY, "documents": []}, 400, "documents"),
    ("/v2/rerank", {"query": SECRET_QUERY, "documents": [SECRET_DOC, None]}, 400, "documents[1]"),
    ("/v2/rerank", {"query": SECRET_QUERY, "documents": [SECRET_DOC], "top_n": 0}, 400, "top_n"),
    ("/v2/rerank", {"query": SECRET_QUERY, "documents": [SECRET_DOC], "max_tokens_per_doc": 8}, 400, "max_tokens"),
    ("/v2/rerank", {"query": SECRET_QUERY, "documents": [SECRET_DOC], "max_tokens_per_doc": "x"}, 400, "max_tokens"),
    ("/v2/rerank", {"query": SECRET_QUERY, "documents": [SECRET_DOC], "relevant_spans": {"a": 1}}, 400, "relevant"),
    ("/v2/rerank", {"query": SECRET_QUERY, "documents": [SECRET_DOC], "priority": "high"}, 400, "priority"),
    ("/v2/rerank", {"query": SECRET_QUERY, "documents": [SECRET_DOC], "model": "other"}, 404, "model"),
]


@pytest.mark.parametrize(("route", "body", "status", "field"), BAD, ids=[f"{i}-{b[3]}" for i, b in enumerate(BAD)])
def test_bad_bodies_get_a_4xx_naming_the_field_without_the_texts(server, route, body, status, field):
    # json.dumps keeps lone surrogates as \\ud800 escapes, as a client that sends them would
    response = server.post(route, json.dumps(body).encode())
    assert response.status_code == status, response.text
    error = error_of(response)
    assert field in error["message"], error
    assert (error["param"] or "").startswith(field)
    assert "SECRET" not in response.text
    assert set(error) == {"message", "type", "param", "code"}


def test_non_object_bodies_and_methods(server):
    assert server.post("/rerank", b"[1, 2]").status_code == 400
    assert server.post("/v1/rerank", b"{nope").status_code == 400
    assert server.get("/rerank").status_code == 405
    assert server.get("/health").json() == {"status": "ok"}  # after all the bad bodies


def test_a_reranker_server_refuses_the_embedding_routes(server):
    for route, body in (
        ("/v1/embeddings", {"input": "a"}),
        ("/embeddings", {"input": "a"}),
        ("/embed", {"inputs": "a"}),
        ("/similarity", {"inputs": {"source_sentence": "a", "sentences": ["b"]}}),
        ("/v1/embed", {"texts": ["a"]}),
        ("/v2/embed", {"texts": ["a"]}),
    ):
        response = server.post(route, body)
        assert response.status_code == 400, route
        error = error_of(response)
        assert error["code"] == "wrong_model_kind"
        assert "serves a cross-encoder (reranker) model" in error["message"] and "/rerank" in error["message"]
    # checked before the body is read: a bad body gets the same answer
    assert error_of(server.post("/embed", b"{not json"))["code"] == "wrong_model_kind"


def test_an_embedding_server_refuses_the_rerank_routes(embedding_server):
    for route in ("/rerank", "/v1/rerank", "/v2/rerank"):
        response = embedding_server.post(route, {"query": "q", "texts": ["d"], "documents": ["d"]})
        assert response.status_code == 400, route
        error = error_of(response)
        assert error["code"] == "wrong_model_kind"
        assert "serves an embedding model" in error["message"] and "/v1/embeddings" in error["message"]
    info = embedding_server.get("/info").json()
    assert info["kind"] == "embedding" and info["dimension"] == 32 and "scores" not in info
    metrics = embedding_server.get("/metrics").text
    assert 'embedrt_requests_total{route="/rerank",status="400"} 1.0' in metrics


def test_a_multi_label_model_refuses_the_rerank_routes(cross_encoders):
    srv = start_server(cross_encoders[3][1], "--variant", "fp32")
    try:
        answers = [
            srv.post(route, {"query": "q", "texts": ["d"], "documents": ["d"]})
            for route in ("/rerank", "/v1/rerank", "/v2/rerank", "/")
        ]
        info = srv.get("/info").json()
        tokenized = srv.post("/tokenize", {"inputs": "hello"})
    finally:
        assert srv.stop() == 0
    for response in answers:
        assert response.status_code == 400
        assert error_of(response)["code"] == "not_a_reranker" and "3 labels" in response.text
    assert info["kind"] == "cross-encoder" and info["num_labels"] == 3
    assert info["model_type"]["classifier"]["id2label"] == {"0": "LABEL_0", "1": "LABEL_1", "2": "LABEL_2"}
    assert info["scores"]["num_labels"] == 3 and info["scores"]["rerank"].startswith("unavailable")
    assert tokenized.status_code == 200


def test_api_key_on_the_rerank_routes(server):
    body = {"query": "q", "texts": ["d"], "documents": ["d"]}
    for route in ("/rerank", "/v1/rerank"):
        assert server.post(route, body, headers={}).status_code == 401
        wrong = server.post(route, body, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and error_of(wrong)["code"] == "invalid_api_key"
        assert server.post(route, body).status_code == 200
    assert server.get("/info", headers={}).status_code == 401
    assert server.get("/health", headers={}).status_code == 200


def test_info_names_the_kind_and_score_convention(server, reranker):
    info = server.get("/info").json()
    assert info["model"] == "ce" and info["kind"] == "cross-encoder"
    assert info["num_labels"] == 1 and info["max_length"] == 64 and info["activation"] == "Identity"
    assert info["variant"] == "fp32" and info["device"] == "cpu" and info["int8_kernel"] is None
    scores = info["scores"]
    assert scores["activation"] == reranker.info()["activation"] == "Identity" and scores["num_labels"] == 1
    assert "sigmoid" in scores["rerank"] and "raw_scores" in scores["v1/rerank"]
    assert info["limits"]["max_inputs"] == MAX_INPUTS


def test_tokenize_and_models_on_a_reranker_server(server, source):
    from transformers import AutoTokenizer

    texts = ["Hello, World! 東京 [SEP] x", "word " * 100]
    got = server.post("/tokenize", {"inputs": texts}).json()
    expected = AutoTokenizer.from_pretrained(str(source))(texts, truncation=True, max_length=64)["input_ids"]
    assert [[t["id"] for t in row] for row in got] == expected
    assert got[0][0]["special"] and got[0][0]["text"] == "[CLS]" and not got[0][1]["special"]
    assert server.get("/v1/models").json()["data"][0]["id"] == "ce"


def test_metrics_have_the_rerank_routes(server):
    from prometheus_client.parser import text_string_to_metric_families

    server.post("/rerank", {"query": "q", "texts": ["one", "two"]})
    server.post("/v1/rerank", {"query": "q", "documents": ["one"]})
    families = {f.name: f for f in text_string_to_metric_families(server.get("/metrics").text)}
    counted = {
        s.labels["route"]: s.value
        for s in families["embedrt_requests"].samples
        if s.name.endswith("_total") and s.labels["status"] == "200"
    }
    assert counted["/rerank"] >= 1 and counted["/v1/rerank"] >= 1
    inputs = next(s.value for s in families["embedrt_inputs"].samples if s.name.endswith("_total"))
    assert inputs >= 3  # pairs scored


def test_concurrent_rerank_requests_get_their_own_scores(server, reranker):
    """Requests of 1-40 documents at concurrency 8 share model cycles (sliced by 16): each gets its own rows."""
    requests = [
        (
            f"query {i} " + "q " * (i % 5),
            [f"doc {i}.{k} " + "w " * ((i + k) % 30) for k in range(1 + (i * 7) % MAX_INPUTS)],
        )
        for i in range(40)
    ]

    async def run():
        async with httpx.AsyncClient(base_url=server.url, headers=server.headers(), timeout=60) as client:
            gate = asyncio.Semaphore(8)

            async def one(query, documents):
                async with gate:
                    body = {"query": query, "texts": documents, "raw_scores": True}
                    return await client.post("/rerank", json=body)

            return await asyncio.gather(*(one(q, d) for q, d in requests))

    responses = asyncio.run(run())
    assert [r.status_code for r in responses] == [200] * len(requests)
    for (query, documents), response in zip(requests, responses, strict=True):
        rows = response.json()
        assert len(rows) == len(documents)
        _check_ranked(rows, reranker.predict(_pairs(query, documents), activation="Identity"), atol=1e-5)


def test_pair_scores_count_tokens_and_truncation_as_the_reference_tokenizer(reranker, source):
    from transformers import AutoTokenizer

    from embedrt.serve.rerank import pair_scores

    pairs = [*_pairs(QUERY, DOCUMENTS), ("word " * 40, "word " * 40), ("", "")]
    rows = pair_scores(reranker, pairs)
    reference = AutoTokenizer.from_pretrained(str(source))
    cut = reference([a for a, _ in pairs], [b for _, b in pairs], truncation="longest_first", max_length=64)
    whole = reference([a for a, _ in pairs], [b for _, b in pairs])
    assert rows.tokens == [len(ids) for ids in cut["input_ids"]]
    assert rows.truncated == [len(ids) > 64 for ids in whole["input_ids"]]
    assert rows.truncated.count(True) == 2
    np.testing.assert_allclose(rows.values, reranker.logits(pairs), atol=1e-6)


def test_the_warm_up_scores_one_pair_before_health(reranker):
    from starlette.testclient import TestClient

    from embedrt.serve.app import create_app
    from embedrt.serve.config import ServeConfig

    calls = []
    real = reranker.logits
    reranker.logits = lambda pairs, *args: calls.append(list(pairs)) or real(pairs, *args)
    try:
        with TestClient(create_app(reranker, ServeConfig(model_name="ce"))) as client:
            assert calls == [[("warm-up", "warm-up")]]  # before any request
            assert client.get("/health").status_code == 200
            assert client.post("/rerank", json={"query": "q", "texts": ["d"]}).status_code == 200

        def broken(pairs, *args):
            raise RuntimeError("cannot run")

        reranker.logits = broken
        with (
            pytest.raises(RuntimeError, match="cannot run"),
            TestClient(create_app(reranker, ServeConfig(model_name="c"))),
        ):
            pass
    finally:
        del reranker.logits  # the class's method again, for the other tests of this module


def test_v2_rerank_answers_in_cohere_v2_shape(server, reference):
    sigmoid, logits = reference(_pairs(QUERY, DOCUMENTS))
    response = server.post("/v2/rerank", {"model": "ce", "query": QUERY, "documents": DOCUMENTS, "top_n": 3})
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"id", "results", "meta"} and body["id"] == response.headers["x-request-id"]
    assert all(set(r) == {"index", "relevance_score"} for r in body["results"])
    _check_ranked(body["results"], sigmoid, "relevance_score")
    assert len(body["results"]) == 3
    meta = body["meta"]
    assert meta["api_version"] == {"version": "2"} and meta["billed_units"] == {"search_units": 1}
    assert meta["tokens"]["input_tokens"] > 0
    everything = server.post(
        "/v2/rerank",
        {
            "query": QUERY,
            "documents": DOCUMENTS,
            "return_documents": True,
            "raw_scores": True,
            "priority": 3,
            "max_tokens_per_doc": 4096,
        },
    ).json()["results"]
    _check_ranked(everything, logits, "relevance_score")
    assert [r["document"] for r in everything] == [{"text": DOCUMENTS[r["index"]]} for r in everything]


def test_post_root_reranks_and_get_root_is_health(server, reference):
    sigmoid, _ = reference(_pairs(QUERY, DOCUMENTS))
    root = server.post("/", {"query": QUERY, "texts": DOCUMENTS})
    assert root.status_code == 200, root.text
    assert root.json() == server.post("/rerank", {"query": QUERY, "texts": DOCUMENTS}).json()
    _check_ranked(root.json(), sigmoid)
    assert server.get("/", headers={}).status_code == 200  # health needs no key
    assert server.post("/", {"query": QUERY, "texts": DOCUMENTS}, headers={}).status_code == 401
    refused = server.post("/", {"query": QUERY, "texts": []})
    assert refused.status_code == 400 and refused.json()["error_type"] == "Empty"


def test_info_has_the_tei_fields_of_a_reranker(server):
    info = server.get("/info").json()
    assert info["model_type"] == {"reranker": {"id2label": {"0": "LABEL_0"}, "label2id": {"LABEL_0": 0}}}
    assert info["model_id"] == "ce" and info["model_dtype"] == "float32" and info["max_input_length"] == 64
    assert info["max_client_batch_size"] == MAX_INPUTS
