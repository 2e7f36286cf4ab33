"""The transport wrapper of ``embedrt.serve.http``: small writes of one loop turn leave as one, in order."""

from __future__ import annotations

import asyncio

from embedrt.serve.http import _Transport


class Inner:
    """A transport that records what is written and whether it was closed."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.events: list[str] = []
        self.closing = False

    def write(self, data) -> None:
        self.writes.append(bytes(data))
        self.events.append("write")

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return 0

    def close(self) -> None:
        self.closing = True
        self.events.append("close")

    def abort(self) -> None:
        self.closing = True
        self.events.append("abort")


class Protocol:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.cycle = None  # no request in progress: close() closes at once


def _wrapped() -> tuple[_Transport, Inner]:
    inner = Inner()
    return _Transport(inner, Protocol(asyncio.get_running_loop())), inner  # type: ignore[arg-type]


def test_a_head_and_its_body_leave_in_one_write_at_the_end_of_the_turn():
    async def run():
        transport, inner = _wrapped()
        transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
        transport.write(memoryview(b'{"ok":true}'))
        held = (list(inner.writes), transport.get_write_buffer_size())
        await asyncio.sleep(0)
        return held, inner.writes

    (before, buffered), after = asyncio.run(run())
    assert before == [] and buffered == len(b"HTTP/1.1 200 OK\r\n\r\n" + b'{"ok":true}')
    assert after == [b'HTTP/1.1 200 OK\r\n\r\n{"ok":true}']


def test_a_large_write_goes_at_once_after_what_is_held():
    large = b"x" * (_Transport.HELD_BYTES + 1)

    async def run():
        transport, inner = _wrapped()
        transport.write(b"head")
        transport.write(large)
        sent = list(inner.writes)
        await asyncio.sleep(0)
        return sent, inner.writes

    sent, after = asyncio.run(run())
    assert sent == after == [b"head", large]  # in order, and nothing left to flush


def test_close_sends_what_is_held_first_and_abort_drops_it():
    async def run():
        transport, inner = _wrapped()
        transport.write(b"answer")
        transport.close()
        closed = list(inner.events), list(inner.writes)
        transport, aborted = _wrapped()
        transport.write(b"answer")
        transport.abort()
        await asyncio.sleep(0)
        return closed, aborted.events

    (events, writes), aborted = asyncio.run(run())
    assert events == ["write", "close"] and writes == [b"answer"]
    assert aborted == ["abort"]  # a reset connection sends nothing more
