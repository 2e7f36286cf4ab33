"""The embedding server (needs the ``serve`` extra: starlette, uvicorn, prometheus-client, orjson)."""

from embedrt.serve.app import create_app
from embedrt.serve.config import ServeConfig

__all__ = ["ServeConfig", "create_app"]
