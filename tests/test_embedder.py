"""Embedder: picklable, lazy, one session per process; the README's Dask recipe on a 2-worker LocalCluster."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from corpus_helpers import min_cosine, mixed_texts

from embedrt import Encoder
from embedrt.embedder import Embedder


def test_embedder_matches_encoder_and_loads_once(tiny_export: Path) -> None:
    texts = mixed_texts(200)
    embedder = Embedder(tiny_export, variant="fp32", threads=1)
    assert embedder._encoder is None  # nothing loaded before the first call
    vectors = embedder(texts)
    encoder = embedder.encoder
    assert vectors.dtype == np.float32 and vectors.shape == (200, 32)
    assert min_cosine(vectors, Encoder.load(tiny_export, variant="fp32", threads=1).encode(texts)) >= 0.99999
    embedder(texts[:3])
    assert embedder.encoder is encoder  # the session is reused, not rebuilt per call


def test_embedder_pickles_without_its_session(tiny_export: Path) -> None:
    embedder = Embedder(tiny_export, variant="int8", threads=1, batch_size=8)
    expected = embedder(["a text", "another one"])
    data = pickle.dumps(embedder)
    assert len(data) < 1000  # arguments only, no model
    clone = pickle.loads(data)
    assert clone._encoder is None and clone.batch_size == 8 and clone.variant == "int8"
    np.testing.assert_allclose(clone(["a text", "another one"]), expected, atol=1e-6)


def test_embedder_accepts_engine_columns_and_rejects_bad_texts(tiny_export: Path) -> None:
    import pandas as pd
    import pyarrow as pa

    embedder = Embedder(tiny_export, threads=1)
    texts = ["one", "two words", "three little words"]
    expected = embedder(texts)
    for column in (np.array(texts, dtype=object), pd.Series(texts), pa.array(texts), tuple(texts)):
        np.testing.assert_array_equal(embedder(column), expected)
    assert embedder([]).shape == (0, 32)
    with pytest.raises(TypeError, match="wrap one text in a list"):
        embedder("one")
    with pytest.raises(TypeError, match=r"texts\[1\] is NoneType; expected str"):
        embedder(["fine", None])
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        Embedder(tiny_export, batch_size=0)


def test_readme_dask_recipe(tmp_path: Path, tiny_export: Path) -> None:
    """The README's Dask recipe, on a LocalCluster of 2 worker processes: the in-process vectors, ids matched."""
    import dask.dataframe as dd
    import pandas as pd
    from dask.distributed import Client, LocalCluster

    texts = mixed_texts(3000, seed=9)
    pd.DataFrame({"id": np.arange(3000) * 2, "text": texts}).to_parquet(tmp_path / "corpus.parquet")

    # --- the recipe (README, "Dask") ---
    embedder = Embedder(tiny_export, variant="fp32", threads=1)

    def embed_partition(df: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"id": df["id"], "embedding": list(embedder(df["text"]))}, index=df.index)

    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster, Client(cluster):
        ddf = dd.read_parquet(tmp_path / "corpus.parquet").repartition(npartitions=6)
        out = ddf.map_partitions(embed_partition, meta={"id": "int64", "embedding": "object"}).compute()
    # --- end of the recipe ---

    assert out["id"].tolist() == [2 * i for i in range(3000)]
    vectors = np.stack(out["embedding"].to_list())
    assert min_cosine(vectors, Encoder.load(tiny_export, variant="fp32", threads=1).encode(texts)) >= 0.99999
