"""DistilBERT embedders: msmarco-distilbert-*-v5 / multi-qa-distilbert-* (uncased WordPiece, mean pooling) and
distiluse-base-multilingual-cased-v1/v2 (cased multilingual WordPiece, mean pooling, Dense(Tanh), no Normalize).

Random-weight 2-layer ``DistilBertModel`` s of both shapes, saved by sentence-transformers, exported and compared
with it; a DistilBERT carrying all-MiniLM-L6-v2's trained weights for int8 on real activations (slow); lookalikes
and cross-encoders refused.
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import STS_DIR, clone_dir, edit_json, fp16_runs_on_cpu, reference_encode
from distilbert_helpers import (
    DIM,
    LONG_TEXTS,
    MAX_POSITIONS,
    SPECIAL_TEXTS,
    save_distilbert,
    save_uncased_tokenizer,
)

from embedrt import Encoder
from embedrt.config import TransformerConfig
from embedrt.export import export
from embedrt.export.parity import TOLERANCE, StsPairs, compare
from embedrt.manifest import Manifest, Variant

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.wordpiece_tokenizer import cased_lines, train_cased_wordpiece
from benchmarks.xlmr_tokenizer import multilingual_lines, sts_sentences

DISTILUSE_MAX_SEQ_LENGTH = 64  # distiluse: 128 of 512 positions
DENSE_OUT = 24  # distiluse: 768 -> 512
INT8_SPEARMAN_BUDGET = 0.03  # |int8 - reference| STS Spearman points, as for all-MiniLM-L6-v2 (tests/test_parity.py)


@pytest.fixture(scope="module")
def msmarco_source(tmp_path_factory: pytest.TempPathFactory, minilm_dir: Path) -> Path:
    """msmarco-distilbert-base-v4 / -dot-v5's shape: uncased tokenizer, mean pooling, no Normalize; no
    max_seq_length in sentence_bert_config.json (the tokenizer's model_max_length, capped at the positions)."""
    root = tmp_path_factory.mktemp("msmarco")
    tokenizer = save_uncased_tokenizer(minilm_dir, root / "tok", model_max_length=MAX_POSITIONS)
    return save_distilbert(root, tokenizer, seed=7, max_seq_length=None)


@pytest.fixture(scope="module")
def cased_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    lines = cased_lines(sts_sentences("train")[:4000], 3000, seed=7)
    return train_cased_wordpiece(tmp_path_factory.mktemp("cased"), lines, vocab_size=6000, model_max_length=512)


@pytest.fixture(scope="module")
def distiluse_source(tmp_path_factory: pytest.TempPathFactory, cased_tokenizer: Path) -> Path:
    """distiluse-base-multilingual-cased-v2's shape: cased tokenizer, mean pooling, Dense(Tanh), no Normalize."""
    root = tmp_path_factory.mktemp("distiluse")
    return save_distilbert(root, cased_tokenizer, seed=8, max_seq_length=DISTILUSE_MAX_SEQ_LENGTH, dense_out=DENSE_OUT)


@pytest.fixture(scope="module")
def msmarco_export(msmarco_source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("msmarco-out") / "model"
    return export(msmarco_source, out, variants="fp32,fp16,int8", progress=False)


@pytest.fixture(scope="module")
def distiluse_export(distiluse_source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("distiluse-out") / "model"
    return export(distiluse_source, out, variants="fp32,fp16,int8", progress=False)


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return [*sts_sentences("test"), *multilingual_lines(60, seed=11), *LONG_TEXTS, *SPECIAL_TEXTS]


@pytest.fixture(scope="module")
def shapes(msmarco_source, msmarco_export, distiluse_source, distiluse_export) -> dict[str, tuple[Path, Path]]:
    return {"msmarco": (msmarco_source, msmarco_export), "distiluse": (distiluse_source, distiluse_export)}


SHAPES = ["msmarco", "distiluse"]


def test_the_sources_are_what_they_claim(msmarco_source, distiluse_source):
    from sentence_transformers import SentenceTransformer

    msmarco = SentenceTransformer(str(msmarco_source), device="cpu")
    assert type(msmarco[0].auto_model).__name__ == "DistilBertModel"
    assert [type(m).__name__ for m in msmarco] == ["Transformer", "Pooling"]
    assert msmarco.max_seq_length == MAX_POSITIONS == TransformerConfig.from_dir(msmarco_source).max_seq_length
    assert "max_seq_length" not in json.loads((msmarco_source / "sentence_bert_config.json").read_text())
    distiluse = SentenceTransformer(str(distiluse_source), device="cpu")
    assert [type(m).__name__ for m in distiluse] == ["Transformer", "Pooling", "Dense"]
    assert distiluse.max_seq_length == DISTILUSE_MAX_SEQ_LENGTH
    assert TransformerConfig.from_dir(distiluse_source).max_seq_length == DISTILUSE_MAX_SEQ_LENGTH
    config = json.loads((distiluse_source / "config.json").read_text())
    assert config["model_type"] == "distilbert" and "hidden_size" not in config and config["dim"] == DIM
    normalizer = json.loads(distiluse.tokenizer.backend_tokenizer.normalizer.__getstate__())
    assert (normalizer["lowercase"], normalizer["strip_accents"], normalizer["handle_chinese_chars"]) == (
        False,
        None,
        True,
    )


@pytest.mark.parametrize("shape", SHAPES)
def test_fp32_is_exact_on_sts_test_long_and_special_texts(shapes, texts, shape):
    source, exported = shapes[shape]
    reference = reference_encode(source, texts)
    got = Encoder.load(exported, variant="fp32").encode(texts)
    figures = compare(reference, got)
    print(f"{shape} fp32 vs sentence-transformers: {figures}")
    assert figures.min_cosine >= 0.99999 and figures.max_abs_diff <= 1e-4, figures


@pytest.mark.parametrize("shape", SHAPES)
def test_int8_passes_the_gates(shapes, texts, shape):
    source, exported = shapes[shape]
    parity = Manifest.from_file(exported / "manifest.json").variants[Variant.INT8].parity
    min_cos, max_abs = TOLERANCE[Variant.INT8]
    assert parity["min_cosine"] >= min_cos and parity["max_abs_diff"] <= max_abs, parity
    reference = reference_encode(source, texts)
    figures = compare(reference, Encoder.load(exported, variant="int8").encode(texts))
    pairs = StsPairs.from_file(STS_DIR / "sts-test.csv")
    n = len(pairs.sentences)
    assert texts[:n] == pairs.sentences
    delta = pairs.spearman(Encoder.load(exported, variant="int8").encode(pairs.sentences)) - pairs.spearman(
        reference[:n]
    )
    print(f"{shape} int8 vs sentence-transformers: {figures}, Spearman delta {delta:+.4f}")
    assert figures.within(Variant.INT8), figures
    assert abs(delta) <= INT8_SPEARMAN_BUDGET


@pytest.mark.parametrize("shape", SHAPES)
def test_fp16_is_written_and_within_its_gate_where_it_runs_on_the_cpu(shapes, texts, shape):
    source, exported = shapes[shape]
    path = exported / Variant.FP16.file_name
    assert path.is_file()
    if not fp16_runs_on_cpu(path):
        pytest.skip("this onnxruntime's CPU provider lacks fp16 kernels; the file is for CUDA")
    figures = compare(reference_encode(source, texts), Encoder.load(exported, variant="fp16").encode(texts))
    assert figures.within(Variant.FP16), figures


@pytest.mark.parametrize("shape", SHAPES)
def test_graph_inputs_are_ids_and_mask_and_attention_is_fused(shapes, shape):
    import onnx

    _, exported = shapes[shape]
    manifest = Manifest.from_file(exported / "manifest.json")
    assert set(manifest.variants) == {Variant.FP32, Variant.FP16, Variant.INT8}
    for variant, info in manifest.variants.items():
        graph = onnx.load(str(exported / info.file), load_external_data=False).graph
        ops = Counter(node.op_type for node in graph.node)
        print(shape, variant.value, dict(ops))
        assert [i.name for i in graph.input] == ["input_ids", "attention_mask"], variant
        assert info.inputs == ("input_ids", "attention_mask")
        # One MultiHeadAttention per layer and no attention left unfused (onnxruntime's optimizer fuses none).
        assert ops["MultiHeadAttention"] == 2 and ops["Softmax"] == 0, (variant, ops)
        assert re.search(r"MultiHeadAttention x2\b", info.recipe), info.recipe
        if variant is not Variant.INT8:
            assert "(bert)" in info.recipe and "BiasGelu x2" in info.recipe, info.recipe


def test_the_attention_fusion_matches_distilberts_pattern_only(msmarco_source, tmp_path):
    """embedrt's pass fuses DistilBERT's Where-masked attention with the same outputs on padded batches, and leaves
    a Where that is not the padding mask (a fill of -1, not the lowest float) as it is."""
    import onnx
    import onnxruntime as ort

    from embedrt.export.architectures import families
    from embedrt.export.fusion import fuse_attention
    from embedrt.export.onnx_files import export_plain

    plain = tmp_path / "plain.onnx"
    export_plain(msmarco_source, plain, False, architecture=families()["distilbert"])
    rng = np.random.default_rng(0)
    ids = rng.integers(1000, 30000, (3, 20))
    mask = np.ones_like(ids)
    mask[1, 12:], mask[2, 3:] = 0, 0
    ids[mask == 0] = 0
    feeds = {"input_ids": ids, "attention_mask": mask}
    expected = ort.InferenceSession(str(plain)).run(None, feeds)[0]
    model = onnx.load(str(plain))
    assert fuse_attention(model, 4) == 2
    got = ort.InferenceSession(model.SerializeToString()).run(None, feeds)[0]
    np.testing.assert_allclose(got[mask == 1], expected[mask == 1], atol=1e-6)
    model = onnx.load(str(plain))
    fills = [n for n in model.graph.node if n.op_type == "Where"]
    constants = {n.output[0]: n for n in model.graph.node if n.op_type == "Constant"}
    for where in fills:
        constants[where.input[1]].attribute[0].t.CopyFrom(onnx.numpy_helper.from_array(np.array(-1.0, np.float32)))
    assert len(fills) == 2 and fuse_attention(model, 4) == 0


def test_distiluse_runs_its_dense_head(distiluse_source, distiluse_export):
    from sentence_transformers import SentenceTransformer

    assert (distiluse_export / "2_Dense" / "model.safetensors").is_file()
    encoder = Encoder.load(distiluse_export)
    assert encoder.dimension == DENSE_OUT
    texts = ["Ein Hund läuft über die Wiese.", "犬が草原を走っている。", "A DOG runs across the MEADOW."]
    got = encoder.encode(texts)
    assert got.shape == (3, DENSE_OUT) and np.abs(got).max() < 1  # tanh, and no Normalize after it
    assert not np.allclose(np.linalg.norm(got, axis=1), 1, atol=1e-3)
    np.testing.assert_allclose(got, SentenceTransformer(str(distiluse_source), device="cpu").encode(texts), atol=1e-5)


def test_a_literal_pad_keeps_attention_and_matches(msmarco_source, msmarco_export):
    from transformers import AutoTokenizer

    encoder = Encoder.load(msmarco_export)
    assert encoder.tokenizer.pad_id == 0
    batch = encoder.tokenize(["a [PAD] b", "[PAD]", "a much longer text so that the others are padded"])
    hf = AutoTokenizer.from_pretrained(str(msmarco_source))
    reference = hf(["a [PAD] b", "[PAD]", "a much longer text so that the others are padded"], padding=True)
    np.testing.assert_array_equal(batch["input_ids"], reference["input_ids"])
    np.testing.assert_array_equal(batch["attention_mask"], reference["attention_mask"])
    assert batch["input_ids"][1].tolist()[:3] == [101, 0, 102] and batch["attention_mask"][1].tolist()[:3] == [1] * 3
    single = np.stack([encoder.encode(t) for t in SPECIAL_TEXTS])
    reference_vectors = reference_encode(msmarco_source, SPECIAL_TEXTS)
    for got in (single, encoder.encode(SPECIAL_TEXTS)):
        figures = compare(reference_vectors, got)
        assert figures.min_cosine >= 0.99999 and figures.max_abs_diff <= 1e-4, figures


def test_max_seq_length_rules(msmarco_source, tmp_path):
    """The explicit max_seq_length wins; else the tokenizer's model_max_length, capped at max_position_embeddings
    (DistilBERT's positions are 0 .. n - 1: no pad offset as in XLM-R); the legacy config name is read."""
    source = clone_dir(msmarco_source, tmp_path / "src")
    edit_json(source / "tokenizer_config.json", model_max_length=512)  # distilbert-base-uncased's
    assert TransformerConfig.from_dir(source).max_seq_length == MAX_POSITIONS
    edit_json(source / "tokenizer_config.json", model_max_length=100)
    assert TransformerConfig.from_dir(source).max_seq_length == 100
    sbert = source / "sentence_bert_config.json"
    edit_json(sbert, max_seq_length=32)
    assert TransformerConfig.from_dir(source).max_seq_length == 32
    sbert.rename(source / "sentence_distilbert_config.json")  # the name sentence-transformers < 2 saved
    assert TransformerConfig.from_dir(source).max_seq_length == 32


def test_a_long_tokenizer_limit_is_cut_at_the_positions(msmarco_source, tmp_path):
    """model_max_length 512 over 128 positions: sentence-transformers and embedrt both stop at 128 tokens."""
    from sentence_transformers import SentenceTransformer

    source = clone_dir(msmarco_source, tmp_path / "src")
    edit_json(source / "tokenizer_config.json", model_max_length=512)
    out = export(source, tmp_path / "out", variants="fp32", progress=False)
    assert Encoder.load(out).max_seq_length == MAX_POSITIONS
    reference = SentenceTransformer(str(source), device="cpu")
    assert reference.max_seq_length == MAX_POSITIONS
    figures = compare(reference.encode(LONG_TEXTS), Encoder.load(out).encode(LONG_TEXTS))
    assert figures.min_cosine >= 0.99999 and figures.max_abs_diff <= 1e-4, figures


def _sinusoid(n_pos: int, dim: int) -> np.ndarray:
    """The table of "Attention is all you need", as DistilBERT's create_sinusoidal_embeddings writes it."""
    angle = np.arange(n_pos)[:, None] / np.power(10000, 2 * (np.arange(dim)[None, :] // 2) / dim)
    return np.where(np.arange(dim) % 2 == 0, np.sin(angle), np.cos(angle))


def test_sinusoidal_positions_are_exact(tmp_path, minilm_dir):
    """``sinusoidal_pos_embds: true`` (distilbert-base-*'s option): transformers writes the sinusoid into the
    position table, which the checkpoint holds and the graph gathers like a learned one."""
    from safetensors.numpy import load_file

    tokenizer = save_uncased_tokenizer(minilm_dir, tmp_path / "tok", model_max_length=MAX_POSITIONS)
    source = save_distilbert(tmp_path, tokenizer, seed=9, max_seq_length=None, normalize=True, sinusoidal=True)
    assert json.loads((source / "config.json").read_text())["sinusoidal_pos_embds"] is True
    table = load_file(str(source / "model.safetensors"))["embeddings.position_embeddings.weight"]
    np.testing.assert_allclose(table, _sinusoid(MAX_POSITIONS, DIM), atol=1e-6)
    out = export(source, tmp_path / "out", variants="fp32", progress=False)
    texts = [*sts_sentences("test")[:300], *LONG_TEXTS, *SPECIAL_TEXTS]
    figures = compare(reference_encode(source, texts), Encoder.load(out).encode(texts))
    assert figures.min_cosine >= 0.99999 and figures.max_abs_diff <= 1e-4, figures


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"auto_map": {"AutoModel": "someone/distil--modeling.CustomDistil"}}, "'auto_map'"),
        ({"architectures": ["DistilBertLoRA"]}, "'architectures' holds ['DistilBertLoRA']"),
        ({"architectures": ["BertModel"]}, "'architectures' holds ['BertModel']"),
        ({"position_embedding_type": "rotary"}, "'position_embedding_type' is 'rotary'"),
    ],
)
def test_a_distilbert_lookalike_is_refused_naming_the_file_and_key(msmarco_source, tmp_path, changes, key):
    source = clone_dir(msmarco_source, tmp_path / "src")
    edit_json(source / "config.json", **changes)
    with pytest.raises(ValueError) as refused:
        export(source, tmp_path / "out", variants="fp32", progress=False)
    message = str(refused.value)
    assert str(source / "config.json") in message and key in message, message
    assert "custom code" in message or "absolute" in message
    assert not (tmp_path / "out").exists()


def test_transformers_own_distilbert_classes_are_accepted_with_their_sizes(msmarco_source, tmp_path):
    from embedrt.export.layout import check_transformer

    architecture, sizes = check_transformer(msmarco_source, allow_pickle=False)
    assert architecture.inputs == ("input_ids", "attention_mask") and sizes == {"num_heads": 4, "hidden_size": DIM}
    source = clone_dir(msmarco_source, tmp_path / "src")
    edit_json(source / "config.json", architectures=["DistilBertForMaskedLM"])  # distilbert-base-uncased's
    assert check_transformer(source, allow_pickle=False)[0].model_class == "DistilBertModel"
    edit_json(source / "config.json", n_heads=None)
    with pytest.raises(ValueError, match=r"config\.json.*'n_heads'"):
        check_transformer(source, allow_pickle=False)


def test_a_distilbert_cross_encoder_is_refused_clearly(msmarco_source, tmp_path):
    import torch
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    config = DistilBertConfig.from_pretrained(str(msmarco_source))
    config.num_labels = 1
    torch.manual_seed(4)
    hf = tmp_path / "reranker"
    DistilBertForSequenceClassification(config).save_pretrained(hf, safe_serialization=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        (hf / name).write_bytes((msmarco_source / name).read_bytes())
    with pytest.raises(ValueError, match=r"cross-encoder of model_type 'distilbert'.*not supported yet") as refused:
        export(hf, tmp_path / "out", variants="fp32", progress=False)
    assert "DistilBertForSequenceClassification" in str(refused.value)
    assert not (tmp_path / "out").exists()


def _minilm_as_distilbert(minilm_dir: Path, root: Path) -> Path:
    """all-MiniLM-L6-v2's trained weights in a DistilBertModel, which then computes the same vectors.

    DistilBERT is BERT without token types and pooler: the one token type row BERT adds to every token is folded
    into the position table; the attention mask (Where with the lowest float instead of an added mask) gives the
    same softmax, and the GELU and LayerNorm epsilon are BERT's.
    """
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Normalize, Pooling, Transformer
    from transformers import BertModel, DistilBertConfig, DistilBertModel

    bert = BertModel.from_pretrained(str(minilm_dir), add_pooling_layer=False)
    c = bert.config
    config = DistilBertConfig(
        vocab_size=c.vocab_size,
        dim=c.hidden_size,
        n_layers=c.num_hidden_layers,
        n_heads=c.num_attention_heads,
        hidden_dim=c.intermediate_size,
        max_position_embeddings=c.max_position_embeddings,
        pad_token_id=c.pad_token_id,
    )
    b = bert.state_dict()
    state = {
        "embeddings.word_embeddings.weight": b["embeddings.word_embeddings.weight"],
        "embeddings.position_embeddings.weight": b["embeddings.position_embeddings.weight"]
        + b["embeddings.token_type_embeddings.weight"][0],
        "embeddings.LayerNorm.weight": b["embeddings.LayerNorm.weight"],
        "embeddings.LayerNorm.bias": b["embeddings.LayerNorm.bias"],
    }
    names = {
        "attention.q_lin": "attention.self.query",
        "attention.k_lin": "attention.self.key",
        "attention.v_lin": "attention.self.value",
        "attention.out_lin": "attention.output.dense",
        "sa_layer_norm": "attention.output.LayerNorm",
        "ffn.lin1": "intermediate.dense",
        "ffn.lin2": "output.dense",
        "output_layer_norm": "output.LayerNorm",
    }
    for i in range(c.num_hidden_layers):
        for ours, theirs in names.items():
            for p in ("weight", "bias"):
                state[f"transformer.layer.{i}.{ours}.{p}"] = b[f"encoder.layer.{i}.{theirs}.{p}"]
    model = DistilBertModel(config)
    model.load_state_dict(state, strict=True)
    model.save_pretrained(root / "hf", safe_serialization=True)
    save_uncased_tokenizer(minilm_dir, root / "hf", model_max_length=512)
    modules = [Transformer(str(root / "hf"), max_seq_length=256), Pooling(c.hidden_size, "mean"), Normalize()]
    SentenceTransformer(modules=modules, device="cpu").save(str(root / "st"))
    return root / "st"


@pytest.mark.slow
def test_int8_on_trained_weights_meets_minilm_gates(minilm_dir, sts_pairs, tmp_path):
    """int8 on real activations: a DistilBERT that computes all-MiniLM-L6-v2 meets MiniLM's int8 gates on sts-test
    (tests/test_parity.py), and its fp32 graph matches sentence-transformers exactly."""
    from test_parity import INT8_MEAN_COSINE, INT8_MIN_COSINE, INT8_P1_COSINE

    source = _minilm_as_distilbert(minilm_dir, tmp_path)
    sentences = sts_pairs.sentences
    reference = reference_encode(source, sentences, batch_size=32)
    minilm = reference_encode(minilm_dir, sentences[:200], batch_size=32)
    assert np.abs(reference[:200] - minilm).max() < 1e-5  # the transplant computes all-MiniLM-L6-v2
    out = export(source, tmp_path / "out", variants="fp32,int8", progress=False)
    fp32 = compare(reference, Encoder.load(out, variant="fp32").encode(sentences))
    assert fp32.min_cosine >= 0.99999 and fp32.max_abs_diff <= 1e-4, fp32
    int8 = Encoder.load(out, variant="int8").encode(sentences)
    figures, delta = compare(reference, int8), sts_pairs.spearman(int8) - sts_pairs.spearman(reference)
    print(f"int8 vs sentence-transformers on sts-test: {figures}, Spearman delta {delta:+.4f}")
    assert figures.min_cosine >= INT8_MIN_COSINE and figures.p1_cosine >= INT8_P1_COSINE, figures
    assert figures.mean_cosine >= INT8_MEAN_COSINE, figures
    assert abs(delta) <= INT8_SPEARMAN_BUDGET
