"""Pairwise similarity functions, as sentence-transformers defines them (distances are negated)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from embedrt.config import SimilarityFn


def _as_2d(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x[None, :] if x.ndim == 1 else x


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of every row of ``a`` with every row of ``b``."""
    a, b = _as_2d(a), _as_2d(b)
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return a @ b.T


def dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Dot product of every row pair."""
    return _as_2d(a) @ _as_2d(b).T


def euclidean(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Negative Euclidean distance of every row pair."""
    a, b = _as_2d(a), _as_2d(b)
    return -np.sqrt(np.maximum(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1), 0.0))


def manhattan(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Negative Manhattan distance of every row pair."""
    a, b = _as_2d(a), _as_2d(b)
    return -np.abs(a[:, None, :] - b[None, :, :]).sum(-1)


SIMILARITY: dict[SimilarityFn, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    SimilarityFn.COSINE: cosine,
    SimilarityFn.DOT: dot,
    SimilarityFn.EUCLIDEAN: euclidean,
    SimilarityFn.MANHATTAN: manhattan,
}
