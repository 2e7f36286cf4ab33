"""The in-process engine: one Encoder, ``workers`` threads sharing its session, block after block.

A reader thread reads the next blocks while the current one is embedded, so that a slow store (S3: one ranged
GET per buffer) overlaps with the model instead of adding to it.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from itertools import chain
from typing import Any, TypeVar

from embedrt.corpus.job import verify_model
from embedrt.corpus.parts import BlockResult, embed_rows
from embedrt.corpus.reader import read_unit
from embedrt.corpus.sources import ReadUnit
from embedrt.corpus.spec import JobSpec
from embedrt.corpus.storage import Location
from embedrt.embedder import Embedder

T = TypeVar("T")
PREFETCH_BLOCKS = 2  # blocks read ahead: enough to hide a read behind an embedding, few enough to bound memory


def run_local(
    units: Sequence[ReadUnit],
    spec: JobSpec,
    input_fs: Any,
    output: Location,
    workers: int,
    threads_per_worker: int,
    on_block: Callable[[BlockResult], None],
) -> None:
    """Embed the blocks of ``units`` in this process, calling ``on_block`` after each part is written."""
    if not units:
        return
    verify_model(spec)
    embedder = Embedder(
        spec.model_dir,
        variant=spec.variant,
        threads=threads_per_worker,
        workers=workers,
        batch_size=spec.batch_size,
        device=spec.device,
    )
    blocks = chain.from_iterable(read_unit(unit, spec, input_fs) for unit in units)
    for rows in prefetched(blocks, PREFETCH_BLOCKS):
        on_block(embed_rows(rows, spec, embedder, output))


def prefetched(items: Iterator[T], depth: int) -> Iterator[T]:
    """The items of ``items``, produced up to ``depth`` ahead on a thread; its exceptions surface here."""
    ready: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        ready.put(("item", item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            ready.put(("end", None))
        except BaseException as exc:  # handed to the consumer, raised there with its own traceback
            ready.put(("error", exc))

    thread = threading.Thread(target=produce, name="embedrt-corpus-reader", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = ready.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                ready.get(timeout=0.1)
            except queue.Empty:
                continue
        thread.join()
