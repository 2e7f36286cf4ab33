"""embedrt serve in a subprocess on 127.0.0.1: the official openai client, the TEI route, limits and faults."""

from __future__ import annotations

import asyncio
import base64
import socket
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from serve_helpers import error_of, start_server

from embedrt import Encoder
from embedrt.export.parity import compare

KEY = "test-key-0123456789"
TEXTS = [
    "The weather is lovely today.",
    "It's so sunny outside!",
    "He drove to the stadium.",
    "",
    "Ünïcödé, CJK 東京, emoji 🚀 and [SEP] inside.",
    "word " * 100,  # past the tiny model's 64 tokens: truncated
]
LIMITS = ["--max-inputs", "64", "--max-request-bytes", "65536", "--body-timeout", "1"]


@pytest.fixture(scope="module")
def server(tiny_export):
    # Options before and after the positional argument, as users type them.
    srv = start_server(tiny_export, "--variant", "fp32", "--model-name", "tiny", *LIMITS, key=KEY)
    yield srv
    assert srv.stop() == 0


@pytest.fixture(scope="module")
def encoder(tiny_export):
    return Encoder.load(tiny_export, variant="fp32")


def _client(server):
    from openai import OpenAI

    return OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0)


def _reference_tokens(tiny_model_dir, texts):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    return sum(len(ids) for ids in tokenizer(texts, truncation=True, max_length=64)["input_ids"])


def test_openai_client_gets_the_encoder_vectors(server, encoder, tiny_model_dir):
    client = _client(server)
    expected = encoder.encode(TEXTS)
    for fmt in ({}, {"encoding_format": "float"}):  # unasked, the client requests base64 and decodes it
        response = client.embeddings.create(input=TEXTS, model="tiny", **fmt)
        got = np.array([item.embedding for item in response.data], dtype=np.float32)
        assert [item.index for item in response.data] == list(range(len(TEXTS)))
        assert compare(expected, got).min_cosine >= 0.99999, fmt
        np.testing.assert_allclose(got, expected, atol=1e-6)
        assert response.model == "tiny"
        assert response.usage.prompt_tokens == response.usage.total_tokens == _reference_tokens(tiny_model_dir, TEXTS)
    single = client.embeddings.create(input="He drove to the stadium.", model="tiny")
    np.testing.assert_allclose(single.data[0].embedding, expected[2], atol=1e-6)


def test_base64_is_little_endian_float32(server, encoder):
    body = server.post("/v1/embeddings", {"input": ["a text"], "encoding_format": "base64"}).json()
    raw = base64.b64decode(body["data"][0]["embedding"])
    np.testing.assert_allclose(np.frombuffer(raw, dtype="<f4"), encoder.encode("a text"), atol=1e-6)


def test_dimensions_keep_the_first_values_renormalized(server, encoder):
    got = _client(server).embeddings.create(input=TEXTS, model="tiny", dimensions=8)
    vectors = np.array([item.embedding for item in got.data])
    expected = encoder.encode(TEXTS, truncate_dim=8, normalize_embeddings=True)
    np.testing.assert_allclose(vectors, expected, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)


def test_tei_route(server, encoder):
    got = server.post("/embed", {"inputs": TEXTS}).json()
    np.testing.assert_allclose(np.array(got), encoder.encode(TEXTS), atol=1e-6)
    single = server.post("/embed", {"inputs": "just one"}).json()
    assert len(single) == 1 and len(single[0]) == 32
    raw = server.post("/embed", {"inputs": TEXTS, "normalize": False}).json()
    np.testing.assert_allclose(np.array(raw), encoder.encode(TEXTS, normalize_embeddings=False), atol=1e-5)
    cut = server.post("/embed", {"inputs": TEXTS, "dimensions": 4}).json()
    np.testing.assert_allclose(
        np.array(cut), encoder.encode(TEXTS, truncate_dim=4, normalize_embeddings=True), atol=1e-6
    )
    long = server.post("/embed", {"inputs": ["short", "word " * 100], "truncate": False})
    assert long.status_code == 422  # text-embeddings-inference's status, in its error shape
    assert long.json()["error_type"] == "Validation" and error_of(long)["param"] == "inputs[1]"
    assert error_of(long)["message"].startswith("inputs[1] has more than 62 tokens besides [CLS] and [SEP]")
    truncated = server.post("/embed", {"inputs": ["word " * 100], "truncate": True}).json()
    np.testing.assert_allclose(truncated[0], encoder.encode("word " * 100), atol=1e-6)


def test_tei_left_truncation_keeps_the_end(server, tiny_model_dir):
    """truncation_direction left gives what sentence-transformers gives with its tokenizer truncating from the left
    (text-embeddings-inference's behaviour); an unknown direction is a 422 naming the field, as TEI answers."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(tiny_model_dir), device="cpu")
    texts = ["start " * 80 + "and here the text ends", "short"]
    right = model.encode(texts)
    model.tokenizer.truncation_side = "left"
    left = model.encode(texts)
    assert np.abs(left[0] - right[0]).max() > 100 * 1e-5  # the case tells the two apart
    for direction in ("left", "Left"):
        got = server.post("/embed", {"inputs": texts, "truncation_direction": direction}).json()
        np.testing.assert_allclose(np.array(got), left, atol=1e-5)
    got = server.post("/embed", {"inputs": texts, "truncation_direction": "right"}).json()
    np.testing.assert_allclose(np.array(got), right, atol=1e-5)
    bad = server.post("/embed", {"inputs": "a", "truncation_direction": "middle"})
    assert bad.status_code == 422 and error_of(bad)["param"] == "truncation_direction"  # TEI's validation status


BAD = [
    (b"{not json", 400, "not valid JSON"),
    (b"\xff\xfe\x00garbage", 400, "not valid UTF-8"),
    (b'["input"]', 400, "must be a JSON object, found a list"),
    (b'{"input": null}', 400, "'input' must be a string or a list of strings, found null"),
    (b'{"input": 3}', 400, "found a number"),
    (b'{"input": {"text": "a"}}', 400, "found an object"),
    (b'{"input": [["nested"]]}', 400, "'input[0]' is a list; expected a string"),
    (b'{"input": ["ok", null]}', 400, "'input[1]' is null; expected a string"),
    (b'{"input": []}', 400, "'input' must not be an empty list"),
    (b'{"model": "tiny"}', 400, "'input' is required"),
    (b'{"input": ["ok", "a\\ud800b"]}', 400, "input[1] contains a lone surrogate U+D800 at position 1"),
    (b'{"input": "a", "encoding_format": "int4"}', 400, "'encoding_format' must be 'float' or 'base64'"),
    (b'{"input": "a", "dimensions": 0}', 400, "'dimensions' must be an integer from 1 to 32, got 0"),
    (b'{"input": "a", "dimensions": 33}', 400, "got 33"),
    (b'{"input": "a", "dimensions": "8"}', 400, "got '8'"),
    (b'{"input": "a", "dimensions": true}', 400, "got True"),
    (b'{"input": [1, 2, 3]}', 400, "token-id arrays, which this server does not support"),
    (b'{"input": [[1, 2], [3]]}', 400, "token-id arrays"),
    (b'{"input": "a", "model": "gpt-4"}', 404, "the model 'gpt-4' does not exist"),
    (b'{"input": "a", "model": 7}', 400, "'model' must be a string"),
    (b'{"input": ' + b'["x", ' * 0 + b"[" + b'"x",' * 64 + b'"x"]}', 413, "holds 65 texts; at most 64"),
    (b'{"input": "' + b"x" * 70000 + b'"}', 413, "the body is 70013 bytes; the limit is 65536"),
    (b'{"input": "a", "x": NaN}', 400, "not valid JSON"),
    (b'{"input": ' + b"[" * 20000 + b"]" * 20000 + b"}", 400, "nested too deeply"),
]


@pytest.mark.parametrize(("body", "status", "message"), BAD, ids=[f"{i}-{s}" for i, (_, s, _) in enumerate(BAD)])
def test_bad_requests_get_a_4xx_naming_the_problem(server, body, status, message):
    response = server.post("/v1/embeddings", body, headers={**server.headers(), "Content-Type": "application/json"})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert message in error["message"]
    assert set(error) == {"message", "type", "param", "code"}
    assert "Traceback" not in response.text


def test_bad_tei_requests_and_routes(server):
    assert error_of(server.post("/embed", {"inputs": ["a", 5]}))["param"] == "inputs[1]"
    assert server.post("/embed", {"inputs": "a", "normalize": "yes"}).status_code == 422
    assert "not one of this model's prompts" in server.post("/embed", {"inputs": "a", "prompt_name": "q"}).text
    assert server.get("/nowhere").status_code == 404
    assert server.get("/v1/embeddings").status_code == 405
    assert server.get("/v1/embeddings").json()["error"]["message"] == "GET is not allowed on /v1/embeddings"


def test_server_is_healthy_and_exact_after_abuse(server, encoder):
    for body, _, _ in BAD:
        server.post("/v1/embeddings", body)
    assert server.get("/health").json() == {"status": "ok"}
    got = server.post("/v1/embeddings", {"input": TEXTS, "encoding_format": "float"}).json()
    np.testing.assert_allclose([d["embedding"] for d in got["data"]], encoder.encode(TEXTS), atol=1e-6)


def test_api_key_is_enforced(server):
    body = {"input": "a"}
    assert server.post("/v1/embeddings", body, headers={}).status_code == 401
    wrong = server.post("/v1/embeddings", body, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
    assert server.post("/embed", {"inputs": "a"}, headers={"Authorization": "Basic " + KEY}).status_code == 401
    assert server.get("/metrics", headers={}).status_code == 401
    assert server.get("/info", headers={}).status_code == 401
    assert server.get("/health", headers={}).status_code == 200  # probes need no key
    assert server.post("/v1/embeddings", body).status_code == 200


def test_info(server, encoder):
    info = server.get("/info").json()
    assert info["model"] == "tiny" and info["variant"] == "fp32" and info["device"] == "cpu"
    assert info["dimension"] == 32 and info["max_seq_length"] == 64
    assert info["limits"]["max_inputs"] == 64 and info["limits"]["max_request_bytes"] == 65536
    assert info["int8_kernel"] is None  # fp32: no int8 kernel probed


def test_info_names_the_int8_kernel_path(tiny_export):
    srv = start_server(tiny_export, "--variant", "int8")
    try:
        kernel = srv.get("/info").json()["int8_kernel"]
        assert kernel == Encoder.load(tiny_export, variant="int8").info()["int8_kernel"]
        assert kernel["path"] in ("default", "u8u8") and kernel["kernel"] in ("exact", "saturating")
    finally:
        assert srv.stop() == 0


def test_max_seq_length_option_cuts_texts_as_the_encoder_does(tiny_export):
    """`embedrt serve --max-seq-length 8`: vectors and token counts of Encoder.load(..., max_seq_length=8)."""
    srv = start_server(tiny_export, "--variant", "fp32", "--max-seq-length", "8")
    try:
        text = "word " * 100
        got = srv.post("/v1/embeddings", {"input": [text, "short"], "encoding_format": "float"}).json()
        want = Encoder.load(tiny_export, variant="fp32", max_seq_length=8).encode([text, "short"])
        np.testing.assert_allclose([d["embedding"] for d in got["data"]], want, atol=1e-6)
        assert got["usage"]["prompt_tokens"] == 8 + 3
    finally:
        assert srv.stop() == 0


def _raw(port: int, data: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(data)
    return sock


def test_slow_and_silent_clients_do_not_block_others(server, encoder):
    head = b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + KEY.encode()
    half = _raw(server.port, head + b'\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{"inp')
    silent = _raw(server.port, b"")
    started = time.monotonic()
    for text in TEXTS[:3]:  # served while both connections hang
        got = server.post("/v1/embeddings", {"input": text, "encoding_format": "float"}).json()
        np.testing.assert_allclose(got["data"][0]["embedding"], encoder.encode(text), atol=1e-6)
    assert time.monotonic() - started < 5  # not a timing check: these would wait forever if blocked
    half.settimeout(10)
    answer = b""
    while b"did not arrive" not in answer and (chunk := half.recv(4096)):
        answer += chunk
    assert answer.startswith(b"HTTP/1.1 408") and b"did not arrive within 1 s" in answer
    half.close()
    silent.close()


def test_a_client_that_disconnects_does_not_break_the_server(server, encoder):
    body = ('{"input": [' + ",".join(f'"text number {i} ' + "w " * 50 + '"' for i in range(64)) + "]}").encode()
    for _ in range(5):
        sock = _raw(
            server.port,
            b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            + KEY.encode()
            + f"\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body,
        )
        sock.close()  # gone before the answer
    got = server.post("/v1/embeddings", {"input": "after", "encoding_format": "float"}).json()
    np.testing.assert_allclose(got["data"][0]["embedding"], encoder.encode("after"), atol=1e-6)


def test_metrics_parse(server):
    from prometheus_client.parser import text_string_to_metric_families

    server.post("/v1/embeddings", {"input": ["one", "two"]})
    families = {f.name: f for f in text_string_to_metric_families(server.get("/metrics").text)}
    for name in (
        "embedrt_requests",
        "embedrt_request_latency_seconds",
        "embedrt_batch_size",
        "embedrt_batch_tokens",
        "embedrt_queue_depth",
        "embedrt_inputs",
        "embedrt_tokens",
    ):
        assert name in families, name
    ok = [
        s
        for s in families["embedrt_requests"].samples
        if s.labels == {"route": "/v1/embeddings", "status": "200"} and s.name.endswith("_total")
    ]
    assert ok and ok[0].value >= 1
    inputs = next(s.value for s in families["embedrt_inputs"].samples if s.name.endswith("_total"))
    assert inputs >= 2


def test_concurrent_requests_get_their_own_rows(server, encoder):
    """500 requests at concurrency 32, 1-3 distinct texts each: no errors, no rows mixed across requests."""
    requests = [
        [f"request {i} text {k}: " + "word " * ((i * 7 + k) % 40) for k in range(1 + i % 3)] for i in range(500)
    ]
    expected = {
        text: vec
        for text, vec in zip(
            [t for r in requests for t in r], encoder.encode([t for r in requests for t in r]), strict=True
        )
    }

    async def run():
        limits = httpx.Limits(max_connections=32)
        async with httpx.AsyncClient(
            base_url=server.url, headers=server.headers(), limits=limits, timeout=60
        ) as client:
            gate = asyncio.Semaphore(32)

            async def one(texts):
                async with gate:
                    response = await client.post("/v1/embeddings", json={"input": texts, "encoding_format": "float"})
                return texts, response

            return await asyncio.gather(*(one(texts) for texts in requests))

    results = asyncio.run(run())
    assert [r.status_code for _, r in results] == [200] * 500
    for texts, response in results:
        rows = response.json()["data"]
        assert len(rows) == len(texts)
        for text, row in zip(texts, rows, strict=True):
            np.testing.assert_allclose(row["embedding"], expected[text], atol=1e-5)


def test_full_queue_answers_429_with_retry_after(tiny_export):
    srv = start_server(tiny_export, "--max-queue", "64", "--max-inputs", "64", "--threads", "1")
    try:
        body = {"input": ["word " * 60 + str(i) for i in range(64)]}

        async def flood():
            async with httpx.AsyncClient(base_url=srv.url, timeout=60) as client:
                return await asyncio.gather(*(client.post("/v1/embeddings", json=body) for _ in range(24)))

        statuses = [r.status_code for r in asyncio.run(flood())]
        refused = [r for r in asyncio.run(flood()) if r.status_code == 429]
        assert set(statuses) <= {200, 429} and 200 in statuses
        assert refused, statuses
        assert refused[0].headers["Retry-After"] == "1" and refused[0].json()["error"]["code"] == "queue_full"
        assert srv.get("/health").status_code == 200
    finally:
        assert srv.stop() == 0
    assert "UNAUTHENTICATED" in srv.process.stderr.read()


def test_sigterm_drains_in_flight_requests_then_exits_0(tiny_export, encoder):
    srv = start_server(tiny_export, "--threads", "1", "--max-inputs", "2048")
    texts = [f"text {i} " + "word " * 50 for i in range(2048)]

    async def run():
        async with httpx.AsyncClient(base_url=srv.url, timeout=60) as client:
            pending = [asyncio.create_task(client.post("/embed", json={"inputs": texts})) for _ in range(2)]
            await asyncio.sleep(0.3)
            srv.process.send_signal(15)
            return await asyncio.gather(*pending)

    responses = asyncio.run(run())
    assert [r.status_code for r in responses] == [200, 200]
    np.testing.assert_allclose(np.array(responses[1].json()), encoder.encode(texts), atol=1e-5)
    assert srv.process.wait(15) == 0
    with pytest.raises(httpx.TransportError):
        httpx.get(srv.url + "/health", timeout=1)


def test_api_key_from_the_environment(tiny_export):
    import os

    srv = start_server(tiny_export, env={**os.environ, "EMBEDRT_API_KEY": "from-env"})
    try:
        assert srv.post("/embed", {"inputs": "a"}, headers={}).status_code == 401
        assert srv.post("/embed", {"inputs": "a"}, headers={"Authorization": "Bearer from-env"}).status_code == 200
    finally:
        srv.stop()
    assert "API key required" in srv.process.stderr.read()


def test_every_response_carries_a_request_id(server):
    mine = server.get("/info", headers={**server.headers(), "x-request-id": "client-id.42"})
    assert mine.headers["x-request-id"] == "client-id.42"  # a sane id is echoed
    for response in (
        server.get("/health"),
        server.get("/nowhere"),
        server.post("/v1/embeddings", b"{"),
        server.get("/info", headers={**server.headers(), "x-request-id": "bad id\twith spaces"}),
    ):
        rid = response.headers["x-request-id"]
        assert len(rid) == 32 and int(rid, 16) >= 0  # a new one, not the client's bad one


def test_an_internal_error_is_a_500_with_a_request_id_and_no_input(tiny_export, tmp_path):
    """A model file that fails at run time: the client gets the id, the log the traceback, neither the text."""
    import json
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_export, broken)
    config = json.loads((broken / "config.json").read_text())
    config["max_position_embeddings"] = 4096  # the export's position table holds 128: longer inputs fail
    (broken / "config.json").write_text(json.dumps(config))
    sbert = json.loads((broken / "sentence_bert_config.json").read_text())
    sbert["max_seq_length"] = 1024
    (broken / "sentence_bert_config.json").write_text(json.dumps(sbert))
    srv = start_server(broken, "--variant", "fp32")
    secret = "SECRET-TEXT " * 200
    try:
        response = srv.post("/embed", {"inputs": [secret]}, headers={"x-request-id": "trace-me"})
        assert response.status_code == 500, response.text
        assert response.headers["x-request-id"] == "trace-me"
        assert error_of(response)["code"] == "trace-me" and "trace-me" in error_of(response)["message"]
        assert "SECRET" not in response.text and "Traceback" not in response.text
        assert srv.get("/health").status_code == 200  # and it keeps serving
    finally:
        assert srv.stop() == 0
    log = srv.process.stderr.read()
    assert "request id trace-me" in log and "Traceback" in log and "SECRET" not in log


def test_ctrl_c_drains_and_exits_0_without_a_traceback(tiny_export):
    import signal

    srv = start_server(tiny_export, "--variant", "fp32")
    assert srv.post("/embed", {"inputs": "a"}).status_code == 200
    srv.process.send_signal(signal.SIGINT)
    assert srv.process.wait(15) == 0
    assert "Traceback" not in srv.process.stderr.read()


def test_silent_and_half_sent_heads_are_closed_after_the_header_timeout(tiny_export, encoder):
    srv = start_server(tiny_export, "--variant", "fp32", "--header-timeout", "1")
    try:
        silent = [_raw(srv.port, b"") for _ in range(20)]
        half = _raw(srv.port, b"POST /embed HTTP/1.1\r\nHost: x\r\nContent-Le")
        got = srv.post("/embed", {"inputs": "served meanwhile"}).json()
        np.testing.assert_allclose(got[0], encoder.encode("served meanwhile"), atol=1e-6)
        for sock in [*silent, half]:
            sock.settimeout(10)
            assert sock.recv(1024) == b""  # closed by the server (recv would time out otherwise)
            sock.close()
    finally:
        assert srv.stop() == 0


def test_options_from_the_environment(tiny_export):
    import os

    env = {**os.environ, "EMBEDRT_MODEL_DIR": str(tiny_export), "EMBEDRT_VARIANT": "fp32", "EMBEDRT_MAX_INPUTS": "3"}
    srv = start_server("", env=env)  # no positional: the model directory comes from the environment too
    try:
        info = srv.get("/info").json()
        assert info["variant"] == "fp32" and info["limits"]["max_inputs"] == 3
        assert srv.post("/embed", {"inputs": ["a"] * 4}).status_code == 422  # TEI's status for too many inputs
    finally:
        assert srv.stop() == 0


def test_production_default_int8_several_cycles_keeps_rows_apart(tiny_export):
    """int8 with its defaults (one cycle per usable CPU), large and small requests at once: every row is its own."""
    srv = start_server(tiny_export, "--variant", "int8")
    encoder = Encoder.load(tiny_export, variant="int8", threads=1)
    requests = [
        [f"r{i} t{k} " + "word " * ((i * 5 + k) % 30) for k in range(1 + (i % 4) * (i % 7))] for i in range(120)
    ]
    requests[7] = [f"large {k} " + "w " * (k % 50) for k in range(700)]  # sliced across cycles
    try:
        assert srv.get("/info").json()["int8_kernel"] is not None

        async def run():
            async with httpx.AsyncClient(base_url=srv.url, timeout=60) as client:
                gate = asyncio.Semaphore(16)

                async def one(texts):
                    async with gate:
                        return texts, await client.post("/embed", json={"inputs": texts})

                return await asyncio.gather(*(one(texts) for texts in requests))

        results = asyncio.run(run())
    finally:
        assert srv.stop() == 0
    assert [r.status_code for _, r in results] == [200] * len(requests)
    for texts, response in results:
        got = np.array(response.json())
        # int8 codes can differ with batch composition (one calibrated step per tensor; per-token steps elsewhere)
        assert compare(encoder.encode(texts), got).min_cosine >= 0.999


def test_dimensions_give_unit_vectors_without_a_normalize_module(tiny_model_dir, tmp_path):
    from conftest import clone_dir, drop_normalize

    from embedrt.export import export

    model = clone_dir(tiny_model_dir, tmp_path / "plain")
    drop_normalize(model)
    out = export(model, tmp_path / "export", variants=("fp32",), progress=False)
    srv = start_server(out, "--variant", "fp32")
    try:
        whole = srv.post("/v1/embeddings", {"input": ["a text"], "encoding_format": "float"}).json()
        cut = srv.post("/v1/embeddings", {"input": ["a text"], "dimensions": 8, "encoding_format": "float"}).json()
    finally:
        assert srv.stop() == 0
    assert abs(np.linalg.norm(whole["data"][0]["embedding"]) - 1) > 1e-3  # the model's own, unnormalized
    vector = np.array(cut["data"][0]["embedding"])
    assert vector.shape == (8,) and abs(np.linalg.norm(vector) - 1) < 1e-6  # OpenAI: always unit vectors
    np.testing.assert_allclose(
        vector,
        np.array(whole["data"][0]["embedding"][:8]) / np.linalg.norm(whole["data"][0]["embedding"][:8]),
        atol=1e-6,
    )


def test_models_and_tokenize_routes(server, tiny_model_dir):
    from transformers import AutoTokenizer

    models = _client(server).models.list()
    assert [m.id for m in models.data] == ["tiny"]
    texts = ["Hello, World! 東京 [SEP] x", "word " * 100]
    got = server.post("/tokenize", {"inputs": texts}).json()
    reference = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    expected = reference(texts, truncation=True, max_length=64)["input_ids"]
    assert [[t["id"] for t in row] for row in got] == expected
    assert [t["text"] for t in got[0]] == reference.convert_ids_to_tokens(expected[0])
    assert got[0][0]["special"] and not got[0][1]["special"]
    bare = server.post("/tokenize", {"inputs": "Hello", "add_special_tokens": False}).json()
    assert [t["id"] for t in bare[0]] == reference("Hello", add_special_tokens=False)["input_ids"]
    assert server.post("/tokenize", {"inputs": 3}).status_code == 422


def test_queue_budget_in_bytes_refuses_large_bodies_past_it(tiny_export):
    srv = start_server(tiny_export, "--variant", "fp32", "--max-request-bytes", "300000", "--max-queue-bytes", "600000")
    body = {"inputs": ["x " * 40_000 + str(i) for i in range(3)]}  # about 240 KB each

    async def flood():
        async with httpx.AsyncClient(base_url=srv.url, timeout=60) as client:
            return await asyncio.gather(*(client.post("/embed", json=body) for _ in range(12)))

    try:
        statuses = [r.status_code for r in asyncio.run(flood())]
        assert srv.get("/health").status_code == 200
        after = srv.post("/embed", body)
        metrics = srv.get("/metrics").text
    finally:
        assert srv.stop() == 0
    assert set(statuses) <= {200, 429} and 429 in statuses and 200 in statuses, statuses
    assert after.status_code == 200  # the budget is released once requests finish
    assert 'status="429"' in metrics


def test_shutdown_delay_fails_health_first_then_drains(tiny_export):
    srv = start_server(tiny_export, "--variant", "fp32", "--shutdown-delay", "3")
    assert srv.get("/health").status_code == 200
    srv.process.send_signal(15)
    deadline = time.monotonic() + 10
    while srv.get("/health").status_code != 503:  # an event, polled: not a timing assertion
        assert time.monotonic() < deadline
    assert srv.post("/embed", {"inputs": "still served"}).status_code == 200
    assert srv.process.wait(20) == 0


def test_connections_past_the_limit_get_503(tiny_export):
    srv = start_server(tiny_export, "--variant", "fp32", "--max-connections", "3")
    try:
        idle = [_raw(srv.port, b"") for _ in range(3)]  # connections count toward the limit
        refused = srv.get("/health")
        for sock in idle:
            sock.close()
        deadline = time.monotonic() + 10
        while (ok := srv.get("/health")).status_code != 200:  # the server notices the closed sockets
            assert time.monotonic() < deadline
    finally:
        assert srv.stop() == 0
    assert refused.status_code == 503 and ok.status_code == 200
    # The same JSON error body and request id as every other answer.
    assert refused.headers["content-type"] == "application/json" and refused.headers["x-request-id"]
    assert refused.json()["error"]["code"] == "too_many_connections"


def test_no_health_before_a_real_warm_up_pass(tiny_export):
    """The warm-up runs the model before the port opens; a model that cannot run never reports healthy."""
    from starlette.testclient import TestClient

    from embedrt.serve.app import create_app
    from embedrt.serve.config import ServeConfig

    encoder = Encoder.load(tiny_export, variant="fp32")
    calls = []
    real = encoder.embed
    encoder.embed = lambda texts, **kw: calls.append(list(texts)) or real(texts, **kw)
    with TestClient(create_app(encoder, ServeConfig(model_name="tiny"))) as client:
        assert calls == [["warm-up"]]  # before any request
        assert client.get("/health").status_code == 200

    def broken(texts, **kw):
        raise RuntimeError("cannot run")

    encoder.embed = broken
    with pytest.raises(RuntimeError, match="cannot run"), TestClient(create_app(encoder, ServeConfig(model_name="t"))):
        pass


def test_serve_uses_only_the_models_public_api():
    """The server reaches the model through Encoder/Reranker methods, never into its tokenizer or session."""
    import ast

    serve_dir = Path(__file__).resolve().parent.parent / "runtime" / "serve"
    reached = []
    for path in sorted(serve_dir.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Attribute):
                continue
            owner = node.value.attr if isinstance(node.value, ast.Attribute) else getattr(node.value, "id", "")
            on_model = owner in ("model", "encoder", "reranker")
            if node.attr == "tokenizer" or (on_model and node.attr.startswith("_")):
                reached.append(f"{path.name}:{node.lineno} {owner}.{node.attr}")
    assert not reached, reached


def test_an_exposed_server_without_a_key_says_so_at_start(tiny_export, monkeypatch, capsys):
    """Bound beyond loopback with no key (the container image's default), the start message warns loudly; the
    server is not started here (tests bind 127.0.0.1 only)."""
    from embedrt.cli import main
    from embedrt.serve import http

    monkeypatch.setattr(http.DelayedExit, "run", lambda self: None)
    monkeypatch.delenv("EMBEDRT_API_KEY", raising=False)
    for host, warned in (("0.0.0.0", True), ("127.0.0.1", False), ("::1", False), ("10.1.2.3", True)):
        main(["serve", str(tiny_export), "--host", host, "--variant", "fp32"])
        err = capsys.readouterr().err
        assert ("WARNING: embedrt serve listens on" in err) is warned, (host, err)
    main(["serve", str(tiny_export), "--host", "0.0.0.0", "--variant", "fp32", "--api-key", "k"])
    assert "WARNING" not in capsys.readouterr().err


def test_large_answers_are_encoded_off_the_event_loop_and_small_ones_on_it():
    import threading

    from embedrt.serve.app import OFF_LOOP_VALUES, _encoded

    def thread_name() -> bytes:
        return threading.current_thread().name.encode()

    async def run():
        small = await _encoded(thread_name, OFF_LOOP_VALUES)
        large = await _encoded(thread_name, OFF_LOOP_VALUES + 1)
        return small.body, large.body

    small, large = asyncio.run(run())
    assert small == threading.current_thread().name.encode()  # the loop's thread
    assert large != small


@pytest.mark.parametrize("rows", [1, 8, 9, 64, 300])
def test_answers_are_the_same_bytes_however_their_rows_are_written(rows):
    """Past FRAGMENT_ROWS, rows are written one orjson call each; the answer's bytes do not change."""
    import orjson

    from embedrt.serve.cohere import cohere_embed_body, cohere_embed_request
    from embedrt.serve.protocol import EncodingFormat, openai_body, tei_body

    vectors = np.random.default_rng(rows).standard_normal((rows, 384)).astype(np.float32)
    numpy = orjson.OPT_SERIALIZE_NUMPY
    data = [{"object": "embedding", "index": i, "embedding": row} for i, row in enumerate(vectors)]
    usage = {"prompt_tokens": 7, "total_tokens": 7}
    expected = orjson.dumps({"object": "list", "data": data, "model": "m", "usage": usage}, option=numpy)
    assert openai_body(vectors, EncodingFormat.FLOAT, "m", 7) == expected
    assert tei_body(vectors) == orjson.dumps(vectors, option=numpy)
    req = cohere_embed_request({"texts": ["t"] * rows}, 1000, 384, 128, v2=False)
    got = orjson.loads(cohere_embed_body(vectors, req, 7, "id", v2=False))
    assert got["embeddings"] == orjson.loads(orjson.dumps(vectors, option=numpy))


def test_many_rows_through_the_server_are_the_encoders(server, encoder):
    texts = [f"text number {i}" for i in range(64)]
    got = server.post("/v1/embeddings", {"input": texts}).json()
    np.testing.assert_allclose([d["embedding"] for d in got["data"]], encoder.encode(texts), atol=1e-6)
    assert [d["index"] for d in got["data"]] == list(range(64))
    np.testing.assert_allclose(server.post("/embed", {"inputs": texts}).json(), encoder.encode(texts), atol=1e-6)
