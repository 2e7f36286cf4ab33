"""The int8 recipe on small hand-built graphs, checked against numpy fp32, and its calibration inputs."""

from __future__ import annotations

from math import erf

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import embedrt.export.int8 as int8
from embedrt.export.int8 import GELU_SHIFT, Calibration, calibration_texts, quantize_columns, write_int8
from embedrt.export.parity import CHECK_SENTENCES, STS_DIR, StsPairs, row_cosines

K, HIDDEN, N = 16, 48, 16
_erf = np.vectorize(erf)


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + _erf(x / np.sqrt(2.0)))


def _save_graph(path, nodes, inits, width: int):
    """An opset-17 model from x [batch, sequence, K] to y [batch, sequence, width], saved at ``path``."""
    graph = helper.make_graph(
        nodes,
        path.stem,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "sequence", K])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "sequence", width])],
        inits,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def _ffn_graph(tmp_path, with_bias: bool = True):
    """x -> MatMul W1 (+ b1) -> erf GELU -> MatMul W2 (+ b2): the feed-forward block as torch traces it."""
    rng = np.random.default_rng(0)
    w1 = rng.standard_normal((K, HIDDEN)).astype(np.float32) * 0.3
    w2 = rng.standard_normal((HIDDEN, N)).astype(np.float32) * 0.3
    b1 = rng.standard_normal(HIDDEN).astype(np.float32) * 0.1
    b2 = rng.standard_normal(N).astype(np.float32) * 0.1
    inits = [numpy_helper.from_array(a, n) for a, n in ((w1, "w1"), (w2, "w2"), (b1, "b1"), (b2, "b2"))]
    inits += [
        numpy_helper.from_array(np.array(v, np.float32), n)
        for v, n in ((np.sqrt(2.0), "r2"), (1.0, "one"), (0.5, "half"))
    ]
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h0"], name="ffn1"),
        helper.make_node("Add", ["b1", "h0"], ["h"]),
        helper.make_node("Div", ["h", "r2"], ["d"]),
        helper.make_node("Erf", ["d"], ["e"]),
        helper.make_node("Add", ["e", "one"], ["e1"]),
        helper.make_node("Mul", ["h", "e1"], ["g0"]),
        helper.make_node("Mul", ["g0", "half"], ["g"]),
        helper.make_node("MatMul", ["g", "w2"], ["y0" if with_bias else "y"], name="ffn2"),
    ]
    if with_bias:
        nodes.append(helper.make_node("Add", ["y0", "b2"], ["y"]))
    path = _save_graph(tmp_path / "ffn.onnx", nodes, inits, N)

    def reference(x: np.ndarray) -> np.ndarray:
        return _gelu(x @ w1 + b1) @ w2 + (b2 if with_bias else 0)

    return path, reference


def _calibration(x: np.ndarray, reference_hidden: np.ndarray) -> Calibration:
    flat = lambda a: np.abs(a.reshape(-1, a.shape[-1])).max(axis=0)  # noqa: E731
    return Calibration({"x": flat(x), "g": flat(reference_hidden)}, len(x), x.shape[0] * x.shape[1], "test data")


def _run(path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


@pytest.mark.parametrize("with_bias", [True, False])
def test_int8_ffn_matches_fp32(tmp_path, with_bias):
    plain, reference = _ffn_graph(tmp_path, with_bias)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 7, K)).astype(np.float32)
    x[:, :, 3] *= 20  # an outlier channel, as LayerNorm outputs have
    x[1, 2] *= 15  # an outlier token
    calibration = _calibration(x, _gelu(x @ onnx_weights(plain, "w1") + onnx_weights(plain, "b1")))
    recipe = write_int8(plain, tmp_path / "int8.onnx", calibration, num_heads=1)
    assert "calibrated on 3 texts of test data" in recipe
    got, expected = _run(tmp_path / "int8.onnx", x), reference(x)
    cos = row_cosines(expected.reshape(-1, N), got.reshape(-1, N))
    assert cos.min() > 0.999, cos.min()
    ops = [n.op_type for n in onnx.load(str(tmp_path / "int8.onnx")).graph.node]
    assert ops.count("MatMulIntegerToFloat") == 2 and "MatMul" not in ops


def test_gelu_output_is_quantized_unsigned_and_the_shift_is_undone(tmp_path):
    plain, _ = _ffn_graph(tmp_path, with_bias=True)
    x = np.random.default_rng(2).standard_normal((2, 5, K)).astype(np.float32)
    hidden = _gelu(x @ onnx_weights(plain, "w1") + onnx_weights(plain, "b1"))
    write_int8(plain, tmp_path / "int8.onnx", _calibration(x, hidden), num_heads=1)
    graph = onnx.load(str(tmp_path / "int8.onnx")).graph
    zero_points = {numpy_helper.to_array(i).item() for i in graph.initializer if i.name.endswith("/zp")}
    assert zero_points == {0, 128}  # GELU output unsigned, the other input symmetric around 128
    shifts = [numpy_helper.to_array(i) for i in graph.initializer if i.name.endswith("/shift")]
    assert len(shifts) == 1 and (shifts[0] > 0).all()
    # With a bias after the product, the shift's correction is folded into it: no extra Add.
    assert not [i for i in graph.initializer if i.name.endswith("/shift_out")]
    assert -min(_gelu(np.linspace(-3, 0, 30001))) <= GELU_SHIFT


def test_zero_rows_stay_zero(tmp_path):
    plain, reference = _ffn_graph(tmp_path)
    x = np.random.default_rng(3).standard_normal((2, 4, K)).astype(np.float32)
    hidden = _gelu(x @ onnx_weights(plain, "w1") + onnx_weights(plain, "b1"))
    write_int8(plain, tmp_path / "int8.onnx", _calibration(x, hidden), num_heads=1)
    x[0, 1] = 0.0
    got = _run(tmp_path / "int8.onnx", x)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got[0, 1], reference(x)[0, 1], atol=0.05)


def _layer_norm_graph(tmp_path):
    """x -> LayerNormalization -> MatMul W: a LayerNorm output read by a product, as Q/K/V and FFN1 read theirs."""
    rng = np.random.default_rng(5)
    gamma = np.ones(K, np.float32)
    gamma[3] = 20.0  # an outlier channel, as LayerNorm outputs have
    beta = rng.standard_normal(K).astype(np.float32) * 0.1
    w = rng.standard_normal((K, HIDDEN)).astype(np.float32) * 0.3
    inits = [numpy_helper.from_array(a, n) for a, n in ((gamma, "gamma"), (beta, "beta"), (w, "w"))]
    nodes = [
        helper.make_node("LayerNormalization", ["x", "gamma", "beta"], ["ln"], axis=-1, epsilon=1e-12),
        helper.make_node("MatMul", ["ln", "w"], ["y"], name="dense"),
    ]
    path = _save_graph(tmp_path / "layer_norm.onnx", nodes, inits, HIDDEN)

    def layer_norm(x: np.ndarray) -> np.ndarray:
        centered = x - x.mean(axis=-1, keepdims=True)
        return centered / np.sqrt((centered**2).mean(axis=-1, keepdims=True) + 1e-12) * gamma + beta

    return path, layer_norm, w


def test_layer_norm_output_gets_one_calibrated_step(tmp_path):
    plain, layer_norm, w = _layer_norm_graph(tmp_path)
    x = np.random.default_rng(6).standard_normal((3, 7, K)).astype(np.float32)
    x[1, 2] *= 15  # an outlier token before LayerNorm, which normalizes it away
    calibration = Calibration({"ln": np.abs(layer_norm(x)).reshape(-1, K).max(axis=0)}, 3, 21, "test data")
    write_int8(plain, tmp_path / "int8.onnx", calibration, num_heads=1)
    graph = onnx.load(str(tmp_path / "int8.onnx")).graph
    ops = [n.op_type for n in graph.node]
    assert ops == ["LayerNormalization", "Mul", "QuantizeLinear", "MatMulIntegerToFloat"]  # no per-row step
    expected = layer_norm(x) @ w
    got = _run(tmp_path / "int8.onnx", x)
    cos = row_cosines(expected.reshape(-1, HIDDEN), got.reshape(-1, HIDDEN))
    assert cos.min() > 0.999, cos.min()


def test_static_step_saturates_past_the_calibrated_range(tmp_path):
    plain, layer_norm, _ = _layer_norm_graph(tmp_path)
    x = np.random.default_rng(7).standard_normal((2, 5, K)).astype(np.float32)
    # Calibrated on half the real range: a quarter of the values or so fall outside it.
    calibration = Calibration({"ln": 0.5 * np.abs(layer_norm(x)).reshape(-1, K).max(axis=0)}, 2, 10, "test data")
    write_int8(plain, tmp_path / "int8.onnx", calibration, num_heads=1)
    c = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(tmp_path / "int8.onnx")).graph.initializer}
    inv_step = next(v for k, v in c.items() if k.endswith("/inv_step"))
    step = next(v for k, v in c.items() if k.endswith("/step"))
    w_int8, w_scale = c["dense/w_int8"], c["dense/w_scale"]
    # Clipped to the uint8 range around the zero point 128, never wrapped around.
    q = np.clip(np.rint(layer_norm(x) * inv_step), -128, 127)
    assert np.abs(q).max() >= 127
    expected = (q @ w_int8.astype(np.float32)) * step * w_scale
    np.testing.assert_allclose(_run(tmp_path / "int8.onnx", x), expected, rtol=1e-5, atol=1e-5)


def test_quantize_columns_round_trip():
    w = np.random.default_rng(4).standard_normal((64, 8)).astype(np.float32)
    w[:, 2] *= 100
    q, scale = quantize_columns(w)
    assert q.dtype == np.int8 and np.abs(q).max() == 127 and scale.shape == (8,)
    assert (np.abs(q * scale - w) <= scale / 2 + 1e-6).all()


def test_calibration_from_sts_csv_and_text_file(tmp_path):
    texts, origin = calibration_texts(STS_DIR / "sts-train.csv")
    assert origin == "sts-train.csv" and len(texts) == int8.CALIBRATION_SIZE
    assert texts[:3] == StsPairs.from_file(STS_DIR / "sts-train.csv").sentences[:3]
    lines = tmp_path / "texts.txt"
    lines.write_text("first text\n\n  \nsecond text\n", encoding="utf-8")
    assert calibration_texts(lines) == (["first text", "second text"], "texts.txt")


def test_calibration_default_and_errors(tmp_path, monkeypatch):
    assert calibration_texts(None)[1] == "sts-train.csv"
    monkeypatch.setattr(int8, "DEFAULT_CALIBRATION", tmp_path / "missing.csv")
    assert calibration_texts(None) == (list(CHECK_SENTENCES), "the export check sentences")
    with pytest.raises(FileNotFoundError, match=r"calibration file .*nope\.txt not found"):
        calibration_texts(tmp_path / "nope.txt")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"calibration file .*empty\.txt holds no texts"):
        calibration_texts(empty)


def onnx_weights(path, name: str) -> np.ndarray:
    init = next(i for i in onnx.load(str(path)).graph.initializer if i.name == name)
    return numpy_helper.to_array(init)
