"""Embedding a corpus into a resumable directory of parquet parts, in this process or on Ray Data."""

from embedrt.corpus.api import embed_corpus, output_parts
from embedrt.corpus.lock import OutputLocked

__all__ = ["OutputLocked", "embed_corpus", "output_parts"]
