"""Pooling and normalization in numpy, with sentence-transformers' numerics (clamps 1e-9 and 1e-12)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from embedrt.config import PoolingMode


def exclude_prompt(attention_mask: np.ndarray, prompt_length: int) -> np.ndarray:
    """Zero the mask over the first ``prompt_length`` tokens ([CLS] + prompt), as include_prompt=False does."""
    mask = attention_mask.copy()
    mask[:, :prompt_length] = 0
    return mask


def pool(token_embeddings: np.ndarray, attention_mask: np.ndarray, modes: Sequence[PoolingMode]) -> np.ndarray:
    """Pool (batch, seq, dim) token embeddings into (batch, dim * len(modes)) float32 vectors.

    Masked positions are selected away (zeros in their place) before any arithmetic, not multiplied by a zero
    weight: a masked row can hold NaN or inf (a query whose every key is masked, as a pad run longer than
    ModernBERT's local window gives), and NaN * 0 is NaN. Real rows are never changed, so the sums are the same.
    """
    mask = attention_mask.astype(token_embeddings.dtype, copy=False)
    if len(modes) == 1 and modes[0] is PoolingMode.CLS:  # reads one unmasked row per text: no pass over the rest
        return _cls(token_embeddings, mask)
    emb = np.where(mask[:, :, None] > 0, token_embeddings, 0).astype(token_embeddings.dtype, copy=False)
    outputs = [_POOLERS[mode](emb, mask) for mode in modes]
    return outputs[0] if len(outputs) == 1 else np.concatenate(outputs, axis=1)


def normalize(embeddings: np.ndarray) -> np.ndarray:
    """L2-normalize rows, dividing by max(norm, 1e-12) like torch.nn.functional.normalize."""
    # What np.linalg.norm computes for rows, without its argument handling (40 us per single-text call).
    norms = np.sqrt((embeddings * embeddings).sum(axis=1, keepdims=True))
    return embeddings / np.maximum(norms, 1e-12)


def _masked_sum(emb: np.ndarray, weights: np.ndarray) -> np.ndarray:
    # One batched matrix product: (b, 1, s) @ (b, s, d) -> (b, d).
    return np.matmul(weights[:, None, :], emb)[:, 0, :]


def _mean(emb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return _masked_sum(emb, mask) / np.maximum(mask.sum(axis=1, keepdims=True), 1e-9)


def _mean_sqrt_len(emb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return _masked_sum(emb, mask) / np.sqrt(np.maximum(mask.sum(axis=1, keepdims=True), 1e-9))


def _weighted_mean(emb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    weights = mask * np.arange(1, mask.shape[1] + 1, dtype=mask.dtype)
    return _masked_sum(emb, weights) / np.maximum(weights.sum(axis=1, keepdims=True), 1e-9)


def _cls(emb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    # The first unmasked position, which is not [CLS] when the prompt is excluded.
    # A text whose every position is masked (an excluded prompt covering it all) reads position 0, a real token.
    first = mask.argmax(axis=1)
    return emb[np.arange(emb.shape[0]), first]


def _max(emb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    # emb holds zeros at masked positions (see pool); they must not win the max, so -inf goes there.
    return np.where(mask[:, :, None] > 0, emb, -np.inf).max(axis=1).astype(emb.dtype)


def _last_token(emb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    seq_len = mask.shape[1]
    from_end = mask[:, ::-1].argmax(axis=1)
    last = np.where(mask.max(axis=1) == 0, 0, seq_len - 1 - from_end)
    rows = np.arange(emb.shape[0])
    return np.where(mask[rows, last][:, None] > 0, emb[rows, last], 0).astype(emb.dtype, copy=False)


_POOLERS = {
    PoolingMode.MEAN: _mean,
    PoolingMode.MEAN_SQRT_LEN_TOKENS: _mean_sqrt_len,
    PoolingMode.WEIGHTEDMEAN: _weighted_mean,
    PoolingMode.CLS: _cls,
    PoolingMode.MAX: _max,
    PoolingMode.LASTTOKEN: _last_token,
}
