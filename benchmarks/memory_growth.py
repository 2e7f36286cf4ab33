"""Resident memory over many encode calls with varying input shapes; prints JSON.

python -m benchmarks.memory_growth models/all-MiniLM-L6-v2 --calls 3000 [--arena]
--arena turns onnxruntime's CPU memory arena and memory patterns back on, to compare with embedrt's defaults.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
from pathlib import Path

import numpy as np


def rss_mb() -> float:
    """Current resident set size in MB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model_dir")
    parser.add_argument("--variant", default="fp32")
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--max-words", type=int, default=120, help="texts have 1 to this many words")
    parser.add_argument("--arena", action="store_true", help="re-enable the CPU arena and memory patterns")
    args = parser.parse_args()

    import embedrt.session as session

    if args.arena:
        original = session.session_options

        def with_arena(threads):
            options = original(threads)
            options.enable_cpu_mem_arena = True
            options.enable_mem_pattern = True
            return options

        session.session_options = with_arena
    from embedrt import Encoder

    encoder = Encoder.load(args.model_dir, variant=args.variant, threads=2)
    rng = np.random.default_rng(0)
    words = [
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
    samples = {}
    for call in range(1, args.calls + 1):
        batch = int(rng.integers(1, 17))
        texts = [" ".join(rng.choice(words, size=int(rng.integers(1, args.max_words)))) for _ in range(batch)]
        encoder.encode(texts, batch_size=batch)
        if call in (1, 10, 100) or call % 500 == 0:
            samples[call] = round(rss_mb(), 1)
    json.dump({"variant": args.variant, "arena": args.arena, "calls": args.calls, "rss_mb": samples}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
