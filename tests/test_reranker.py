"""Cross-encoders: export in both layouts, Reranker against sentence-transformers' CrossEncoder, pair tokens against
the Hugging Face fast tokenizer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import save_hf_cross_encoder
from test_tokenizer import hostile_texts

from embedrt import Encoder
from embedrt.export import export
from embedrt.export.cross_encoder import CHECK_PAIRS
from embedrt.pairs import pair_lengths
from embedrt.reranker import Reranker

PAIRS = [
    *CHECK_PAIRS,
    ("What is the capital of France?", "Paris is the capital and most populous city of France."),
    ("What is the capital of France?", "Berlin is the capital of Germany. " * 20),
    ("", ""),
    ("a", "b"),
]
DOCUMENTS = [p[1] for p in CHECK_PAIRS[:12]]


@pytest.fixture(scope="module", params=[("st", 1), ("hf", 1), ("st", 3), ("hf", 3)], ids=lambda p: f"{p[0]}-{p[1]}")
def cross_encoder(request, tmp_path_factory, minilm_dir):
    """(source dir, export dir) for each layout and label count."""
    from sentence_transformers import CrossEncoder

    layout, labels = request.param
    tmp = tmp_path_factory.mktemp(f"ce-{layout}-{labels}")
    source = save_hf_cross_encoder(tmp / "hf", minilm_dir, labels)
    if layout == "st":  # sentence-transformers >= 5 writes modules.json and config_sentence_transformers.json
        CrossEncoder(str(source), device="cpu", max_length=48).save(str(tmp / "st"))
        source = tmp / "st"
        assert (source / "modules.json").is_file()
    else:  # the hub's cross-encoder/ms-marco-* models: the activation in config.json
        config = json.loads((source / "config.json").read_text())
        config["sbert_ce_default_activation_function"] = "torch.nn.modules.linear.Identity"
        (source / "config.json").write_text(json.dumps(config))
    out = export(source, tmp / "out", variants="fp32,fp16,int8", progress=False)
    return source, out


def _reference(source: Path):
    from sentence_transformers import CrossEncoder

    return CrossEncoder(str(source), device="cpu")


def test_manifest_records_kind_activation_and_max_length(cross_encoder):
    source, out = cross_encoder
    ce = _reference(source)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "cross-encoder"
    assert manifest["cross_encoder"] == {
        "num_labels": ce.num_labels,
        "activation": type(ce.activation_fn).__name__,
        "max_length": ce.max_length,
    }
    assert manifest["variants"]["fp32"]["outputs"] == ["logits"]


def test_fp32_predict_matches_cross_encoder(cross_encoder):
    source, out = cross_encoder
    ce = _reference(source)
    reranker = Reranker.load(out)
    got, want = reranker.predict(PAIRS), ce.predict(PAIRS)
    assert got.shape == want.shape and got.dtype == np.float32
    assert np.abs(got - want).max() <= 1e-4
    import torch

    logits = ce.predict(PAIRS, activation_fn=torch.nn.Identity())
    assert np.abs(reranker.predict(PAIRS, activation="Identity") - logits).max() <= 1e-4
    single = reranker.predict(PAIRS[0])
    assert np.ndim(single) == np.ndim(ce.predict(PAIRS[0])) and np.allclose(single, ce.predict(PAIRS[0]), atol=1e-4)
    if ce.num_labels > 1:
        soft = reranker.predict(PAIRS, apply_softmax=True)
        assert np.abs(soft - ce.predict(PAIRS, apply_softmax=True)).max() <= 1e-4


@pytest.mark.parametrize("max_length", [9, 24])
def test_max_length_at_load_is_cross_encoders(cross_encoder, max_length):
    """Reranker.load(max_length=N) cuts pairs as CrossEncoder(..., max_length=N) does; past the positions, refused."""
    from sentence_transformers import CrossEncoder

    source, out = cross_encoder
    ce = CrossEncoder(str(source), device="cpu", max_length=max_length)
    reranker = Reranker.load(out, max_length=max_length)
    assert reranker.max_length == max_length
    assert np.abs(reranker.predict(PAIRS) - ce.predict(PAIRS)).max() <= 1e-4
    with pytest.raises(ValueError, match=r"max_length 100000 is more than the \d+ tokens the model can place"):
        Reranker.load(out, max_length=100_000)


def test_int8_predict_is_close(cross_encoder):
    source, out = cross_encoder
    import torch

    logits = _reference(source).predict(PAIRS, activation_fn=torch.nn.Identity())
    got = Reranker.load(out, variant="int8").predict(PAIRS, activation="Identity")
    assert np.abs(got - logits).max() <= 0.25


def test_fp16_is_checked_where_it_runs(cross_encoder):
    from conftest import fp16_runs_on_cpu

    source, out = cross_encoder
    parity = json.loads((out / "manifest.json").read_text())["variants"]["fp16"]["parity"]
    if not fp16_runs_on_cpu(out / "model.fp16.onnx"):
        assert "skipped" in parity
        return
    import torch

    logits = _reference(source).predict(PAIRS, activation_fn=torch.nn.Identity())
    got = Reranker.load(out, variant="fp16").predict(PAIRS, activation="Identity")
    assert parity["max_abs_diff"] <= 2e-2 and np.abs(got - logits).max() <= 2e-2


def test_rank_matches_cross_encoder(cross_encoder):
    source, out = cross_encoder
    ce, reranker = _reference(source), Reranker.load(out)
    query = "What is the capital of France?"
    if ce.num_labels != 1:
        with pytest.raises(ValueError, match="one label"):
            reranker.rank(query, DOCUMENTS)
        return
    want = ce.rank(query, DOCUMENTS, top_k=5, return_documents=True)
    got = reranker.rank(query, DOCUMENTS, top_k=5, return_documents=True)
    assert [r["corpus_id"] for r in got] == [r["corpus_id"] for r in want]
    assert [r["text"] for r in got] == [r["text"] for r in want]
    assert np.allclose([r["score"] for r in got], [float(r["score"]) for r in want], atol=1e-4)
    assert set(got[0]) == {"corpus_id", "score", "text"}
    assert set(reranker.rank(query, DOCUMENTS)[0]) == {"corpus_id", "score"}
    assert len(reranker.rank(query, DOCUMENTS)) == len(DOCUMENTS)
    assert reranker.rank(query, []) == []


def test_wrong_kind_is_a_clear_error(cross_encoder, tiny_export):
    _, out = cross_encoder
    with pytest.raises(ValueError, match=r"cross-encoder model.*embedrt\.Reranker\.load"):
        Encoder.load(out)
    with pytest.raises(ValueError, match=r"embedding model.*embedrt\.Encoder\.load"):
        Reranker.load(tiny_export)


def test_bad_pairs_name_the_index(cross_encoder):
    _, out = cross_encoder
    reranker = Reranker.load(out)
    with pytest.raises(TypeError, match=r"pairs\[1\]"):
        reranker.predict([("a", "b"), ("only one",)])
    with pytest.raises(TypeError, match=r"pairs\[1\]\[1\] is int"):
        reranker.predict([("a", "b"), ("c", 3)])
    with pytest.raises(ValueError, match="unknown activation 'Swish'"):
        reranker.predict(PAIRS, activation="Swish")


@pytest.mark.parametrize("max_length", [5, 16, 64, 512])
def test_pair_tokens_match_the_fast_tokenizer(minilm_dir, max_length):
    """[CLS] a [SEP] b [SEP], token types 0 then 1, longest_first truncation, on hostile text pairs."""
    import transformers

    ref = transformers.AutoTokenizer.from_pretrained(str(minilm_dir))
    vocab = [w for w in (minilm_dir / "vocab.txt").read_text(encoding="utf-8").splitlines() if w.isalpha()]
    texts = hostile_texts(2_000, seed=max_length, vocab=vocab)
    pairs = list(zip(texts[::2], texts[1::2], strict=True))
    from embedrt.pairs import encode_pairs, pad_pairs
    from embedrt.tokenizer import Tokenizer

    tok = Tokenizer.from_dir(minilm_dir)
    for start in range(0, len(pairs), 100):
        batch = pairs[start : start + 100]
        want = ref([list(p) for p in batch], padding=True, truncation="longest_first", max_length=max_length)
        rows, starts = encode_pairs(tok, batch, max_length)
        got = pad_pairs(tok.pad_id, rows, starts)
        for key in ("input_ids", "attention_mask", "token_type_ids"):
            assert got[key].tolist() == want[key], (key, start)


def test_pair_lengths_rule():
    assert pair_lengths(3, 4, 10) == (3, 4)
    assert pair_lengths(3, 20, 10) == (3, 7)  # only the longer one is cut
    assert pair_lengths(20, 3, 10) == (7, 3)
    assert pair_lengths(8, 9, 10) == (5, 5)  # both cut to half the budget
    assert pair_lengths(8, 9, 11) == (5, 6)  # the odd token to the longer one
    assert pair_lengths(9, 8, 11) == (6, 5)
