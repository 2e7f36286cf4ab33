"""The in-process engine: one Encoder, ``workers`` threads sharing its session, block after block."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from embedrt.corpus.job import BlockResult, JobSpec, embed_block
from embedrt.corpus.sources import Block
from embedrt.embedder import Embedder


def run_local(
    blocks: Sequence[Block],
    spec: JobSpec,
    output: Path,
    workers: int,
    threads_per_worker: int,
    on_block: Callable[[BlockResult], None],
) -> None:
    """Embed ``blocks`` in this process, calling ``on_block`` after each part is written."""
    if not blocks:
        return
    embedder = Embedder(
        spec.model_dir, variant=spec.variant, threads=threads_per_worker, workers=workers, batch_size=spec.batch_size
    )
    for block in blocks:
        on_block(embed_block(block, spec, embedder, output))
