"""The embedding server (needs the ``serve`` extra: starlette, uvicorn, prometheus-client, orjson).

The re-exports are resolved on first use (PEP 562), so that ``embedrt serve --help`` and the other commands,
which import ``embedrt.serve.cli``, do not load starlette and prometheus_client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from embedrt.serve.app import create_app
    from embedrt.serve.config import ServeConfig

__all__ = ["ServeConfig", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from embedrt.serve.app import create_app

        return create_app
    if name == "ServeConfig":
        from embedrt.serve.config import ServeConfig

        return ServeConfig
    raise AttributeError(f"module 'embedrt.serve' has no attribute {name!r}")
