"""Dynamic batching per input: every request's texts in one queue, model cycles formed from slices of them.

A request is cut into slices of ``SLICE`` texts. A cycle takes slices round robin over the waiting requests, up
to ``CYCLE_INPUTS`` texts, and makes one ``Encoder.embed`` call per kind of request (prompt, normalization,
dimensions) on an executor thread. So a large request uses every idle cycle, and a small one that arrives
meanwhile gets into the next cycle instead of waiting for the large one to finish. Rows return in each request's
order once all its slices are done.

When the model is idle, a request starts at once. A cycle waits (up to ``max_wait_ms`` from its oldest request)
for more work only when it is short, its first request queued behind a running cycle, and no other cycle slot
is idle (an idle slot would take the newcomers anyway).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from embedrt.encoder import Embedding, Encoder
from embedrt.serve.errors import ApiError

# Texts per model cycle, which bounds what a small request waits behind large ones. One-sentence p99 beside two
# 1,024-text requests (int8, 2 cycles x 1 thread; one run each): 193 ms with 64, 150 ms with 32, at the same
# sentences/s in batches of 32 (1,463 and 1,426) and one-sentence requests/s at concurrency 32 (894 and 901).
CYCLE_INPUTS = 32
SLICE = 16  # texts a request puts into a cycle before the next waiting request's turn
# Texts per onnxruntime call inside a cycle. A cycle holds a few requests' texts, not a whole sorted corpus, so
# small batches keep padding low: 32-sentence requests at concurrency 4 (int8, 2 cycles x 1 thread) ran at
# 1,397-1,459 sentences/s with 32, 1,540 with 16, 1,647-1,675 with 8 and 1,632 with 4 (one run each).
ENCODE_BATCH_SIZE = 8
# /health answers 503 after this many model cycles failed in a row.
FAILED_CYCLES_UNHEALTHY = 3


def _ignore(inputs: int, tokens: int) -> None:
    """No metrics."""


@dataclass(frozen=True)
class Kind:
    """What a request asks beyond its texts; requests of one kind share an ``Encoder.embed`` call."""

    prompt: str = ""
    normalize: bool | None = None
    dimensions: int | None = None


@dataclass
class _Request:
    texts: list[str]
    kind: Kind
    truncate: bool
    future: asyncio.Future[Embedding]
    behind_a_cycle: bool  # a cycle was running when it arrived: the server is under load
    arrived: float = field(default_factory=time.perf_counter)
    handed_out: int = 0  # texts given to cycles so far
    running: int = 0  # slices in cycles that have not finished
    vectors: np.ndarray | None = None
    tokens: list[int] = field(default_factory=list)
    truncated: list[bool] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.handed_out == len(self.texts) and self.running == 0


@dataclass(frozen=True)
class _Slice:
    request: _Request
    start: int
    end: int

    @property
    def texts(self) -> list[str]:
        return self.request.texts[self.start : self.end]


class Batcher:
    """The queue and the task that feeds the model. ``await embed(...)`` from request handlers."""

    def __init__(
        self,
        encoder: Encoder,
        max_queue: int,
        max_wait_ms: float,
        workers: int = 1,
        observe: Callable[[int, int], None] | None = None,
        max_queue_bytes: int = 1 << 62,
    ) -> None:
        self.encoder = encoder
        self.max_queue = max_queue
        self.max_queue_bytes = max_queue_bytes
        self.max_wait_s = max_wait_ms / 1000.0
        self.workers = workers
        self.queued_inputs = 0
        self.queued_bytes = 0  # characters of queued texts, plus bodies being read (``reserve``)
        self.failed_cycles = 0  # in a row
        self._observe = observe if observe is not None else _ignore
        self._requests: deque[_Request] = deque()
        self._wakeup = asyncio.Event()
        self._in_flight = 0
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="embedrt-serve")
        self._slots = asyncio.Semaphore(workers)
        self._task: asyncio.Task[None] | None = None

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

    async def embed(self, texts: list[str], kind: Kind = Kind(), truncate: bool = True) -> Embedding:
        """Queue ``texts`` and wait for their vectors; a cancelled wait (client gone) drops what is still queued.

        Raises:
            ApiError: 429 when the queue holds too many texts or bytes; 413 when ``truncate`` is false and a text
                has more tokens than the model takes.

        """
        if self.queued_inputs + len(texts) > self.max_queue:
            raise self._full(f"{self.queued_inputs} inputs queued (limit {self.max_queue})")
        self.reserve(sum(map(len, texts)))
        loop = asyncio.get_running_loop()
        request = _Request(texts, kind, truncate, loop.create_future(), self._in_flight > 0)
        self._requests.append(request)
        self.queued_inputs += len(texts)
        self._wakeup.set()
        return await request.future

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
            await self._slots.acquire()
            slices = await self._next_cycle()
            self._in_flight += 1
            cycle = loop.run_in_executor(self._executor, self._compute, slices)
            cycle.add_done_callback(functools.partial(self._finish, slices))

    async def _next_cycle(self) -> list[_Slice]:
        while not self._live_requests():
            self._wakeup.clear()
            await self._wakeup.wait()
        first = self._requests[0]
        slices = self._take(CYCLE_INPUTS)
        size = sum(s.end - s.start for s in slices)
        others_busy = self._in_flight >= self.workers - 1
        if first.behind_a_cycle and others_busy and size < CYCLE_INPUTS and self.max_wait_s > 0:
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
        """Stop counting the texts of ``request`` that no cycle took."""
        left = len(request.texts) - request.handed_out
        self.queued_inputs -= left
        self.release(sum(len(t) for t in request.texts[request.handed_out :]) if left else 0)
        request.handed_out = len(request.texts)

    def _take(self, room: int) -> list[_Slice]:
        """Slices of up to SLICE texts, round robin over the waiting requests, at most ``room`` texts in all."""
        taken: list[_Slice] = []
        while room > 0 and self._live_requests():
            request = self._requests.popleft()
            start = request.handed_out
            end = start + min(SLICE, len(request.texts) - start, room)
            taken.append(_Slice(request, start, end))
            request.handed_out, request.running = end, request.running + 1
            self.queued_inputs -= end - start
            self.release(sum(len(t) for t in request.texts[start:end]))
            room -= end - start
            if end < len(request.texts):
                self._requests.append(request)  # back of the line: the other requests' turn first
        return taken

    def _compute(self, slices: list[_Slice]) -> list[Embedding]:
        """On an executor thread: one ``Encoder.embed`` per kind of request, split back into slices."""
        done: dict[int, Embedding] = {}
        for kind in dict.fromkeys(s.request.kind for s in slices):
            group = [i for i, s in enumerate(slices) if s.request.kind == kind]
            texts = [text for i in group for text in slices[i].texts]
            out = self.encoder.embed(
                texts,
                prompt=kind.prompt,
                normalize=kind.normalize,
                dimensions=kind.dimensions,
                batch_size=ENCODE_BATCH_SIZE,
            )
            self._observe(len(texts), sum(out.tokens))
            start = 0
            for i in group:
                end = start + len(slices[i].texts)
                done[i] = Embedding(out.vectors[start:end], out.tokens[start:end], out.truncated[start:end])
                start = end
        return [done[i] for i in range(len(slices))]

    def _finish(self, slices: list[_Slice], cycle: asyncio.Future[list[Embedding]]) -> None:
        self._in_flight -= 1
        self._slots.release()
        error = cycle.exception()
        self.failed_cycles = self.failed_cycles + 1 if error is not None else 0
        for i, piece in enumerate(slices):
            request = piece.request
            request.running -= 1
            if request.future.done():
                continue  # the client went away, or another slice failed the request
            if error is not None:
                self._fail(request, error)
                continue
            result = cycle.result()[i]
            too_long = next((k for k, cut in enumerate(result.truncated) if cut), None)
            if not request.truncate and too_long is not None:
                self._fail(request, _too_long(piece.start + too_long, result.tokens[too_long], self.encoder))
                continue
            if request.vectors is None:
                request.vectors = np.empty((len(request.texts), result.vectors.shape[1]), dtype=np.float32)
                request.tokens = [0] * len(request.texts)
                request.truncated = [False] * len(request.texts)
            request.vectors[piece.start : piece.end] = result.vectors
            request.tokens[piece.start : piece.end] = result.tokens
            request.truncated[piece.start : piece.end] = result.truncated
            if request.complete:
                request.future.set_result(Embedding(request.vectors, request.tokens, request.truncated))

    def _fail(self, request: _Request, error: BaseException) -> None:
        request.future.set_exception(error)
        self._unqueue(request)  # its slices still queued are dropped


def _too_long(index: int, tokens: int, encoder: Encoder) -> ApiError:
    limit = encoder.max_seq_length
    return ApiError(
        413,
        f"inputs[{index}] has more than {limit - 2} tokens besides [CLS] and [SEP] (max_seq_length {limit}); "
        "send it shorter or with truncate true",
        param=f"inputs[{index}]",
        code="input_too_long",
    )
