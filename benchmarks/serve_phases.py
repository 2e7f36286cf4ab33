"""Where a one-sentence POST /v1/embeddings spends its time inside ``embedrt serve``, phase by phase.

python -m benchmarks.serve_phases [--requests 400] [--model-dir models/all-MiniLM-L6-v2] [--variant int8]
    [--tree DIR]   # the server from another checkout's runtime/ (e.g. `git archive <commit> runtime | tar -x`)

The server runs in a child process with timestamps patched in around the steps of a request (perf_counter_ns,
one clock for every thread of the process); the client is a plain blocking socket on a kept-alive connection that
sends one request at a time, so each request is alone in the server. Phases (medians over the requests, us):

- http parse: the request's bytes arrive (``data_received``) until the ASGI app is called (httptools, uvicorn's
  task for the request);
- app to handler: middleware and routing until the route's handler starts;
- body + JSON decode: reading the body, ``parse_body`` and ``openai_request``;
- to the model: from the validated request until ``Encoder.embed`` starts on a worker thread (queueing, the batch
  decision, the hop to the thread); split into "queue to submit" (until the executor's ``submit``) and "thread
  hop" (until the worker starts);
- model run: ``Encoder.embed`` itself;
- back to the handler: from the model's return until the handler encodes the answer (the hop back to the loop);
- JSON encode: ``openai_body``;
- out: from the encoded body until uvicorn has written the last byte of the answer (Response, metrics, middleware).

Besides: the client's round trip, and ``Encoder.encode([text])`` in this process (threads=1) for reference. The
server's ``--workers`` default applies (2 cycles x 1 thread for int8 on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TEXT = "The weather is lovely today."
WARMUP = 50
# (name, start mark, end mark) of each phase, in request order.
PHASES = (
    ("http parse", "recv", "app"),
    ("app to handler", "app", "handler"),
    ("body + JSON decode", "handler", "validated"),
    ("to the model", "validated", "model_in"),
    ("  queue to submit", "validated", "submit"),
    ("  thread hop", "submit", "model_in"),
    ("model run (Encoder.embed)", "model_in", "model_out"),
    ("back to the handler", "model_out", "encode_in"),
    ("  rest of the cycle", "model_out", "cycle_out"),
    ("  hop to the loop", "cycle_out", "finish"),
    ("  loop to the handler", "finish", "encode_in"),
    ("JSON encode", "encode_in", "encode_out"),
    ("out (response, metrics, write)", "encode_out", "sent"),
    ("  handler's return", "encode_out", "metrics_in"),
    ("  metrics", "metrics_in", "metrics_out"),
    ("  response written", "metrics_out", "sent"),
    ("server total", "recv", "sent"),
)

# ---------------------------------------------------------------- server side (child process)

_marks: list[dict[str, int]] = []


def _mark(name: str) -> None:
    """Record the first time ``name`` is reached by the current request (requests come one at a time)."""
    if _marks:
        _marks[-1].setdefault(name, time.perf_counter_ns())


def _wrap(owner: Any, attr: str, before: str | None, after: str | None) -> None:
    """Replace ``owner.attr`` (a function, sync or async) with one that marks before and after the call."""
    import inspect

    original = getattr(owner, attr, None)
    if original is None:
        return
    if inspect.iscoroutinefunction(original):

        async def async_wrapped(*args: Any, **kwargs: Any) -> Any:
            if before:
                _mark(before)
            result = await original(*args, **kwargs)
            if after:
                _mark(after)
            return result

        setattr(owner, attr, async_wrapped)
        return

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if before:
            _mark(before)
        result = original(*args, **kwargs)
        if after:
            _mark(after)
        return result

    setattr(owner, attr, wrapped)


def _instrument() -> None:
    """Patch the marks into uvicorn, starlette and embedrt (whatever of them this checkout has)."""
    from concurrent.futures import ThreadPoolExecutor

    from starlette.applications import Starlette
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    import embedrt.serve.app as app_module
    from embedrt.encoder import Encoder
    from embedrt.serve.batcher import Batcher
    from embedrt.serve.metrics import Metrics

    received = HttpToolsProtocol.data_received

    def data_received(self: Any, data: bytes) -> None:
        if data.startswith(b"POST"):
            _marks.append({"recv": time.perf_counter_ns()})
        received(self, data)

    HttpToolsProtocol.data_received = data_received  # type: ignore[method-assign]
    called = Starlette.__call__

    async def app_call(self: Any, scope: Any, receive: Any, send: Any) -> None:
        async def marked_send(message: Any) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                _mark("sent")

        if scope["type"] == "http" and scope["method"] == "POST":
            _mark("app")
            await called(self, scope, receive, marked_send)
            return
        await called(self, scope, receive, send)

    Starlette.__call__ = app_call  # type: ignore[method-assign]
    submit = ThreadPoolExecutor.submit

    def marked_submit(self: Any, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        if self._thread_name_prefix.startswith("embedrt-serve"):
            _mark("submit")
        return submit(self, fn, *args, **kwargs)

    ThreadPoolExecutor.submit = marked_submit  # type: ignore[method-assign]
    _wrap(app_module._Server, "openai", "handler", None)
    _wrap(app_module, "openai_request", None, "validated")
    _wrap(app_module, "openai_body", "encode_in", "encode_out")
    _wrap(Encoder, "embed", "model_in", "model_out")
    _wrap(Batcher, "_compute", None, "cycle_out")
    _wrap(Batcher, "_finish", "finish", None)
    _wrap(Metrics, "observe_request", "metrics_in", "metrics_out")


def serve(model_dir: str, variant: str, port: int, out: str) -> None:
    """Run ``embedrt serve`` instrumented; write the marks to ``out`` once it stops."""
    from embedrt.cli import main

    _instrument()
    try:
        main(["serve", model_dir, "--variant", variant, "--host", "127.0.0.1", "--port", str(port)])
    finally:
        Path(out).write_text(json.dumps(_marks))


# ---------------------------------------------------------------- client side


def _request(path: str, body: bytes) -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    return head.encode() + f"Content-Length: {len(body)}\r\n\r\n".encode() + body


def _read_response(sock: socket.socket) -> bytes:
    """One HTTP/1.1 response with a Content-Length (what uvicorn sends here)."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, rest = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
    )
    while len(rest) < length:
        rest += sock.recv(65536)
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(head.decode(errors="replace"))
    return rest


def _wait_ready(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the server exited")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                if sock.recv(100).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("the server did not become ready")


def _round_trips(port: int, requests: int) -> list[float]:
    message = _request("/v1/embeddings", json.dumps({"input": [TEXT], "model": "m"}).encode())
    seconds = []
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(WARMUP + requests):
            start = time.perf_counter()
            sock.sendall(message)
            _read_response(sock)
            if i >= WARMUP:
                seconds.append(time.perf_counter() - start)
    return seconds


def _inproc(model_dir: str, variant: str, requests: int) -> list[float]:
    from embedrt import Encoder

    encoder = Encoder.load(model_dir, variant=variant, threads=1)
    seconds = []
    for i in range(WARMUP + requests):
        start = time.perf_counter()
        encoder.encode([TEXT])
        if i >= WARMUP:
            seconds.append(time.perf_counter() - start)
    return seconds


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def profile(model_dir: str, variant: str, requests: int, tree: str | None = None) -> dict[str, float]:
    """Median microseconds of each phase, of the round trip and of in-process ``Encoder.encode``."""
    port = _free_port()
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "marks.json")
        code = f"from benchmarks.serve_phases import serve; serve({model_dir!r}, {variant!r}, {port}, {out!r})"
        env = dict(os.environ)
        if tree is not None:  # ``import embedrt`` finds that tree's runtime/ first (as benchmarks.serve's baseline)
            Path(tmp, "embedrt").symlink_to(Path(tree).resolve() / "runtime")
            env["PYTHONPATH"] = os.pathsep.join([tmp, str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env)
        try:
            _wait_ready(port, proc)
            trips = _round_trips(port, requests)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
        marks = json.loads(Path(out).read_text())[WARMUP:]
    result = {}
    for name, start, end in PHASES:
        spans = [(m[end] - m[start]) / 1000 for m in marks if start in m and end in m]
        result[name] = statistics.median(spans) if spans else float("nan")
    besides = [(m["sent"] - m["recv"] - m["model_out"] + m["model_in"]) / 1000 for m in marks if "sent" in m]
    result["server total besides the model"] = statistics.median(besides)
    result["client round trip"] = 1e6 * statistics.median(trips)
    result["in-process Encoder.encode([text])"] = 1e6 * statistics.median(_inproc(model_dir, variant, requests))
    return result


def main(argv: list[str] | None = None) -> None:
    """Print the per-phase medians (us)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--model-dir", default=str(REPO / "models" / "all-MiniLM-L6-v2"))
    parser.add_argument("--variant", default="int8")
    parser.add_argument("--tree", default=None, help="a checkout whose runtime/ the server runs")
    args = parser.parse_args(argv)
    for name, us in profile(args.model_dir, args.variant, args.requests, args.tree).items():
        print(f"{name:40s} {us:9.1f} us")


if __name__ == "__main__":
    main()
