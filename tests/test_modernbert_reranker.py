"""ModernBERT rerankers (ModernBertForSequenceClassification, gte-reranker-modernbert-base's shape): random-weight
4-layer models with ``classifier_pooling`` cls and mean (the mask-weighted mean), in the plain Hugging Face layout
and as sentence-transformers >= 5 saves a CrossEncoder, exported and compared with ``CrossEncoder.predict`` on the
sts-test pairs; one server test of /rerank."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import fp16_runs_on_cpu
from modernbert_helpers import save_modernbert_cross_encoder
from serve_helpers import start_server

from embedrt.export import export
from embedrt.export.cross_encoder import SCORE_TOLERANCE
from embedrt.export.parity import _spearman
from embedrt.manifest import Variant
from embedrt.reranker import Reranker

MAX_LENGTH = 192
LONG = "The quick brown fox jumps over the lazy dog while the cat watches from the warm windowsill. " * 4
# Padded far past the window (|i - j| <= 6) in a batch with a long pair, and pairs past MAX_LENGTH.
SPECIAL_PAIRS = [("a", ""), ("", ""), ("short query", LONG), (LONG, "short document"), (LONG, LONG[::-1])]
# (layout, classifier_pooling, labels)
CASES = [("hf", "cls", 1), ("hf", "mean", 1), ("st", "mean", 1), ("st", "cls", 3)]


@pytest.fixture(scope="module", params=CASES, ids=lambda c: "-".join(map(str, c)))
def cross_encoder(request, tmp_path_factory) -> tuple[Path, Path]:
    """(source dir, export dir) for each layout, classifier pooling and label count."""
    from sentence_transformers import CrossEncoder

    layout, pooling, labels = request.param
    tmp = tmp_path_factory.mktemp(f"modernbert-ce-{layout}-{pooling}-{labels}")
    source = save_modernbert_cross_encoder(tmp / "hf", seed=40 + labels, classifier_pooling=pooling, num_labels=labels)
    edit = json.loads((source / "tokenizer_config.json").read_text())
    edit["model_max_length"] = MAX_LENGTH
    (source / "tokenizer_config.json").write_text(json.dumps(edit, indent=2))
    if layout == "st":
        CrossEncoder(str(source), device="cpu", max_length=MAX_LENGTH).save(str(tmp / "st"))
        source = tmp / "st"
        assert (source / "modules.json").is_file()
    variants = "fp32,fp16,int8" if labels == 1 else "fp32"
    return source, export(source, tmp / "out", variants=variants, progress=False)


@pytest.fixture(scope="module")
def pairs(sts_pairs) -> list[tuple[str, str]]:
    return [*zip(sts_pairs.first, sts_pairs.second, strict=True), *SPECIAL_PAIRS]


def _reference(source: Path):
    from sentence_transformers import CrossEncoder

    return CrossEncoder(str(source), device="cpu")


def test_the_source_is_what_it_claims(cross_encoder):
    source, out = cross_encoder
    model = _reference(source)
    assert type(model.model).__name__ == "ModernBertForSequenceClassification"
    assert model.model.config.classifier_pooling in ("cls", "mean")
    assert [layer.attn.local_attention for layer in model.model.model.layers] == [(-1, -1), (6, 6), (6, 6), (-1, -1)]
    manifest = json.loads((out / "manifest.json").read_text())
    default = "Sigmoid" if model.num_labels == 1 else "Identity"
    want = {"num_labels": model.num_labels, "activation": default, "max_length": MAX_LENGTH}
    assert manifest["kind"] == "cross-encoder" and manifest["cross_encoder"] == want
    import onnx

    graph = onnx.load(str(out / Variant.FP32.file_name), load_external_data=False).graph
    assert [i.name for i in graph.input] == ["input_ids", "attention_mask"]


def test_fp32_logits_match_cross_encoder_on_sts_test(cross_encoder, pairs):
    """Every sts-test pair and the long/empty ones, in the same order: max abs logit difference <= 1e-5."""
    import torch

    source, out = cross_encoder
    ce, reranker = _reference(source), Reranker.load(out, variant="fp32")
    want = np.asarray(ce.predict(pairs, activation_fn=torch.nn.Identity()))
    got = reranker.predict(pairs, activation="Identity")
    diff = float(np.abs(got - want).max())
    print(f"{source.parent.name} fp32 logits vs CrossEncoder over {len(pairs)} pairs: max abs {diff:.2e}")
    assert got.shape == want.shape and diff <= 1e-5
    assert float(np.std(want)) >= 0.05  # the scores spread: an order to keep
    if ce.num_labels == 1:
        assert np.abs(reranker.predict(pairs) - ce.predict(pairs)).max() <= 1e-5  # Sigmoid by default


def test_classifier_pooling_matters(cross_encoder, pairs):
    """Pooling the other way (cls <-> mean) moves the logits: the parity above checks the configured one."""
    import torch

    source, _ = cross_encoder
    ce = _reference(source)
    config = ce.model.config
    want = np.asarray(ce.predict(pairs[:50], activation_fn=torch.nn.Identity()))
    config.classifier_pooling = "mean" if config.classifier_pooling == "cls" else "cls"
    other = np.asarray(ce.predict(pairs[:50], activation_fn=torch.nn.Identity()))
    assert np.abs(other - want).max() >= 1e-2


def test_int8_and_fp16_pass_the_reranker_gates(cross_encoder, sts_pairs):
    """The export's gates (max abs logit difference on the check pairs), then on sts-test: Spearman of int8's scores
    against fp32's; fp16 against fp32 where the CPU runs it. No NaN in padded batches."""
    _, out = cross_encoder
    manifest = json.loads((out / "manifest.json").read_text())
    if "int8" not in manifest["variants"]:
        pytest.skip("int8 and fp16 are exported for the one-label models")
    for variant in ("int8", "fp16"):
        parity = manifest["variants"][variant]["parity"]
        assert "skipped" in parity or parity["max_abs_diff"] <= SCORE_TOLERANCE[Variant(variant)], parity
    sts = [*zip(sts_pairs.first, sts_pairs.second, strict=True), *SPECIAL_PAIRS]
    s32 = Reranker.load(out, variant="fp32").predict(sts)
    s8 = Reranker.load(out, variant="int8").predict(sts)
    spearman = _spearman(s8.astype(np.float64), s32.astype(np.float64))
    print(f"{out.parent.name} int8 vs fp32 on sts-test: Spearman {spearman:.5f}, max abs {np.abs(s8 - s32).max():.4f}")
    assert np.isfinite(s8).all() and spearman >= 0.99
    if fp16_runs_on_cpu(out / Variant.FP16.file_name):
        s16 = Reranker.load(out, variant="fp16").predict(sts)
        assert np.isfinite(s16).all() and np.abs(s16 - s32).max() <= SCORE_TOLERANCE[Variant.FP16]


def test_rank_matches_cross_encoder(cross_encoder, sts_pairs):
    source, out = cross_encoder
    ce, reranker = _reference(source), Reranker.load(out)
    if ce.num_labels != 1:
        pytest.skip("rank() is for one-label models")
    query, documents = sts_pairs.first[0], [*sts_pairs.second[:40], LONG]
    want = {r["corpus_id"]: float(r["score"]) for r in ce.rank(query, documents)}
    got = reranker.rank(query, documents, top_k=10)
    assert [r["corpus_id"] for r in got] == [r["corpus_id"] for r in ce.rank(query, documents, top_k=10)]
    assert all(abs(want[r["corpus_id"]] - r["score"]) <= 1e-5 for r in got)


def test_rerank_route_serves_a_modernbert_reranker(cross_encoder):
    """/rerank (TEI) on the sentence-transformers layout: sigmoid scores as CrossEncoder's, sorted."""
    import torch

    source, out = cross_encoder
    ce = _reference(source)
    if ce.num_labels != 1 or ce.model.config.classifier_pooling != "mean" or not (source / "modules.json").is_file():
        pytest.skip("one server test: the sentence-transformers layout, mean pooling, one label")
    query = "What is the capital of France?"
    documents = ["Paris is the capital of France.", "", LONG, "a b c"]
    want = np.asarray(ce.predict([(query, d) for d in documents], activation_fn=torch.nn.Sigmoid()))
    server = start_server(out, "--variant", "fp32")
    try:
        rows = server.post("/rerank", {"query": query, "texts": documents}).json()
        assert sorted(r["index"] for r in rows) == list(range(len(documents)))
        got = np.array([r["score"] for r in rows])
        assert np.all(np.diff(got) <= 0)
        np.testing.assert_allclose(got, want[[r["index"] for r in rows]], atol=1e-5)
    finally:
        assert server.stop() == 0
