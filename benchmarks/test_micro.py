"""Micro benchmarks (make bench): tokenizer, pooling + normalization, one batch through each variant."""

from __future__ import annotations

import numpy as np
import pytest

from embedrt import Encoder
from embedrt.config import PoolingMode
from embedrt.pooling import normalize, pool
from embedrt.tokenizers import Tokenizer


@pytest.fixture(scope="module")
def tokenizer(model_dir):
    return Tokenizer.from_dir(model_dir)


def test_tokenize_sts_batch32(benchmark, tokenizer, sentences):
    batches = [sentences[i : i + 32] for i in range(0, len(sentences), 32)]
    benchmark(lambda: [tokenizer(b, 256) for b in batches])


def test_tokenize_passages_256(benchmark, tokenizer, long_passages):
    benchmark(lambda: tokenizer(long_passages[:32], 256))


def test_pool_and_normalize(benchmark):
    rng = np.random.default_rng(0)
    hidden = rng.normal(size=(32, 64, 384)).astype(np.float32)
    mask = (np.arange(64)[None, :] < rng.integers(8, 65, size=32)[:, None]).astype(np.int64)
    benchmark(lambda: normalize(pool(hidden, mask, [PoolingMode.MEAN])))


@pytest.mark.parametrize("variant", ["fp32", "int8"])
def test_one_batch(benchmark, model_dir, sentences, variant):
    encoder = Encoder.load(model_dir, variant=variant, threads=2)
    batch = sentences[:32]
    benchmark(lambda: encoder.encode(batch, batch_size=32))
