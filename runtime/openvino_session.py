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
        result = request.infer(dict(feeds))
        names = output_names or [arg.name for arg in self._outputs]
        return [np.asarray(result[self._compiled.output(name)]) for name in names]
