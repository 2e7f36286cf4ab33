"""Run `embedrt serve` in a subprocess on a free 127.0.0.1 port, for the server tests."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    process: subprocess.Popen
    port: int
    key: str | None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"} if self.key else {}

    def post(self, path: str, body, **kwargs) -> httpx.Response:
        kwargs.setdefault("headers", self.headers())
        if isinstance(body, bytes):
            return httpx.post(self.url + path, content=body, timeout=30, **kwargs)
        return httpx.post(self.url + path, json=body, timeout=30, **kwargs)

    def get(self, path: str, **kwargs) -> httpx.Response:
        kwargs.setdefault("headers", self.headers())
        return httpx.get(self.url + path, timeout=30, **kwargs)

    def stop(self, timeout: float = 15) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise


def start_server(model_dir, *options: str, key: str | None = None, env: dict | None = None) -> Server:
    """Start the server (options after the positional, as a user would type them) and wait for /health."""
    port = free_port()
    positional = [str(model_dir)] if model_dir else []  # "" : the model directory comes from the environment
    args = [sys.executable, "-m", "embedrt", "serve", "--port", str(port), *positional, *options]
    if key:
        args += ["--api-key", key]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    server = Server(process, port, key)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited {process.returncode}: {process.stderr.read()}")
        try:
            if httpx.get(server.url + "/health", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    process.kill()
    raise RuntimeError("server did not become healthy in 60 s")


def error_of(response: httpx.Response) -> dict:
    """The error of an answer as ``{"message", "type", "param", "code"}``: OpenAI's ``{"error": {...}}`` as it is,
    text-embeddings-inference's ``{"error": message, "error_type", "param", "code"}`` (its routes) mapped onto it."""
    body = response.json()
    if isinstance(body["error"], dict):
        return body["error"]
    assert set(body) == {"error", "error_type", "param", "code"}, body
    return {"message": body["error"], "type": body["error_type"], "param": body["param"], "code": body["code"]}
