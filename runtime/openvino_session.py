"""An OpenVINO compiled model behind the part of onnxruntime's InferenceSession API that Encoder uses.

OpenVINO reads embedrt's fp32 ONNX file itself (its ONNX frontend knows onnxruntime's fused contrib operators),
so the bf16 path needs no file of its own: the same verified model.fp32.onnx, compiled with inference precision
bf16. The core install never imports this module; only ``variant="bf16"`` on a machine where the probe chose
OpenVINO does.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from embedrt.bf16 import import_openvino

# Inputs shorter than BUCKET_LIMIT tokens are padded (attention mask 0) to a multiple of BUCKET and the outputs cut
# back: OpenVINO re-plans its buffers whenever the input shape changes, which cost a one-sentence call about 0.7 ms
# when consecutive sentences differed in length (all-MiniLM-L6-v2, sts-test sentences; 1.98 ms at one shape, 2.71
# varied, 2.54-2.71 in buckets of 16, 2.97-3.59 of 8, 3.19-3.25 of 32). Short only, so that positions
# computed from the ids (XLM-R) stay far below any model's limit.
BUCKET, BUCKET_LIMIT = 16, 128
MASK = "attention_mask"


@dataclass(frozen=True)
class NodeArg:
    """What ``get_inputs()`` / ``get_outputs()`` items offer: the name."""

    name: str


class OpenVinoSession:
    """``run`` / ``get_inputs`` / ``get_outputs`` / ``get_providers`` of one compiled model, thread-safe.

    An OpenVINO infer request serves one call at a time, so each thread gets its own (made on first use); all of
    them share the compiled model's weights and its one stream.
    """

    def __init__(self, path: Path, threads: int | None, precision: str = "bf16") -> None:
        openvino = import_openvino()
        core = openvino.Core()
        config: dict[str, Any] = {
            "INFERENCE_PRECISION_HINT": precision,
            # One stream, all threads on each call: the latency a single request sees, as onnxruntime runs.
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": 1,
        }
        if threads is not None:
            config["INFERENCE_NUM_THREADS"] = threads
        try:
            self._compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
        except RuntimeError as exc:
            raise ValueError(f"OpenVINO {openvino.__version__} cannot load {path}: {exc}") from exc
        self._inputs = [NodeArg(port.any_name) for port in self._compiled.inputs]
        self._outputs = [NodeArg(port.any_name) for port in self._compiled.outputs]
        self._local = threading.local()
        self.precision = precision

    def get_inputs(self) -> list[NodeArg]:
        """The model's inputs, by name."""
        return list(self._inputs)

    def get_outputs(self) -> list[NodeArg]:
        """The model's outputs, by name."""
        return list(self._outputs)

    def get_providers(self) -> list[str]:
        """What runs the model, in the form of onnxruntime's provider list."""
        return [f"OpenVINO CPU ({self.precision})"]

    def run(self, output_names: Sequence[str] | None, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """The named outputs (all when None) for these inputs, as numpy arrays the caller owns."""
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self._compiled.create_infer_request()
        length = next(iter(feeds.values())).shape[1]
        # share_inputs: OpenVINO reads the arrays in place (saved 0.15-0.2 ms of a one-sentence call's 2.2).
        result = request.infer(bucketed(feeds, length), share_inputs=True)
        names = output_names or [arg.name for arg in self._outputs]
        return [cut(np.asarray(result[self._compiled.output(name)]), length) for name in names]


def bucketed(feeds: Mapping[str, np.ndarray], length: int) -> dict[str, np.ndarray]:
    """(batch, length) inputs padded to the next multiple of BUCKET below BUCKET_LIMIT tokens.

    The new positions are masked (attention mask 0) and repeat each row's last id and type, so no real token can
    attend to them and pooling, which reads the mask, never sees them.
    """
    padded = -(-length // BUCKET) * BUCKET
    if padded == length or padded > BUCKET_LIMIT or MASK not in feeds:
        return dict(feeds)
    out = {}
    for name, value in feeds.items():  # filled by hand: np.pad took 70 us for three small inputs
        grown = np.empty((value.shape[0], padded), dtype=value.dtype)
        grown[:, :length] = value
        grown[:, length:] = 0 if name == MASK else value[:, -1:]
        out[name] = grown
    return out


def cut(output: np.ndarray, length: int) -> np.ndarray:
    """Per-token outputs (batch, padded length, ...) cut back to the caller's length; others as they are."""
    return np.ascontiguousarray(output[:, :length]) if output.ndim >= 3 and output.shape[1] > length else output
