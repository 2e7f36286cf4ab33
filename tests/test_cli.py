"""The command line: help texts, encode and verify."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import MODEL_CARD_SENTENCES

from embedrt import Encoder
from embedrt.cli import main


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "embedrt", *args], capture_output=True, text=True)


HELP_WORDS = {
    "": ["export", "encode", "verify"],
    "export": ["--variants", "--out", "--allow-pickle"],
    "encode": ["--input", "--output", "--variant", "--workers"],
    "verify": ["Spearman", "--sts", "--source"],
}


@pytest.mark.parametrize("command", list(HELP_WORDS))
def test_help(command):
    result = _run(*command.split(), "--help")
    assert result.returncode == 0
    assert "usage: embedrt" in result.stdout
    for word in HELP_WORDS[command]:
        assert word in result.stdout


def test_encode_prints_similarity_table(tiny_export, capsys):
    assert main(["encode", str(tiny_export), *MODEL_CARD_SENTENCES]) == 0
    out = capsys.readouterr().out
    emb = Encoder.load(tiny_export).encode(MODEL_CARD_SENTENCES)
    sim = emb @ emb.T
    assert f"{sim[0, 1]:.4f}" in out and "The weather is lovely today." in out


def test_encode_input_files_to_npy(tiny_export, tmp_path):
    (tmp_path / "in.txt").write_text("first line\nsecond line\n")
    (tmp_path / "in.jsonl").write_text('"plain string"\n{"text": "object text"}\n')
    for name in ("in.txt", "in.jsonl"):
        out = tmp_path / f"{name}.npy"
        assert main(["encode", str(tiny_export), "--input", str(tmp_path / name), "--output", str(out)]) == 0
        assert np.load(out).shape == (2, 32)
    expected = Encoder.load(tiny_export).encode(["plain string", "object text"])
    np.testing.assert_allclose(np.load(tmp_path / "in.jsonl.npy"), expected, atol=1e-6)
    out = tmp_path / "workers.npy"
    args = ["--input", str(tmp_path / "in.jsonl"), "--output", str(out), "--batch-size", "1"]
    assert main(["encode", str(tiny_export), *args, "--threads", "1", "--workers", "2"]) == 0
    np.testing.assert_allclose(np.load(out), expected, atol=1e-6)


def test_errors_are_one_line_and_nonzero(tiny_export, tmp_path, capsys):
    assert main(["encode", str(tmp_path)]) == 1
    assert "no texts" in capsys.readouterr().err
    assert main(["encode", str(tmp_path), "x"]) == 1
    assert "manifest.json not found" in capsys.readouterr().err
    (tmp_path / "bad.jsonl").write_text('{"id": 3}\n')
    assert main(["encode", str(tiny_export), "--input", str(tmp_path / "bad.jsonl")]) == 1
    assert "bad.jsonl:1" in capsys.readouterr().err


def test_verify_report(tiny_export, sts_test_file, capsys):
    assert main(["verify", str(tiny_export), "--sts", str(sts_test_file), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    rows = {row["variant"]: row for row in report["variants"]}
    assert set(rows) == {"fp32", "int8"}
    assert rows["fp32"]["min_cosine"] >= 0.99999 and rows["fp32"]["n"] == 2758
    assert abs(rows["fp32"]["spearman"] - report["reference_spearman"]) < 0.01
    assert rows["int8"]["recipe"].startswith("embedrt int8: int8 activations with one calibrated step")
    assert rows["int8"]["size_bytes"] == (tiny_export / "model.int8.onnx").stat().st_size
