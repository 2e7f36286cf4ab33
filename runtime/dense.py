"""sentence-transformers' Dense modules in numpy: ``activation(x @ W.T + b)`` on the pooled sentence embedding.

Applied after pooling rather than folded into the ONNX graph: the graph ends at the token embeddings, since pooling
runs in numpy (several modes, prompt exclusion), so folding Dense in would mean moving pooling into the graph too.
In numpy a 768 x 768 Dense on a batch of 32 costs 0.35-1 ms here (GELU is the slowest), under 1% of what a
768-wide BERT takes for that batch, and every variant and the export's parity check (int8's included) go through
it all the same.

Weights are read from safetensors with a small reader of its format, so the runtime needs no safetensors package.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from embedrt.config import Activation, DenseConfig

WEIGHTS_NAME = "model.safetensors"
_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16}


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """The tensors of a .safetensors file as float arrays (F64, F32, F16 and BF16), by name."""
    data = path.read_bytes()
    if len(data) < 8:
        raise ValueError(f"{path} is not a safetensors file: {len(data)} bytes")
    (size,) = struct.unpack("<Q", data[:8])
    try:
        header = json.loads(data[8 : 8 + size])
    except ValueError as exc:
        raise ValueError(f"{path} is not a safetensors file: its header is not JSON ({exc})") from None
    body = memoryview(data)[8 + size :]
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        begin, end = entry["data_offsets"]
        tensors[name] = _decode(bytes(body[begin:end]), entry["dtype"], tuple(entry["shape"]), f"{path}: {name}")
    return tensors


def _decode(raw: bytes, dtype: str, shape: tuple[int, ...], where: str) -> np.ndarray:
    if dtype == "BF16":  # the high half of a float32
        return (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32).reshape(shape)
    if dtype not in _DTYPES:
        raise ValueError(f"{where}: dtype {dtype} is not supported (expected F64, F32, F16 or BF16)")
    return np.frombuffer(raw, dtype=np.dtype(_DTYPES[dtype]).newbyteorder("<")).reshape(shape)


# Numerical Recipes' erfc coefficients, constant term first.
_ERFC = (
    -1.26551223,
    1.00002368,
    0.37409196,
    0.09678418,
    -0.18628806,
    0.27886807,
    -1.13520398,
    1.48851587,
    -0.82215223,
    0.17087277,
)


def _erf(x: np.ndarray) -> np.ndarray:
    """The error function in float64, from Numerical Recipes' erfc (relative error < 1.2e-7): numpy has no erf."""
    z = np.abs(x)
    t = 1.0 / (1.0 + 0.5 * z)
    poly = np.zeros_like(t)
    for c in reversed(_ERFC):
        poly = c + t * poly
    erfc = t * np.exp(-z * z + poly)
    return np.where(x >= 0, 1.0 - erfc, erfc - 1.0)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # the same function, with no overflow for large |x| and 3x faster here


# torch.nn's classes with their default arguments.
_ACTIVATIONS: dict[Activation, Callable[[np.ndarray], np.ndarray]] = {
    Activation.IDENTITY: lambda x: x,
    Activation.TANH: np.tanh,
    Activation.RELU: lambda x: np.maximum(x, 0.0),
    Activation.GELU: lambda x: 0.5 * x * (1.0 + _erf(x / np.sqrt(2.0))),
    Activation.SIGMOID: _sigmoid,
    Activation.SILU: lambda x: x * _sigmoid(x),
    Activation.LEAKY_RELU: lambda x: np.where(x >= 0, x, 0.01 * x),
    Activation.ELU: lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0.0))),
    Activation.SOFTPLUS: lambda x: np.where(x > 20.0, x, np.log1p(np.exp(np.minimum(x, 20.0)))),
}


def activate(x: np.ndarray, activation: Activation) -> np.ndarray:
    """``activation`` applied to float32 ``x``, as float32."""
    if activation is Activation.IDENTITY:
        return x
    if activation is Activation.GELU:  # the erf approximation wants float64's headroom
        return _ACTIVATIONS[Activation.GELU](x.astype(np.float64)).astype(np.float32)
    return _ACTIVATIONS[activation](x).astype(np.float32, copy=False)


@dataclass(frozen=True)
class DenseLayer:
    """One Dense module's weights (out, in), bias and activation."""

    weight: np.ndarray
    bias: np.ndarray | None
    activation: Activation

    @classmethod
    def load(cls, directory: Path, config: DenseConfig) -> DenseLayer:
        """Read ``directory``/model.safetensors (``linear.weight``, ``linear.bias``) and check it against config."""
        path = directory / WEIGHTS_NAME
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: the Dense module's weights")
        tensors = read_safetensors(path)
        weight = _tensor(tensors, "linear.weight", (config.out_features, config.in_features), path)
        bias = _tensor(tensors, "linear.bias", (config.out_features,), path) if config.bias else None
        return cls(weight, bias, config.activation)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Apply the layer to (n, in) float32 rows."""
        y = x @ self.weight.T
        if self.bias is not None:
            y += self.bias
        return activate(y, self.activation)


def _tensor(tensors: dict[str, np.ndarray], name: str, shape: tuple[int, ...], path: Path) -> np.ndarray:
    if name not in tensors:
        raise ValueError(f"{path}: no tensor {name!r} (has {sorted(tensors)})")
    value = tensors[name]
    if value.shape != shape:
        raise ValueError(f"{path}: {name} has shape {value.shape}, config.json says {shape}")
    return np.ascontiguousarray(value, dtype=np.float32)


def load_dense(model_dir: Path, paths: tuple[str, ...], configs: tuple[DenseConfig, ...]) -> tuple[DenseLayer, ...]:
    """The Dense layers of an export or model directory, in pipeline order."""
    return tuple(DenseLayer.load(model_dir / p, c) for p, c in zip(paths, configs, strict=True))
