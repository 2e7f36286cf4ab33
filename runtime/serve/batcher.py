"""Dynamic batching: every request's texts in one queue, model cycles formed from it and run off the event loop.

A cycle takes whole requests from the queue (up to ``CYCLE_INPUTS`` texts; a larger request goes alone) and makes
one ``Encoder.encode`` call of them, which groups the texts by length into onnxruntime batches of at most
``max_batch_tokens`` tokens. When the model is idle, a request starts at once (no wait under no load); when
requests queued while a cycle ran, a short cycle waits up to ``max_wait_ms`` from its oldest request for more.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from embedrt.encoder import Encoder
from embedrt.serve.errors import ApiError

CYCLE_INPUTS = 256  # texts per model cycle: enough to fill batches, few enough that no request waits long
# Texts per onnxruntime call inside a cycle. A cycle holds a few requests' texts, not a whole sorted corpus, so
# small batches keep padding low: 32-sentence requests at concurrency 4 (int8, 2 cycles x 1 thread) ran at
# 1,397-1,459 sentences/s with 32, 1,540 with 16, 1,647-1,675 with 8 and 1,632 with 4 (one run each).
ENCODE_BATCH_SIZE = 8
_UNLIMITED = 1 << 30


def _ignore(inputs: int, tokens: int) -> None:
    """No metrics."""


@dataclass
class Embedded:
    """A request's pooled, unnormalized vectors (input order) and the tokens each text was embedded with."""

    vectors: np.ndarray
    tokens: list[int]


@dataclass
class _Job:
    texts: list[str]
    prompt: str
    truncate: bool
    future: asyncio.Future[Embedded]
    behind_a_cycle: bool  # the model was busy when it arrived: the server is under load
    arrived: float = field(default_factory=time.perf_counter)


class Batcher:
    """The queue and the task that feeds the model. ``await embed(...)`` from request handlers."""

    def __init__(
        self,
        encoder: Encoder,
        max_queue: int,
        max_wait_ms: float,
        workers: int = 1,
        observe: Callable[[int, int], None] | None = None,
    ) -> None:
        self.encoder = encoder
        self.max_queue = max_queue
        self.max_wait_s = max_wait_ms / 1000.0
        self.workers = workers
        self.queued_inputs = 0
        self._observe = observe if observe is not None else _ignore
        self._jobs: deque[_Job] = deque()
        self._wakeup = asyncio.Event()
        self._in_flight = 0
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="embedrt-serve")
        self._slots = asyncio.Semaphore(workers)
        self._task: asyncio.Task[None] | None = None

    @property
    def alive(self) -> bool:
        """Whether the batching task runs (the readiness probe)."""
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start the batching task on the running loop."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="embedrt-batcher")

    async def stop(self) -> None:
        """Stop the task once the queue is empty (the server has stopped taking requests)."""
        while self._jobs or self._in_flight:
            await asyncio.sleep(0.01)
        if self._task is not None:
            self._task.cancel()
        self._executor.shutdown(wait=True)

    async def embed(self, texts: list[str], prompt: str = "", truncate: bool = True) -> Embedded:
        """Queue ``texts`` and wait for their vectors; a cancelled wait (client gone) drops them from the queue."""
        if self.queued_inputs + len(texts) > self.max_queue:
            raise ApiError(
                429,
                f"the server has {self.queued_inputs} inputs queued (limit {self.max_queue}); retry shortly",
                error_type="rate_limit_error",
                code="queue_full",
                headers={"Retry-After": "1"},
            )
        job = _Job(texts, prompt, truncate, asyncio.get_running_loop().create_future(), self._in_flight > 0)
        self._jobs.append(job)
        self.queued_inputs += len(texts)
        self._wakeup.set()
        return await job.future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._slots.acquire()
            jobs = await self._next_cycle()
            self._in_flight += 1
            cycle = loop.run_in_executor(self._executor, self._compute, jobs)
            cycle.add_done_callback(functools.partial(self._finish, jobs))

    async def _next_cycle(self) -> list[_Job]:
        while not self._live_jobs():
            self._wakeup.clear()
            await self._wakeup.wait()
        jobs = self._take()
        size = sum(len(j.texts) for j in jobs)
        if jobs[0].behind_a_cycle and size < CYCLE_INPUTS and self.max_wait_s > 0:
            remaining = jobs[0].arrived + self.max_wait_s - time.perf_counter()
            if remaining > 0:
                await asyncio.sleep(remaining)
            jobs += self._take(CYCLE_INPUTS - size)
        return jobs

    def _live_jobs(self) -> bool:
        while self._jobs and self._jobs[0].future.done():  # cancelled: the client went away
            self.queued_inputs -= len(self._jobs.popleft().texts)
        return bool(self._jobs)

    def _take(self, room: int = CYCLE_INPUTS) -> list[_Job]:
        """Whole requests from the front of the queue, at least one, at most ``room`` texts after the first."""
        taken: list[_Job] = []
        while self._live_jobs() and (not taken or len(self._jobs[0].texts) <= room):
            job = self._jobs.popleft()
            self.queued_inputs -= len(job.texts)
            room -= len(job.texts)
            taken.append(job)
        return taken

    def _compute(self, jobs: list[_Job]) -> list[Embedded | ApiError]:
        """On an executor thread: token counts, the 413s of truncate=false, then one encode per prompt."""
        encoder, limit = self.encoder, self.encoder.max_seq_length
        done: dict[int, Embedded | ApiError] = {}
        for i, job in enumerate(jobs):
            texts = [job.prompt + t for t in job.texts] if job.prompt else job.texts
            lengths = [len(ids) for ids in encoder.tokenizer.encode_batch(texts, _UNLIMITED)]
            too_long = next((k for k, n in enumerate(lengths) if n > limit), None)
            if job.truncate or too_long is None:
                done[i] = Embedded(np.empty(0), [min(n, limit) for n in lengths])
            else:
                done[i] = ApiError(
                    413,
                    f"inputs[{too_long}] has {lengths[too_long]} tokens, more than max_seq_length {limit}; "
                    "send it shorter or with truncate true",
                    param=f"inputs[{too_long}]",
                    code="input_too_long",
                )
        ready = {i: r for i, r in done.items() if isinstance(r, Embedded)}
        for prompt in dict.fromkeys(jobs[i].prompt for i in ready):
            group = [i for i in ready if jobs[i].prompt == prompt]
            texts = [text for i in group for text in jobs[i].texts]
            vectors = encoder.encode(texts, batch_size=ENCODE_BATCH_SIZE, normalize_embeddings=False, prompt=prompt)
            self._observe(len(texts), sum(sum(ready[i].tokens) for i in group))
            start = 0
            for i in group:
                ready[i].vectors = vectors[start : start + len(jobs[i].texts)]
                start += len(jobs[i].texts)
        return [done[i] for i in range(len(jobs))]

    def _finish(self, jobs: list[_Job], done: asyncio.Future[list[Embedded | ApiError]]) -> None:
        self._in_flight -= 1
        self._slots.release()
        error = done.exception()
        for i, job in enumerate(jobs):
            if job.future.done():
                continue  # the client went away while its texts were embedded
            result: Any = error if error is not None else done.result()[i]
            if isinstance(result, BaseException):
                job.future.set_exception(result)
            else:
                job.future.set_result(result)
