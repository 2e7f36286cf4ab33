"""The int8 kernel probe natively: the hand-written probe graph, the check, the refusal where nothing is exact.

The emulated CPUs, where the probe must find a saturating kernel, are in test_cpu_matrix.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from embedrt import Encoder
from embedrt import int8_kernel as k


def test_probe_graph_is_a_valid_onnx_model():
    import onnx

    model = onnx.load_from_string(k._probe_model())
    onnx.checker.check_model(model, full_check=True)
    (node,) = model.graph.node
    assert (node.op_type, node.domain) == ("MatMulIntegerToFloat", "com.microsoft")
    weights = onnx.numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == "b"))
    assert weights.dtype == np.int8 and weights.min() >= -127  # like the export: no -128


def test_probe_operands_saturate_an_int16_pair_sum():
    a, b = k._probe_operands()
    pairs = a[:, 0::2, None].astype(np.int64) * b[None, 0::2] + a[:, 1::2, None].astype(np.int64) * b[None, 1::2]
    assert (np.abs(pairs) > 32767).any(axis=(1, 2)).all()  # every row has pairs that vpmaddubsw clips
    assert a.max() == 255 and b.max() == 127


def _found_here() -> tuple[bool, bool]:
    """What the probe finds on this machine: (default u8s8 kernel exact, u8u8 fix exact)."""
    return k.probe_is_exact({}), k.probe_is_exact({k.X64_QUANT_PRECISION: "1"})


def test_the_check_takes_the_path_the_probe_finds_here():
    """Whichever kernel this CPU has: exact (VNNI, AMX, ARM64) -> default; saturating (AVX2, e.g. AMD Zen 2/3
    runners, or AVX-512 without VNNI) -> u8u8; neither -> int8 refused. The emulated CPUs: test_cpu_matrix.py."""
    default_exact, fix_exact = _found_here()
    k.check_int8_kernel.cache_clear()
    try:
        if default_exact:
            check = k.check_int8_kernel()
            assert (check.kernel, check.path, check.session_config) == (k.KernelResult.EXACT, k.Int8Path.DEFAULT, {})
        elif fix_exact:
            check = k.check_int8_kernel()
            assert (check.kernel, check.path) == (k.KernelResult.SATURATING, k.Int8Path.U8U8)
            assert check.session_config == {k.X64_QUANT_PRECISION: "1"}
        else:
            with pytest.raises(k.UnsafeInt8Kernel):
                k.check_int8_kernel()
    finally:
        k.check_int8_kernel.cache_clear()


def test_default_and_u8u8_paths_agree_where_both_are_exact(tiny_export):
    """On an exact kernel the two paths compute the same integers: the fix only changes the kernel."""
    from embedrt.manifest import MANIFEST_NAME, Manifest, Variant, checked_path
    from embedrt.session import Device, create_session

    if not all(_found_here()):
        pytest.skip(f"the probe found a saturating default kernel on this CPU ({_found_here()}): only u8u8 is exact")
    info = Manifest.from_file(tiny_export / MANIFEST_NAME).info(Variant.INT8, tiny_export)
    texts = ["The weather is lovely today.", "word " * 60, "Ünïcödé 東京 🚀"]
    vectors = []
    for config in ({}, {k.X64_QUANT_PRECISION: "1"}):
        session = create_session(checked_path(tiny_export, info), Device.CPU, 1, config)
        vectors.append(Encoder.from_session(tiny_export, session, "int8").encode(texts))
    np.testing.assert_allclose(vectors[0], vectors[1], atol=1e-6)


def test_saturating_kernel_takes_the_u8u8_path(tiny_export, monkeypatch):
    monkeypatch.setattr(k, "probe_is_exact", lambda config: bool(config))  # only the fix is exact
    k.check_int8_kernel.cache_clear()
    try:
        encoder = Encoder.load(tiny_export, variant="int8")
        assert encoder.info()["int8_kernel"]["kernel"] == "saturating"
        assert encoder.info()["int8_kernel"]["path"] == "u8u8"
        assert "kernel saturating, path u8u8" in encoder.int8_check.describe()
    finally:
        k.check_int8_kernel.cache_clear()


def test_no_exact_path_refuses_int8_and_says_what_to_do(tiny_export, monkeypatch):
    monkeypatch.setattr(k, "probe_is_exact", lambda config: False)
    k.check_int8_kernel.cache_clear()
    try:
        with pytest.raises(k.UnsafeInt8Kernel, match=r"saturates .*variant='fp32'.* newer onnxruntime") as info:
            Encoder.load(tiny_export, variant="int8")
        assert "pip install -U 'embedrt[cpu]'" in str(info.value)
        # fp32 never runs the probe, so it still loads; int8 is refused, never degraded.
        assert Encoder.load(tiny_export, variant="fp32").info()["int8_kernel"] is None
    finally:
        k.check_int8_kernel.cache_clear()


def test_the_probe_runs_once_per_process(tiny_export, monkeypatch):
    calls = []
    real = k.probe_is_exact
    monkeypatch.setattr(k, "probe_is_exact", lambda config: calls.append(config) or real(config))
    k.check_int8_kernel.cache_clear()
    try:
        for _ in range(3):
            Encoder.load(tiny_export, variant="int8")
        # One probe of the default kernel, and one of the fix only where the default saturates.
        assert calls == ([{}] if real({}) else [{}, {k.X64_QUANT_PRECISION: "1"}])
    finally:
        k.check_int8_kernel.cache_clear()
