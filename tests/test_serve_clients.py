"""The scenario matrix: real client libraries, called as their documentation shows, against `embedrt serve`.

The clients run in .venv-clients (tests/clients/requirements.txt, built by `make install`) through
tests/clients/driver.py, which prints what each one got; the server runs from the project venv on 127.0.0.1.
Every vector must equal plain HTTP and sentence-transformers (cosine >= 0.99999, fp32), every rerank order the
model's, and every error a 4xx the client reports as such.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, reference_encode
from serve_helpers import start_server

from embedrt.export.parity import compare

CLIENTS_PYTHON = REPO / ".venv-clients" / "bin" / "python"
DRIVER = REPO / "tests" / "clients" / "driver.py"
KEY = "clients-key-0123456789"
MAX_INPUTS = 16
TEXTS = [
    "The weather is lovely today.",
    "It's so sunny outside!",
    "He drove to the stadium.",
    "Ünïcödé, CJK 東京, emoji 🚀 and [SEP] inside.",
    "word " * 100,  # past the tiny model's 64 tokens: truncated
]
LONG_TEXT = "start " + "middle " * 100 + "the end of the text"
QUERY = "What is the capital of France?"
DOCUMENTS = [
    "Paris is the capital and most populous city of France.",
    "Berlin is the capital of Germany.",
    "The weather is lovely today.",
    "France's capital city is Paris.",
    "word " * 100,
]
MIN_COSINE = 0.99999

# What each embedding scenario returns, and whether its vectors are unit vectors (haystack asks normalize=false).
VECTOR_SCENARIOS = {
    "openai_float": ("vectors", True),
    "openai_base64": ("vectors", True),
    "langchain_openai": ("vectors", True),
    "hub_feature_extraction": ("vectors", True),
    "haystack_text_embedder": ("vectors", False),
    "haystack_document_embedder": ("vectors", False),
    "langchain_huggingface": ("vectors", True),
    "llama_index_tei": ("vectors", True),
    "llama_index_openai": ("vectors", True),
    "cohere_v1_embed": ("vectors", True),
    "cohere_v2_embed": ("vectors", True),
}


def _clients_python() -> Path:
    if not CLIENTS_PYTHON.is_file():
        reason = f"{CLIENTS_PYTHON} is missing: `make install` builds it from tests/clients/requirements.txt"
        if os.environ.get("EMBEDRT_REQUIRE_CLIENTS") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return CLIENTS_PYTHON


def _drive(job: dict) -> dict:
    """Run the driver in the clients' venv on ``job``; its results by scenario."""
    # huggingface_hub's offline mode refuses every URL, 127.0.0.1 included; the driver itself refuses any address
    # that is not the loopback one, so the clients still reach nothing else.
    dropped = ("VIRTUAL_ENV", "PYTHONPATH", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    env |= {"NO_PROXY": "*", "no_proxy": "*", "PYTHONHASHSEED": "0"}
    done = subprocess.run(
        [str(_clients_python()), str(DRIVER)],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def embedding_server(tiny_export):
    _clients_python()
    srv = start_server(
        tiny_export, "--variant", "fp32", "--model-name", "tiny", "--max-inputs", str(MAX_INPUTS), key=KEY
    )
    yield srv
    assert srv.stop() == 0


@pytest.fixture(scope="module")
def embedded(embedding_server):
    job = {
        "kind": "embedding",
        "url": embedding_server.url,
        "key": KEY,
        "model": "tiny",
        "texts": TEXTS,
        "long_text": LONG_TEXT,
        "max_inputs": MAX_INPUTS,
    }
    return _drive(job)


@pytest.fixture(scope="module")
def references(tiny_model_dir, embedding_server):
    """sentence-transformers' vectors of TEXTS and plain HTTP /embed's, normalized and not."""
    plain = embedding_server.post("/embed", {"inputs": TEXTS}).json()
    raw = embedding_server.post("/embed", {"inputs": TEXTS, "normalize": False}).json()
    return {
        "st": reference_encode(tiny_model_dir, TEXTS),
        "http": np.array(plain, dtype=np.float32),
        "http_raw": np.array(raw, dtype=np.float32),
    }


def _ok(result: dict) -> dict:
    assert result["ok"], f"{result['error']} (status {result['status']}): {result['message']}\n{result['where']}"
    return result


@pytest.mark.parametrize("scenario", list(VECTOR_SCENARIOS))
def test_client_vectors_equal_http_and_sentence_transformers(embedded, references, scenario):
    key, unit = VECTOR_SCENARIOS[scenario]
    got = np.array(_ok(embedded[scenario])[key], dtype=np.float32)
    assert got.shape == references["st"].shape
    assert compare(references["st"], got).min_cosine >= MIN_COSINE
    np.testing.assert_allclose(got, references["http" if unit else "http_raw"], atol=1e-6)
    if "query" in embedded[scenario]:  # the one-text call of the same client
        np.testing.assert_allclose(embedded[scenario]["query"], references["http"][0], atol=1e-6)


def test_openai_base64_decodes_to_the_float_vectors(embedded, references):
    result = _ok(embedded["openai_base64"])
    np.testing.assert_allclose(np.array(result["by_hand"]), references["http"], atol=1e-7)
    assert _ok(embedded["openai_float"])["tokens"] > 0


def test_cohere_embed_answers_by_type(embedded, references):
    v2 = _ok(embedded["cohere_v2_embed"])
    np.testing.assert_allclose(v2["base64"], references["http"], atol=1e-7)
    assert v2["tokens"] > 0
    assert _ok(embedded["cohere_v1_embed"])["type"] == "embeddings_floats"


def test_huggingface_hub_single_text_and_normalize(embedded, references):
    result = _ok(embedded["hub_feature_extraction"])
    np.testing.assert_allclose(result["single"], references["http"][:1], atol=1e-6)
    np.testing.assert_allclose(result["raw"], references["http_raw"], atol=1e-6)


def test_sentence_similarity_is_sentence_transformers_cosine(embedded, references):
    from sentence_transformers.util import cos_sim

    scores = _ok(embedded["hub_sentence_similarity"])["scores"]
    st = references["st"]
    expected = cos_sim(st[:1], st[1:]).numpy()[0]
    np.testing.assert_allclose(scores, expected, atol=1e-5)


def test_get_endpoint_info_reads_the_tei_fields(embedded):
    result = _ok(embedded["hub_endpoint_info"])
    info = result["info"]
    assert result["healthy"] is True
    assert info["model_id"] == "tiny" and info["model_dtype"] == "float32"
    assert info["model_type"] == {"embedding": {"pooling": "mean"}}
    assert info["max_input_length"] == 64 and info["max_client_batch_size"] == MAX_INPUTS
    assert info["kind"] == "embedding" and info["dimension"] == 32  # embedrt's own fields beside them


# Each client's refusal, as the client raises it: (scenario, HTTP status, exception class).
EMBEDDING_ERRORS = [
    ("openai_too_many", 413, "APIStatusError"),
    ("langchain_openai_too_many", 413, "APIStatusError"),
    ("llama_index_openai_too_many", 413, "APIStatusError"),
    ("hub_too_long", 422, "HfHubHTTPError"),
    ("hub_similarity_empty", 400, "BadRequestError"),  # huggingface_hub's HfHubHTTPError for 400
    ("haystack_text_embedder_too_long", 422, "HfHubHTTPError"),
    ("haystack_document_embedder_too_long", 422, "HfHubHTTPError"),
    ("langchain_huggingface_too_long", 422, "HfHubHTTPError"),
    ("cohere_v1_embed_too_long", 400, "BadRequestError"),
    ("cohere_v2_embed_quantized", 400, "BadRequestError"),
]
RERANK_ERRORS = [
    ("haystack_tei_ranker_too_many", 422, "RuntimeError"),
    ("cohere_v1_bad_top_n", 400, "BadRequestError"),
    ("cohere_v2_empty", 400, "BadRequestError"),
]


@pytest.mark.parametrize(("scenario", "status", "error"), EMBEDDING_ERRORS)
def test_errors_reach_the_client_as_4xx(embedded, scenario, status, error):
    result = embedded[scenario]
    assert not result["ok"] and (result["status"], result["error"]) == (status, error), result
    assert "Traceback" not in result["message"] and "word word" not in result["message"]


def test_hub_error_message_is_the_server_message(embedded):
    message = embedded["hub_too_long"]["message"]
    assert "inputs[0] has more than 62 tokens" in message and "{'message'" not in message


def test_llama_index_tei_sees_the_error_body(embedded):
    """llama-index's TEI embedding reads the body without checking the status: it fails on the error object."""
    result = embedded["llama_index_tei_too_long"]
    assert not result["ok"] and result["error"] == "KeyError", result


def test_left_truncation_keeps_the_end_of_the_text(embedded, tiny_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    ids = tokenizer(LONG_TEXT, add_special_tokens=False)["input_ids"][-62:]
    kept = tokenizer.decode(ids)
    expected = reference_encode(tiny_model_dir, [kept])
    got = np.array(_ok(embedded["hub_left_truncation"])["vectors"])
    assert compare(expected, got).min_cosine >= 0.9999


@pytest.fixture(scope="module")
def cross_encoder(tmp_path_factory, minilm_dir):
    from test_serve_rerank import _hf_cross_encoder

    from embedrt.export import export

    tmp = tmp_path_factory.mktemp("clients-ce")
    source = _hf_cross_encoder(tmp / "hf", minilm_dir, 1)
    return source, export(source, tmp / "ce", variants="fp32", progress=False)


@pytest.fixture(scope="module")
def reranked(cross_encoder):
    _clients_python()
    limits = ("--max-inputs", str(MAX_INPUTS))
    srv = start_server(cross_encoder[1], "--variant", "fp32", "--model-name", "ce", *limits, key=KEY)
    try:
        job = {"kind": "rerank", "url": srv.url, "key": KEY, "model": "ce", "query": QUERY, "documents": DOCUMENTS}
        results = _drive(job)
        plain = srv.post("/rerank", {"query": QUERY, "texts": DOCUMENTS}).json()
    finally:
        assert srv.stop() == 0
    return results, plain


@pytest.fixture(scope="module")
def rerank_reference(cross_encoder):
    import torch
    from sentence_transformers import CrossEncoder

    model = CrossEncoder(str(cross_encoder[0]), device="cpu")
    return np.asarray(model.predict([(QUERY, d) for d in DOCUMENTS], activation_fn=torch.nn.Sigmoid()))


def _check_order(ranked: list, reference: np.ndarray, top: int | None = None) -> None:
    """``[[index, score], ...]`` best first: each score the reference's, the indices the reference's best ones."""
    indices = [i for i, _ in ranked]
    scores = np.array([s for _, s in ranked])
    assert len(set(indices)) == len(indices) == (top or len(reference))
    np.testing.assert_allclose(scores, reference[indices], atol=1e-5)
    np.testing.assert_allclose(scores, np.sort(reference)[::-1][: len(indices)], atol=1e-5)


@pytest.mark.parametrize(
    ("scenario", "top"),
    [
        ("haystack_tei_ranker", None),
        ("cohere_v1", 3),
        ("cohere_v2", None),
        ("cohere_v2_top_n", 2),
        ("infinity_client", None),
    ],
)
def test_rerank_clients_get_the_model_order(reranked, rerank_reference, scenario, top):
    results, plain = reranked
    _check_order(_ok(results[scenario])["ranked"], rerank_reference, top)
    http = [[r["index"], r["score"]] for r in plain]
    assert [i for i, _ in results[scenario]["ranked"]] == [i for i, _ in http][: top or len(http)]


def test_rerank_clients_read_the_documents(reranked):
    results, _ = reranked
    cohere = _ok(results["cohere_v1"])
    assert cohere["documents"] == [DOCUMENTS[i] for i, _ in cohere["ranked"]]  # document.text, as Cohere's SDK reads it
    infinity = _ok(results["infinity_client"])
    assert infinity["documents"] == [{"text": DOCUMENTS[i]} for i, _ in infinity["ranked"]]  # unchecked, as sent
    assert _ok(results["cohere_v2"])["tokens"] > 0 and results["cohere_v2"]["id"]


@pytest.mark.parametrize(("scenario", "status", "error"), RERANK_ERRORS)
def test_rerank_errors_reach_the_client_as_4xx(reranked, scenario, status, error):
    result = reranked[0][scenario]
    assert not result["ok"] and (result["status"], result["error"]) == (status, error), result


def test_infinity_client_sees_the_400(reranked):
    """infinity-client returns None for a status it does not know (it raises only when told to); the 400 is there."""
    assert _ok(reranked[0]["infinity_client_empty"])["status"] == 400
