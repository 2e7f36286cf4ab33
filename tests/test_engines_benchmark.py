"""benchmarks/engines.py's pure logic: rounds, skipped rows, quality columns, the table; no venv, no timing."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

from benchmarks import engines
from benchmarks.engines import Engine, Status


def test_summarize_takes_medians_over_the_rounds_that_ran():
    rounds = [
        {"sentences_per_s": 100.0, "peak_rss_mb": 150.0, "engine": "x"},
        {"error": "killed"},
        {"sentences_per_s": 300.0, "peak_rss_mb": 100.0, "engine": "x"},
        {"sentences_per_s": 200.0, "peak_rss_mb": 120.0, "engine": "x"},
    ]
    row = engines.summarize(rounds)
    assert row == {"status": "ok", "rounds": 3, "sentences_per_s": 200.0, "peak_rss_mb": 120.0}


def test_summarize_reports_a_load_failure_as_skipped_and_a_crash_as_failed():
    skipped = engines.summarize([{"skipped": "ValueError: unknown variant 'bf16'"}])
    assert skipped == {"status": Status.SKIPPED.value, "error": "ValueError: unknown variant 'bf16'"}
    failed = engines.summarize([{"error": "MemoryError"}, {"error": "later"}])
    assert failed == {"status": Status.FAILED.value, "error": "MemoryError"}


def test_missing_venv_names_the_command_that_makes_it(tmp_path):
    args = argparse.Namespace(venvs=tmp_path, python_ctranslate2=None, python_embedrt=None)
    python = engines.python_for(Engine.CTRANSLATE2, args)
    assert python == str(tmp_path / "ctranslate2" / "bin" / "python")
    reason = engines.missing_venv(Engine.CTRANSLATE2, python, tmp_path)
    assert reason is not None and f"{tmp_path}/ctranslate2/bin/pip install ctranslate2==" in reason
    assert engines.missing_venv(Engine.EMBEDRT, engines.python_for(Engine.EMBEDRT, args), tmp_path) is None
    given = argparse.Namespace(venvs=tmp_path, python_ctranslate2="/opt/ct2/bin/python")
    assert engines.python_for(Engine.CTRANSLATE2, given) == "/opt/ct2/bin/python"


def test_every_engine_venv_has_a_pinned_command():
    for engine in Engine:
        if engine is not Engine.EMBEDRT:
            command = engines.VENV_COMMANDS[engine].format(root="/r")
            assert f"/r/{engine.value}/bin/pip install" in command and "==" in command
            assert "torch" not in command or "torch==2.13.0" in command  # never an unpinned (CUDA) torch


def test_cosines_and_spearman_match_numpy():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(20, 8)), rng.normal(size=(20, 8))
    expected = [float(x @ y / np.linalg.norm(x) / np.linalg.norm(y)) for x, y in zip(a, b, strict=True)]
    np.testing.assert_allclose(engines.cosines(a, b), expected, rtol=1e-12)
    x = np.array([3.0, 1.0, 2.0, 2.0, 5.0])
    np.testing.assert_array_equal(engines.ranks(x), [4.0, 1.0, 2.5, 2.5, 5.0])  # ties share their mean rank
    y = np.array([0.3, 0.1, 0.25, 0.2, 0.9])
    rx, ry = engines.ranks(x), engines.ranks(y)
    assert engines.spearman(x, y) == pytest.approx(np.corrcoef(rx, ry)[0, 1])
    assert engines.spearman(x, 2 * x + 1) == pytest.approx(1.0)


def test_quality_is_min_cos_against_the_reference_and_the_pairs_spearman():
    rng = np.random.default_rng(1)
    reference = {"sentences": rng.normal(size=(6, 4)), "docs": rng.normal(size=(2, 4))}
    noisy = {k: v + 0.01 * rng.normal(size=v.shape) for k, v in reference.items()}
    gold = [5.0, 1.0, 3.0]  # pair i: sentences[i] and sentences[3 + i]
    out = engines.quality(noisy, reference, gold)
    worst = min(engines.cosines(noisy[k], reference[k]).min() for k in ("sentences", "docs"))
    assert out["min_cos"] == pytest.approx(worst) and 0.99 < out["min_cos"] < 1
    pair_cos = engines.cosines(noisy["sentences"][:3], noisy["sentences"][3:])
    assert out["spearman"] == pytest.approx(np.corrcoef(engines.ranks(pair_cos), [3, 1, 2])[0, 1])
    assert "min_cos" not in engines.quality(noisy, None, gold)  # no reference: no min cos, still Spearman


def test_table_has_the_asked_columns_and_skipped_rows():
    systems = {
        "st-torch": {"status": "ok", "sentences_per_s": 812.4, "docs_per_s": 21.25, "latency_p50_ms": 6.1,
                     "cold_start_s": 3.5, "peak_rss_mb": 560.0, "min_cos": 1.0, "spearman": 0.8203},
        "embedrt-bf16": {"status": "skipped", "error": "ValueError: unknown variant 'bf16'"},
        "fastembed": {"status": "skipped", "error": "no venv at /v/fastembed/bin/python; make it with: a | b"},
        "ct2-int8": {"status": "ok", "sentences_per_s": 2000.0, "docs_per_s": 30.0, "latency_p50_ms": 1.5,
                     "cold_start_s": 0.5, "peak_rss_mb": 90.0, "spearman": 0.82},
    }  # fmt: skip
    lines = engines.table(systems)
    assert lines[0] == (
        "| system | sentences/s | 256-token docs/s | p50 ms (1 sentence) | cold s | RSS MB | min cos | Spearman |"
    )
    assert lines[2] == "| st-torch | 812 | 21.2 | 6.10 | 3.50 | 560 | 1.00000 | 0.8203 |"
    assert lines[3].startswith("| embedrt-bf16 | skipped: ValueError: unknown variant 'bf16' |")
    assert "a \\| b" in lines[4]  # a | in the reason does not split the row
    assert "| 90 | - | 0.8200 |" in lines[5]  # no reference vectors: no min cos
    assert all(line.count("|") - line.count("\\|") == lines[0].count("|") for line in lines)


def test_write_report(tmp_path: Path):
    report = {
        "machine": {"cpu": "test cpu", "logical_cpus": "2"},
        "threads": 2,
        "rounds": 2,
        "sentences": 100,
        "docs": 8,
        "doc_tokens": 255.0,
        "latency_calls": 20,
        "systems": {"embedrt-int8": {"status": "ok", "sentences_per_s": 1.0, "docs_per_s": 1.0,
                                     "latency_p50_ms": 1.0, "cold_start_s": 1.0, "peak_rss_mb": 1.0}},
    }  # fmt: skip
    engines.write_report(report, tmp_path)
    text = (tmp_path / "engines.md").read_text()
    assert "| embedrt-int8 | 1 | 1.0 | 1.00 | 1.00 | 1 | - | - |" in text
    assert "- embedrt-int8: Encoder.load(variant='int8')" in text
    assert (tmp_path / "engines.json").is_file()


def test_unknown_system_is_a_clear_error(capsys):
    with pytest.raises(SystemExit):
        engines.parse_args(["--systems", "embedrt-fp32,tensorrt"])
    assert "unknown systems ['tensorrt']" in capsys.readouterr().err


def test_read_sts_limit_and_gold(sts_test_file):
    first, second, gold = engines.read_sts("test", 5)
    assert len(first) == len(second) == len(gold) == 5 and all(0 <= g <= 5 for g in gold)


def test_targets_are_ratios_of_this_run():
    from benchmarks import engines

    systems = {
        "embedrt-bf16": {"sentences_per_s": 1300.0, "docs_per_s": 50.0},
        "openvino-bf16": {"sentences_per_s": 1000.0, "docs_per_s": 50.0},
        "embedrt-int8": {"sentences_per_s": 1000.0},
        "st-torch": {"sentences_per_s": 200.0},
    }
    lines = engines.targets(systems)
    assert lines[0] == "- embedrt-bf16 / openvino-bf16 sentences_per_s: 1.30x (>= 1.2: met)"
    assert lines[1] == "- embedrt-bf16 / openvino-bf16 docs_per_s: 1.00x (>= 1.2: missed)"
    assert lines[2] == "- embedrt-int8 / openvino-int8 docs_per_s: not measured in this run (>= 1.2)"
    assert lines[3] == "- embedrt-int8 / st-torch sentences_per_s: 5.00x (>= 4.0: met)"
