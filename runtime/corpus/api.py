"""``embed_corpus``: a corpus file or directory in, a resumable directory of parquet embeddings out."""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from embedrt.config import Choice, ModelConfig, positive_int
from embedrt.corpus.duplicates import IdCounter
from embedrt.corpus.job import (
    SUCCESS_NAME,
    JobState,
    check_output,
    model_identity,
    prepare_output,
    read_json,
    write_json,
)
from embedrt.corpus.lock import OutputLock
from embedrt.corpus.parts import BlockResult, counts, read_part
from embedrt.corpus.sources import Plan, plan_input
from embedrt.corpus.spec import TEXT_FIELD, JobSpec, OnBadRow, OnDuplicateId, WorkerDevice
from embedrt.corpus.storage import Location, import_pyarrow, list_dir, make_dirs, resolve
from embedrt.manifest import Variant
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

    output: str  # OUTPUT's path or URI
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
    keep_columns: Sequence[str] | str = (),
    batch_size: int = 32,
    on_bad_row: str = "fail",
    on_duplicate_id: str = "fail",
    block_rows: int = DEFAULT_BLOCK_ROWS,
    device: str = "cpu",
    overwrite: bool = False,
    progress: bool = False,
) -> CorpusResult:
    """Embed every row of ``input`` into parquet parts under ``output``; resumes an interrupted job.

    Args:
        input: a parquet file or a directory of them, a .jsonl file (one object per line holding the text and
            id fields) or a .txt file (one document per line, id = 0-based line number); a local path or a URI
            that ``pyarrow.fs`` resolves (s3://, gs://, hdfs://; S3 configured by the AWS environment).
        output: directory (or URI) of ``part-*.parquet`` files (id column, kept columns, ``embedding`` a
            fixed-size list of float32) plus ``_job.json`` and, written last, the ``_SUCCESS`` manifest, which
            lists the parts: on object storage, read the parts it lists (``output_parts``).
        model_dir: a directory written by ``embedrt export``; with Ray on a cluster, readable by every worker at
            the same path.
        variant: fp32, fp16, int8 or bf16 (the fp32 file in bf16, where a bf16 engine runs: see embedrt.bf16).
        engine: ``local`` (this process) or ``ray`` (Ray Data actor pool).
        address: Ray cluster address (default: ``RAY_ADDRESS``, else a local Ray started for the job).
        workers: local: batches run at once on threads; ray: actors (default: the CPU count of this machine).
        threads_per_worker: onnxruntime intra-op threads per worker.
        text_column: the text column or field.
        id_column: the id column or field (for .txt inputs, the name of the line-number column).
        keep_columns: input columns copied into the parts beside the id (a list, or names separated by commas).
        batch_size: most texts per onnxruntime call.
        on_bad_row: ``fail`` (default; the error names the row or line, id and reason) or ``skip`` (listed in
            the manifest with their row and line).
        on_duplicate_id: ``fail`` (default; the error names the first repeated ids, no ``_SUCCESS``) or
            ``keep`` (the manifest reports them).
        block_rows: rows per block and output part (a re-run must use the same value).
        device: ``cpu`` or ``cuda`` (ray: one GPU per actor).
        overwrite: re-embed what no longer matches OUTPUT's job (changed input files; everything for another
            model or options) instead of refusing; parts that still match are kept.
        progress: print documents/s on stderr.

    Raises:
        FileNotFoundError: the input or the model is missing.
        ValueError, TypeError: a bad option, a bad input row (with ``on_bad_row`` fail), repeated ids (with
            ``on_duplicate_id`` fail), or an OUTPUT of another job, or whose input changed (without ``overwrite``).
        OutputLocked: another run is writing into OUTPUT.
        ImportError: pyarrow (or Ray for ``engine="ray"``) is not installed.

    """
    started = time.perf_counter()
    import_pyarrow()
    chosen_engine = Engine.parse(engine)
    bad_row_policy = OnBadRow.parse(on_bad_row)
    duplicate_policy = OnDuplicateId.parse(on_duplicate_id)
    chosen_variant = Variant.parse(variant)
    chosen_device = WorkerDevice.parse(device)
    workers = positive_int("workers", workers if workers is not None else _default_workers())
    positive_int("threads_per_worker", threads_per_worker)
    positive_int("batch_size", batch_size)
    positive_int("block_rows", block_rows)
    keep = _keep_columns(keep_columns, text_column, id_column)
    model = Path(model_dir).resolve()
    identity = model_identity(model, chosen_variant)
    dimension = ModelConfig.from_dir(model).dimension
    if chosen_device is WorkerDevice.CUDA and chosen_engine is Engine.LOCAL:
        from embedrt.session import Device, resolve_device

        resolve_device(Device.CUDA)  # here, before OUTPUT is touched: this onnxruntime may not have CUDA
    source = resolve(input)
    out = resolve(output)
    if out.contains(source):
        raise ValueError(f"INPUT {source} lies inside OUTPUT {out}: the job would write into its own input")
    plan = plan_input(source, text_column, id_column, block_rows, keep, exclude=out)
    check_output(out)
    run_id = uuid.uuid4().hex[:12]
    make_dirs(out)
    with OutputLock(out, run_id) as lock:
        state = JobState(
            source.uri,
            plan.files,
            text_column,
            id_column,
            keep,
            block_rows,
            str(model),
            identity,
        )
        prepared = prepare_output(out, state, plan, overwrite, run_id)
        if prepared.finished:
            manifest = read_json(out.child(SUCCESS_NAME))
            return CorpusResult(out.uri, manifest, 0, True, {"elapsed_s": time.perf_counter() - started})
        spec = JobSpec(
            str(model),
            chosen_variant.value,
            identity.model_sha256,
            chosen_device.value,
            text_column,
            id_column,
            keep,
            plan.id_type,
            plan.keep_types,
            dimension,
            batch_size,
            bad_row_policy.value,
            run_id,
            identity.to_dict(),
        )
        todo = set(prepared.todo)
        units = [unit.with_blocks(todo) for unit in plan.units if any(b.name in todo for b in unit.blocks)]
        bar = Progress("embed-corpus documents", sum(b.rows for b in plan.blocks if b.name in todo), enabled=progress)

        written: dict[str, BlockResult] = {}
        ids = IdCounter([block.name for block in plan.blocks], plan.total_rows)
        index = {block.name: i for i, block in enumerate(plan.blocks)}

        def on_block(result: BlockResult) -> None:
            ids.add(index[result.name], result.ids)  # counted as the parts come in; not kept in the driver
            written[result.name] = replace(result, ids=None)
            bar.update(result.rows_in)

        embed_started = time.perf_counter()
        engine_start_s = 0.0
        with ids:
            if chosen_engine is Engine.LOCAL:
                from embedrt.corpus.local import run_local

                run_local(units, spec, source.fs, out, workers, threads_per_worker, on_block)
            else:
                from embedrt.corpus.ray_engine import run_ray

                engine_start_s = run_ray(units, spec, source.fs, out, workers, threads_per_worker, address, on_block)
            embed_s = time.perf_counter() - embed_started
            if progress and bar.done < bar.total:
                sys.stderr.write("\n")
            lock.check()
            manifest = _finish(out, plan, spec, duplicate_policy, source, written, ids)
        manifest.update(
            engine=chosen_engine.value,
            workers=workers,
            threads_per_worker=threads_per_worker,
            run_id=run_id,
            lock_taken_over=lock.taken_over,
            parts_written_last_run=len(todo),
            parts_reused_last_run=len(plan.blocks) - len(todo),
            parts_replaced_last_run=prepared.replaced,
            elapsed_s=round(time.perf_counter() - started, 3),
        )
        write_json(out.child(SUCCESS_NAME), manifest, run_id)
    timings = {"elapsed_s": time.perf_counter() - started, "engine_start_s": engine_start_s, "embed_s": embed_s}
    return CorpusResult(out.uri, manifest, len(todo), False, timings)


def _finish(
    out: Location,
    plan: Plan,
    spec: JobSpec,
    duplicate_policy: OnDuplicateId,
    source: Location,
    written: dict[str, BlockResult],
    ids: IdCounter,
) -> dict[str, Any]:
    """Check the complete set of parts (rows, ids) and build the manifest; raises on repeated ids under fail.

    Parts written by this run are known from what their workers reported (their ids are in ``ids`` already);
    the others are read back (footer and id column), their ids counted part by part and not kept. One listing
    of OUTPUT gives every part's size and shows that each one is there.
    """
    names = [block.name for block in plan.blocks]
    sizes = {info.path.rsplit("/", 1)[-1]: int(info.size) for info in list_dir(out) if info.is_file}
    missing = [name for name in names if name not in sizes]
    if missing:
        raise RuntimeError(f"{out}: parts missing after the run: {', '.join(missing[:5])}; run the job again")
    parts = []
    for index, name in enumerate(names):
        if name in written:
            parts.append(replace(written[name], size_bytes=sizes[name]))
        else:
            part = read_part(out.child(name), spec.id_column)
            ids.add(index, part.ids)
            parts.append(replace(part, ids=None))
    skipped = [{"id": s.id, "row": s.row, "line": s.line, "reason": s.reason} for part in parts for s in part.skipped]
    if skipped and OnBadRow.parse(spec.on_bad_row) is OnBadRow.FAIL:
        # Left out by an earlier run under --on-bad-row skip (a block with a bad row writes no part under fail):
        # this run fails on them as a run from scratch would, rather than list them in a _SUCCESS.
        first = skipped[0]
        line = f", line {first['line']}" if first["line"] is not None else ""
        raise ValueError(
            f"{source}: row {first['row']}{line} (id {first['id']!r}): {first['reason']} (left out by an earlier run "
            f"with --on-bad-row skip; {len(skipped)} such rows in all): this run has --on-bad-row fail; fix the "
            "input (then re-run with --overwrite) or pass --on-bad-row skip"
        )
    rows_in = sum(part.rows_in for part in parts)
    rows_out = sum(part.rows_out for part in parts)
    if rows_in != plan.total_rows or rows_out + len(skipped) != rows_in:
        raise RuntimeError(
            f"{out}: the parts hold {rows_out} rows + {len(skipped)} skipped for {rows_in} rows read and "
            f"{plan.total_rows} in the input; run again with --overwrite, or delete OUTPUT"
        )
    duplicates = ids.result()
    if duplicates.count and duplicate_policy is OnDuplicateId.FAIL:
        raise ValueError(
            f"{source}: {duplicates.describe()}. Ids must be unique to join the vectors back to their rows: fix "
            "the input (then re-run with --overwrite), or pass --on-duplicate-id keep (the parts written are kept)"
        )
    return {
        "rows_in": rows_in,
        "rows_out": rows_out,
        "rows_skipped": len(skipped),
        "skipped": skipped,
        "duplicate_ids": duplicates.to_dict(),
        "input": source.uri,
        "input_files": len(plan.files),
        "text_column": spec.text_column,
        "id_column": spec.id_column,
        "id_type": plan.id_type,
        "keep_columns": list(spec.keep_columns),
        "dimension": spec.dimension,
        "parts": [{"name": p.name, "rows": p.rows_out, "size_bytes": p.size_bytes} for p in parts],
        "model_dir": spec.model_dir,
        "variant": spec.variant,
        "model_sha256": spec.model_sha256,
        "pipeline": spec.model_identity["pipeline"],
        "on_bad_row": spec.on_bad_row,
        "int8_paths": int8_paths(parts),
        "devices": counts([part.device for part in parts]),
        "on_duplicate_id": duplicate_policy.value,
        "embedrt_version": embedrt_version(),
    }


def output_parts(output: str | Path) -> list[str]:
    """The parts of a finished job, as its ``_SUCCESS`` lists them (paths or URIs, in input order).

    Trust this list, not a listing of the directory: on object storage a part is written once under its final
    name, so a listing during or after an interrupted run may show parts of an unfinished job.

    Raises:
        FileNotFoundError: OUTPUT has no ``_SUCCESS``: the job has not finished.

    """
    out = resolve(output)
    try:
        manifest = read_json(out.child(SUCCESS_NAME))
    except FileNotFoundError:
        raise FileNotFoundError(f"{out} has no {SUCCESS_NAME}: the job has not finished (run it again)") from None
    return [out.child(part["name"]).uri for part in manifest["parts"]]


def int8_paths(parts: Sequence[BlockResult]) -> dict[str, int] | None:
    """Parts per int8 kernel path (``embedrt.int8_kernel``), e.g. {"default": 40}; None for other variants.

    Every path is exact, but a job resumed on, or spread over, CPUs of two kinds holds vectors of two paths,
    which agree to float rounding only: the manifest says so instead of hiding it.
    """
    return counts([part.int8_path for part in parts])


def _keep_columns(keep_columns: Sequence[str] | str, text_column: str, id_column: str) -> tuple[str, ...]:
    """Validated kept columns; the id, text and kept names must be distinct from the part's own columns."""
    for name, column in (("text_column", text_column), ("id_column", id_column)):
        if not isinstance(column, str) or not column or column == "embedding":
            raise ValueError(f"{name} must be a non-empty column name other than 'embedding', got {column!r}")
    names = [c.strip() for c in keep_columns.split(",")] if isinstance(keep_columns, str) else list(keep_columns)
    names = [c for c in names if c] if isinstance(keep_columns, str) else names
    for column in names:
        if not isinstance(column, str) or not column or column in ("embedding", TEXT_FIELD):
            raise ValueError(f"keep_columns: {column!r} cannot be kept (the parts have their own 'embedding')")
        if column == id_column:
            raise ValueError(f"keep_columns: {column!r} is the id column, which every part holds already")
    repeated = sorted({c for c in names if names.count(c) > 1})
    if repeated:
        raise ValueError(f"keep_columns: {', '.join(repeated)} listed more than once")
    return tuple(names)


def _default_workers() -> int:
    from embedrt.cpus import usable_cpus

    return usable_cpus()
