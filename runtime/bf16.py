"""Which engine runs bf16 on this CPU? A probe run once per process before a bf16 session is built.

bf16 keeps float32's range with 8 bits of mantissa: the matrix products read their inputs rounded to bf16 and
accumulate in float32. Where the CPU multiplies bf16 natively (x86 AVX512-BF16 and AMX; ARMv8.6 BF16 on
Graviton 3 / Neoverse V1 and later), that runs about twice as fast as float32 at a cosine of 0.9999+ to it.

Two engines can do it, and the probe asks each one instead of reading CPU flags (wrong under emulation, in VMs
and in containers that mask CPUID):

- onnxruntime itself, on ARM64: its bf16 "fast math" GEMM (session config entry
  ``mlas.enable_gemm_fastmath_arm64_bfloat16``). On x86 onnxruntime has no bf16 CPU path; the entry is ignored.
- OpenVINO (the ``openvino`` extra) reading the same fp32 ONNX file with the inference precision set to bf16.
  OpenVINO falls back to float32 by itself where the CPU has no bf16 instructions.

The probe multiplies 1 + 2**-10 (a float32 value that bf16 rounds to 1) by ones: a bf16 kernel returns exactly
the depth, a float32 one the depth times 1 + 2**-10. A second row (1.5 x 2, exact in both) must come back exact,
so a kernel that is wrong rather than rounded is caught too. The first engine whose probe rounds is used.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from types import ModuleType

import numpy as np

from embedrt.config import Choice
from embedrt.onnx_bytes import FLOAT, graph_model, message, node, string, tensor, value_info
from embedrt.session import UnsupportedOnDevice, import_onnxruntime, session_options

# onnxruntime's config key for its bf16 GEMM on ARM64 (onnxruntime_session_options_config_keys.h).
ARM64_BF16_FASTMATH = "mlas.enable_gemm_fastmath_arm64_bfloat16"
OPENVINO_INSTALL = "pip install 'embedrt[openvino]'"
_ROWS, _DEPTH, _COLS = 4, 64, 16
_NOT_BF16 = np.float32(1 + 2**-10)  # exact in float32, 1.0 once rounded to bf16


class Bf16Backend(Choice):
    """The engine that runs bf16 sessions here."""

    ONNXRUNTIME = "onnxruntime"  # its ARM64 bf16 GEMM
    OPENVINO = "openvino"  # the OpenVINO runtime reading the fp32 ONNX file, inference precision bf16


class ProbeResult(Choice):
    """What a probe product returned."""

    BF16 = "bf16"  # inputs rounded to bf16, sums exact: a bf16 kernel ran
    FP32 = "fp32"  # no rounding: the engine ran float32 (no bf16 kernel here)
    WRONG = "wrong"  # neither: never used


class NoBf16Kernel(UnsupportedOnDevice):
    """No engine runs bf16 on this machine: bf16 can't run here (fp32 and int8 still can)."""


@dataclass(frozen=True)
class Bf16Check:
    """The engine the probe chose and its version."""

    backend: Bf16Backend
    version: str

    @property
    def session_config(self) -> dict[str, str]:
        """Session config entries of onnxruntime for a bf16 session (none for OpenVINO)."""
        return {ARM64_BF16_FASTMATH: "1"} if self.backend is Bf16Backend("onnxruntime") else {}

    def describe(self) -> str:
        """One line for people, e.g. "bf16 by openvino 2026.4.1"."""
        return f"bf16 by {self.backend.value} {self.version}"

    def as_dict(self) -> dict[str, str]:
        """For /info and reports: {"backend": ..., "version": ...}."""
        return {"backend": self.backend.value, "version": self.version}


@functools.cache
def check_bf16() -> Bf16Check:
    """Probe once per process; raises NoBf16Kernel where neither engine runs bf16 here."""
    ort = import_onnxruntime()
    found = {"onnxruntime": probe_onnxruntime()}
    if found["onnxruntime"] is ProbeResult("bf16"):
        return Bf16Check(Bf16Backend("onnxruntime"), ort.__version__)
    openvino = find_openvino()
    if openvino is not None:
        found["openvino"] = probe_openvino()
        if found["openvino"] is ProbeResult("bf16"):
            return Bf16Check(Bf16Backend("openvino"), openvino.__version__.split("-")[0])
    results = ", ".join(f"{backend}: {result.value}" for backend, result in found.items())
    hint = "" if openvino is not None else f"; on x86 CPUs with AVX512-BF16 or AMX, {OPENVINO_INSTALL}"
    raise NoBf16Kernel(
        f"no bf16 kernel on this machine (probe products: {results}; openvino "
        f"{'installed' if openvino is not None else 'not installed'}){hint}. "
        "Use variant='fp32' (exact) or 'int8' (fastest)"
    )


def import_openvino() -> ModuleType:
    """The openvino module, or an ImportError naming the extra that installs it."""
    openvino = find_openvino()
    if openvino is None:
        raise ImportError(f"this needs the OpenVINO runtime: {OPENVINO_INSTALL}")
    return openvino


def find_openvino() -> ModuleType | None:
    """The openvino module, or None where it is not installed."""
    try:
        import openvino
    except ImportError:
        return None
    return openvino


def probe_onnxruntime() -> ProbeResult:
    """The probe product in onnxruntime with its ARM64 bf16 GEMM enabled."""
    ort = import_onnxruntime()
    options = session_options(1, {ARM64_BF16_FASTMATH: "1"})
    session = ort.InferenceSession(_probe_model(), sess_options=options, providers=["CPUExecutionProvider"])
    a, _ = probe_operands()
    (got,) = session.run(None, {"a": a})
    return classify(got)


def probe_openvino() -> ProbeResult:
    """The probe product in OpenVINO on the CPU with inference precision bf16."""
    openvino = import_openvino()
    import openvino.opset13 as ops  # type: ignore[import-not-found]

    a, b = probe_operands()
    parameter = ops.parameter(list(a.shape), np.float32, name="a")
    model = openvino.Model([ops.matmul(parameter, ops.constant(b), False, False)], [parameter], "bf16_probe")
    compiled = openvino.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "bf16"})
    return classify(np.asarray(compiled.create_infer_request().infer({"a": a})[0]))


def probe_operands() -> tuple[np.ndarray, np.ndarray]:
    """Rows of 1 + 2**-10 (rounded by bf16) and of 1.5 (exact), against ones and twos (exact)."""
    a = np.full((_ROWS, _DEPTH), _NOT_BF16, dtype=np.float32)
    a[1::2] = 1.5
    b = np.ones((_DEPTH, _COLS), dtype=np.float32)
    b[:, 1::2] = 2.0
    return a, b


def classify(got: np.ndarray) -> ProbeResult:
    """BF16 when the product is the bf16-rounded one, FP32 when it is the float32 one, WRONG otherwise."""
    a, b = probe_operands()
    rounded = np.where(a == _NOT_BF16, np.float32(1.0), a)
    for result, left in (("bf16", rounded), ("fp32", a)):
        expected = (left.astype(np.float64) @ b.astype(np.float64)).astype(np.float32)
        if got.shape == expected.shape and np.array_equal(got, expected):
            return ProbeResult(result)
    return ProbeResult("wrong")


@functools.cache
def _probe_model() -> bytes:
    """ModelProto bytes: y = MatMul(a, B) with B a constant (a prepacked weight, as in the model files)."""
    _, b = probe_operands()
    graph = (
        message(1, node("MatMul", ["a", "b"], ["y"]))
        + string(2, "bf16_probe")
        + message(5, tensor("b", b))
        + message(11, value_info("a", FLOAT, (_ROWS, _DEPTH)))
        + message(12, value_info("y", FLOAT, (_ROWS, _COLS)))
    )
    return graph_model(graph)
