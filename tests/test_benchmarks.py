"""Smoke run of benchmarks/ on the tiny model: the code paths work; no timing is asserted."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import REPO


def test_micro_benchmarks_run_once(tiny_export):
    env = {**os.environ, "EMBEDRT_BENCH_MODEL": str(tiny_export)}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "benchmarks", "--benchmark-disable", "-q", "-p", "no:cacheprovider"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 passed" in result.stdout


def test_compare_worker_and_report(tiny_export, tmp_path, monkeypatch):
    from benchmarks import compare, report

    monkeypatch.setattr(compare, "EMBEDRT_DIR", tiny_export)
    monkeypatch.setattr(compare, "LATENCY_CALLS", 5)
    figures = compare.worker("embedrt-int8", threads=1, t0=0.0)
    assert figures["sts_sentences_per_s"] > 0 and figures["peak_rss_mb"] > 0
    bulk = compare.worker("embedrt-fp32-workers", threads=2, t0=0.0)
    assert bulk["sts_sentences_per_s"] > 0
    results = {
        "machine": compare.machine(),
        "threads": 1,
        "rounds": 1,
        "sts_tokens": compare.sts_token_count(),
        "gemm_gflops": compare.gemm_worker(1)["gemm_gflops"],
        "fp32_roof_seconds": 1.0,
        "fraction_of_roof": {"embedrt-fp32-workers": 0.5},
        "systems": {
            "embedrt-int8": figures,
            "embedrt-fp32-workers": bulk,
            "st-torch": figures,
            "fastembed": {"error": "not installed"},
        },
    }
    report.write_report(results, tmp_path)
    table = (tmp_path / "compare.md").read_text()
    assert "| embedrt-int8 |" in table and "not run: not installed" in table
    assert "embedrt-fp32-workers reaches 50% of that roof" in table
    assert (tmp_path / "compare.png").stat().st_size > 1000


def test_serve_benchmark_quick_run(tiny_export, tmp_path, monkeypatch):
    """benchmarks/serve.py end to end against a real `embedrt serve` of the tiny model (32 wide); no timing."""
    import json

    from benchmarks import serve

    monkeypatch.setattr(serve, "DIM", 32)
    out = tmp_path / "results"
    serve.main(["--quick", "--systems", "embedrt-int8,inproc-int8", "--model-dir", str(tiny_export), "--out", str(out)])
    report = json.loads((out / "serve.json").read_text())
    int8 = report["systems"]["embedrt-int8"]
    assert int8["concurrent"]["errors"] == 0 and int8["batch"]["errors"] == 0 and int8["exit_code"] == 0
    assert int8["concurrent/json"]["errors"] == 0 and int8["sequential/json"]["p50_ms"] > 0  # the stdlib client
    assert int8["hol-1024"]["errors"] == 0 and int8["hol-3mb"]["errors"] == 0  # head-of-line phases ran
    assert report["systems"]["inproc-int8"]["sequential"]["p50_ms"] > 0
    assert (out / "serve.md").is_file() and (out / "serve.png").stat().st_size > 0


def test_corpus_benchmark_quick_run(tiny_export, tmp_path):
    out = tmp_path / "corpus.md"
    args = [
        "--model",
        str(tiny_export),
        "--docs",
        "200",
        "--variants",
        "int8",
        "--configs",
        "local:1",
        "--out",
        str(out),
    ]
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.corpus", *args], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "| local | 1 | int8 |" in out.read_text()


def test_families_long_texts_have_the_asked_token_length(minilm_dir):
    """benchmarks.families --lengths: texts of N tokens under the model's own tokenizer (HF fast), [CLS]/[SEP] in."""
    from transformers import AutoTokenizer

    from benchmarks.families import LONG_TEXTS, SHAPES, long_texts

    tokenizer = AutoTokenizer.from_pretrained(str(minilm_dir))
    for tokens in (16, 128, 2048):
        texts = long_texts(minilm_dir, tokens)
        lengths = [len(ids) for ids in tokenizer(texts)["input_ids"]]
        assert len(texts) == LONG_TEXTS and len(set(texts)) == LONG_TEXTS
        assert all(0.9 * tokens <= n <= tokens for n in lengths), (tokens, lengths)  # a long word may not fit
    shape = SHAPES["modernbert-base"]
    assert (shape.layers, shape.hidden, shape.heads, shape.intermediate) == (22, 768, 12, 1152)
    assert (shape.vocab, shape.max_seq_length, shape.max_positions) == (50_368, 8192, 8192)
