"""Resident memory over many encode calls with varying input shapes; prints JSON.

python -m benchmarks.memory_growth models/all-MiniLM-L6-v2 --calls 1500 --arena on|off|shrink [--mem-pattern]

embedrt's defaults are ``--arena on`` without memory patterns; the other settings are there to compare.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "a",
    "lazy",
    "dog",
    "while",
    "embeddings",
    "map",
    "text",
    "to",
    "vectors",
]


def rss_mb() -> float:
    """Current resident set size in MB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def varying_batches(calls: int, max_batch: int, max_words: int, seed: int = 0):
    """Batches of 1..max_batch texts of 1..max_words words: a new shape almost every call."""
    rng = np.random.default_rng(seed)
    for _ in range(calls):
        size = int(rng.integers(1, max_batch + 1))
        yield [" ".join(rng.choice(WORDS, size=int(rng.integers(1, max_words + 1)))) for _ in range(size)]


def _patch_options(arena: str, mem_pattern: bool) -> None:
    import embedrt.session as session

    original = session.session_options

    def patched(threads):
        options = original(threads)
        options.enable_cpu_mem_arena = arena != "off"
        options.enable_mem_pattern = mem_pattern
        return options

    session.session_options = patched


def measure(encoder, calls: int, max_batch: int, max_words: int, run_options=None) -> dict:
    if run_options is not None:
        run = encoder._session.run
        encoder._session.run = lambda names, feeds: run(names, feeds, run_options)
    samples = {"load": round(rss_mb(), 1)}
    start = time.perf_counter()
    for call, texts in enumerate(varying_batches(calls, max_batch, max_words), 1):
        encoder.encode(texts, batch_size=len(texts))
        if call in (1, 10, 100) or call % 250 == 0:
            samples[call] = round(rss_mb(), 1)
    return {"seconds": round(time.perf_counter() - start, 1), "rss_mb": samples}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir")
    parser.add_argument("--variant", default="int8")
    parser.add_argument("--calls", type=int, default=1500)
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--max-words", type=int, default=250)
    parser.add_argument("--arena", choices=["on", "off", "shrink"], default="on")
    parser.add_argument("--mem-pattern", action="store_true", help="re-enable onnxruntime memory patterns")
    args = parser.parse_args()

    _patch_options(args.arena, args.mem_pattern)
    import onnxruntime

    from embedrt import Encoder

    encoder = Encoder.load(args.model_dir, variant=args.variant, threads=2)
    run_options = None
    if args.arena == "shrink":
        run_options = onnxruntime.RunOptions()
        run_options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
    report = {"variant": args.variant, "arena": args.arena, "mem_pattern": args.mem_pattern, "calls": args.calls}
    report.update(measure(encoder, args.calls, args.max_batch, args.max_words, run_options))
    json.dump(report, sys.stdout)
    print()


if __name__ == "__main__":
    main()
