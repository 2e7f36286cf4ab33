"""Similarity functions and embedding quantization against sentence-transformers' implementations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sentence_transformers.util import quantize_embeddings
from sentence_transformers.util import similarity as st_similarity

from embedrt.config import SimilarityFn
from embedrt.precision import Precision, quantize
from embedrt.similarity import SIMILARITY


@pytest.fixture
def vectors():
    rng = np.random.default_rng(0)
    return rng.normal(size=(5, 12)).astype(np.float32), rng.normal(size=(3, 12)).astype(np.float32)


@pytest.mark.parametrize(
    ("fn", "reference"),
    [
        (SimilarityFn.COSINE, st_similarity.cos_sim),
        (SimilarityFn.DOT, st_similarity.dot_score),
        (SimilarityFn.EUCLIDEAN, st_similarity.euclidean_sim),
        (SimilarityFn.MANHATTAN, st_similarity.manhattan_sim),
    ],
)
def test_similarity_matches_reference(vectors, fn, reference):
    a, b = vectors
    expected = reference(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    np.testing.assert_allclose(SIMILARITY[fn](a, b), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("precision", list(Precision))
def test_quantization_matches_reference(precision):
    emb = np.random.default_rng(1).normal(size=(150, 64)).astype(np.float32)
    expected = quantize_embeddings(emb, precision=precision.value)
    got = quantize(emb, precision)
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)


def test_unknown_precision():
    with pytest.raises(ValueError, match=r"'float16'.*float32, int8, uint8, binary, ubinary"):
        Precision.parse("float16")
