"""Embedding a corpus into a resumable directory of parquet parts, in this process or on Ray Data."""

from embedrt.corpus.api import embed_corpus

__all__ = ["embed_corpus"]
