"""The batcher in-process with the real tiny Encoder: requests share cycles, vanished clients' texts are dropped."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from embedrt import Encoder
from embedrt.serve.batcher import Batcher
from embedrt.serve.errors import ApiError


@pytest.fixture
def slow_encoder(tiny_export):
    """The tiny Encoder, recording each encode call's texts; a call holds the model for ``delay`` seconds."""
    encoder = Encoder.load(tiny_export)
    encoder.calls = []
    encoder.delay = 0.0
    encode = encoder.encode

    def recorded(texts, **kwargs):
        encoder.calls.append(list(texts))
        time.sleep(encoder.delay)
        return encode(texts, **kwargs)

    encoder.encode = recorded
    return encoder


def test_lone_request_runs_at_once_and_queued_ones_share_a_cycle(slow_encoder):
    async def run():
        patient = Batcher(slow_encoder, max_queue=100, max_wait_ms=10_000)
        patient.start()
        started = time.perf_counter()
        await patient.embed(["alone"])
        alone_s = time.perf_counter() - started
        await patient.stop()
        batcher = Batcher(slow_encoder, max_queue=100, max_wait_ms=0)
        batcher.start()
        slow_encoder.delay = 0.2
        first = asyncio.ensure_future(batcher.embed(["first"]))
        await asyncio.sleep(0.05)  # "first" is running: the next three queue behind it
        rest = await asyncio.gather(*(batcher.embed([f"queued {i}", f"more {i}"]) for i in range(3)))
        await first
        await batcher.stop()
        return alone_s, rest

    alone_s, rest = asyncio.run(run())
    assert alone_s < 5  # a lone request under no load does not wait the 10 s of max_wait_ms (not a speed check)
    queued = ["queued 0", "more 0", "queued 1", "more 1", "queued 2", "more 2"]
    assert slow_encoder.calls == [["alone"], ["first"], queued]
    expected = Encoder.encode(slow_encoder, ["queued 1", "more 1"], normalize_embeddings=False)
    np.testing.assert_allclose(rest[1].vectors, expected, atol=1e-6)
    assert rest[1].tokens == [len(ids) for ids in slow_encoder.tokenizer.encode_batch(["queued 1", "more 1"], 64)]


def test_a_cancelled_request_is_dropped_from_the_queue(slow_encoder):
    async def run():
        batcher = Batcher(slow_encoder, max_queue=100, max_wait_ms=0)
        batcher.start()
        slow_encoder.delay = 0.2
        first = asyncio.ensure_future(batcher.embed(["first"]))
        await asyncio.sleep(0.05)
        gone = asyncio.ensure_future(batcher.embed(["gone 1", "gone 2"]))
        kept = asyncio.ensure_future(batcher.embed(["kept"]))
        await asyncio.sleep(0.01)
        assert batcher.queued_inputs == 3
        gone.cancel()  # what the app does when the client disconnects
        await first
        await kept
        await batcher.stop()
        return batcher.queued_inputs

    assert asyncio.run(run()) == 0
    assert slow_encoder.calls == [["first"], ["kept"]]


def test_full_queue_is_refused_at_once(slow_encoder):
    async def run():
        batcher = Batcher(slow_encoder, max_queue=4, max_wait_ms=0)
        batcher.start()
        slow_encoder.delay = 0.2
        running = asyncio.ensure_future(batcher.embed(["a", "b", "c", "d"]))
        await asyncio.sleep(0.05)
        queued = asyncio.ensure_future(batcher.embed(["e", "f", "g"]))
        await asyncio.sleep(0)
        with pytest.raises(ApiError) as refused:
            await batcher.embed(["h", "i"])
        await asyncio.gather(running, queued)
        await batcher.stop()
        return refused.value

    refused = asyncio.run(run())
    assert refused.status == 429 and refused.headers == {"Retry-After": "1"}
    assert "3 inputs queued (limit 4)" in refused.message


def test_inference_runs_off_the_event_loop(slow_encoder):
    threads = []
    encode = slow_encoder.encode
    slow_encoder.encode = lambda texts, **kw: threads.append(threading.current_thread().name) or encode(texts, **kw)

    async def run():
        batcher = Batcher(slow_encoder, max_queue=10, max_wait_ms=0)
        batcher.start()
        await batcher.embed(["x"])
        await batcher.stop()

    asyncio.run(run())
    assert threads and threads[0].startswith("embedrt-serve")
