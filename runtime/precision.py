"""Embedding quantization for storage (``encode(precision=...)``), as sentence-transformers does it."""

from __future__ import annotations

import numpy as np

from embedrt.config import Choice


class Precision(Choice):
    """Output precisions of ``Encoder.encode``."""

    FLOAT32 = "float32"
    INT8 = "int8"
    UINT8 = "uint8"
    BINARY = "binary"
    UBINARY = "ubinary"


def quantize(embeddings: np.ndarray, precision: Precision) -> np.ndarray:
    """Quantize float32 rows.

    int8/uint8 buckets come from the batch's own per-dimension min/max, as in
    sentence_transformers.quantize_embeddings without calibration data.
    """
    if precision is Precision.FLOAT32:
        return embeddings
    if embeddings.shape[0] == 0:
        # No rows, no buckets: the batch min/max of an empty array is undefined (numpy raises). The result has
        # the dtype and width of a non-empty batch: (0, dim), or (0, ceil(dim / 8)) packed for the binary kinds.
        binary = precision in (Precision.BINARY, Precision.UBINARY)
        width = -(-embeddings.shape[1] // 8) if binary else embeddings.shape[1]
        return np.empty((0, width), dtype=np.uint8 if precision in (Precision.UINT8, Precision.UBINARY) else np.int8)
    if precision in (Precision.INT8, Precision.UINT8):
        starts = embeddings.min(axis=0)
        steps = (embeddings.max(axis=0) - starts) / 255
        steps = np.where(steps == 0, 1, steps)
        buckets = np.clip(np.floor((embeddings - starts) / steps), 0, 255)
        return buckets.astype(np.uint8) if precision is Precision.UINT8 else (buckets - 128).astype(np.int8)
    packed = np.packbits(embeddings > 0, axis=-1).reshape(embeddings.shape[0], -1)
    return packed if precision is Precision.UBINARY else (packed.astype(np.int16) - 128).astype(np.int8)
