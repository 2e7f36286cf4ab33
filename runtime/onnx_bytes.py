"""Tiny ONNX graphs written as protobuf bytes by hand, for the load-time kernel probes (no ``onnx`` package)."""

from __future__ import annotations

from typing import Any

import numpy as np

# ONNX TensorProto data types.
FLOAT, UINT8, INT8 = 1, 2, 3
_DTYPES = {np.dtype(np.float32): FLOAT, np.dtype(np.uint8): UINT8, np.dtype(np.int8): INT8}


def graph_model(graph: bytes, contrib: bool = False) -> bytes:
    """ModelProto bytes around GraphProto bytes: IR version 7 and opset 13 (read by every onnxruntime >= 1.8).

    ``contrib`` also imports the com.microsoft domain (onnxruntime's own operators).
    """
    opsets = message(8, string(1, "") + varint_field(2, 13))
    if contrib:
        opsets += message(8, string(1, "com.microsoft") + varint_field(2, 1))
    return varint_field(1, 7) + opsets + message(7, graph)


def node(op_type: str, inputs: list[str], outputs: list[str], domain: str = "") -> bytes:
    """NodeProto bytes."""
    fields = [string(1, name) for name in inputs] + [string(2, name) for name in outputs]
    return b"".join(fields) + string(4, op_type) + (string(7, domain) if domain else b"")


def tensor(name: str, value: Any) -> bytes:
    """TensorProto bytes of a float32, uint8 or int8 array, little-endian raw data."""
    array = np.asarray(value)
    dims = b"".join(varint_field(1, d) for d in array.shape)
    raw = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
    return dims + varint_field(2, _DTYPES[array.dtype]) + string(8, name) + _bytes(9, raw)


def value_info(name: str, elem_type: int, shape: tuple[int, ...]) -> bytes:
    """ValueInfoProto bytes of a tensor with a fixed shape."""
    dims = b"".join(message(1, varint_field(1, d)) for d in shape)
    tensor_type = varint_field(1, elem_type) + message(2, dims)
    return string(1, name) + message(2, message(1, tensor_type))


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        if not value:
            out.append(low)
            return bytes(out)
        out.append(low | 0x80)


def varint_field(number: int, value: int) -> bytes:
    """A varint field: its key, then the value."""
    return _varint(number << 3) + _varint(value)


def _bytes(number: int, data: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def string(number: int, text: str) -> bytes:
    """A length-delimited UTF-8 field."""
    return _bytes(number, text.encode())


message = _bytes  # an embedded message is length-delimited like bytes
