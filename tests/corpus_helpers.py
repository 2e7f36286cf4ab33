"""Corpus builders shared by the embed-corpus tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

WORDS = "the quick brown fox jumps over a lazy dog while embeddings map text to vectors in many languages".split()  # noqa: SIM905


def mixed_texts(n: int, seed: int = 0) -> list[str]:
    """Short sentences and long passages (past the tiny model's 64 tokens), mixed, some non-ASCII."""
    rng = np.random.default_rng(seed)
    texts = []
    for i in range(n):
        length = int(rng.integers(1, 12)) if i % 4 else int(rng.integers(60, 200))
        words = list(rng.choice(WORDS, size=length))
        if i % 7 == 0:
            words.append("café naïve 東京")
        texts.append(" ".join(words))
    return texts


def write_parquet(path: Path, ids: list, texts: list, row_group_size: int | None = None) -> Path:
    """A parquet file with id and text columns."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"id": ids, "text": texts}), path, row_group_size=row_group_size)
    return path


def write_jsonl(path: Path, records: list[dict]) -> Path:
    """One JSON object per line (ensure_ascii=True so a lone surrogate survives as an escape)."""
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def read_output(out: Path) -> tuple[list, np.ndarray]:
    """(ids, vectors) of every part, in part-name order."""
    import pyarrow.parquet as pq

    ids: list = []
    vectors = []
    for part in sorted(out.glob("part-*.parquet")):
        table = pq.read_table(part)
        ids.extend(table.column(0).to_pylist())
        vectors.append(np.asarray(table.column("embedding").combine_chunks().flatten()).reshape(table.num_rows, -1))
    return ids, np.concatenate(vectors) if vectors else np.empty((0, 0), np.float32)


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Smallest row-wise cosine of two arrays of the same shape."""
    assert a.shape == b.shape, (a.shape, b.shape)
    num = (a * b).sum(axis=1)
    return float((num / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))).min())
