"""The Ray Data engine: block descriptors -> ``map_batches`` over an actor pool -> parts written by the actors.

The driver plans the blocks (see ``sources``) and hands Ray only those without a finished part, one Ray block
per descriptor so that every actor gets work (a single input block would keep one actor busy). Each actor holds
one Embedder, loaded once when the actor starts, reads its block from the input, embeds it and writes the part
(temporary name, then rename), so a retried task rewrites the same part with the same rows: retries after a
killed actor neither lose nor duplicate rows.
"""

from __future__ import annotations

import json
import logging
import os
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embedrt.corpus.job import BlockResult, JobSpec, SkippedRow, embed_block
from embedrt.corpus.sources import Block
from embedrt.embedder import Embedder

# An actor that dies (OOM killer, preempted node, a crash) is restarted and its queued tasks retried; bounded
# so that a model that kills every process it loads in fails the job instead of looping for ever.
MAX_ACTOR_RESTARTS = 4
MAX_TASK_RETRIES = 4
# CPUs left free for Ray Data's own tasks: an actor pool that reserves every CPU starves them and the job
# hangs (ray-project/ray#44687).
RESERVED_CPUS = 0.5
_ERRORS: dict[str, type[Exception]] = {"ValueError": ValueError, "TypeError": TypeError}


def import_ray() -> Any:
    """The ray module with Ray Data loaded, or an ImportError that says which extra to install."""
    try:
        import ray
        import ray.data  # loads the submodule used as ray.data
    except ImportError as exc:
        raise ImportError(f"--engine ray needs Ray Data ({exc}); install it with: pip install 'embedrt[ray]'") from None
    return ray


class EmbedBlocks:
    """The callable class of ``map_batches``: one Embedder per actor, one part per block descriptor."""

    def __init__(self, spec: dict[str, Any], output: str, threads: int) -> None:
        """Load the model once for the life of the actor."""
        self.spec = JobSpec(**spec)
        self.output = Path(output)
        self.embedder = Embedder(
            self.spec.model_dir, self.spec.variant, threads=threads, batch_size=self.spec.batch_size
        )
        _ = self.embedder.encoder  # load now, not in the first batch

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Embed every block described in ``batch`` and return one row of figures per block."""
        names, rows_in, rows_out, skipped, errors = [], [], [], [], []
        for raw in batch["block"]:
            block = Block.from_dict(json.loads(str(raw)))
            try:
                result = embed_block(block, self.spec, self.embedder, self.output)
            except (ValueError, TypeError) as exc:
                # Returned, not raised: a bad row is the input's fault, so no retry, and the driver re-raises it
                # with its own type and message instead of Ray's wrapped traceback.
                names.append(block.name)
                rows_in.append(block.rows)
                rows_out.append(0)
                skipped.append("[]")
                errors.append(f"{type(exc).__name__}:{exc}")
                continue
            names.append(result.name)
            rows_in.append(result.rows_in)
            rows_out.append(result.rows_out)
            skipped.append(json.dumps([[s.id, s.reason] for s in result.skipped], default=str))
            errors.append("")
        return {
            "name": np.array(names, dtype=object),
            "rows_in": np.array(rows_in, dtype=np.int64),
            "rows_out": np.array(rows_out, dtype=np.int64),
            "skipped": np.array(skipped, dtype=object),
            "error": np.array(errors, dtype=object),
        }


def actor_cpus(cluster_cpus: float, workers: int, threads_per_worker: int) -> float:
    """CPUs reserved per actor: its threads, but never so many that the pool takes every CPU of the cluster."""
    room = (cluster_cpus - RESERVED_CPUS) / workers
    if room <= 0:
        raise ValueError(f"the Ray cluster has {cluster_cpus:g} CPUs: too few for {workers} workers")
    return round(min(float(threads_per_worker), room), 4)


def run_ray(
    blocks: Sequence[Block],
    spec: JobSpec,
    output: Path,
    workers: int,
    threads_per_worker: int,
    address: str | None,
    on_block: Callable[[BlockResult], None],
) -> float:
    """Embed ``blocks`` on Ray Data; returns the seconds spent starting or connecting to Ray.

    Connects to ``address`` (or ``RAY_ADDRESS``) when given, else starts a local Ray for this job and stops it
    at the end; a Ray already initialized in this process (``ray.init`` by the caller) is used as it is.
    """
    if not blocks:
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
    try:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # embed-corpus prints its own documents/s
        context.print_on_execution_start = False
        num_cpus = actor_cpus(float(ray.cluster_resources().get("CPU", 0)), workers, threads_per_worker)
        items = [{"block": json.dumps(block.to_dict())} for block in blocks]
        with warnings.catch_warnings():
            # Ray 2.60 flags max_restarts/max_task_retries as "ray_remote_args" (deprecated for 2.64) but has no
            # named parameter for them yet; its own defaults are unbounded restarts, which would loop for ever on
            # a model that crashes every worker.
            warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
            dataset = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
                EmbedBlocks,
                fn_constructor_kwargs={"spec": spec.to_dict(), "output": str(output), "threads": threads_per_worker},
                batch_size=1,
                batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=min(workers, len(items))),
                num_cpus=num_cpus,
                max_restarts=MAX_ACTOR_RESTARTS,
                max_task_retries=MAX_TASK_RETRIES,
            )
        for row in dataset.iter_rows():
            if row["error"]:
                kind, _, message = str(row["error"]).partition(":")
                raise _ERRORS.get(kind, RuntimeError)(message)
            skipped = tuple(SkippedRow(i, r) for i, r in json.loads(str(row["skipped"])))
            on_block(BlockResult(str(row["name"]), int(row["rows_in"]), int(row["rows_out"]), skipped))
    finally:
        if owns_ray:
            ray.shutdown()
    return start_s
