"""Is this machine's int8 matrix product exact? A probe run once per process before an int8 session is built.

onnxruntime multiplies uint8 activations by int8 weights. On x86 CPUs with AVX2 but without VNNI (Haswell to
Comet Lake, AMD Zen 1-3) and on AVX-512 without VNNI (Skylake-SP), its kernel uses ``vpmaddubsw``, which adds
each pair of u8 x s8 products into a *saturating* int16: 255 x 127 + 255 x 127 clips to 32,767. embedrt's
activation codes reach 255 (the shifted GELU outputs) against weights up to +-127, so sums clip there and the
vectors degrade (onnxruntime issues #5849, #6004, #16105). VNNI, AMX and the ARM64 kernels accumulate in int32
and are exact (ARM64 as long as no weight is -128; the export clips weights to +-127).

CPU flags can't tell which kernel runs: they are wrong under emulation, in VMs and in containers that mask
CPUID. So the probe asks the kernel itself: one ``MatMulIntegerToFloat`` whose exact and saturated results
differ. Where it saturates, the session config entry ``session.x64quantprecision`` makes onnxruntime rewrite
the constant int8 weights to uint8 and run its exact u8 x u8 kernel; it is set only there, because on exact
CPUs it only costs speed. Where even that path saturates, int8 is refused: degraded vectors are never returned.

The probe graph is written as protobuf bytes by hand (embedrt.onnx_bytes): the runtime needs no ``onnx`` package.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from embedrt.config import Choice
from embedrt.onnx_bytes import FLOAT, UINT8, graph_model, message, node, string, tensor, value_info
from embedrt.session import UnsupportedOnDevice, import_onnxruntime, session_options

# onnxruntime's config key for the exact u8 x u8 path on x64 (onnxruntime_session_options_config_keys.h).
X64_QUANT_PRECISION = "session.x64quantprecision"
# Named in the int8 recipe text of manifest.json by exports whose MatMulIntegerToFloat nodes carry an explicit
# weight zero point. onnxruntime 1.19-1.29 abort (SIGABRT, not an exception) building the u8u8 path without one.
EXPLICIT_WEIGHT_ZERO_POINTS = "explicit weight zero points"
U8U8_WITHOUT_WEIGHT_ZERO_POINTS = (1, 30)
# Rows, depth and width of the probe product: tiny, but wide and deep enough for the kernels' packed loops.
_ROWS, _DEPTH, _COLS = 4, 64, 16


class KernelResult(Choice):
    """What the probe found with onnxruntime's default int8 kernel on this machine."""

    EXACT = "exact"  # int32 accumulation (VNNI, AMX, ARM64): the default kernel is used
    SATURATING = "saturating"  # int16 pair sums clip (AVX2, or AVX-512 without VNNI)


class Int8Path(Choice):
    """How int8 sessions are built here."""

    DEFAULT = "default"  # onnxruntime's u8 x s8 kernel, exact on this machine
    U8U8 = "u8u8"  # weights rewritten to uint8 (session.x64quantprecision=1): exact where u8 x s8 saturates


class UnsafeInt8Kernel(UnsupportedOnDevice):
    """The int8 kernel here saturates and this onnxruntime offers no exact path: int8 can't run right here."""


@dataclass(frozen=True)
class Int8Check:
    """The probe's finding and the path int8 sessions take here."""

    kernel: KernelResult
    path: Int8Path
    onnxruntime: str

    @property
    def session_config(self) -> dict[str, str]:
        """Session config entries that give the exact path (none where the default kernel is exact)."""
        return {X64_QUANT_PRECISION: "1"} if self.path is Int8Path.U8U8 else {}

    def describe(self) -> str:
        """One line for people, e.g. "kernel exact, default path (onnxruntime 1.32.0)"."""
        how = "weights rewritten to uint8, exact" if self.path is Int8Path.U8U8 else "onnxruntime's default kernel"
        return f"kernel {self.kernel.value}, path {self.path.value}: {how} (onnxruntime {self.onnxruntime})"

    def as_dict(self) -> dict[str, str]:
        """For /info, manifests and reports: {"kernel": ..., "path": ..., "onnxruntime": ...}."""
        return {"kernel": self.kernel.value, "path": self.path.value, "onnxruntime": self.onnxruntime}


@functools.cache
def check_int8_kernel() -> Int8Check:
    """Probe once per process; raises UnsafeInt8Kernel where no exact int8 path exists here."""
    version = import_onnxruntime().__version__
    if probe_is_exact({}):
        return Int8Check(KernelResult("exact"), Int8Path("default"), version)
    if probe_is_exact({X64_QUANT_PRECISION: "1"}):
        return Int8Check(KernelResult("saturating"), Int8Path("u8u8"), version)
    raise UnsafeInt8Kernel(
        f"this CPU's int8 matrix kernel saturates (int16 pair sums: AVX2 or AVX-512 without VNNI) and onnxruntime "
        f"{version} has no exact path for it ({X64_QUANT_PRECISION}), so int8 would return degraded vectors. "
        "Use variant='fp32', or install a newer onnxruntime, which honours that option: "
        "pip install -U 'embedrt[cpu]'"
    )


def check_file(check: Int8Check, recipe: str, path: Path) -> None:
    """Refuse an int8 file that this onnxruntime would abort on along the u8u8 path (older exports)."""
    if check.path is not Int8Path.U8U8 or EXPLICIT_WEIGHT_ZERO_POINTS in recipe:
        return
    if version_tuple(check.onnxruntime) < U8U8_WITHOUT_WEIGHT_ZERO_POINTS:
        raise UnsafeInt8Kernel(
            f"{path} was exported without explicit weight zero points, and on this CPU (a saturating int8 kernel) "
            f"onnxruntime {check.onnxruntime} aborts building its exact path for such a file: export the model "
            "again with this embedrt (embedrt export), or pip install -U 'onnxruntime>=1.30', or use variant='fp32'"
        )


def version_tuple(text: str) -> tuple[int, int]:
    """(major, minor) of a version string such as "1.19.2" or "1.20.0.dev1"."""
    major, minor = [*text.split("."), "0"][:2]
    return int(major), int("".join(c for c in minor if c.isdigit()) or 0)


def probe_is_exact(config: Mapping[str, str]) -> bool:
    """Run the probe product with these session config entries; True when its result is exact."""
    ort = import_onnxruntime()
    options = session_options(1, config)
    session = ort.InferenceSession(_probe_model(), sess_options=options, providers=["CPUExecutionProvider"])
    a, b = _probe_operands()
    (got,) = session.run(None, {"a": a})
    exact = a.astype(np.int64) @ b.astype(np.int64)  # small integers: exact in float32 too
    return bool(np.array_equal(got, exact.astype(np.float32)))


def _probe_operands() -> tuple[np.ndarray, np.ndarray]:
    """Codes as embedrt's activations reach them (up to 255) against weights of +-127.

    Row 0 is all 255 x 127: every int16 pair sum would be 64,770 and clip. The other rows mix signs and sizes
    so that a kernel which is exact only for some patterns is caught too.
    """
    # A fixed pattern: numpy.random would load Cython modules into the runtime.
    rows, depth = np.ogrid[:_ROWS, :_DEPTH]
    a = (128 + (rows * 37 + depth * 11) % 128).astype(np.uint8)
    depth, cols = np.ogrid[:_DEPTH, :_COLS]
    b = np.array([-127, -100, 90, 127], dtype=np.int8)[(depth * 5 + cols * 3) % 4]
    a[0] = 255
    b[:, 0] = 127
    return a, b


@functools.cache
def _probe_model() -> bytes:
    """ModelProto bytes: y = MatMulIntegerToFloat(a, B, 1, 1, 0) with B a constant, as in an int8 export."""
    _, b = _probe_operands()
    one, zero = np.float32(1.0), np.uint8(0)
    inputs = ["a", "b", "a_scale", "b_scale", "a_zero_point", "b_zero_point"]
    graph = (
        message(1, node("MatMulIntegerToFloat", inputs, ["y"], "com.microsoft"))
        + string(2, "int8_kernel_probe")
        + message(5, tensor("b", b))
        + message(5, tensor("a_scale", one))
        + message(5, tensor("b_scale", one))
        + message(5, tensor("a_zero_point", zero))
        + message(5, tensor("b_zero_point", np.int8(0)))
        + message(11, value_info("a", UINT8, (_ROWS, _DEPTH)))
        + message(12, value_info("y", FLOAT, (_ROWS, _COLS)))
    )
    return graph_model(graph, contrib=True)
