"""Parity of the exported all-MiniLM-L6-v2 with sentence-transformers on the STS benchmark (slow)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import MODEL_CARD_SENTENCES, clone_dir, drop_normalize, fp16_runs_on_cpu, reference_encode

from embedrt import Encoder
from embedrt.export.parity import compare
from embedrt.manifest import MANIFEST_NAME, Manifest, Variant

pytestmark = pytest.mark.slow

# Regression gates for int8 on all of sts-test.csv against PyTorch, a stated margin below the README's figures
# (min 0.9938, p1 0.9965, mean 0.9989, Spearman 82.02 against the reference's 82.03): a drop to 0.981 fails.
INT8_MIN_COSINE = 0.9938 - 0.002
INT8_P1_COSINE = 0.9965 - 0.001
INT8_MEAN_COSINE = 0.9989 - 0.0005
INT8_SPEARMAN_BUDGET = 0.03  # |int8 - reference|; measured 0.01
INT8_MAX_BYTES = 25_000_000


@pytest.fixture(scope="module")
def reference(minilm_dir, sts_pairs):
    return reference_encode(minilm_dir, sts_pairs.sentences, batch_size=32)


@pytest.fixture(scope="module")
def figures(minilm_export, sts_pairs, reference):
    """Per variant: (parity figures, Spearman), printed for the record."""
    out = {}
    for variant in ("fp32", "int8"):
        emb = Encoder.load(minilm_export, variant=variant).encode(sts_pairs.sentences)
        out[variant] = (compare(reference, emb), sts_pairs.spearman(emb))
        print(variant, out[variant])
    return out


def test_fp32_matches_reference_on_sts(figures):
    parity, _ = figures["fp32"]
    assert parity.n == 2 * 1379
    assert parity.min_cosine >= 0.99999
    assert parity.max_abs_diff <= 1e-4


def test_reference_spearman(sts_pairs, reference):
    from scipy.stats import spearmanr

    n = len(sts_pairs.first)
    a, b = reference[:n], reference[n:]
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    expected = 100 * spearmanr(cos, sts_pairs.scores).statistic
    assert sts_pairs.spearman(reference) == pytest.approx(expected, abs=1e-9)
    assert expected == pytest.approx(82.03, abs=0.01)


def test_int8_meets_the_accuracy_targets(figures, sts_pairs, reference, minilm_export):
    parity, spearman = figures["int8"]
    assert parity.n == 2 * 1379
    assert parity.min_cosine >= INT8_MIN_COSINE
    assert parity.p1_cosine >= INT8_P1_COSINE
    assert parity.mean_cosine >= INT8_MEAN_COSINE
    assert abs(spearman - sts_pairs.spearman(reference)) <= INT8_SPEARMAN_BUDGET
    assert (minilm_export / "model.int8.onnx").stat().st_size <= INT8_MAX_BYTES


def test_int8_recipe_is_recorded(minilm_export):
    info = Manifest.from_file(minilm_export / MANIFEST_NAME).variants[Variant.INT8]
    assert "calibrated on 2048 texts of sts-train.csv" in info.recipe


def test_int8_vector_does_not_depend_on_its_batch(minilm_export, sts_pairs):
    # Activation steps are calibrated constants or per token, never per batch: a sentence embedded alone and
    # among 63 others of other lengths gets the same vector (up to padding's rounding).
    encoder = Encoder.load(minilm_export, variant="int8")
    texts = sts_pairs.sentences[:64]
    batch = encoder.encode(texts, batch_size=64)
    alone = np.stack([encoder.encode(text) for text in texts])
    assert np.sum(alone * batch, axis=1).min() > 0.99999


def test_model_card_similarity_table(minilm_export):
    encoder = Encoder.load(minilm_export)
    emb = encoder.encode(MODEL_CARD_SENTENCES)
    expected = [
        ["1.0000", "0.6660", "0.1046"],
        ["0.6660", "1.0000", "0.1411"],
        ["0.1046", "0.1411", "1.0000"],
    ]
    assert [[f"{x:.4f}" for x in row] for row in encoder.similarity(emb, emb)] == expected


def test_without_normalize_on_sts(minilm_dir, minilm_export, sts_pairs, tmp_path):
    source = clone_dir(minilm_dir, tmp_path / "source")
    export = clone_dir(minilm_export, tmp_path / "export")
    drop_normalize(source)
    drop_normalize(export)
    reference = reference_encode(source, sts_pairs.sentences, batch_size=32)
    got = Encoder.load(export).encode(sts_pairs.sentences)
    assert not np.allclose(np.linalg.norm(reference, axis=1), 1.0, atol=1e-3)
    parity = compare(reference, got)
    assert parity.min_cosine >= 0.99999
    assert parity.max_abs_diff <= 1e-4


def test_new_format_save_has_the_same_parity(minilm_dir, minilm_export, sts_pairs, reference, tmp_path):
    """The packaged model re-saved by the installed sentence-transformers (new format) exports the same."""
    from sentence_transformers import SentenceTransformer

    from embedrt.export import export

    saved = tmp_path / "saved"
    SentenceTransformer(str(minilm_dir), device="cpu").save(str(saved))
    out = export(saved, tmp_path / "out", variants=["fp32"], progress=False)
    got = Encoder.load(out).encode(sts_pairs.sentences)
    parity = compare(reference_encode(saved, sts_pairs.sentences, batch_size=32), got)
    assert parity.min_cosine >= 0.99999
    assert parity.max_abs_diff <= 1e-4


def test_fp16_on_sts_where_it_runs(minilm_export, sts_pairs, reference):
    """Where this CPU runs fp16, it is measured on all of sts-test.csv; elsewhere the export says it skipped."""
    info = Manifest.from_file(minilm_export / MANIFEST_NAME).variants[Variant.FP16]
    if not fp16_runs_on_cpu(minilm_export / "model.fp16.onnx"):
        assert "cannot run" in str(info.parity["skipped"])
        pytest.skip("this onnxruntime has no CPU kernel for a node of the fp16 file (the export says so)")
    assert "skipped" not in info.parity
    parity = compare(reference, Encoder.load(minilm_export, variant="fp16").encode(sts_pairs.sentences))
    print("fp16", parity)
    assert parity.min_cosine >= 0.999


def test_memory_stays_flat_over_varying_shapes(minilm_export):
    """RSS after 250 calls of changing shapes stays within 40 MB of the level after 100 (no timing)."""
    from benchmarks.memory_growth import measure

    encoder = Encoder.load(minilm_export, variant="int8", threads=2)
    report = measure(encoder, calls=260, max_batch=8, max_words=250)
    rss = report["rss_mb"]
    print(report)
    assert rss[250] - rss[100] <= 40
    assert rss[250] - rss[10] <= 80
