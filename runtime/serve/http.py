"""uvicorn's httptools protocol with the connection limits a server exposed to any client needs.

- **Request-head deadline.** uvicorn closes idle keep-alive connections only after a first response, so a client
  that connects and sends nothing (or half a request line) holds its socket, and a few thousand of them exhaust
  the file descriptors. Every request head must be complete within ``header_timeout`` seconds of the connection
  (or of the request's first byte, for the next request on a kept-alive connection).
- **Write deadline.** A client that stops reading its answer holds the answer's bytes in the send buffer for as
  long as it keeps the connection open. While output is waiting, the buffer must shrink at least once every
  ``write_timeout`` seconds; otherwise the connection is dropped.
- **Lingering close.** Closing a socket with unread request bytes makes the kernel send a reset, and a client
  still sending a large body then sees the reset instead of the 413 it was answered. When a response closes the
  connection before its request body has arrived, the server sends FIN, reads and discards what still comes for
  up to ``linger`` seconds, and closes then (or at the client's EOF), as other servers do.
- **Connection limit.** Past ``max_connections`` open connections (or requests in progress), requests get a 503
  with the same JSON error body and ``x-request-id`` as every other answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Callable
from types import FrameType
from typing import Any

import orjson
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from embedrt.serve.errors import ApiError
from embedrt.serve.request_ids import RequestIds

LINGER_S = 2.0  # how long a closing connection keeps reading (and discarding) a body still arriving


async def _busy(scope: Any, receive: Any, send: Any) -> None:
    """The answer past the connection limit: 503 with the server's JSON error body."""
    error = ApiError(
        503,
        "the server has too many open connections; retry shortly",
        error_type="server_error",
        code="too_many_connections",
    )
    body = orjson.dumps(error.body())
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
        (b"retry-after", b"1"),
    ]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": body})


_BUSY = RequestIds(_busy)


class _Transport:
    """The socket transport as uvicorn sees it: ``close`` lingers when the request body has not all arrived."""

    def __init__(self, inner: asyncio.Transport, protocol: Any) -> None:
        self._inner = inner
        self._protocol = protocol
        self.lingering = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def is_closing(self) -> bool:
        return self.lingering or self._inner.is_closing()

    def close(self) -> None:
        cycle = self._protocol.cycle
        if self.lingering or self._inner.is_closing() or cycle is None or not cycle.more_body:
            self._inner.close()
            return
        self.lingering = True  # data_received discards from now on
        try:
            self._inner.write_eof()  # FIN once the answer is flushed; the client can read it in full
        except (OSError, RuntimeError, NotImplementedError):
            self._inner.close()
            return
        self._inner.resume_reading()
        self._protocol.loop.call_later(LINGER_S, self._inner.close)

    def pause_reading(self) -> None:
        if not self.lingering:
            self._inner.pause_reading()


def _reset(transport: Any) -> None:
    """Drop a connection with a reset: the kernel discards what it still holds for the client, at once."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def guarded_protocol(header_timeout: float, write_timeout: float, max_connections: int) -> type[HttpToolsProtocol]:
    """A protocol class for ``uvicorn.Config(http=...)`` with the limits above."""

    class Guarded(HttpToolsProtocol):
        _head_timer: asyncio.TimerHandle | None = None
        _write_timer: asyncio.TimerHandle | None = None
        _write_buffered = 0
        _wrapped: _Transport

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            self._wrapped = _Transport(transport, self)
            super().connection_made(self._wrapped)  # type: ignore[arg-type]
            self._arm()

        def data_received(self, data: bytes) -> None:
            if self._wrapped.lingering:
                return  # the answer is out: what still arrives of the body is read only to be dropped
            super().data_received(data)

        def eof_received(self) -> bool | None:  # type: ignore[override]
            if self._wrapped.lingering:
                self._wrapped._inner.close()
            return super().eof_received()  # type: ignore[func-returns-value]

        def on_message_begin(self) -> None:
            super().on_message_begin()
            if self._head_timer is None:
                self._arm()

        def on_headers_complete(self) -> None:
            self._disarm()
            busy = len(self.connections) >= max_connections or len(self.tasks) >= max_connections
            if not busy:
                super().on_headers_complete()
                return
            app, self.app = self.app, _BUSY
            try:
                super().on_headers_complete()
            finally:
                self.app = app

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            self._stop_write_timer()
            super().connection_lost(exc)

        def pause_writing(self) -> None:
            super().pause_writing()
            self._write_buffered = self.transport.get_write_buffer_size()
            self._write_timer = self.loop.call_later(write_timeout, self._check_progress)

        def resume_writing(self) -> None:
            self._stop_write_timer()
            super().resume_writing()

        def _check_progress(self) -> None:
            """Drop the connection if the client read nothing of the waiting output since the last check."""
            buffered = self.transport.get_write_buffer_size()
            if buffered >= self._write_buffered:
                self._write_timer = None
                _reset(self.transport)
                return
            self._write_buffered = buffered
            self._write_timer = self.loop.call_later(write_timeout, self._check_progress)

        def _stop_write_timer(self) -> None:
            if self._write_timer is not None:
                self._write_timer.cancel()
                self._write_timer = None

        def _arm(self) -> None:
            self._head_timer = self.loop.call_later(header_timeout, self._expired)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _expired(self) -> None:
            self._head_timer = None
            if not self.transport.is_closing():
                self.transport.close()

    return Guarded


def protocol_kwargs(header_timeout: float, write_timeout: float, max_connections: int) -> dict[str, Any]:
    """The uvicorn.Config arguments for these limits (the connection limit is the protocol's own: a JSON 503)."""
    return {"http": guarded_protocol(header_timeout, write_timeout, max_connections)}


class DelayedExit(uvicorn.Server):
    """uvicorn's server with ``--shutdown-delay``.

    On the first SIGTERM or Ctrl-C, ``on_signal`` runs at once (/health turns 503) and uvicorn's graceful exit
    starts ``delay`` seconds later; a second signal starts it at once.
    """

    def __init__(self, delay: float, on_signal: Callable[[], None], config: uvicorn.Config) -> None:
        super().__init__(config)
        self.delay, self.on_signal = delay, on_signal
        self._delaying = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """Called from the signal handler, on the loop's thread."""
        if self.delay <= 0 or self._delaying or self.should_exit:
            super().handle_exit(sig, frame)
            return
        self._delaying = True
        self.on_signal()
        asyncio.get_event_loop().call_later(self.delay, super().handle_exit, sig, frame)
