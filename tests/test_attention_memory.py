"""The attention memory estimate and the warning at load when the configured length needs more than is available."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from conftest import clone_dir, edit_json

from embedrt import Encoder, attention_memory
from embedrt.attention_memory import (
    AttentionMemoryWarning,
    attention_peak_bytes,
    available_memory_bytes,
    batch_at,
    check_attention_memory,
)

GIB = 2**30


def test_the_estimate_grows_with_the_square_of_the_length():
    assert attention_peak_bytes(1, 1024, 12) * 4 == attention_peak_bytes(1, 2048, 12)
    assert attention_peak_bytes(2, 512, 12) == 2 * attention_peak_bytes(1, 512, 12) - 9 * 512 * 512
    # gte-modernbert-base at 8192 tokens, one text: 12 heads of scores and probabilities, two masks: ~7 GiB.
    assert 6.5 * GIB <= attention_peak_bytes(1, 8192, 12) <= 7.5 * GIB
    # all-MiniLM-L6-v2 at 256 tokens, 2 texts per call under the 512-token budget: about 14 MiB.
    assert attention_peak_bytes(batch_at(256, 32, 512), 256, 12) <= 16 * 2**20


def test_batches_follow_the_encoders_token_budget():
    assert batch_at(8192, 32, 512) == 1
    assert batch_at(128, 32, 512) == 4
    assert batch_at(8, 32, 512) == 32


def test_available_memory_is_read_from_the_system():
    available = available_memory_bytes()
    assert available is not None and available > 0


def test_warns_for_a_huge_length_and_not_for_a_small_one(monkeypatch):
    monkeypatch.setattr(attention_memory, "available_memory_bytes", lambda: 4 * GIB)
    with pytest.warns(AttentionMemoryWarning, match=r"max_seq_length 8192 tokens need about 7\.\d GiB"):
        check_attention_memory(8192, 12, 32, 512, "gte-modernbert-base")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_attention_memory(512, 12, 32, 512, "gte-modernbert-base") is None
    monkeypatch.setattr(attention_memory, "available_memory_bytes", lambda: None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_attention_memory(8192, 12, 32, 512, "unknown memory") is None


def test_encoder_load_warns_when_the_configured_length_does_not_fit(tiny_export: Path, tmp_path, monkeypatch):
    """At load (which the CLI's encode and serve go through): the export's max_seq_length, heads from config.json."""
    monkeypatch.setattr(attention_memory, "available_memory_bytes", lambda: 2 * GIB)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Encoder.load(tiny_export)  # 64 tokens: kilobytes
    model = clone_dir(tiny_export, tmp_path / "long")
    edit_json(model / "sentence_bert_config.json", max_seq_length=8192)
    with pytest.warns(AttentionMemoryWarning, match=str(model)) as caught:
        Encoder.load(model)
    assert caught[0].filename == __file__  # points at the caller's load


def test_a_lower_max_seq_length_at_load_silences_it(tiny_export: Path, tmp_path, monkeypatch):
    """The remedy the warning names: the same model loaded with a lower limit fits, and says nothing."""
    monkeypatch.setattr(attention_memory, "available_memory_bytes", lambda: 2 * GIB)
    model = clone_dir(tiny_export, tmp_path / "long")
    edit_json(model / "sentence_bert_config.json", max_seq_length=8192)
    edit_json(model / "config.json", max_position_embeddings=8192)
    with pytest.warns(AttentionMemoryWarning, match=r"max_seq_length=N"):
        Encoder.load(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert Encoder.load(model, max_seq_length=512).max_seq_length == 512


def test_reranker_load_warns_at_its_batch_of_32_pairs(tmp_path, minilm_dir, monkeypatch):
    """Reranker.predict runs 32 pairs per call with no token budget: the estimate takes 32 at max_length."""
    from conftest import save_hf_cross_encoder

    from embedrt import Reranker
    from embedrt.export import export

    out = export(
        save_hf_cross_encoder(tmp_path / "ce", minilm_dir, 1), tmp_path / "out", variants="fp32", progress=False
    )
    max_length = Reranker.load(out).max_length
    need = attention_peak_bytes(32, max_length, 4)
    monkeypatch.setattr(attention_memory, "available_memory_bytes", lambda: need)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Reranker.load(out)
    monkeypatch.setattr(attention_memory, "available_memory_bytes", lambda: need - 1)
    with pytest.warns(AttentionMemoryWarning, match=f"32 text\\(s\\) per call x 4 heads x {max_length}"):
        Reranker.load(out)


def test_the_cli_shows_the_warning_by_default(tiny_export: Path, tmp_path):
    """In a fresh interpreter with Python's default warning filters, `embedrt encode` prints it on stderr."""
    import os
    import subprocess
    import sys

    model = clone_dir(tiny_export, tmp_path / "long")
    edit_json(model / "sentence_bert_config.json", max_seq_length=2_000_000)  # ~1.2 PiB of scores: never fits
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    result = subprocess.run(
        [sys.executable, "-m", "embedrt", "encode", str(model), "a short text"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "AttentionMemoryWarning" in result.stderr and "max_seq_length 2000000" in result.stderr
