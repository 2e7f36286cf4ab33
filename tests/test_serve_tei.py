"""text-embeddings-inference's routes beyond /embed on an embedding server: ``/`` (GET health, POST the model's
route), /similarity, /info's TEI fields, and the TEI error shape and statuses."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
from conftest import reference_encode
from serve_helpers import error_of, start_server

KEY = "tei-key-0123456789"
MAX_INPUTS = 8
SOURCE = "The weather is lovely today."
SENTENCES = ["It's so sunny outside!", "He drove to the stadium.", "", "Ünïcödé 東京 🚀", "word " * 100]


@pytest.fixture(scope="module")
def server(tiny_export):
    srv = start_server(
        tiny_export, "--variant", "fp32", "--model-name", "tiny", "--max-inputs", str(MAX_INPUTS), key=KEY
    )
    yield srv
    assert srv.stop() == 0


def _similarity(source=SOURCE, sentences=SENTENCES, **parameters):
    body = {"inputs": {"source_sentence": source, "sentences": sentences}}
    return body | ({"parameters": parameters} if parameters else {})


def test_similarity_is_sentence_transformers_cosine(server, tiny_model_dir):
    from sentence_transformers.util import cos_sim

    response = server.post("/similarity", _similarity())
    assert response.status_code == 200, response.text
    st = reference_encode(tiny_model_dir, [SOURCE, *SENTENCES])
    np.testing.assert_allclose(response.json(), cos_sim(st[:1], st[1:]).numpy()[0], atol=1e-6)
    assert server.post("/similarity", _similarity(truncate=True, prompt_name=None)).json() == response.json()
    same = server.post("/similarity", _similarity(sentences=[SOURCE])).json()
    np.testing.assert_allclose(same, [1.0], atol=1e-6)


def test_post_root_is_embed_or_similarity_by_its_body(server):
    texts = [SOURCE, *SENTENCES]
    assert server.post("/", {"inputs": texts}).json() == server.post("/embed", {"inputs": texts}).json()
    raw = {"inputs": "a text", "normalize": False}
    assert server.post("/", raw).json() == server.post("/embed", raw).json()
    assert server.post("/", _similarity()).json() == server.post("/similarity", _similarity()).json()
    assert server.post("/", {"inputs": texts}, headers={}).status_code == 401
    assert server.get("/", headers={}).json() == {"status": "ok"}  # TEI's health route, no key needed
    assert httpx.put(server.url + "/", headers=server.headers()).status_code == 405


BAD = [
    ({"inputs": {"sentences": ["a"]}}, 422, "inputs.source_sentence", None),
    (_similarity(source=3), 422, "inputs.source_sentence", None),
    (_similarity(source="a\ud800b"), 422, "inputs.source_sentence", None),
    (_similarity(sentences=[]), 400, "inputs.sentences", "empty"),
    (_similarity(sentences=None), 422, "inputs.sentences", None),
    (_similarity(sentences=["a", 5]), 422, "inputs.sentences[1]", None),
    (_similarity(sentences=["a"] * MAX_INPUTS), 422, "inputs.sentences", "too_many"),  # the source counts too
    (_similarity(truncate=False), 422, "inputs.sentences[4]", "input_too_long"),
    (_similarity(source="word " * 100, truncate=False), 422, "inputs.source_sentence", "input_too_long"),
    (_similarity(truncate="no"), 422, "truncate", None),
    (_similarity(prompt_name=3), 422, "parameters.prompt_name", None),
    (_similarity(prompt_name="nope"), 422, "prompt_name", None),
    (_similarity(truncation_direction="middle"), 422, "parameters.truncation_direction", None),
    ({"inputs": {"source_sentence": "a", "sentences": ["b"]}, "parameters": [1]}, 422, "parameters", None),
    ({"inputs": ["a"]}, 422, "inputs", None),
]


@pytest.mark.parametrize(("body", "status", "param", "code"), BAD, ids=[f"{i}-{b[2]}" for i, b in enumerate(BAD)])
def test_bad_similarity_bodies_get_tei_errors_naming_the_field(server, body, status, param, code):
    import json

    response = server.post("/similarity", json.dumps(body).encode(), headers={**server.headers()})
    assert response.status_code == status, response.text
    error = error_of(response)
    assert error["param"] == param and error["code"] == code, error
    assert response.json()["error_type"] == ("Empty" if code == "empty" else "Validation")
    assert "word word" not in response.text and "Traceback" not in response.text


def test_tei_errors_keep_their_other_statuses(server):
    malformed = server.post("/embed", b"{not json")
    assert malformed.status_code == 400 and malformed.json()["error_type"] == "Validation"
    unauthorized = server.post("/embed", {"inputs": "a"}, headers={})
    assert unauthorized.status_code == 401 and unauthorized.json()["error_type"] == "Unauthorized"
    empty = server.post("/embed", {"inputs": []})
    assert empty.status_code == 400 and empty.json()["error_type"] == "Empty"
    openai = server.post("/v1/embeddings", {"input": ["x"] * (MAX_INPUTS + 1)})
    assert openai.status_code == 413 and openai.json()["error"]["code"] == "too_many"  # OpenAI's route: its own


def test_info_has_text_embeddings_inference_fields(server):
    info = server.get("/info").json()
    tei = {
        "model_id": "tiny",  # a local export: the served name (a hub export names its hub id and commit)
        "model_sha": None,
        "model_dtype": "float32",
        "served_model_name": "tiny",
        "model_type": {"embedding": {"pooling": "mean"}},
        "max_input_length": 64,
        "max_batch_tokens": info["limits"]["max_batch_tokens"],
        "max_client_batch_size": MAX_INPUTS,
        "max_concurrent_requests": info["limits"]["max_queue"],
        "auto_truncate": True,
    }
    assert {k: info[k] for k in tei} == tei
    for key in ("max_batch_requests", "tokenization_workers"):
        assert isinstance(info[key], int) and info[key] >= 1
    assert info["version"] and info["kind"] == "embedding" and info["model"] == "tiny"  # embedrt's own, beside


def test_info_names_the_hub_id_and_commit_of_a_hub_export(tiny_export, tmp_path):
    from conftest import clone_dir, edit_json

    from embedrt import Encoder
    from embedrt.serve.config import ServeConfig
    from embedrt.serve.tei import tei_info

    export = clone_dir(tiny_export, tmp_path / "hub-export")
    sha = "0123456789abcdef0123456789abcdef01234567"
    edit_json(export / "manifest.json", source={"hub_id": "org/tiny", "revision": "main", "commit": sha})
    info = tei_info(Encoder.load(export, variant="int8"), ServeConfig(model_name="served"), workers=2)
    assert (info["model_id"], info["model_sha"], info["model_dtype"]) == ("org/tiny", sha, "int8")
    assert info["served_model_name"] == "served" and info["tokenization_workers"] == 2
