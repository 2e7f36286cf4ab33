"""``x-request-id`` on every response: the client's when it is a sane token, else a new one."""

from __future__ import annotations

import re
import uuid
from collections.abc import MutableMapping
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = b"x-request-id"
_SCOPE_KEY = "embedrt.request_id"
# Echoed into a header and the log: a bounded token, never arbitrary bytes from the client.
_VALID = re.compile(rb"[A-Za-z0-9._:/+=-]{1,128}")


def request_id(scope: MutableMapping[str, Any]) -> str:
    """The id of this request (set by :class:`RequestIds`; a new one outside it)."""
    return str(scope.setdefault(_SCOPE_KEY, uuid.uuid4().hex))


class RequestIds:
    """ASGI middleware: pick the request's id and put it on the response, whatever route or error answers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Add the header to http responses; other scopes pass through."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((value for name, value in scope["headers"] if name == HEADER), b"")
        scope[_SCOPE_KEY] = given.decode("ascii") if _VALID.fullmatch(given) else uuid.uuid4().hex
        header = (HEADER, scope[_SCOPE_KEY].encode("ascii"))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        await self.app(scope, receive, send_with_id)
