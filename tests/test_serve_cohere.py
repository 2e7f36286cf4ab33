"""Cohere's embed routes (/v1/embed, /v2/embed) on an embedding server: vectors as /embed's, Cohere's shapes,
``input_type`` onto the model's prompts, and 400s naming the field (Cohere's rerank: tests/test_serve_rerank.py)."""

from __future__ import annotations

import base64

import numpy as np
import pytest
from conftest import clone_dir, edit_json
from serve_helpers import start_server

MAX_INPUTS = 8
TEXTS = ["The weather is lovely today.", "It's so sunny outside!", "", "word " * 100]


@pytest.fixture(scope="module")
def server(tiny_export, tmp_path_factory):
    """The tiny model with a "query: " prompt, so that input_type search_query shows."""
    model = clone_dir(tiny_export, tmp_path_factory.mktemp("cohere") / "tiny")
    edit_json(model / "config_sentence_transformers.json", prompts={"query": "query: ", "document": ""})
    srv = start_server(model, "--variant", "fp32", "--model-name", "tiny", "--max-inputs", str(MAX_INPUTS))
    yield srv
    assert srv.stop() == 0


def test_v1_embed_is_embed_in_cohere_v1_shape(server):
    response = server.post("/v1/embed", {"texts": TEXTS, "model": "tiny", "input_type": "search_document"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["response_type"] == "embeddings_floats" and body["texts"] == TEXTS
    assert body["id"] == response.headers["x-request-id"] and body["meta"]["api_version"] == {"version": "1"}
    assert body["meta"]["billed_units"]["input_tokens"] > 0
    expected = server.post("/embed", {"inputs": TEXTS, "prompt_name": "document"}).json()
    np.testing.assert_allclose(body["embeddings"], expected, atol=1e-6)


def test_v2_embed_by_type_prompt_and_output_dimension(server):
    body = {"texts": TEXTS, "model": "tiny", "input_type": "search_query", "embedding_types": ["float", "base64"]}
    got = server.post("/v2/embed", body).json()
    assert got["response_type"] == "embeddings_by_type" and got["meta"]["api_version"] == {"version": "2"}
    query = server.post("/embed", {"inputs": TEXTS, "prompt_name": "query"}).json()
    plain = server.post("/embed", {"inputs": TEXTS}).json()
    np.testing.assert_allclose(got["embeddings"]["float"], query, atol=1e-6)  # "query: " prepended
    assert not np.allclose(query, plain, atol=1e-3)
    decoded = [np.frombuffer(base64.b64decode(s), dtype="<f4") for s in got["embeddings"]["base64"]]
    np.testing.assert_allclose(decoded, query, atol=1e-7)
    short = server.post("/v2/embed", {"texts": TEXTS, "output_dimension": 8, "input_type": "clustering"}).json()
    cut = server.post("/embed", {"inputs": TEXTS, "dimensions": 8}).json()
    np.testing.assert_allclose(short["embeddings"]["float"], cut, atol=1e-6)
    assert set(short["embeddings"]) == {"float"}  # v2's default type


def test_truncate_start_keeps_the_end_as_tei_left(server):
    """Cohere's truncate START (cut the start) is /embed's truncation_direction left; END is right."""
    long = ["word " * 60 + "and the text ends with these words"]
    start = server.post("/v2/embed", {"texts": long, "truncate": "START"}).json()["embeddings"]["float"]
    end = server.post("/v2/embed", {"texts": long, "truncate": "END"}).json()["embeddings"]["float"]
    left = server.post("/embed", {"inputs": long, "truncation_direction": "left"}).json()
    right = server.post("/embed", {"inputs": long}).json()
    np.testing.assert_allclose(start, left, atol=1e-6)
    np.testing.assert_allclose(end, right, atol=1e-6)
    assert np.abs(np.array(start) - np.array(end)).max() > 1e-3


BAD = [
    ("/v2/embed", {"texts": TEXTS, "embedding_types": ["int8"]}, "embedding_types[0]"),
    ("/v2/embed", {"texts": TEXTS, "embedding_types": []}, "embedding_types"),
    ("/v2/embed", {"texts": TEXTS, "input_type": "image"}, "input_type"),
    ("/v2/embed", {"images": ["data:image/png;base64,AAAA"]}, "images"),
    ("/v2/embed", {"inputs": [{"content": []}]}, "inputs"),
    ("/v2/embed", {"texts": TEXTS, "truncate": "MIDDLE"}, "truncate"),
    ("/v2/embed", {"texts": TEXTS, "truncate": "NONE"}, "texts[3]"),  # past 64 tokens
    ("/v2/embed", {"texts": TEXTS, "output_dimension": 33}, "output_dimension"),
    ("/v2/embed", {"texts": TEXTS, "max_tokens": 16}, "max_tokens"),
    ("/v2/embed", {"texts": TEXTS, "priority": "now"}, "priority"),
    ("/v2/embed", {"texts": ["a"] * (MAX_INPUTS + 1)}, "texts"),
    ("/v1/embed", {"texts": [1, 2]}, "texts"),
    ("/v1/embed", {"texts": TEXTS, "model": "other"}, "model"),
    ("/v1/embed", {"texts": TEXTS, "model": 3}, "model"),
]


@pytest.mark.parametrize(("route", "body", "param"), BAD, ids=[f"{i}-{b[2]}" for i, b in enumerate(BAD)])
def test_bad_embed_bodies_get_a_4xx_naming_the_field(server, route, body, param):
    response = server.post(route, body)
    assert 400 <= response.status_code < 500 and response.status_code != 422, response.text
    error = response.json()["error"]
    assert error["param"] == param, error
    assert "word word" not in response.text


def test_output_dimension_and_max_tokens_are_v2_fields(server):
    body = {"texts": ["a"], "output_dimension": 8, "max_tokens": 1}
    assert len(server.post("/v1/embed", body).json()["embeddings"][0]) == 32  # v1 has neither field
    fits = server.post("/v2/embed", {"texts": ["a"], "max_tokens": 4096, "priority": 1})
    assert fits.status_code == 200
