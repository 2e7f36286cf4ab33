"""``embed_corpus``: a corpus file or directory in, a resumable directory of parquet embeddings out."""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from embedrt.config import Choice, ModelConfig, positive_int, read_json
from embedrt.corpus.job import (
    SUCCESS_NAME,
    BlockResult,
    JobSpec,
    JobState,
    OnBadRow,
    prepare_output,
    read_part,
    write_json_atomic,
)
from embedrt.corpus.sources import import_pyarrow, plan_input
from embedrt.manifest import MANIFEST_NAME, Manifest, Variant, checked_path, sha256_file
from embedrt.progress import Progress
from embedrt.version import embedrt_version

# Rows per block and per part: small enough that a killed job loses little work and two workers share even a
# small corpus, large enough that the per-block cost (a Ray task, a parquet file) stays under 1% of the work.
DEFAULT_BLOCK_ROWS = 2048


class Engine(Choice):
    """Where ``embed_corpus`` runs."""

    LOCAL = "local"
    RAY = "ray"


@dataclass(frozen=True)
class CorpusResult:
    """What a run of ``embed_corpus`` did; ``manifest`` is the content of OUTPUT/_SUCCESS."""

    output: Path
    manifest: dict[str, Any]
    parts_written: int
    already_complete: bool
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def rows_out(self) -> int:
        """Rows with an embedding in OUTPUT."""
        return int(self.manifest["rows_out"])


def embed_corpus(
    input: str | Path,
    output: str | Path,
    model_dir: str | Path,
    variant: str = "fp32",
    engine: str = "local",
    address: str | None = None,
    workers: int | None = None,
    threads_per_worker: int = 1,
    text_column: str = "text",
    id_column: str = "id",
    batch_size: int = 32,
    on_bad_row: str = "fail",
    block_rows: int = DEFAULT_BLOCK_ROWS,
    progress: bool = False,
) -> CorpusResult:
    """Embed every row of ``input`` into parquet parts under ``output``; resumes an interrupted job.

    Args:
        input: a parquet file or a directory of them, a .jsonl file (one object per line holding the text and
            id fields) or a .txt file (one document per line, id = 0-based line number).
        output: directory of ``part-*.parquet`` files (id column, ``embedding`` fixed-size list of float32)
            plus ``_job.json`` and, written last, the ``_SUCCESS`` manifest.
        model_dir: a directory written by ``embedrt export``; with Ray on a cluster, readable by every worker
            (like the input and output).
        variant: fp32, fp16 or int8.
        engine: ``local`` (this process) or ``ray`` (Ray Data actor pool).
        address: Ray cluster address (default: ``RAY_ADDRESS``, else a local Ray started for the job).
        workers: local: batches run at once on threads; ray: actors (default: the CPU count of this machine).
        threads_per_worker: onnxruntime intra-op threads per worker.
        text_column: the text column or field.
        id_column: the id column or field (for .txt inputs, the name of the line-number column).
        batch_size: most texts per onnxruntime call.
        on_bad_row: ``fail`` (default; the error names the id and reason) or ``skip`` (listed in the manifest).
        block_rows: rows per block and output part (a re-run must use the same value).
        progress: print documents/s on stderr.

    Raises:
        FileNotFoundError: the input or the model is missing.
        ValueError, TypeError: a bad option, a bad input row (with ``on_bad_row`` fail), or an OUTPUT of
            another job (other model, variant or input).
        ImportError: pyarrow (or Ray for ``engine="ray"``) is not installed.

    """
    started = time.perf_counter()
    import_pyarrow()
    chosen_engine = Engine.parse(engine)
    policy = OnBadRow.parse(on_bad_row)
    chosen_variant = Variant.parse(variant)
    workers = positive_int("workers", workers if workers is not None else _default_workers())
    positive_int("threads_per_worker", threads_per_worker)
    positive_int("batch_size", batch_size)
    positive_int("block_rows", block_rows)
    for name, column in (("text_column", text_column), ("id_column", id_column)):
        if not isinstance(column, str) or not column or column == "embedding":
            raise ValueError(f"{name} must be a non-empty column name other than 'embedding', got {column!r}")
    model = Path(model_dir).resolve()
    manifest_path = model / MANIFEST_NAME
    if not manifest_path.is_file():
        raise FileNotFoundError(f"{manifest_path} not found: {model} is not an embedrt export")
    model_file = checked_path(model, Manifest.from_file(manifest_path).info(chosen_variant, model))
    model_sha256 = sha256_file(model_file)
    dimension = ModelConfig.from_dir(model).dimension
    source = Path(input).resolve()
    plan = plan_input(source, text_column, id_column, block_rows)
    out = Path(output).resolve()
    state = JobState(
        str(source), plan.files, text_column, id_column, block_rows, str(model), chosen_variant.value, model_sha256
    )
    todo, finished = prepare_output(out, state, plan)
    if finished:
        return CorpusResult(out, read_json(out / SUCCESS_NAME), 0, True, {"elapsed_s": time.perf_counter() - started})
    spec = JobSpec(
        str(model), chosen_variant.value, text_column, id_column, plan.id_type, dimension, batch_size, policy.value
    )
    bar = Progress("embed-corpus documents", sum(block.rows for block in todo), enabled=progress)

    def on_block(result: BlockResult) -> None:
        bar.update(result.rows_in)

    embed_started = time.perf_counter()
    engine_start_s = 0.0
    if chosen_engine is Engine.LOCAL:
        from embedrt.corpus.local import run_local

        run_local(todo, spec, out, workers, threads_per_worker, on_block)
    else:
        from embedrt.corpus.ray_engine import run_ray

        engine_start_s = run_ray(todo, spec, out, workers, threads_per_worker, address, on_block)
    embed_s = time.perf_counter() - embed_started
    if progress and bar.done < bar.total:
        sys.stderr.write("\n")
    parts = [read_part(out / block.name) for block in plan.blocks]
    skipped = [{"id": s.id, "reason": s.reason} for part in parts for s in part.skipped]
    rows_in = sum(part.rows_in for part in parts)
    rows_out = sum(part.rows_out for part in parts)
    if rows_in != plan.total_rows or rows_out + len(skipped) != rows_in:
        raise RuntimeError(
            f"{out}: the parts hold {rows_out} rows + {len(skipped)} skipped for {rows_in} rows read and "
            f"{plan.total_rows} in the input; delete the OUTPUT directory and run again"
        )
    elapsed = time.perf_counter() - started
    manifest = {
        "rows_in": rows_in,
        "rows_out": rows_out,
        "rows_skipped": len(skipped),
        "skipped": skipped,
        "input": str(source),
        "text_column": text_column,
        "id_column": id_column,
        "id_type": plan.id_type,
        "dimension": dimension,
        "parts": [block.name for block in plan.blocks],
        "model_dir": str(model),
        "variant": chosen_variant.value,
        "model_sha256": model_sha256,
        "int8_paths": int8_paths(parts),
        "embedrt_version": embedrt_version(),
        "engine": chosen_engine.value,
        "workers": workers,
        "threads_per_worker": threads_per_worker,
        "parts_written_last_run": len(todo),
        "parts_reused_last_run": len(plan.blocks) - len(todo),
        "elapsed_s": round(elapsed, 3),
    }
    write_json_atomic(out / SUCCESS_NAME, manifest)
    timings = {"elapsed_s": elapsed, "engine_start_s": engine_start_s, "embed_s": embed_s}
    return CorpusResult(out, manifest, len(todo), False, timings)


def int8_paths(parts: Sequence[BlockResult]) -> dict[str, int] | None:
    """Parts per int8 kernel path (``embedrt.int8_kernel``), e.g. {"default": 40}; None for other variants.

    Every path is exact, but a job resumed on, or spread over, CPUs of two kinds holds vectors of two paths,
    which agree to float rounding only: the manifest says so instead of hiding it.
    """
    counts = Counter(part.int8_path for part in parts if part.int8_path is not None)
    return dict(sorted(counts.items())) or None


def _default_workers() -> int:
    from embedrt.cpus import usable_cpus

    return usable_cpus()
