"""Peak memory and /health latency of `embedrt serve` under everything its limits let clients do at once.

python -m benchmarks.serve_abuse [--model-dir models/all-MiniLM-L6-v2] [--variant int8] [--seconds 20]

One server on a free 127.0.0.1 port, then, together for ``--seconds``: 6 clients sending 3 MB /tokenize requests
(2,048 texts each) in a loop, 8 clients asking for 3 MB /tokenize answers they never read, 16 connections that
declare 4 MiB bodies and send one byte, 2 clients sending 1,024-text /v1/embeddings requests, 2 clients sending
3 MB texts without spaces to /embed, and /health probed every 0.2 s. Prints the server's peak RSS (VmHWM), its
RSS at the end, /health's worst latency and the statuses seen, as JSON: the figures `deploy/kubernetes.yaml`'s
memory limit and probe timeouts are sized from.
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from serve_helpers import start_server  # noqa: E402


def vm(pid: int, key: str) -> float:
    """VmRSS or VmHWM of ``pid``, MB."""
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        line = next(line for line in f if line.startswith(key + ":"))
    return int(line.split()[1]) / 1024


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, default=REPO / "models" / "all-MiniLM-L6-v2")
    parser.add_argument("--variant", default="int8")
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args(argv)
    server = start_server(args.model_dir, "--variant", args.variant)
    rng = random.Random(0)
    words = ["".join(rng.choices("abcdefghij", k=rng.randint(2, 9))) for _ in range(5000)]
    tokenize_body = json.dumps({"inputs": [" ".join(rng.choices(words, k=250)) for _ in range(2048)]}).encode()
    big_batch = {"input": [" ".join(rng.choices(words, k=12)) for _ in range(1024)]}
    no_space = {"inputs": "".join(rng.choices("abcdefghij\u4e00\u4e01\u4e02", k=1_000_000))}  # under 4 MiB as JSON
    stop = time.monotonic() + args.seconds
    statuses: Counter[str] = Counter()
    health: list[float] = []
    lock = threading.Lock()

    def loop(name: str, send) -> None:
        with httpx.Client(base_url=server.url, timeout=120) as client:
            while time.monotonic() < stop:
                try:
                    code = str(send(client).status_code)
                except httpx.HTTPError as exc:
                    code = type(exc).__name__
                with lock:
                    statuses[f"{name} {code}"] += 1

    def probe() -> None:
        while time.monotonic() < stop:
            start = time.perf_counter()
            httpx.get(server.url + "/health", timeout=30)
            health.append(time.perf_counter() - start)
            time.sleep(0.2)

    def non_reader() -> None:
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(f"POST /tokenize HTTP/1.1\r\nHost: x\r\nContent-Length: {len(tokenize_body)}\r\n\r\n".encode())
        sock.sendall(tokenize_body)
        time.sleep(max(0.0, stop - time.monotonic()))
        sock.close()

    stalled = []
    for _ in range(16):
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.sendall(b"POST /embed HTTP/1.1\r\nHost: x\r\nContent-Length: 4194303\r\n\r\n{")
        stalled.append(sock)
    threads = [threading.Thread(target=probe)]
    threads += [threading.Thread(target=non_reader) for _ in range(8)]
    threads += [
        threading.Thread(target=loop, args=("tokenize", lambda c: c.post("/tokenize", content=tokenize_body)))
        for _ in range(6)
    ]
    for _ in range(2):
        threads.append(
            threading.Thread(target=loop, args=("batch", lambda c: c.post("/v1/embeddings", json=big_batch)))
        )
        threads.append(threading.Thread(target=loop, args=("no-space", lambda c: c.post("/embed", json=no_space))))
    idle_rss = vm(server.process.pid, "VmRSS")
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for sock in stalled:
        sock.close()
    time.sleep(1)
    report = {
        "model": str(args.model_dir),
        "variant": args.variant,
        "seconds": args.seconds,
        "rss_idle_mb": round(idle_rss, 1),
        "rss_peak_mb": round(vm(server.process.pid, "VmHWM"), 1),
        "rss_end_mb": round(vm(server.process.pid, "VmRSS"), 1),
        "health_worst_ms": round(1000 * max(health), 1),
        "health_p50_ms": round(1000 * sorted(health)[len(health) // 2], 1),
        "health_probes": len(health),
        "statuses": dict(sorted(statuses.items())),
    }
    server.stop()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
