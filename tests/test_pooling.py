"""Pooling and normalization against sentence-transformers' own Pooling and Normalize modules."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sentence_transformers.models import Normalize, Pooling

from embedrt.config import PoolingMode
from embedrt.pooling import exclude_prompt, normalize, pool


def _batch(seed: int = 0, batch: int = 5, seq: int = 9, dim: int = 16):
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(batch, seq, dim)).astype(np.float32)
    lengths = [seq, 1, 4, seq - 2, 3][:batch]
    mask = np.array([[1] * n + [0] * (seq - n) for n in lengths], dtype=np.int64)
    return emb, mask


def _reference(emb, mask, modes, include_prompt=True, prompt_length=None):
    module = Pooling(emb.shape[-1], pooling_mode=tuple(m.value for m in modes), include_prompt=include_prompt)
    features = {"token_embeddings": torch.from_numpy(emb), "attention_mask": torch.from_numpy(mask)}
    if prompt_length is not None:
        features["prompt_length"] = prompt_length
    return module(features)["sentence_embedding"].numpy()


@pytest.mark.parametrize("mode", list(PoolingMode))
def test_each_mode_matches_sentence_transformers(mode):
    emb, mask = _batch()
    np.testing.assert_allclose(pool(emb, mask, [mode]), _reference(emb, mask, [mode]), rtol=1e-6, atol=1e-6)


def test_modes_concatenate_in_reference_order():
    emb, mask = _batch(seed=1)
    modes = [PoolingMode.CLS, PoolingMode.MAX, PoolingMode.MEAN]
    np.testing.assert_allclose(pool(emb, mask, modes), _reference(emb, mask, modes), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("mode", list(PoolingMode))
def test_prompt_exclusion_matches_include_prompt_false(mode):
    emb, mask = _batch(seed=2)
    mask[:, :3] = 1  # every row is at least as long as the prompt
    expected = _reference(emb, mask, [mode], include_prompt=False, prompt_length=3)
    np.testing.assert_allclose(pool(emb, exclude_prompt(mask, 3), [mode]), expected, rtol=1e-6, atol=1e-6)


def test_exclude_prompt_leaves_the_input_untouched():
    _, mask = _batch()
    before = mask.copy()
    exclude_prompt(mask, 2)
    np.testing.assert_array_equal(mask, before)


def test_normalize_matches_reference_including_zero_rows():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(4, 8)).astype(np.float32)
    x[2] = 0.0
    x[3] = 1e-20
    expected = Normalize()({"sentence_embedding": torch.from_numpy(x)})["sentence_embedding"].numpy()
    np.testing.assert_allclose(normalize(x), expected, rtol=1e-6, atol=1e-7)
    assert normalize(x).dtype == np.float32


@pytest.mark.parametrize("poison", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("modes", [[m] for m in PoolingMode] + [[PoolingMode.CLS, PoolingMode.MAX, PoolingMode.MEAN]])
def test_nan_or_inf_at_masked_positions_never_reaches_a_vector(modes, poison):
    """A masked row of the transformer's output may hold NaN or inf (ModernBERT: a pad run longer than the local
    window leaves a query with every key masked); every pooling mode gives the vector it gives without them."""
    emb, mask = _batch(seed=4)
    clean = pool(emb, mask, modes)
    poisoned = emb.copy()
    poisoned[mask == 0] = poison
    got = pool(poisoned, mask, modes)
    assert np.isfinite(got).all(), (modes, poison)
    np.testing.assert_array_equal(got, clean)
    np.testing.assert_allclose(got, _reference(emb, mask, modes), rtol=1e-6, atol=1e-6)
    # With the prompt excluded, masked-out prompt positions are real tokens: still finite and unchanged.
    excluded = exclude_prompt(mask, 1)
    np.testing.assert_array_equal(pool(poisoned, excluded, modes), pool(emb, excluded, modes))
