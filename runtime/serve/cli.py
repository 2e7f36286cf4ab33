"""``embedrt serve``: load an export, build the app, run it under uvicorn until SIGTERM or Ctrl-C.

The export's manifest says what to load: an Encoder for an embedding model, a Reranker for a cross-encoder.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from embedrt.config import positive_int
from embedrt.cpus import usable_cpus
from embedrt.encoder import DEFAULT_MAX_BATCH_TOKENS, OPENVINO_MAX_BATCH_TOKENS
from embedrt.loading import default_variant
from embedrt.manifest import MANIFEST_NAME, Manifest, ModelKind, Variant
from embedrt.serve.config import (
    DEFAULT_BODY_TIMEOUT_S,
    DEFAULT_HEADER_TIMEOUT_S,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_INPUTS,
    DEFAULT_MAX_QUEUE,
    DEFAULT_MAX_QUEUE_BYTES,
    DEFAULT_MAX_REQUEST_BYTES,
    DEFAULT_MAX_WAIT_MS,
    DEFAULT_WRITE_TIMEOUT_S,
)
from embedrt.session import Device, resolve_device
from embedrt.version import embedrt_version

ENV_PREFIX = "EMBEDRT_"
API_KEY_ENV = "EMBEDRT_API_KEY"
DEFAULT_PORT = 8080
# uvicorn: idle keep-alive connections close after this; in-flight requests get this long to finish on SIGTERM.
KEEP_ALIVE_S = 5
GRACEFUL_SHUTDOWN_S = 10


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``embedrt serve``."""
    srv = sub.add_parser(
        "serve",
        help="serve an exported model over HTTP (OpenAI, text-embeddings-inference and Cohere-style rerank APIs)",
        description="Serve an export over HTTP: POST /v1/embeddings (OpenAI), POST /embed "
        "(text-embeddings-inference) for an embedding model; POST /rerank (text-embeddings-inference) and "
        "/v1/rerank (Cohere, infinity-emb) for a cross-encoder; GET /health, /info, /metrics (Prometheus). "
        "Concurrent requests are batched together; SIGTERM finishes the requests in flight, then exits 0.",
        epilog="Example: embedrt serve models/all-MiniLM-L6-v2 --variant int8 --port 8080 --api-key $KEY",
    )
    srv.add_argument("model_dir", type=Path, help="directory written by `embedrt export`")
    srv.add_argument(
        "--variant",
        default=None,
        help="fp32, fp16, int8 or bf16 (the fp32 file run in bf16 where this CPU has a bf16 engine; embedding "
        "models only) (default: fp32 on CPU, fp16 on CUDA)",
    )
    srv.add_argument("--device", default="cpu", help="cpu, cuda or auto (default: cpu)")
    srv.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)")
    srv.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default: {DEFAULT_PORT})")
    srv.add_argument(
        "--api-key",
        default=None,
        help=f"require 'Authorization: Bearer KEY' on every route but /health (default: ${API_KEY_ENV}, else none)",
    )
    srv.add_argument(
        "--model-name",
        default=None,
        help="the model name; requests naming another get 404 "
        "(default: the export directory's name; then any name is accepted)",
    )
    srv.add_argument(
        "--threads",
        type=int,
        default=None,
        help="onnxruntime intra-op threads per model cycle (default: 1 with several workers, else one per core)",
    )
    srv.add_argument(
        "--workers",
        type=int,
        default=None,
        help="model cycles run at once on threads sharing the session (default: one per core for int8 on the "
        "CPU, else 1; measured in the README's Serve section)",
    )
    srv.add_argument(
        "--max-seq-length",
        type=int,
        default=None,
        help="tokens per text (per pair for a reranker) instead of the model's own; attention memory grows with its "
        "square, so lower it for long-context models (ModernBERT: 8192) on small machines",
    )
    srv.add_argument(
        "--max-batch-tokens",
        type=int,
        default=None,
        help=f"padded tokens per onnxruntime batch of an embedding model (default: {DEFAULT_MAX_BATCH_TOKENS}; "
        f"{OPENVINO_MAX_BATCH_TOKENS} for bf16 on OpenVINO)",
    )
    srv.add_argument(
        "--max-wait-ms",
        type=float,
        default=DEFAULT_MAX_WAIT_MS,
        help="under load, how long a short model cycle waits for more requests; a lone request "
        f"never waits (default: {DEFAULT_MAX_WAIT_MS:g})",
    )
    srv.add_argument(
        "--max-queue",
        type=int,
        default=DEFAULT_MAX_QUEUE,
        help=f"queued inputs past which requests get 429 (default: {DEFAULT_MAX_QUEUE})",
    )
    srv.add_argument(
        "--max-queue-bytes",
        type=int,
        default=DEFAULT_MAX_QUEUE_BYTES,
        help="characters of queued texts plus bytes of bodies being read, past which requests get 429 "
        f"(default: {DEFAULT_MAX_QUEUE_BYTES})",
    )
    srv.add_argument(
        "--shutdown-delay",
        type=float,
        default=0.0,
        help="on SIGTERM or Ctrl-C, answer /health with 503 at once but keep serving this many seconds, then "
        "drain and exit (rolling deploys: the load balancer stops sending first; default: 0)",
    )
    srv.add_argument(
        "--max-inputs",
        type=int,
        default=DEFAULT_MAX_INPUTS,
        help=f"texts (or rerank documents) per request (default: {DEFAULT_MAX_INPUTS})",
    )
    srv.add_argument(
        "--max-request-bytes",
        type=int,
        default=DEFAULT_MAX_REQUEST_BYTES,
        help=f"request body size (default: {DEFAULT_MAX_REQUEST_BYTES})",
    )
    srv.add_argument(
        "--body-timeout",
        type=float,
        default=DEFAULT_BODY_TIMEOUT_S,
        help=f"seconds a request body may take to arrive, then 408 (default: {DEFAULT_BODY_TIMEOUT_S:g})",
    )
    srv.add_argument(
        "--header-timeout",
        type=float,
        default=DEFAULT_HEADER_TIMEOUT_S,
        help="seconds a connection may take to send a complete request head, then it is closed "
        f"(default: {DEFAULT_HEADER_TIMEOUT_S:g})",
    )
    srv.add_argument(
        "--write-timeout",
        type=float,
        default=DEFAULT_WRITE_TIMEOUT_S,
        help="seconds a client may read nothing of an answer waiting to be sent, then it is dropped "
        f"(default: {DEFAULT_WRITE_TIMEOUT_S:g})",
    )
    srv.add_argument(
        "--max-connections",
        type=int,
        default=DEFAULT_MAX_CONNECTIONS,
        help="open connections and requests past which new requests get a JSON 503 "
        f"(default: {DEFAULT_MAX_CONNECTIONS})",
    )
    srv.add_argument("--access-log", action="store_true", help="log every request line (method, path, status)")
    env_defaults(srv)
    srv.set_defaults(run=run)


def env_defaults(parser: argparse.ArgumentParser) -> None:
    """Let every option come from an ``EMBEDRT_<OPTION>`` variable too (containers); the command line wins.

    ``--max-wait-ms`` reads ``EMBEDRT_MAX_WAIT_MS``, the model directory ``EMBEDRT_MODEL_DIR``; a flag is on for
    1, true or yes. A bad value is an error naming the variable.
    """
    for action in parser._actions:
        if action.dest in ("help", "run"):
            continue
        name = ENV_PREFIX + action.dest.upper()
        action.help = f"{action.help} [env {name}]" if action.help else f"[env {name}]"
        raw = os.environ.get(name)
        if not action.option_strings:
            action.nargs = "?"  # the model directory may come from the environment instead
        if raw is None:
            continue
        if isinstance(action, argparse._StoreTrueAction):
            action.default = raw.strip().lower() in ("1", "true", "yes", "on")
            continue
        try:
            action.default = action.type(raw) if callable(action.type) else raw
        except ValueError:
            parser.error(f"{name}={raw!r} is not a valid value for {action.option_strings or action.dest}")


def run(args: argparse.Namespace) -> int:
    """Load the model, then serve until SIGTERM/SIGINT; returns the exit code."""
    try:
        import uvicorn
    except ImportError:
        raise ImportError("embedrt serve needs the serve extra: pip install 'embedrt[serve]'") from None
    from embedrt.encoder import Encoder
    from embedrt.reranker import Reranker
    from embedrt.serve.app import create_app
    from embedrt.serve.config import ServeConfig
    from embedrt.serve.http import DelayedExit, protocol_kwargs

    if args.model_dir is None:
        raise ValueError(f"no model directory: pass MODEL_DIR or set {ENV_PREFIX}MODEL_DIR")
    positive_int("--max-connections", args.max_connections)
    for option in ("header_timeout", "write_timeout"):
        if getattr(args, option) <= 0:
            raise ValueError(f"--{option.replace('_', '-')} must be > 0 seconds, got {getattr(args, option):g}")
    api_key = args.api_key if args.api_key is not None else os.environ.get(API_KEY_ENV) or None
    device = resolve_device(Device.parse(args.device))
    variant = Variant.parse(args.variant) if args.variant is not None else default_variant(device)
    workers = args.workers if args.workers is not None else _default_workers(device, variant)
    positive_int("--workers", workers)
    # int8 on 2 cores: two cycles on one thread each beat one cycle on two threads under load (README, Serve).
    threads = args.threads if args.threads is not None or workers == 1 else 1
    kind = model_kind(Path(args.model_dir))
    model: Encoder | Reranker
    if kind is ModelKind.CROSS_ENCODER:
        model = Reranker.load(
            args.model_dir, variant=variant, device=device, threads=threads, max_length=args.max_seq_length
        )
    else:
        model = Encoder.load(
            args.model_dir,
            variant=variant,
            device=device,
            threads=threads,
            max_batch_tokens=args.max_batch_tokens,
            max_seq_length=args.max_seq_length,
        )
    config = ServeConfig(
        model_name=args.model_name or Path(args.model_dir).resolve().name,
        api_key=api_key,
        require_model_name=args.model_name is not None,
        max_inputs=args.max_inputs,
        max_request_bytes=args.max_request_bytes,
        max_queue=args.max_queue,
        max_queue_bytes=args.max_queue_bytes,
        max_batch_tokens=getattr(model, "max_batch_tokens", args.max_batch_tokens or DEFAULT_MAX_BATCH_TOKENS),
        max_wait_ms=args.max_wait_ms,
        body_timeout_s=args.body_timeout,
    )
    app = create_app(model, config, workers=workers, version=embedrt_version())
    auth = "API key required" if api_key else f"UNAUTHENTICATED (pass --api-key or set {API_KEY_ENV})"
    print(
        f"embedrt serve: {config.model_name} ({kind.value}, {model.variant.value}, {model.device.value}) on "
        f"http://{args.host}:{args.port}; {auth}",
        file=sys.stderr,
        flush=True,
    )
    if api_key is None and not _loopback(args.host):
        print(exposed_warning(args.host), file=sys.stderr, flush=True)
    if args.shutdown_delay < 0:
        raise ValueError(f"--shutdown-delay must be >= 0 seconds, got {args.shutdown_delay:g}")
    server = DelayedExit(
        args.shutdown_delay,
        app.state.stop_accepting,
        uvicorn.Config(
            app,
            host=args.host,
            port=args.port,
            loop="auto",
            access_log=args.access_log,
            log_level="info" if args.access_log else "warning",
            timeout_keep_alive=KEEP_ALIVE_S,
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
            **protocol_kwargs(args.header_timeout, args.write_timeout, args.max_connections),
        ),
    )
    # uvicorn re-raises the signal it shut down for once it is done, which would end the process with -15 (or a
    # KeyboardInterrupt traceback for Ctrl-C); a graceful stop is a success, so that re-raised signal lands here
    # and is ignored, and the process exits 0.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda signum, frame: None)
    server.run()
    return 0 if server.started else 1


def exposed_warning(host: str) -> str:
    """What the server says at start when it listens beyond this machine without a key."""
    return (
        f"WARNING: embedrt serve listens on {host} without an API key: anyone who can reach this address can use "
        f"every route, /metrics and /info included. Set {API_KEY_ENV} (or --api-key), or bind 127.0.0.1 behind "
        "an authenticating proxy."
    )


def _loopback(host: str) -> bool:
    """Whether ``host`` is this machine only (127.0.0.0/8, ::1, localhost)."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def model_kind(model_dir: Path) -> ModelKind:
    """The kind of model an export holds, from its manifest (embedding when there is none: loading then says why)."""
    path = model_dir / MANIFEST_NAME
    return Manifest.from_file(path).kind if path.is_file() else ModelKind.EMBEDDING


def _default_workers(device: Device, variant: Variant) -> int:
    """int8 on the CPU: one model cycle per usable core; otherwise one cycle at a time on every core (or the GPU).

    Measured on 2 cores (README, Serve): int8 with 2 cycles x 1 thread served 970-1,081 one-sentence requests/s
    against 892-910 with 1 x 2, at the same latency; fp32 with 1 x 2 had p50 2.3 ms against 3.3 ms and served as
    many requests/s (478 against 491) and more sentences/s in batches of 32 (662 against 601).
    """
    if device is not Device.CPU or variant is not Variant.INT8:
        return 1
    return usable_cpus()
