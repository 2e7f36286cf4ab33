"""Dynamic batching per item: every request's items in one queue, model cycles formed from slices of them.

An item is a text (embedding models) or a (query, document) pair (cross-encoders); the Batcher hands lists of
items to a compute function (``embedding_compute`` or ``embedrt.serve.rerank.rerank_compute``) and never looks
inside them, except to count their characters toward the queue budget.

A request is cut into slices of ``SLICE`` items. A cycle takes slices round robin over the waiting requests, up
to ``CYCLE_INPUTS`` items, and makes one compute call per kind of request (prompt, normalization, dimensions) on
an executor thread. So a large request uses every idle cycle, and a small one that arrives meanwhile gets into
the next cycle instead of waiting for the large one to finish. Rows return in each request's order once all its
slices are done.

When the model is idle, a request starts at once. A cycle waits (up to ``max_wait_ms`` from its oldest request)
for more work only when it is short, its first request queued behind a running cycle, and no other cycle slot
is idle (an idle slot would take the newcomers anyway).

A request that would start at once anyway (nothing queued before it, a cycle slot idle, no reason to wait) is
handed to a worker thread by a callback that ``submit`` schedules at the end of the loop's turn (so requests
arriving in the same turn share the cycle), instead of waking the batching task for it: one hop from the loop to
the model thread and one back. The batching task forms every other cycle.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from embedrt.encoder import Embedding, Encoder
from embedrt.serve.errors import ApiError
from embedrt.tokenizers import TruncationSide

T = TypeVar("T")

# Items per model cycle, which bounds what a small request waits behind large ones. One-sentence p99 beside two
# 1,024-text requests (int8, 2 cycles x 1 thread; one run each): 193 ms with 64, 150 ms with 32, at the same
# sentences/s in batches of 32 (1,463 and 1,426) and one-sentence requests/s at concurrency 32 (894 and 901).
CYCLE_INPUTS = 32
SLICE = 16  # items a request puts into a cycle before the next waiting request's turn
# Items per onnxruntime call inside a cycle. A cycle holds a few requests' texts, not a whole sorted corpus, so
# small batches keep padding low: 32-sentence requests at concurrency 4 (int8, 2 cycles x 1 thread) ran at
# 1,397-1,459 sentences/s with 32, 1,540 with 16, 1,647-1,675 with 8 and 1,632 with 4 (one run each).
ENCODE_BATCH_SIZE = 8
# /health answers 503 after this many model cycles failed in a row.
FAILED_CYCLES_UNHEALTHY = 3
# How long a chunk of a request body may wait for room in the queue budget before the request gets 429.
BODY_WAIT_S = 1.0


@dataclass(frozen=True)
class Rows:
    """What a compute function returns for its items, in their order: one row of values each, tokens, truncation."""

    values: np.ndarray  # (n, width) float32: embeddings, or a cross-encoder's logits
    tokens: list[int]  # tokens each item ran with, special tokens included, after truncation
    truncated: list[bool]  # whether the item had more tokens than the model takes (so it was cut)


# (items, kind) -> their rows; runs on an executor thread. ``kind`` is the group key the requests were queued with.
Compute = Callable[[list[Any], Hashable], Rows]
TooLong = Callable[[int], Exception]  # the error for a request whose item ``index`` was truncated


def _ignore(inputs: int, tokens: int) -> None:
    """No metrics."""


@dataclass
class BodyBudget:
    """One request body's share of the queue budget while it is read (``Batcher.body``)."""

    batcher: Batcher
    order: int
    reserved: int = 0

    async def arrived(self, size: int) -> None:
        """Count ``size`` more bytes of the body (429 when they cannot fit in time)."""
        await self.batcher._admit(self, size)


@dataclass(frozen=True)
class Kind:
    """What an embedding request asks beyond its texts; requests of one kind share an ``Encoder.embed`` call."""

    prompt: str = ""
    normalize: bool | None = None
    dimensions: int | None = None
    truncation: TruncationSide = TruncationSide.RIGHT


def embedding_compute(encoder: Encoder) -> Compute:
    """The compute function of an embedding model: ``Encoder.embed`` with the request kind's options."""

    def compute(texts: list[Any], kind: Hashable) -> Rows:
        options = kind if isinstance(kind, Kind) else Kind()
        out = encoder.embed(
            texts,
            prompt=options.prompt,
            normalize=options.normalize,
            dimensions=options.dimensions,
            batch_size=ENCODE_BATCH_SIZE,
            truncation=options.truncation,
        )
        return Rows(out.vectors, out.tokens, out.truncated)

    return compute


def input_too_long(max_seq_length: int, index: int) -> ApiError:
    """413 for an embedding request's ``inputs[index]``, longer than the model takes, sent with truncate false."""
    return ApiError(
        413,
        f"inputs[{index}] has more than {max_seq_length - 2} tokens besides [CLS] and [SEP] "
        f"(max_seq_length {max_seq_length}); send it shorter or with truncate true",
        param=f"inputs[{index}]",
        code="input_too_long",
    )


def characters(item: Any) -> int:
    """An item's size toward the queue budget: the characters of its text, or of both texts of a pair."""
    return len(item) if isinstance(item, str) else sum(len(text) for text in item)


@dataclass
class _Request:
    items: Sequence[Any]
    sizes: list[int]  # each item's share of the queue budget
    kind: Hashable
    too_long: TooLong | None  # None: truncated items are fine
    future: asyncio.Future[Rows]
    behind_a_cycle: bool  # a cycle was running when it arrived: the server is under load
    arrived: float = field(default_factory=time.perf_counter)
    handed_out: int = 0  # items given to cycles so far
    running: int = 0  # slices in cycles that have not finished
    values: np.ndarray | None = None
    tokens: list[int] = field(default_factory=list)
    truncated: list[bool] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.handed_out == len(self.items) and self.running == 0


@dataclass(frozen=True)
class _Slice:
    request: _Request
    start: int
    end: int

    @property
    def items(self) -> Sequence[Any]:
        return self.request.items[self.start : self.end]


class Batcher:
    """The queue and the task that feeds the model. ``await run(...)`` (or ``embed``) from request handlers."""

    def __init__(
        self,
        compute: Compute | Encoder,
        max_queue: int,
        max_wait_ms: float,
        workers: int = 1,
        observe: Callable[[int, int], None] | None = None,
        max_queue_bytes: int = 1 << 62,
    ) -> None:
        """Queue items for ``compute`` (an Encoder stands for its ``embedding_compute``, and enables ``embed``)."""
        self.encoder = compute if isinstance(compute, Encoder) else None
        self.compute: Compute = embedding_compute(compute) if isinstance(compute, Encoder) else compute
        self.max_queue = max_queue
        self.max_queue_bytes = max_queue_bytes
        self.max_wait_s = max_wait_ms / 1000.0
        self.workers = workers
        self.queued_inputs = 0
        self.queued_bytes = 0  # characters of queued items, plus bodies being read (``reserve``)
        self.failed_cycles = 0  # in a row
        self._observe = observe if observe is not None else _ignore
        self._requests: deque[_Request] = deque()
        self._wakeup = asyncio.Event()
        self._in_flight = 0
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="embedrt-serve")
        self._slots = asyncio.Semaphore(workers)
        self._task: asyncio.Task[None] | None = None
        self._readers: dict[int, None] = {}  # bodies being read, oldest first (see ``body``)
        self._reader_ids = itertools.count()
        self._freed: asyncio.Event | None = None  # set when budget is released, for bodies waiting on it

    @property
    def alive(self) -> bool:
        """Whether the batching task runs and the model is not failing cycle after cycle (readiness)."""
        running = self._task is not None and not self._task.done()
        return running and self.failed_cycles < FAILED_CYCLES_UNHEALTHY

    def start(self) -> None:
        """Start the batching task on the running loop."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="embedrt-batcher")

    async def stop(self) -> None:
        """Stop the task once the queue is empty (the server has stopped taking requests)."""
        while self._live_requests() or self._in_flight:
            await asyncio.sleep(0.01)
        if self._task is not None:
            self._task.cancel()
        self._executor.shutdown(wait=True)

    def reserve(self, size: int) -> None:
        """Count ``size`` more bytes of a body being read toward the queue budget; 429 past it."""
        if self.queued_bytes + size > self.max_queue_bytes:
            raise self._full(f"{self.queued_bytes} bytes queued or arriving (limit {self.max_queue_bytes})")
        self.queued_bytes += size

    def release(self, size: int) -> None:
        """Stop counting ``size`` bytes reserved for a body (read in full, or abandoned)."""
        self.queued_bytes -= size
        self._wake_readers()

    @contextlib.asynccontextmanager
    async def body(self) -> AsyncIterator[BodyBudget]:
        """Count a request body toward the queue budget as its bytes arrive; released when the block ends.

        Only what has arrived counts, never a declared Content-Length: connections that declare large bodies and
        send nothing must not lock everyone else out. Bodies arriving together would then crowd each other out
        (each partly read when the budget fills, all refused), so a chunk that does not fit waits, up to
        ``BODY_WAIT_S``, for older bodies to finish, and the oldest body being read never waits: the queue may
        hold its budget plus one body.
        """
        reader = BodyBudget(self, next(self._reader_ids))
        self._readers[reader.order] = None
        try:
            yield reader
        finally:
            del self._readers[reader.order]
            self.release(reader.reserved)

    async def hold(self, size: int) -> None:
        """Count ``size`` bytes of an answer waiting to be sent toward the budget; ``release`` them once sent.

        It waits for room as a body chunk does (then 429). Bounds the memory of large answers (``/tokenize``).
        """
        async with self.body() as share:
            await share.arrived(size)
            share.reserved = 0  # kept past the block: the caller releases once the answer is out

    async def _admit(self, reader: BodyBudget, size: int) -> None:
        """Count ``size`` more arrived bytes of ``reader``'s body: at once when they fit, else as described above."""
        deadline = time.monotonic() + BODY_WAIT_S
        while self.queued_bytes + size > self.max_queue_bytes and next(iter(self._readers)) != reader.order:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._full(f"{self.queued_bytes} bytes queued or arriving (limit {self.max_queue_bytes})")
            if self._freed is None:
                self._freed = asyncio.Event()
            with contextlib.suppress(asyncio.TimeoutError, TimeoutError):
                await asyncio.wait_for(self._freed.wait(), remaining)
        self.queued_bytes += size
        reader.reserved += size

    def _wake_readers(self) -> None:
        if self._freed is not None:
            self._freed.set()  # every waiting body checks again; those that still do not fit wait on a new event
            self._freed = None

    async def run(
        self,
        items: Sequence[Any],
        kind: Hashable = Kind(),
        too_long: TooLong | None = None,
        sizes: list[int] | None = None,
    ) -> Rows:
        """Queue ``items`` and wait for their rows; a cancelled wait (client gone) drops what is still queued.

        Args:
            items: texts or (query, document) pairs, as the compute function takes them.
            kind: requests of one kind share compute calls (an embedding request's :class:`Kind`).
            too_long: None accepts truncated items; else the error for the request when its item ``i`` was
                truncated (given ``i``).
            sizes: each item's share of the queue budget (default: its characters, see ``characters``).

        Raises:
            ApiError: 429 when the queue holds too many items or bytes; ``too_long``'s error.

        """
        return await self.submit(items, kind, too_long, sizes)

    def submit(
        self,
        items: Sequence[Any],
        kind: Hashable = Kind(),
        too_long: TooLong | None = None,
        sizes: list[int] | None = None,
    ) -> asyncio.Future[Rows]:
        """``run`` without the coroutine: queue ``items`` (or start them at once) and return the future of their rows.

        Cancelling the future (the client went away) drops what is still queued. Arguments as ``run``'s.

        Raises:
            ApiError: 429 when the queue holds too many items or bytes.

        """
        if self.queued_inputs + len(items) > self.max_queue:
            raise self._full(f"{self.queued_inputs} inputs queued (limit {self.max_queue})")
        sizes = sizes if sizes is not None else [characters(item) for item in items]
        self.reserve(sum(sizes))
        loop = asyncio.get_running_loop()
        request = _Request(items, sizes, kind, too_long, loop.create_future(), self._in_flight > 0)
        alone = not self._live_requests()  # read before queueing: nothing waits ahead of this request
        self._requests.append(request)
        self.queued_inputs += len(items)
        if alone and not self._slots.locked() and not self._waits(request, min(len(items), CYCLE_INPUTS)):
            # At the end of this turn of the loop, not now: requests that arrived with this one (handled in the
            # same turn) share its cycle, as they would the batching task's.
            loop.call_soon(self._start_now, loop)
        else:
            self._wakeup.set()
        return request.future

    async def embed(self, texts: list[str], kind: Kind = Kind(), truncate: bool = True) -> Embedding:
        """``run`` for a Batcher built from an Encoder: vectors, and a 413 naming ``inputs[i]`` when too long.

        Raises:
            ApiError: 429 when the queue is full; 413 when ``truncate`` is false and a text has more tokens than
                the model takes.

        """
        if self.encoder is None:
            raise TypeError("Batcher.embed needs a Batcher built from an Encoder; call run()")
        too_long = None if truncate else functools.partial(input_too_long, self.encoder.max_seq_length)
        rows = await self.run(texts, kind, too_long)
        return Embedding(rows.values, rows.tokens, rows.truncated)

    async def call(self, work: Callable[[], T], size: int) -> T:
        """Run ``work`` on one of the model's worker threads (a cycle slot), ``size`` counted in the queue budget.

        For work beside the model's (``/tokenize``) that must not outrun the same limits.

        Raises:
            ApiError: 429 when the queue budget is full.

        """
        self.reserve(size)
        try:
            async with self._slots:
                return await asyncio.get_running_loop().run_in_executor(self._executor, work)
        finally:
            self.release(size)

    @staticmethod
    def _full(what: str) -> ApiError:
        return ApiError(
            429,
            f"the server has {what}; retry shortly",
            error_type="rate_limit_error",
            code="queue_full",
            headers={"Retry-After": "1"},
        )

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._live_requests():  # no slot is held while waiting: ``call`` may use them all
                self._wakeup.clear()
                await self._wakeup.wait()
            await self._slots.acquire()
            slices = await self._next_cycle()
            if not slices:  # every waiting client went away meanwhile
                self._slots.release()
                continue
            self._launch(slices, loop)

    def _start_now(self, loop: asyncio.AbstractEventLoop) -> None:
        """A cycle for what ``submit`` found alone (see the module's doc); the batching task takes any rest."""
        if self._live_requests() and not self._slots.locked():
            # A free slot is acquired without suspending, so the coroutine runs to its end here; should it
            # suspend after all, it is closed (the semaphore's waiters as they were) and the task takes over.
            acquiring = self._slots.acquire()
            try:
                acquiring.send(None)
            except StopIteration:
                self._launch(self._take(CYCLE_INPUTS), loop)
            else:
                acquiring.close()
        if self._requests:  # what the cycle did not take, or everything when no slot was free after all
            self._wakeup.set()

    def _waits(self, first: _Request, size: int) -> bool:
        """Whether a cycle of ``size`` items starting with ``first`` waits for more (see the module's doc)."""
        others_busy = self._in_flight >= self.workers - 1
        return first.behind_a_cycle and others_busy and size < CYCLE_INPUTS and self.max_wait_s > 0

    def _launch(self, slices: list[_Slice], loop: asyncio.AbstractEventLoop) -> None:
        """Run a cycle on a worker thread (its slot is held); ``_finish`` runs on the loop when it is done."""
        self._in_flight += 1
        self._executor.submit(self._cycle, slices, loop)

    async def _next_cycle(self) -> list[_Slice]:
        if not self._live_requests():
            return []
        first = self._requests[0]
        slices = self._take(CYCLE_INPUTS)
        size = sum(s.end - s.start for s in slices)
        if self._waits(first, size):
            remaining = first.arrived + self.max_wait_s - time.perf_counter()
            if remaining > 0:
                await asyncio.sleep(remaining)
            slices += self._take(CYCLE_INPUTS - size)
        return slices

    def _live_requests(self) -> bool:
        """Drop requests at the front whose client went away, and say whether any remains."""
        while self._requests and self._requests[0].future.done():
            self._unqueue(self._requests.popleft())
        return bool(self._requests)

    def _unqueue(self, request: _Request) -> None:
        """Stop counting the items of ``request`` that no cycle took."""
        self.queued_inputs -= len(request.items) - request.handed_out
        self.release(sum(request.sizes[request.handed_out :]))
        request.handed_out = len(request.items)

    def _take(self, room: int) -> list[_Slice]:
        """Slices of up to SLICE items, round robin over the waiting requests, at most ``room`` items in all."""
        taken: list[_Slice] = []
        while room > 0 and self._live_requests():
            request = self._requests.popleft()
            start = request.handed_out
            end = start + min(SLICE, len(request.items) - start, room)
            taken.append(_Slice(request, start, end))
            request.handed_out, request.running = end, request.running + 1
            self.queued_inputs -= end - start
            self.release(sum(request.sizes[start:end]))
            room -= end - start
            if end < len(request.items):
                self._requests.append(request)  # back of the line: the other requests' turn first
        return taken

    def _cycle(self, slices: list[_Slice], loop: asyncio.AbstractEventLoop) -> None:
        """On a worker thread: compute, then hand the rows (or the error) to ``_finish`` on the loop directly.

        Scheduling ``_finish`` from here, rather than through ``run_in_executor``'s future and a done callback,
        saves the loop one turn per cycle before the request's own task wakes.
        """
        rows: list[Rows] | None = None
        error: BaseException | None = None
        try:
            rows = self._compute(slices)
        except BaseException as exc:  # whatever the model raises fails the cycle's requests, never the server
            error = exc
        loop.call_soon_threadsafe(self._finish, slices, rows, error)

    def _compute(self, slices: list[_Slice]) -> list[Rows]:
        """On an executor thread: one compute call per kind of request, split back into slices."""
        done: dict[int, Rows] = {}
        for kind in dict.fromkeys(s.request.kind for s in slices):
            group = [i for i, s in enumerate(slices) if s.request.kind == kind]
            items = [item for i in group for item in slices[i].items]
            out = self.compute(items, kind)
            self._observe(len(items), sum(out.tokens))
            start = 0
            for i in group:
                end = start + len(slices[i].items)
                done[i] = Rows(out.values[start:end], out.tokens[start:end], out.truncated[start:end])
                start = end
        return [done[i] for i in range(len(slices))]

    def _finish(self, slices: list[_Slice], rows: list[Rows] | None, error: BaseException | None) -> None:
        self._in_flight -= 1
        self._slots.release()
        self.failed_cycles = self.failed_cycles + 1 if error is not None else 0
        for i, piece in enumerate(slices):
            request = piece.request
            request.running -= 1
            if request.future.done():
                continue  # the client went away, or another slice failed the request
            if error is not None:
                self._fail(request, error)
                continue
            assert rows is not None  # no error: the cycle computed every slice's rows
            result = rows[i]
            cut = next((k for k, truncated in enumerate(result.truncated) if truncated), None)
            if request.too_long is not None and cut is not None:
                self._fail(request, request.too_long(piece.start + cut))
                continue
            if piece.start == 0 and piece.end == len(request.items):  # the whole request in one slice: no copy
                values = np.ascontiguousarray(result.values, dtype=np.float32)  # orjson writes C-contiguous rows
                request.future.set_result(Rows(values, result.tokens, result.truncated))
                continue
            if request.values is None:
                request.values = np.empty((len(request.items), result.values.shape[1]), dtype=np.float32)
                request.tokens = [0] * len(request.items)
                request.truncated = [False] * len(request.items)
            request.values[piece.start : piece.end] = result.values
            request.tokens[piece.start : piece.end] = result.tokens
            request.truncated[piece.start : piece.end] = result.truncated
            if request.complete:
                request.future.set_result(Rows(request.values, request.tokens, request.truncated))

    def _fail(self, request: _Request, error: BaseException) -> None:
        request.future.set_exception(error)
        self._unqueue(request)  # its slices still queued are dropped
