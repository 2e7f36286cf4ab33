"""The Ray Data engine: read units -> reader tasks -> one row per block -> an actor pool that embeds and writes parts.

The driver plans the read units (see ``sources``) and hands Ray only those with a block still to embed. A reader
task reads its unit once (whole row groups, streamed) and yields one row per block: the block's good rows as
Arrow IPC and its bad rows. Each row is its own Ray block (``target_max_block_size`` of 1 byte while the job
runs), so every actor gets work even when the input is a single row group. Each actor holds one Embedder,
loaded once when it starts, embeds the blocks it receives and writes their parts itself, so a retried task
rewrites the same part with the same rows: retries after a killed actor neither lose nor duplicate rows.
"""

from __future__ import annotations

import json
import logging
import os
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict
from typing import Any

import numpy as np

from embedrt.corpus.job import verify_model
from embedrt.corpus.parts import BlockResult, embed_rows
from embedrt.corpus.reader import BlockRows, SkippedRow, read_unit
from embedrt.corpus.sources import Block, ReadUnit
from embedrt.corpus.spec import TEXT_FIELD, JobSpec, WorkerDevice
from embedrt.corpus.storage import Location, import_pyarrow
from embedrt.embedder import Embedder

# An actor that dies (OOM killer, preempted node, a crash) is restarted and its queued tasks retried; bounded
# so that a model that kills every process it loads in fails the job instead of looping for ever.
MAX_ACTOR_RESTARTS = 4
MAX_TASK_RETRIES = 4
# CPUs left free for Ray Data's own tasks and the readers: an actor pool that reserves every CPU starves them
# and the job hangs (ray-project/ray#44687).
RESERVED_CPUS = 0.5
# Per reader task: reading and decoding is a small share of the work, so two readers fit in the reserve.
READER_CPUS = 0.25
# One block in flight per actor: a block waits for the first free actor instead of queueing behind a busy one
# (Ray's default of several lets the first actor up take the first blocks while the others start). A block is
# seconds of work, so the milliseconds of handing the next one over are not worth pipelining.
TASKS_IN_FLIGHT_PER_ACTOR = 1
_ERRORS: dict[str, type[Exception]] = {"ValueError": ValueError, "TypeError": TypeError}


def import_ray() -> Any:
    """The ray module with Ray Data loaded, or an ImportError that says which extra to install."""
    try:
        import ray
        import ray.data  # loads the submodule used as ray.data
    except ImportError as exc:
        raise ImportError(f"--engine ray needs Ray Data ({exc}); install it with: pip install 'embedrt[ray]'") from None
    return ray


def read_blocks(batch: dict[str, np.ndarray], spec: dict[str, Any], input_fs: Any) -> Iterator[dict[str, np.ndarray]]:
    """Reader task of ``map_batches``: the blocks of each unit in ``batch``, one row each.

    A bad row (under ``on_bad_row`` fail) or a changed file ends the unit with an error row: the input's fault,
    so not retried, and the driver raises it with its own type and message instead of Ray's wrapped traceback.
    """
    job = JobSpec.from_dict(spec)
    for raw in batch["unit"]:
        unit = ReadUnit.from_dict(json.loads(str(raw)))
        try:
            for rows in read_unit(unit, job, input_fs):
                yield _block_row(rows)
        except (ValueError, TypeError) as exc:
            yield _error_row(unit.source, exc)


def _block_row(rows: BlockRows) -> dict[str, np.ndarray]:
    pa = import_pyarrow()
    table = rows.columns.append_column(TEXT_FIELD, pa.array(rows.texts, pa.string()))
    return {
        "block": np.array([json.dumps(rows.block.to_dict())], dtype=object),
        "data": np.array([_to_ipc(table)], dtype=object),
        "skipped": np.array([json.dumps([asdict(s) for s in rows.skipped], default=str)], dtype=object),
        "error": np.array([""], dtype=object),
    }


def _error_row(name: str, exc: Exception) -> dict[str, np.ndarray]:
    return {
        "block": np.array([json.dumps({"source": name})], dtype=object),
        "data": np.array([b""], dtype=object),
        "skipped": np.array(["[]"], dtype=object),
        "error": np.array([f"{type(exc).__name__}:{exc}"], dtype=object),
    }


class EmbedBlocks:
    """The callable class of ``map_batches``: one Embedder per actor, one part per block row."""

    def __init__(self, spec: dict[str, Any], output: Location, threads: int) -> None:
        """Check the model against the driver's and load it once for the life of the actor."""
        self.spec = JobSpec.from_dict(spec)
        self.output = output
        self.refusal = ""
        try:
            verify_model(self.spec)
        except ValueError as exc:
            # Reported for each block rather than raised here: a constructor error would only restart the actor.
            self.refusal = f"ValueError:{exc}"
            return
        self.embedder = Embedder(
            self.spec.model_dir,
            self.spec.variant,
            threads=threads,
            batch_size=self.spec.batch_size,
            device=self.spec.device,
        )
        _ = self.embedder.encoder  # load now, not in the first batch

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Embed every block row of ``batch``: one row of figures per block, or the error that stopped it.

        The figures carry the block's ids (Arrow IPC), so the driver checks duplicates without reading parts back.
        """
        pa = import_pyarrow()
        out: dict[str, list[Any]] = {key: [] for key in _RESULT_COLUMNS}
        for raw_block, data, raw_skipped, error in zip(
            batch["block"], batch["data"], batch["skipped"], batch["error"], strict=True
        ):
            block_data = json.loads(str(raw_block))
            error = str(error) or self.refusal
            if error:
                values = [str(block_data.get("source", "")), 0, 0, "[]", b"", "", "", error]
            else:
                table = pa.ipc.open_stream(pa.py_buffer(data)).read_all()
                rows = BlockRows(
                    Block.from_dict(block_data),
                    table.drop_columns([TEXT_FIELD]),
                    table.column(TEXT_FIELD).to_pylist(),
                    tuple(SkippedRow.from_dict(s) for s in json.loads(str(raw_skipped))),
                )
                result = embed_rows(rows, self.spec, self.embedder, self.output)
                ids = _to_ipc(pa.table({"ids": result.ids}))
                values = [
                    result.name,
                    result.rows_in,
                    result.rows_out,
                    str(raw_skipped),
                    ids,
                    result.int8_path or "",
                    result.device or "",
                    "",
                ]
            for key, value in zip(_RESULT_COLUMNS, values, strict=True):
                out[key].append(value)
        return {
            key: np.array(values, dtype=np.int64 if key in ("rows_in", "rows_out") else object)
            for key, values in out.items()
        }


_RESULT_COLUMNS = ("name", "rows_in", "rows_out", "skipped", "ids", "int8_path", "device", "error")


def _to_ipc(table: Any) -> bytes:
    pa = import_pyarrow()
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def _result(row: dict[str, Any]) -> BlockResult:
    """The BlockResult of a result row of ``EmbedBlocks``."""
    pa = import_pyarrow()
    skipped = tuple(SkippedRow.from_dict(s) for s in json.loads(str(row["skipped"])))
    ids = pa.ipc.open_stream(pa.py_buffer(row["ids"])).read_all().column(0).combine_chunks()
    return BlockResult(
        str(row["name"]),
        int(row["rows_in"]),
        int(row["rows_out"]),
        skipped,
        str(row["int8_path"]) or None,
        str(row["device"]) or None,
        None,
        ids,
    )


def actor_cpus(cluster_cpus: float, workers: int, threads_per_worker: int) -> float:
    """CPUs reserved per actor: its threads, but never so many that the pool takes every CPU of the cluster."""
    room = (cluster_cpus - RESERVED_CPUS) / workers
    if room <= 0:
        raise ValueError(f"the Ray cluster has {cluster_cpus:g} CPUs: too few for {workers} workers")
    return round(min(float(threads_per_worker), room), 4)


def actor_resources(
    cluster: Mapping[str, float], workers: int, threads_per_worker: int, device: str
) -> dict[str, float]:
    """The Ray resources of each actor: CPUs (see ``actor_cpus``) and, with ``device`` cuda, one GPU.

    Raises:
        ValueError: too few CPUs, or fewer GPUs than workers for cuda (Ray would wait for them for ever).

    """
    resources = {"num_cpus": actor_cpus(float(cluster.get("CPU", 0)), workers, threads_per_worker)}
    if WorkerDevice.parse(device) is WorkerDevice.CUDA:
        gpus = float(cluster.get("GPU", 0))
        if gpus < workers:
            raise ValueError(
                f"the Ray cluster has {gpus:g} GPUs: too few for {workers} workers with --device cuda (one GPU "
                "each); lower --workers or add GPU nodes"
            )
        resources["num_gpus"] = 1.0
    return resources


def run_ray(
    units: Sequence[ReadUnit],
    spec: JobSpec,
    input_fs: Any,
    output: Location,
    workers: int,
    threads_per_worker: int,
    address: str | None,
    on_block: Callable[[BlockResult], None],
) -> float:
    """Embed the blocks of ``units`` on Ray Data; returns the seconds spent starting or connecting to Ray.

    Connects to ``address`` (or ``RAY_ADDRESS``) when given, else starts a local Ray for this job and stops it
    at the end; a Ray already initialized in this process (``ray.init`` by the caller) is used as it is.
    """
    if not units:
        return 0.0
    ray = import_ray()
    started = time.perf_counter()
    owns_ray = not ray.is_initialized()
    if owns_ray:
        ray.init(
            address=address or os.environ.get("RAY_ADDRESS") or None,
            include_dashboard=False,
            logging_level=logging.WARNING,
            log_to_driver=False,
        )
    start_s = time.perf_counter() - started
    context = ray.data.DataContext.get_current()
    settings = {
        "enable_progress_bars": False,  # embed-corpus prints its own documents/s
        "print_on_execution_start": False,
        "target_max_block_size": 1,  # one Ray block per block row: see the module docstring
    }
    saved = {name: getattr(context, name) for name in settings}
    try:
        for name, value in settings.items():
            setattr(context, name, value)
        resources = actor_resources(ray.cluster_resources(), workers, threads_per_worker, spec.device)
        items = [{"unit": json.dumps(unit.to_dict())} for unit in units]
        blocks = sum(len(unit.blocks) for unit in units)
        with warnings.catch_warnings():
            # Ray 2.60 flags max_restarts/max_task_retries as "ray_remote_args" (deprecated for 2.64) but has no
            # named parameter for them yet; its own defaults are unbounded restarts, which would loop for ever on
            # a model that crashes every worker.
            warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
            dataset = (
                ray.data.from_items(items, override_num_blocks=len(items))
                .map_batches(
                    read_blocks,
                    fn_kwargs={"spec": spec.to_dict(), "input_fs": input_fs},
                    batch_size=1,
                    batch_format="numpy",
                    num_cpus=READER_CPUS,
                )
                .map_batches(
                    EmbedBlocks,
                    fn_constructor_kwargs={"spec": spec.to_dict(), "output": output, "threads": threads_per_worker},
                    batch_size=1,
                    batch_format="numpy",
                    compute=ray.data.ActorPoolStrategy(
                        size=min(workers, blocks), max_tasks_in_flight_per_actor=TASKS_IN_FLIGHT_PER_ACTOR
                    ),
                    max_restarts=MAX_ACTOR_RESTARTS,
                    max_task_retries=MAX_TASK_RETRIES,
                    **resources,
                )
            )
        for row in dataset.iter_rows():
            if row["error"]:
                kind, _, message = str(row["error"]).partition(":")
                raise _ERRORS.get(kind, RuntimeError)(message)
            on_block(_result(row))
    finally:
        for name, value in saved.items():
            setattr(context, name, value)
        if owns_ray:
            ray.shutdown()
    return start_s
