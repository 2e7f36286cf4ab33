"""MultiHeadAttention fusion of the traced BERT attention, checked against the unfused graph."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from embedrt.export.fusion import fuse_attention
from embedrt.export.onnx_files import export_plain

LAYERS, HEADS = 2, 4  # the tiny model of conftest


@pytest.fixture(scope="module")
def plain(tiny_model_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("plain") / "plain.onnx"
    export_plain(tiny_model_dir, path, allow_pickle=False)
    return path


def _outputs(model: onnx.ModelProto) -> tuple[np.ndarray, np.ndarray]:
    ids = np.array([[101, 7592, 2088, 102, 0, 0], [101, 2023, 2003, 1037, 3231, 102]], dtype=np.int64)
    mask = (ids > 0).astype(np.int64)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    out = session.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})[0]
    return out, mask.astype(bool)


def test_every_layer_is_fused_and_equal(plain):
    model = onnx.load(str(plain))
    expected, real = _outputs(model)
    assert fuse_attention(model, HEADS) == LAYERS
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("MultiHeadAttention") == LAYERS and "Softmax" not in ops and "Transpose" not in ops
    got, _ = _outputs(model)
    np.testing.assert_allclose(got[real], expected[real], atol=1e-5)


def test_a_block_with_other_scaling_is_left_alone(plain):
    model = onnx.load(str(plain))
    divisor = next(
        n
        for n in model.graph.node
        if n.op_type == "Constant"
        and "layer.1/attention/self/Constant" in n.name
        and numpy_helper.to_array(n.attribute[0].t).size == 1
        and numpy_helper.to_array(n.attribute[0].t) == 8**0.5
    )
    divisor.attribute[0].t.CopyFrom(numpy_helper.from_array(np.array(3.0, np.float32)))
    expected, real = _outputs(model)
    assert fuse_attention(model, HEADS) == 1  # layer 0 only; layer 1 would change the scaling
    got, _ = _outputs(model)
    np.testing.assert_allclose(got[real], expected[real], atol=1e-5)


def test_no_attention_mask_input_means_no_fusion(plain):
    model = onnx.load(str(plain))
    model.graph.input[1].name = "mask"
    assert fuse_attention(model, HEADS) == 0
