"""uvicorn's httptools protocol with a deadline on the request head.

uvicorn closes idle keep-alive connections only after a first response, so a client that connects and sends
nothing (or half a request line) holds its socket, and a few thousand of them exhaust the file descriptors.
Here every request head must be complete within ``header_timeout`` seconds of the connection (or of the
request's first byte, for the next request on a kept-alive connection); otherwise the connection is closed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import FrameType
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


def head_deadline_protocol(header_timeout: float) -> type[HttpToolsProtocol]:
    """A protocol class for ``uvicorn.Config(http=...)`` that closes connections slow to send a request head."""

    class HeadDeadline(HttpToolsProtocol):
        _head_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            if self._head_timer is None:
                self._arm()

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

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

    return HeadDeadline


def protocol_kwargs(header_timeout: float, max_connections: int) -> dict[str, Any]:
    """The uvicorn.Config arguments for these limits: past ``max_connections`` uvicorn answers 503."""
    return {"http": head_deadline_protocol(header_timeout), "limit_concurrency": max_connections}


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
