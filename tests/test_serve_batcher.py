"""The batcher in-process with the real tiny Encoder (and a compute function over pairs): slices, round robin,
top-up, budgets, failures.

The model is held with a gate (a threading.Event), so the tests order events without sleeping on timings.
"""

from __future__ import annotations

import asyncio
import functools
import threading

import numpy as np
import pytest

from embedrt import Encoder
from embedrt.serve.batcher import CYCLE_INPUTS, FAILED_CYCLES_UNHEALTHY, SLICE, Batcher, Kind, Rows
from embedrt.serve.errors import ApiError


class Gated:
    """Wraps the tiny Encoder's ``embed``: records each call's texts and thread, and can hold calls at a gate."""

    def __init__(self, encoder: Encoder) -> None:
        self.encoder = encoder
        self.calls: list[list[str]] = []
        self.threads: list[str] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Semaphore(0)
        self.fail = False
        self.real = encoder.embed
        encoder.embed = self.embed

    def embed(self, texts, **kwargs):
        self.calls.append(list(texts))
        self.threads.append(threading.current_thread().name)
        self.entered.release()
        self.gate.wait(30)
        if self.fail:
            raise RuntimeError("the model failed")
        return self.real(texts, **kwargs)

    async def wait_entered(self) -> None:
        """Until a call reached the model (it may be held at the gate)."""
        await asyncio.get_running_loop().run_in_executor(None, self.entered.acquire)


@pytest.fixture
def model(tiny_export):
    return Gated(Encoder.load(tiny_export))


async def _started(batcher: Batcher) -> Batcher:
    batcher.start()
    return batcher


def test_lone_request_runs_at_once_and_queued_ones_share_a_cycle(model):
    async def run():
        patient = await _started(Batcher(model.encoder, max_queue=100, max_wait_ms=10_000))
        await patient.embed(["alone"])  # would take 10 s if a lone request waited
        await patient.stop()
        batcher = await _started(Batcher(model.encoder, max_queue=100, max_wait_ms=0))
        model.gate.clear()
        first = asyncio.ensure_future(batcher.embed(["first"]))
        await model.wait_entered()  # "first" holds the model: the next three queue behind it
        rest = [asyncio.ensure_future(batcher.embed([f"queued {i}", f"more {i}"])) for i in range(3)]
        await asyncio.sleep(0)
        model.gate.set()
        await first
        rest = await asyncio.gather(*rest)
        await batcher.stop()
        return rest

    rest = asyncio.run(run())
    queued = ["queued 0", "more 0", "queued 1", "more 1", "queued 2", "more 2"]
    assert model.calls == [["alone"], ["first"], queued]
    expected = model.real(["queued 1", "more 1"])
    np.testing.assert_allclose(rest[1].vectors, expected.vectors, atol=1e-6)
    assert rest[1].tokens == expected.tokens


def test_a_large_request_is_sliced_and_a_small_one_interleaves(model):
    big = [f"big text {i}" for i in range(10 * CYCLE_INPUTS)]

    async def run():
        batcher = await _started(Batcher(model.encoder, max_queue=10_000, max_wait_ms=0))
        model.gate.clear()
        large = asyncio.ensure_future(batcher.embed(big))
        await model.wait_entered()  # the first cycle holds the model
        small = asyncio.ensure_future(batcher.embed(["small"]))
        await asyncio.sleep(0)
        model.gate.set()
        results = await asyncio.gather(large, small)
        await batcher.stop()
        return results

    large, _ = asyncio.run(run())
    assert all(len(call) <= CYCLE_INPUTS for call in model.calls)  # no cycle past its budget
    assert model.calls[0] == big[:CYCLE_INPUTS]
    assert "small" in model.calls[1]  # the next cycle, not after the large request's 9 remaining cycles
    assert model.calls[1].index("small") <= SLICE
    assert sum(len(c) for c in model.calls) == len(big) + 1  # every text exactly once
    np.testing.assert_allclose(large.vectors, model.real(big).vectors, atol=1e-6)  # rows in request order


def test_a_cycle_waits_for_more_only_when_other_slots_are_busy(model):
    """Top-up: a short cycle behind a running one waits and then takes slices, never a whole large request."""

    async def run():
        batcher = await _started(Batcher(model.encoder, max_queue=10_000, max_wait_ms=50, workers=1))
        model.gate.clear()
        first = asyncio.ensure_future(batcher.embed(["first"]))
        await model.wait_entered()
        ten = asyncio.ensure_future(batcher.embed([f"ten {i}" for i in range(10)]))
        await asyncio.sleep(0)
        huge = asyncio.ensure_future(batcher.embed([f"huge {i}" for i in range(2048)]))
        model.gate.set()
        await asyncio.gather(first, ten, huge)
        await batcher.stop()

    asyncio.run(run())
    second = model.calls[1]
    assert second[:10] == [f"ten {i}" for i in range(10)]
    assert len(second) == CYCLE_INPUTS  # topped up with slices of the large request, up to the budget

    async def idle_slot():
        batcher = await _started(Batcher(model.encoder, max_queue=100, max_wait_ms=60_000, workers=3))
        model.entered = threading.Semaphore(0)
        model.gate.clear()
        first = asyncio.ensure_future(batcher.embed(["holds slot 1"]))
        await model.wait_entered()
        second = asyncio.ensure_future(batcher.embed(["queued behind it"]))
        # A third slot is idle, so this cycle starts at once instead of waiting the 60 s of max_wait_ms.
        await asyncio.wait_for(model.wait_entered(), 30)
        model.gate.set()
        await asyncio.gather(first, second)
        await batcher.stop()

    asyncio.run(idle_slot())


def test_a_cancelled_request_is_dropped_from_the_queue(model):
    async def run():
        batcher = await _started(Batcher(model.encoder, max_queue=100, max_wait_ms=0))
        model.gate.clear()
        first = asyncio.ensure_future(batcher.embed(["first"]))
        await model.wait_entered()
        gone = asyncio.ensure_future(batcher.embed(["gone 1", "gone 2"]))
        kept = asyncio.ensure_future(batcher.embed(["kept"]))
        await asyncio.sleep(0)
        queued = (batcher.queued_inputs, batcher.queued_bytes)
        gone.cancel()  # what the app does when the client disconnects
        model.gate.set()
        await first
        await kept
        await batcher.stop()
        return queued, (batcher.queued_inputs, batcher.queued_bytes)

    queued, after = asyncio.run(run())
    assert queued == (3, len("gone 1gone 2kept")) and after == (0, 0)
    assert model.calls == [["first"], ["kept"]]


def test_full_queue_is_refused_at_once_by_texts_and_by_bytes(model):
    async def run():
        batcher = await _started(Batcher(model.encoder, max_queue=4, max_wait_ms=0, max_queue_bytes=100))
        model.gate.clear()
        running = asyncio.ensure_future(batcher.embed(["a", "b", "c", "d"]))
        await model.wait_entered()
        queued = asyncio.ensure_future(batcher.embed(["e", "f", "g"]))
        await asyncio.sleep(0)
        with pytest.raises(ApiError) as by_count:
            await batcher.embed(["h", "i"])
        with pytest.raises(ApiError) as by_bytes:
            await batcher.embed(["x" * 98])
        batcher.reserve(50)  # a body being read counts too
        with pytest.raises(ApiError) as reading:
            batcher.reserve(48)
        batcher.release(50)
        model.gate.set()
        await asyncio.gather(running, queued)
        await batcher.stop()
        return by_count.value, by_bytes.value, reading.value, batcher.queued_bytes

    by_count, by_bytes, reading, left = asyncio.run(run())
    assert by_count.status == 429 and by_count.headers == {"Retry-After": "1"}
    assert "3 inputs queued (limit 4)" in by_count.message
    assert by_bytes.status == reading.status == 429 and "limit 100" in by_bytes.message
    assert left == 0


def test_inference_runs_off_the_event_loop(model):
    async def run():
        batcher = await _started(Batcher(model.encoder, max_queue=10, max_wait_ms=0))
        await batcher.embed(["x"])
        await batcher.stop()

    asyncio.run(run())
    assert model.threads and model.threads[0].startswith("embedrt-serve")


def test_kinds_and_truncation(model):
    async def run():
        batcher = await _started(Batcher(model.encoder, max_queue=100, max_wait_ms=0))
        cut = await batcher.embed(["a text"], Kind(normalize=False, dimensions=4))
        with pytest.raises(ApiError) as too_long:
            await batcher.embed(["short", "word " * 100], truncate=False)
        fine = await batcher.embed(["word " * 100])
        await batcher.stop()
        return cut, too_long.value, fine

    cut, too_long, fine = asyncio.run(run())
    np.testing.assert_allclose(cut.vectors, model.real(["a text"], normalize=False).vectors[:, :4], atol=1e-6)
    assert too_long.status == 413 and too_long.param == "inputs[1]"
    assert fine.tokens == [64]  # truncated to max_seq_length


def test_failing_cycles_fail_their_requests_and_then_health(model):
    async def run():
        batcher = await _started(Batcher(model.encoder, max_queue=100, max_wait_ms=0))
        model.fail = True
        errors = []
        for _ in range(FAILED_CYCLES_UNHEALTHY):
            assert batcher.alive
            with pytest.raises(RuntimeError) as failed:
                await batcher.embed(["x"])
            errors.append(failed.value)
        unhealthy = not batcher.alive
        model.fail = False
        await batcher.embed(["x"])
        healthy_again = batcher.alive
        await batcher.stop()
        return errors, unhealthy, healthy_again

    errors, unhealthy, healthy_again = asyncio.run(run())
    assert all("the model failed" in str(e) for e in errors)
    assert unhealthy and healthy_again


class PairModel:
    """A compute function over (query, document) pairs, as a cross-encoder's: one value per pair, held at a gate."""

    def __init__(self) -> None:
        self.calls: list[tuple[list, object]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Semaphore(0)

    def __call__(self, pairs, kind):
        self.calls.append((list(pairs), kind))
        self.entered.release()
        self.gate.wait(30)
        values = np.array([[float(len(a) * 1000 + len(b))] for a, b in pairs], dtype=np.float32)
        return Rows(values, [len(a) + len(b) + 3 for a, b in pairs], [len(b) > 50 for _, b in pairs])


def test_a_compute_function_over_pairs_shares_the_queue_and_its_budgets():
    from embedrt.serve.rerank import pair_sizes, pair_too_long

    model = PairModel()
    query = "q" * 10
    documents = [f"document {i}" for i in range(40)]
    pairs = [(query, d) for d in documents]

    async def run():
        batcher = await _started(Batcher(model, max_queue=100, max_wait_ms=0))
        model.gate.clear()
        first = asyncio.ensure_future(batcher.run([("a", "b")], "rerank"))
        await asyncio.get_running_loop().run_in_executor(None, model.entered.acquire)
        queued = asyncio.ensure_future(batcher.run(pairs, "rerank", None, pair_sizes(query, documents)))
        default = asyncio.ensure_future(batcher.run([("ab", "cde")], "rerank"))
        await asyncio.sleep(0)
        held = (batcher.queued_inputs, batcher.queued_bytes)
        model.gate.set()
        results = await asyncio.gather(first, queued, default)
        with pytest.raises(ApiError) as too_long:
            await batcher.run(
                [("q", "short"), ("q", "x" * 60)], "rerank", functools.partial(pair_too_long, "texts", 64)
            )
        with pytest.raises(TypeError, match="built from an Encoder"):
            await batcher.embed(["a text"])
        await batcher.stop()
        return held, results, too_long.value, (batcher.queued_inputs, batcher.queued_bytes)

    held, (_, rows, default), too_long, after = asyncio.run(run())
    # the query's characters count once for the request, a default item's are both of its texts'
    assert held == (41, len(query) + sum(map(len, documents)) + len("abcde")) and after == (0, 0)
    assert rows.values[:, 0].tolist() == [len(query) * 1000 + len(d) for d in documents]  # in request order
    assert rows.tokens == [len(query) + len(d) + 3 for d in documents] and default.values.shape == (1, 1)
    assert all(len(call) <= CYCLE_INPUTS and kind == "rerank" for call, kind in model.calls)
    assert sum(len(call) for call, _ in model.calls) == 1 + 40 + 1 + 2
    assert too_long.status == 413 and too_long.param == "texts[1]" and "max_length 64" in too_long.message


def test_a_lone_request_starts_without_the_batching_task(model):
    """A lone request is handed to a worker by ``submit`` itself; the batching task is never started here."""

    async def run():
        batcher = Batcher(model.encoder, max_queue=10_000, max_wait_ms=60_000, workers=1)  # no start()
        # Without the fast path these would wait forever for the task: 30 s is a failure, not a timing.
        alone = await asyncio.wait_for(batcher.embed(["alone"]), 30)
        large = await asyncio.wait_for(batcher.embed([f"large {i}" for i in range(CYCLE_INPUTS)]), 30)
        await batcher.stop()
        return alone, large

    alone, large = asyncio.run(run())
    assert model.calls == [["alone"], [f"large {i}" for i in range(CYCLE_INPUTS)]]
    np.testing.assert_allclose(alone.vectors, model.real(["alone"]).vectors, atol=1e-6)
    assert len(large.vectors) == CYCLE_INPUTS


def test_requests_behind_a_cycle_are_left_to_the_batching_task_in_order(model):
    """Only a request with nothing queued ahead, an idle slot and no reason to wait skips the batching task."""

    async def run():
        batcher = Batcher(model.encoder, max_queue=100, max_wait_ms=60_000, workers=2)  # started below
        model.gate.clear()
        first = batcher.submit(["first"])  # alone: started at once, held at the gate
        await model.wait_entered()
        behind = batcher.submit(["behind"])  # behind a cycle with no other idle slot: it may wait for company
        model.gate.set()
        await asyncio.wait_for(first, 30)
        after = batcher.submit(["after"])  # a slot is idle now, but "behind" is queued ahead of it
        queued = batcher.queued_inputs
        batcher.start()
        await asyncio.gather(behind, after)
        await batcher.stop()
        return queued

    assert asyncio.run(run()) == 2
    assert model.calls == [["first"], ["behind", "after"]]  # one cycle, in arrival order


def test_a_large_lone_request_continues_on_the_batching_task(model):
    """The first cycle of a lone large request starts in ``submit``; the batching task forms the rest."""
    texts = [f"text {i}" for i in range(3 * CYCLE_INPUTS + 5)]

    async def run():
        batcher = await _started(Batcher(model.encoder, max_queue=10_000, max_wait_ms=60_000, workers=2))
        out = await batcher.embed(texts)
        await batcher.stop()
        return out

    out = asyncio.run(run())
    assert model.calls[0] == texts[:CYCLE_INPUTS] and sum(map(len, model.calls)) == len(texts)
    np.testing.assert_allclose(out.vectors, model.real(texts).vectors, atol=1e-6)  # rows in request order


def test_requests_arriving_in_one_turn_share_the_lone_requests_cycle(model):
    """The lone request's cycle starts at the end of the loop's turn, with what arrived beside it."""

    async def run():
        batcher = Batcher(model.encoder, max_queue=100, max_wait_ms=60_000, workers=2)  # no start()
        together = [batcher.submit([f"burst {i}"]) for i in range(3)]  # one turn, as one epoll batch gives
        await asyncio.wait_for(asyncio.gather(*together), 30)
        await batcher.stop()

    asyncio.run(run())
    assert model.calls == [["burst 0", "burst 1", "burst 2"]]
