"""bf16: the probe that picks an engine, the OpenVINO session, the load-time gate, and vectors against the reference."""

from __future__ import annotations

import platform
import shutil
import threading

import numpy as np
import pytest
from conftest import reference_encode

from embedrt import Encoder, Reranker
from embedrt import bf16 as b
from embedrt.bf16_gate import GATE_MIN_COSINE, Bf16GateFailed, cosines, gate_texts
from embedrt.manifest import MANIFEST_NAME, Manifest, Variant


def bf16_round(x: np.ndarray) -> np.ndarray:
    """float32 rounded to bf16 (nearest, ties to even) by bit arithmetic: independent of the probe's own rule."""
    bits = x.astype(np.float32).view(np.uint32).astype(np.uint64)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    return bits.astype(np.uint32).view(np.float32)


@pytest.fixture
def fresh_probe():
    b.check_bf16.cache_clear()
    yield
    b.check_bf16.cache_clear()


def engine_here() -> b.Bf16Check | None:
    try:
        return b.check_bf16()
    except b.NoBf16Kernel:
        return None


def test_probe_tells_a_bf16_product_from_a_float32_one():
    a, w = b.probe_operands()
    exact = (a.astype(np.float64) @ w).astype(np.float32)
    rounded = (bf16_round(a).astype(np.float64) @ bf16_round(w)).astype(np.float32)
    assert not np.array_equal(exact, rounded)  # the operands are chosen so that bf16 shows
    assert b.classify(rounded) is b.ProbeResult.BF16
    assert b.classify(exact) is b.ProbeResult.FP32
    wrong = rounded.copy()
    wrong[1, 0] += 1.0  # an exact row that came back wrong: neither
    assert b.classify(wrong) is b.ProbeResult.WRONG
    assert b.classify(rounded[:2]) is b.ProbeResult.WRONG


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86 onnxruntime has no bf16 GEMM")
def test_onnxruntime_has_no_bf16_path_on_x86():
    # The ARM64 fast-math key is ignored on x86, and the probe sees float32 (the ARM64 side: tests/test_cpu_matrix.py).
    assert b.probe_onnxruntime() is b.ProbeResult.FP32


def test_openvino_probe_runs_where_installed():
    pytest.importorskip("openvino")
    assert b.probe_openvino() in (b.ProbeResult.BF16, b.ProbeResult.FP32)  # FP32 on CPUs without bf16


def test_the_first_engine_that_rounds_is_chosen(fresh_probe, monkeypatch):
    monkeypatch.setattr(b, "probe_onnxruntime", lambda: b.ProbeResult.BF16)
    check = b.check_bf16()
    assert check.backend is b.Bf16Backend.ONNXRUNTIME and check.session_config == {b.ARM64_BF16_FASTMATH: "1"}
    b.check_bf16.cache_clear()
    monkeypatch.setattr(b, "probe_onnxruntime", lambda: b.ProbeResult.FP32)
    monkeypatch.setattr(b, "probe_openvino", lambda: b.ProbeResult.BF16)
    monkeypatch.setattr(b, "find_openvino", lambda: type("ov", (), {"__version__": "2026.4.1-123-abc"}))
    check = b.check_bf16()
    assert check.as_dict() == {"backend": "openvino", "version": "2026.4.1"} and check.session_config == {}


@pytest.mark.parametrize("openvino_result", [None, b.ProbeResult.FP32, b.ProbeResult.WRONG])
def test_no_engine_is_refused_with_what_to_do(fresh_probe, monkeypatch, openvino_result):
    monkeypatch.setattr(b, "probe_onnxruntime", lambda: b.ProbeResult.FP32)
    monkeypatch.setattr(b, "probe_openvino", lambda: openvino_result)
    found = None if openvino_result is None else type("ov", (), {"__version__": "2026.4.1"})
    monkeypatch.setattr(b, "find_openvino", lambda: found)
    with pytest.raises(b.NoBf16Kernel, match="no bf16 kernel on this machine") as info:
        b.check_bf16()
    message = str(info.value)
    assert "variant='fp32'" in message and "onnxruntime: fp32" in message
    if openvino_result is None:
        assert "pip install 'embedrt[openvino]'" in message and "not installed" in message
    else:
        assert f"openvino: {openvino_result.value}" in message


def test_import_openvino_names_the_extra(monkeypatch):
    monkeypatch.setattr(b, "find_openvino", lambda: None)
    with pytest.raises(ImportError, match=r"pip install 'embedrt\[openvino\]'"):
        b.import_openvino()


def test_bf16_runs_the_fp32_file():
    assert Variant.BF16.file_name == "model.fp32.onnx" and Variant.BF16.file_variant is Variant.FP32


def test_bf16_is_not_a_file_to_export(tmp_path):
    from embedrt.export import export

    with pytest.raises(ValueError, match="bf16 is not a file: it runs the fp32 file"):
        export(None, tmp_path / "out", variants=("fp32", "bf16"))


def test_bf16_needs_the_fp32_file(tiny_export, tmp_path):
    manifest = Manifest.from_file(tiny_export / MANIFEST_NAME)
    assert manifest.info(Variant.BF16, tiny_export) == manifest.info(Variant.FP32, tiny_export)
    out = shutil.copytree(tiny_export, tmp_path / "int8-only")
    text = (out / MANIFEST_NAME).read_text()
    data = __import__("json").loads(text)
    del data["variants"]["fp32"]
    (out / MANIFEST_NAME).write_text(__import__("json").dumps(data))
    with pytest.raises(ValueError, match="has no fp32 file, which bf16 runs"):
        Encoder.load(out, variant="bf16")


def test_rerankers_refuse_bf16(tmp_path):
    with pytest.raises(ValueError, match="'bf16' runs embedding models"):
        Reranker.load(tmp_path, variant="bf16")


def test_openvino_session_matches_onnxruntime(tiny_export):
    # In float32 OpenVINO runs on every CPU: the adapter itself (inputs, outputs, threads) is checked here.
    pytest.importorskip("openvino")
    from embedrt.openvino_session import OpenVinoSession

    session = OpenVinoSession(tiny_export / "model.fp32.onnx", threads=1, precision="f32")
    ov = Encoder.from_session(tiny_export, session, "fp32")
    ort = Encoder.load(tiny_export, variant="fp32", threads=1)
    texts = [f"text number {i} " * (i % 7 + 1) for i in range(40)]
    assert np.abs(ov.encode(texts) - ort.encode(texts)).max() < 1e-5
    assert session.get_providers() == ["OpenVINO CPU (f32)"]
    results: dict[int, np.ndarray] = {}

    def worker(i: int) -> None:  # each thread gets its own infer request on the one compiled model
        results[i] = ov.encode(texts[i::4])

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(4):
        np.testing.assert_allclose(results[i], ort.encode(texts[i::4]), atol=1e-5)


def test_bf16_vectors_against_sentence_transformers(minilm_export, minilm_dir, sts_pairs):
    """Where a bf16 engine runs here: within bf16's gate of the reference; elsewhere refused, naming why."""
    if engine_here() is None:
        with pytest.raises(b.NoBf16Kernel, match="no bf16 kernel"):
            Encoder.load(minilm_export, variant="bf16")
        pytest.skip("no bf16 engine on this machine: the refusal is what was checked")
    encoder = Encoder.load(minilm_export, variant="bf16", threads=2)
    texts = sts_pairs.sentences
    got = encoder.encode(texts)
    reference = reference_encode(minilm_dir, texts)
    cos = cosines(got, reference)
    assert cos.min() >= 0.9999, cos.min()
    assert abs(sts_pairs.spearman(got) - sts_pairs.spearman(reference)) <= 0.1
    assert not np.array_equal(got, Encoder.load(minilm_export, variant="fp32").encode(texts))  # bf16 really ran
    info = encoder.info()["bf16"]
    assert info["gate"]["min_cosine"] >= GATE_MIN_COSINE and info["gate"]["texts"] == len(gate_texts())


def test_load_refuses_bf16_that_fails_its_gate(tiny_export, monkeypatch):
    pytest.importorskip("openvino")
    from embedrt import loading
    from embedrt.openvino_session import OpenVinoSession

    # The OpenVINO path wherever this runs (in f32 where the CPU has no bf16), then a session that strays.
    monkeypatch.setattr(loading, "check_bf16", lambda: b.Bf16Check(b.Bf16Backend.OPENVINO, "test"))
    encoder = Encoder.load(tiny_export, variant="bf16")
    assert encoder.info()["bf16"]["gate"]["min_cosine"] >= GATE_MIN_COSINE
    assert encoder.info()["providers"][0].startswith("OpenVINO CPU")
    real_run = OpenVinoSession.run

    def stray(self, names, feeds):
        (hidden,) = real_run(self, names, feeds)
        hidden[:, :, :8] += 0.5  # the first dimensions shifted: the gate must see it
        return [hidden]

    monkeypatch.setattr(OpenVinoSession, "run", stray)
    with pytest.raises(Bf16GateFailed, match=r"min cosine to fp32 0\.\d+ \(need >= 0.9999\) over 18 gate texts"):
        Encoder.load(tiny_export, variant="bf16")


def test_gate_counts_zero_vectors_as_a_miss():
    assert cosines(np.zeros((2, 4)), np.ones((2, 4))).tolist() == [0.0, 0.0]
    assert cosines(np.array([[3.0, 4.0]]), np.array([[6.0, 8.0]]))[0] == pytest.approx(1.0)


def test_openvino_inputs_are_padded_to_buckets_and_outputs_cut_back():
    from embedrt.openvino_session import BUCKET, BUCKET_LIMIT, bucketed, cut

    ids = np.array([[101, 7, 8, 102, 0], [101, 9, 10, 11, 102]])
    mask = (ids != 0).astype(np.int64)
    padded = bucketed({"input_ids": ids, "attention_mask": mask}, 5)
    assert padded["input_ids"].shape == (2, BUCKET) and padded["attention_mask"][:, 5:].sum() == 0
    assert (padded["input_ids"][:, 5:] == ids[:, -1:]).all() and (padded["attention_mask"][:, :5] == mask).all()
    hidden = np.arange(2 * BUCKET * 3, dtype=np.float32).reshape(2, BUCKET, 3)
    assert cut(hidden, 5).shape == (2, 5, 3) and cut(np.ones((2, 3)), 5).shape == (2, 3)
    long = np.ones((1, BUCKET_LIMIT + 1), dtype=np.int64)
    assert bucketed({"input_ids": long, "attention_mask": long}, BUCKET_LIMIT + 1)["input_ids"].shape[1] == 129
    assert bucketed({"input_ids": ids[:, :4]}, 4)["input_ids"].shape == (2, 4)  # no mask: never padded
