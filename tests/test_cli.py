"""The command line: help texts, encode and verify."""

from __future__ import annotations

import json
import shutil
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
    "": ["export", "encode", "verify", "serve", "embed-corpus"],
    "serve": ["--api-key", "EMBEDRT_API_KEY", "--max-queue", "--max-request-bytes", "127.0.0.1", "SIGTERM"],
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


def test_export_into_a_directory_that_is_no_export_is_one_line(tiny_model_dir, tmp_path, capsys):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine")
    assert main(["export", str(tiny_model_dir), "--out", str(tmp_path / "notes"), "--variants", "fp32"]) == 1
    assert "notes is not empty and has no manifest.json" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "notes").iterdir()] == ["todo.txt"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'"fine"\n{"text": "ok"}\nnot json\n', r"bad\.jsonl:3: not valid JSON \(Expecting value at column 1\)"),
        (b'"fine"\n\n"after a blank line"\n', r"bad\.jsonl:2: blank line"),
        (b'"fine"\n"caf\xe9"\n', r"bad\.jsonl:2: not valid UTF-8 \(invalid continuation byte at byte 4"),
        (b'"fine"\n[1, 2]\n', r"bad\.jsonl:2: expected a JSON string or an object with a string 'text'"),
    ],
)
def test_bad_jsonl_lines_name_the_file_and_line(tiny_export, tmp_path, capsys, content, message):
    import re

    (tmp_path / "bad.jsonl").write_bytes(content)
    assert main(["encode", str(tiny_export), "--input", str(tmp_path / "bad.jsonl")]) == 1
    assert re.search(message, capsys.readouterr().err)


def test_one_line_one_row(tiny_export, tmp_path, capsys):
    """.txt: every line is a text, a blank one the empty text; U+2028 and form feeds do not split a line."""
    (tmp_path / "in.txt").write_bytes("first\n\nthird \u2028 still third\r\nfourth\x0cfourth".encode())
    out = tmp_path / "out.npy"
    assert main(["encode", str(tiny_export), "--input", str(tmp_path / "in.txt"), "--output", str(out)]) == 0
    expected = Encoder.load(tiny_export).encode(["first", "", "third \u2028 still third", "fourth\x0cfourth"])
    np.testing.assert_allclose(np.load(out), expected, atol=1e-6)
    (tmp_path / "bad.txt").write_bytes(b"ok\n\xff\n")
    assert main(["encode", str(tiny_export), "--input", str(tmp_path / "bad.txt"), "--output", str(out)]) == 1
    assert "bad.txt:2: not valid UTF-8" in capsys.readouterr().err


def test_no_similarity_table_for_many_texts(tiny_export, tmp_path, capsys):
    (tmp_path / "many.txt").write_text("\n".join(f"text {i}" for i in range(11)) + "\n")
    assert main(["encode", str(tiny_export), "--input", str(tmp_path / "many.txt")]) == 1
    assert "11 texts and no --output" in capsys.readouterr().err
    out = tmp_path / "many.npy"
    assert main(["encode", str(tiny_export), "--input", str(tmp_path / "many.txt"), "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert np.load(out).shape == (11, 32) and "text 0" not in printed and "wrote 11 x 32" in printed


def test_options_before_or_after_positionals(tiny_export, tmp_path, capsys):
    assert main(["encode", str(tiny_export), "--variant", "fp32", "first text", "second text"]) == 0
    after = capsys.readouterr().out
    assert (
        main(["encode", "--variant", "fp32", str(tiny_export), "first text", "--batch-size", "1", "second text"]) == 0
    )
    assert capsys.readouterr().out == after and "second text" in after
    sts = tmp_path / "sts.csv"
    sts.write_text("".join(f"g\tf\t2012\t{i}\t{i % 5}.0\tA text {i}.\tAnother {i}.\n" for i in range(12)))
    assert main(["verify", "--json", str(tiny_export), "--sts", str(sts)]) == 0
    assert json.loads(capsys.readouterr().out)["variants"]


def test_verify_report(tiny_export, sts_test_file, capsys):
    assert main(["verify", str(tiny_export), "--sts", str(sts_test_file), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    rows = {row["variant"]: row for row in report["variants"]}
    assert set(rows) == {"fp32", "int8", "bf16"}
    assert rows["fp32"]["min_cosine"] >= 0.99999 and rows["fp32"]["n"] == 2758
    assert abs(rows["fp32"]["spearman"] - report["reference_spearman"]) < 0.01
    assert rows["int8"]["recipe"].startswith("embedrt int8: int8 activations with one calibrated step")
    assert rows["int8"]["size_bytes"] == (tiny_export / "model.int8.onnx").stat().st_size
    # This machine's kernel is exact (VNNI/AMX), so the default path; tests/test_cpu_matrix.py covers the other.
    assert rows["int8"]["int8_kernel"].startswith("kernel exact, path default") and rows["fp32"]["int8_kernel"] is None
    assert all(rows[v]["ok"] and not rows[v]["skipped"] for v in ("fp32", "int8"))
    bf16 = rows["bf16"]  # the fp32 file in bf16: gated here where a bf16 engine runs, skipped (and why) elsewhere
    assert bf16["ok"] and bf16["recipe"] == "the model.fp32.onnx file run in bf16 on this machine"
    if bf16["skipped"]:
        assert "no bf16 kernel on this machine" in bf16["error"] and bf16.get("min_cosine") is None
    else:
        assert bf16["min_cosine"] >= 0.9999 and abs(bf16["spearman_delta"]) <= 0.1 and bf16["n"] == 2758
        assert bf16["bf16_engine"].startswith("bf16 by ") and rows["int8"]["bf16_engine"] is None


def test_verify_fails_on_a_broken_file_or_a_missed_tolerance(tiny_export, tmp_path, capsys, monkeypatch):
    from conftest import clone_dir

    from embedrt.export import parity
    from embedrt.manifest import Variant

    sts = tmp_path / "sts.csv"
    sts.write_text("".join(f"g\tf\t2012\t{i}\t{i % 5}.0\tA text {i}.\tAnother {i}.\n" for i in range(12)))
    out = tmp_path / "export"
    shutil.copytree(tiny_export, out)
    data = bytearray((out / "model.int8.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF  # tampered, same size: never "skipped"
    (out / "model.int8.onnx").write_bytes(bytes(data))
    assert main(["verify", str(out), "--sts", str(sts)]) == 1
    captured = capsys.readouterr()
    assert "int8      FAILED:" in captured.out and "has sha256" in captured.out and "skipped" not in captured.out
    assert "int8 failed or out of tolerance" in captured.err
    monkeypatch.setitem(parity.TOLERANCE, Variant.FP32, (1.1, 0.0))  # no file can meet it
    assert main(["verify", str(clone_dir(tiny_export, tmp_path / "good")), "--sts", str(sts), "--json"]) == 1
    rows = {row["variant"]: row for row in json.loads(capsys.readouterr().out)["variants"]}
    assert not rows["fp32"]["ok"] and rows["int8"]["ok"]


def test_building_the_cli_imports_no_extra():
    """`embedrt --help` and every subcommand's parser: the serve and corpus extras load only when they run."""
    extras = ("pyarrow", "ray", "torch", "pandas", "dask", "starlette", "uvicorn", "prometheus_client", "orjson")
    code = (
        "import sys\nfrom embedrt.cli import _parser\n_parser()\n"
        f"print(sorted(m for m in {extras!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
