"""ModernBERT embedders (gte-modernbert-base: CLS pooling, no Normalize, no LayerNorm biases; modernbert-embed-base:
mean + Normalize with search_query / search_document prompts): random-weight 4-layer ``ModernBertModel``s (global
attention on layers 0 and 3, a local window of 12 on 1 and 2, non-default rotary thetas) saved by
sentence-transformers, exported and compared with it; each rule of the architecture proved by a numpy model written
from the rules, whose mutants the exported graph must disagree with."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import clone_dir, edit_json, fp16_runs_on_cpu, reference_encode
from modernbert_helpers import (
    EVERY_N,
    GLOBAL_THETA,
    HIDDEN,
    LAYERS,
    LOCAL_ATTENTION,
    LOCAL_THETA,
    MAX_POSITIONS,
    Rules,
    load_weights,
    numpy_modernbert,
    save_modernbert,
    to_transformers5_spelling,
)

from embedrt import Encoder
from embedrt.config import TransformerConfig
from embedrt.export import export
from embedrt.export.architectures.modernbert import check_transformers_version, config_overrides
from embedrt.export.parity import TOLERANCE, compare
from embedrt.manifest import Manifest, Variant

MAX_SEQ_LENGTH = 256
PROMPTS = {"query": "search_query: ", "document": "search_document: "}
# Past the window (|i - j| <= 6) many times over, and mixed lengths in one batch: short texts padded far past it.
LONG_TEXTS = [
    "The quick brown fox jumps over the lazy dog while the cat watches from the warm windowsill. " * 3,
    "Sentence embeddings map text to dense vectors for semantic search and clustering. " * 8,
    "word " * 300,
    "a",
    "",
    "Short one.",
]
# The two layouts of the hub's ModernBERT embedders.
SHAPES = {
    # gte-modernbert-base: CLS pooling, no Normalize, LayerNorms and Linears without bias
    "gte": {"pooling": "cls", "normalize": False, "norm_bias": False},
    # modernbert-embed-base: mean pooling + Normalize, prompts; here with every bias on
    "embed": {
        "pooling": "mean",
        "normalize": True,
        "norm_bias": True,
        "attention_bias": True,
        "mlp_bias": True,
        "prompts": PROMPTS,
    },
}


@pytest.fixture(scope="module", params=list(SHAPES))
def shape(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return {
        name: save_modernbert(tmp_path_factory.mktemp(f"modernbert-{name}"), seed=26 + i, **settings)
        for i, (name, settings) in enumerate(SHAPES.items())
    }


@pytest.fixture(scope="module")
def exports(sources: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return {
        name: export(source, tmp_path_factory.mktemp(f"modernbert-{name}-out") / "model", progress=False)
        for name, source in sources.items()
    }


@pytest.fixture(scope="module")
def texts(sts_pairs) -> list[str]:
    return [*sts_pairs.sentences, *LONG_TEXTS]


def test_the_sources_are_what_they_claim(sources):
    from sentence_transformers import SentenceTransformer

    for name, source in sources.items():
        model = SentenceTransformer(str(source), device="cpu")
        auto = model[0].auto_model
        assert type(auto).__name__ == "ModernBertModel"
        assert model.max_seq_length == MAX_SEQ_LENGTH
        config = auto.config
        assert (config.global_rope_theta, config.local_rope_theta) == (GLOBAL_THETA, LOCAL_THETA)
        assert [layer.attn.local_attention for layer in auto.layers] == [(-1, -1), (6, 6), (6, 6), (-1, -1)]
        assert config.norm_bias is SHAPES[name]["norm_bias"]
        assert config.hidden_activation == "gelu"
        assert [type(m).__name__ for m in model] == ["Transformer", "Pooling"] + (
            ["Normalize"] if SHAPES[name]["normalize"] else []
        )
        lengths = model.tokenize(LONG_TEXTS)["attention_mask"].sum(1)
        assert int(lengths.max()) == MAX_SEQ_LENGTH and int(lengths.min()) == 2  # pad runs of 254


# ---------------------------------------------------------------- the rules, proved with a numpy model


def _batch(encoder: Encoder, texts: list[str]) -> dict[str, np.ndarray]:
    return encoder.tokenize(texts)


def _graph_output(export_dir: Path, variant: Variant, batch: dict[str, np.ndarray]) -> np.ndarray:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(export_dir / variant.file_name), providers=["CPUExecutionProvider"])
    return session.run(None, {k: batch[k] for k in ("input_ids", "attention_mask")})[0]


RULE_TEXTS = [*LONG_TEXTS[:2], "A man is playing a guitar on the street corner for the tourists and their dogs."]
# Each mutant and how far (max abs) it moves the token embeddings at least; the true rules stay within 1e-5.
MUTANTS = {
    "window exclusive (|i - j| < local // 2)": (Rules(in_window=lambda d, local: d < local // 2), 1e-2),
    "window one wider": (Rules(in_window=lambda d, local: d <= local // 2 + 1), 1e-2),
    "global layers from layer n - 1": (Rules(global_layer=lambda i, n: i % n == n - 1), 1e-2),
    "every layer global": (Rules(global_layer=lambda i, n: True), 1e-2),
    "every layer local": (Rules(global_layer=lambda i, n: False), 1e-2),
    "thetas swapped": (Rules(swap_thetas=True), 1e-2),
    "GeGLU gate and input swapped": (Rules(gate_first=True), 1e-2),
    "tanh GELU": (Rules(tanh_gelu=True), 1e-4),  # within 3e-4 of the erf GELU everywhere: a small move
}


def test_the_numpy_model_is_sentence_transformers(sources, exports, shape):
    """The numpy model written from the rules gives sentence-transformers' token embeddings: it can judge the graph."""
    import torch
    from sentence_transformers import SentenceTransformer

    source = sources[shape]
    model = SentenceTransformer(str(source), device="cpu")
    features = model.tokenize(RULE_TEXTS)
    with torch.no_grad():
        want = model[0](dict(features))["token_embeddings"].numpy()
    config = json.loads((source / "config.json").read_text())
    got = numpy_modernbert(
        load_weights(source), config, features["input_ids"].numpy(), features["attention_mask"].numpy()
    )
    real = features["attention_mask"].numpy().astype(bool)
    assert np.abs(got[real] - want[real]).max() <= 1e-5


@pytest.mark.parametrize("mutant", list(MUTANTS))
def test_the_graph_follows_each_rule_and_not_its_mutant(sources, exports, shape, mutant):
    """On texts past the window, the exported fp32 graph agrees with the numpy model of the true rules (1e-5) and
    disagrees with the mutant (a wrong window edge, layer pattern, theta, gate or GELU) by far more."""
    source, out = sources[shape], exports[shape]
    config = json.loads((source / "config.json").read_text())
    batch = _batch(Encoder.load(out), RULE_TEXTS)
    graph = _graph_output(out, Variant.FP32, batch)
    real = batch["attention_mask"].astype(bool)
    weights = load_weights(source)
    true = numpy_modernbert(weights, config, batch["input_ids"], batch["attention_mask"])
    rules, moves = MUTANTS[mutant]
    wrong = numpy_modernbert(weights, config, batch["input_ids"], batch["attention_mask"], rules)
    agree, disagree = np.abs(graph[real] - true[real]).max(), np.abs(graph[real] - wrong[real]).max()
    print(f"{shape} {mutant}: graph vs true rules {agree:.1e}, vs mutant {disagree:.1e}")
    assert agree <= 1e-5
    assert disagree >= moves, mutant


def test_layernorm_biases_are_applied(sources, exports):
    """modernbert-embed's shape has LayerNorm biases (norm_bias true): dropping them moves the graph's output."""
    source, out = sources["embed"], exports["embed"]
    config = json.loads((source / "config.json").read_text())
    assert config["norm_bias"] is True and SHAPES["gte"]["norm_bias"] is False
    batch = _batch(Encoder.load(out), RULE_TEXTS)
    graph = _graph_output(out, Variant.FP32, batch)
    real = batch["attention_mask"].astype(bool)
    weights = load_weights(source)
    assert "final_norm.bias" in weights and "final_norm.bias" not in load_weights(sources["gte"])
    mutant = numpy_modernbert(weights, config, batch["input_ids"], batch["attention_mask"], Rules(drop_norm_bias=True))
    assert np.abs(graph[real] - mutant[real]).max() >= 1e-2


# ---------------------------------------------------------------- the exported model against sentence-transformers


def test_fp32_is_exact_on_sts_test_long_texts_and_mixed_lengths(sources, exports, shape, texts):
    reference = reference_encode(sources[shape], texts)
    encoder = Encoder.load(exports[shape], variant="fp32")
    figures = compare(reference, encoder.encode(texts))
    print(f"{shape} fp32 vs sentence-transformers: {figures}")
    assert figures.min_cosine >= 0.999999 and figures.max_abs_diff <= 2e-6, figures
    # One text at a time (no padding) gives the same vectors as the padded batches.
    singles = np.stack([encoder.encode(t) for t in LONG_TEXTS])
    assert np.abs(singles - reference[-len(LONG_TEXTS) :]).max() <= 2e-6


def test_int8_passes_the_export_gate(sources, exports, shape, texts, sts_pairs):
    """The export's int8 gate, and MiniLM's gates on all of sts-test: min cosine, and Spearman within 0.03 of the
    reference's (a random model's Spearman against the gold scores means nothing; the difference still does).

    The random CLS-pooled model (gte's shape) puts every sts pair at cosine 0.9945 +- 0.003, so its Spearman
    against gold moves by 0.07 for int8 noise of cosine 0.99998: there the order of the pair cosines themselves
    is compared with the reference's (Spearman >= 0.999), as the reranker tests compare scores."""
    from embedrt.export.parity import _spearman, row_cosines

    manifest = Manifest.from_file(exports[shape] / "manifest.json")
    min_cos, max_abs = TOLERANCE[Variant.INT8]
    parity = manifest.variants[Variant.INT8].parity
    assert parity["min_cosine"] >= min_cos and parity["max_abs_diff"] <= max_abs, parity
    reference = reference_encode(sources[shape], texts)
    got = Encoder.load(exports[shape], variant="int8").encode(texts)
    figures = compare(reference, got)
    n, half = len(sts_pairs.sentences), len(sts_pairs.first)
    delta = sts_pairs.spearman(got[:n]) - sts_pairs.spearman(reference[:n])
    pair_cosines = row_cosines(reference[:half], reference[half:n])
    order = _spearman(row_cosines(got[:half], got[half:n]), pair_cosines)
    print(
        f"{shape} int8 vs sentence-transformers: {figures}, Spearman delta {delta:+.4f}, pair cosines "
        f"{pair_cosines.mean():.4f} +- {pair_cosines.std():.4f}, their order's Spearman {order:.6f}"
    )
    assert figures.within(Variant.INT8), figures
    assert order >= 0.999
    if pair_cosines.std() >= 0.01:
        assert abs(delta) <= 0.03


def test_fp16_is_written_and_within_its_gate_where_it_runs(sources, exports, shape, texts):
    path = exports[shape] / Variant.FP16.file_name
    assert path.is_file()
    if not fp16_runs_on_cpu(path):
        pytest.skip("this onnxruntime's CPU provider lacks fp16 kernels; the file is for CUDA")
    got = Encoder.load(exports[shape], variant="fp16").encode(texts)
    figures = compare(reference_encode(sources[shape], texts), got)
    print(f"{shape} fp16 vs sentence-transformers: {figures}")
    assert figures.within(Variant.FP16), figures


def test_a_prompt_end_to_end(sources, exports, sts_pairs):
    """modernbert-embed's search_query: / search_document: prompts, by name, as sentence-transformers applies them."""
    source, out = sources["embed"], exports["embed"]
    encoder = Encoder.load(out)
    assert encoder.config.sentence_transformer.prompts == PROMPTS
    queries, documents = list(sts_pairs.first[:200]), [*sts_pairs.second[:200], LONG_TEXTS[1]]
    for name, part in (("query", queries), ("document", documents)):
        want = reference_encode(source, part, prompt_name=name)
        got = encoder.encode(part, prompt_name=name)
        assert np.abs(got - want).max() <= 2e-6, name
        assert np.abs(got - encoder.encode(part)).max() >= 1e-3  # the prompt changes the vectors


def test_no_variant_gives_nan_or_inf_in_padded_or_real_rows(exports, shape):
    """Short texts padded in a batch with a 256-token one: pad runs of up to 254 tokens, far past the window's 6, so
    a padded query on a local layer has every key masked. No variant's graph gives NaN or inf anywhere, and the
    vectors stay finite through pooling."""
    out = exports[shape]
    encoder = Encoder.load(out)
    texts = ["word " * 300, "a", "", "Short one.", LONG_TEXTS[0]]
    batch = _batch(encoder, texts)
    mask = batch["attention_mask"].astype(bool)
    assert (~mask).sum(1).max() >= 20 * LOCAL_ATTENTION
    for variant in (Variant.FP32, Variant.FP16, Variant.INT8):
        if variant is Variant.FP16 and not fp16_runs_on_cpu(out / variant.file_name):
            continue
        hidden = _graph_output(out, variant, batch)
        assert np.isfinite(hidden[mask]).all() and np.isfinite(hidden[~mask]).all(), variant
        assert np.isfinite(Encoder.load(out, variant=variant.value).encode(texts)).all(), variant


def test_the_export_traces_the_banded_local_attention(sources):
    """The model the export traces computes its local layers in the band (export/banded_attention.py) and builds
    no L x L sliding mask; its global layers keep transformers' mask, and its output is transformers' own."""
    import torch
    from transformers import ModernBertModel

    from embedrt.export.architectures.modernbert import MODERNBERT
    from embedrt.export.banded_attention import BandMask

    model = MODERNBERT.load(sources["gte"], classifier=False, attn_implementation="eager")
    plain = ModernBertModel.from_pretrained(str(sources["gte"]), attn_implementation="eager").eval()
    mask = torch.tensor([[1] * 40, [1] * 3 + [0] * 37, [1] * 20 + [0] * 20])
    global_mask, band = model._update_attention_mask(mask, False)
    want_global, _ = type(model)._update_attention_mask(model, mask, False)
    assert isinstance(band, BandMask)
    assert torch.equal(global_mask, want_global)
    ids = torch.randint(5, 1000, mask.shape)
    with torch.no_grad():
        got = model(input_ids=ids, attention_mask=mask).last_hidden_state
        want = plain(input_ids=ids, attention_mask=mask).last_hidden_state
    assert torch.isfinite(got).all()
    for row, length in enumerate((40, 3, 20)):
        torch.testing.assert_close(got[row, :length], want[row, :length], rtol=0, atol=1e-5)


def test_graph_inputs_are_ids_and_mask_only(exports):
    import onnx

    for out in exports.values():
        manifest = Manifest.from_file(out / "manifest.json")
        for variant, info in manifest.variants.items():
            graph = onnx.load(str(out / info.file), load_external_data=False).graph
            assert [i.name for i in graph.input] == ["input_ids", "attention_mask"], variant
            assert info.inputs == ("input_ids", "attention_mask")


def _op_counts(path: Path) -> dict[str, int]:
    import collections

    import onnx

    return dict(collections.Counter(n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node))


def test_which_fusions_apply(exports):
    """onnxruntime's optimizer (model_type bert) fuses the GeGLU's GELU and the LayerNorms; attention stays unfused
    (the rotary embedding between the Q/K projections and the product breaks its pattern), and no RotaryEmbedding
    is fused. fp16 adds SkipLayerNormalization. Parity of these graphs is the fp32 and fp16 tests above."""
    out = exports["gte"]
    manifest = Manifest.from_file(out / "manifest.json")
    fp32 = _op_counts(out / Variant.FP32.file_name)
    print(f"fp32: {sum(fp32.values())} nodes {fp32}")
    assert fp32.get("Gelu") == LAYERS and fp32.get("Softmax") == LAYERS, fp32
    assert not {"Attention", "MultiHeadAttention", "RotaryEmbedding", "Erf"} & set(fp32), fp32
    # embeddings, attn_norm of layers 1.. (layer 0 has none), mlp_norm of each layer, final_norm
    assert fp32.get("LayerNormalization") == 1 + (LAYERS - 1) + LAYERS + 1, fp32
    assert f"Gelu x{LAYERS}" in manifest.variants[Variant.FP32].recipe
    fp16 = _op_counts(out / Variant.FP16.file_name)
    assert fp16.get("SkipLayerNormalization") == 2 * LAYERS and "Attention" not in fp16, fp16


# ---------------------------------------------------------------- config.json: transformers 5.x's spelling


def test_transformers5_config_spelling_is_translated(sources, tmp_path, texts, sts_test_file):
    """A config.json with layer_types + rope_parameters (and a misleading global_attn_every_n_layers 1): transformers
    4.57 alone would build another model (default thetas, every layer global); the export translates the keys and
    gives the vectors of the model they describe."""
    from sentence_transformers import SentenceTransformer

    original = sources["gte"]
    source = clone_dir(original, tmp_path / "src")
    config = to_transformers5_spelling(source / "config.json")
    assert "global_rope_theta" not in config and config["layer_types"][:3] == [
        "full_attention",
        "sliding_attention",
        "sliding_attention",
    ]
    assert config_overrides(source / "config.json") == {
        "global_rope_theta": GLOBAL_THETA,
        "local_rope_theta": LOCAL_THETA,
        "global_attn_every_n_layers": EVERY_N,
    }
    part = texts[:300] + LONG_TEXTS
    want = reference_encode(original, part)
    untranslated = SentenceTransformer(str(source), device="cpu").encode(part)
    assert np.abs(untranslated - want).max() >= 1e-2  # 4.57 reading the 5.x keys alone: another model
    out = export(source, tmp_path / "out", variants="fp32", progress=False)
    assert np.abs(Encoder.load(out).encode(part) - want).max() <= 2e-6
    from embedrt.export.verify import verify

    report = verify(out, sts_test_file)  # its reference is translated the same way
    assert report.ok and report.rows[0].figures is not None and report.rows[0].figures.max_abs_diff <= 2e-6


@pytest.mark.parametrize(
    "layer_types",
    [
        ["sliding_attention", "full_attention", "sliding_attention", "full_attention"],
        ["full_attention", "sliding_attention", "full_attention", "full_attention"],
        ["full_attention", "chunked_attention", "sliding_attention", "full_attention"],
    ],
)
def test_a_layer_pattern_transformers4_cannot_express_is_refused(sources, tmp_path, layer_types):
    source = clone_dir(sources["gte"], tmp_path / "src")
    to_transformers5_spelling(source / "config.json")
    edit_json(source / "config.json", layer_types=layer_types)
    with pytest.raises(ValueError, match="'layer_types' is") as refused:
        export(source, tmp_path / "out", variants="fp32", progress=False)
    assert str(source / "config.json") in str(refused.value) and str(layer_types) in str(refused.value)
    assert not (tmp_path / "out").exists()


def test_a_rope_type_other_than_default_is_refused(sources, tmp_path):
    source = clone_dir(sources["gte"], tmp_path / "src")
    to_transformers5_spelling(source / "config.json")
    rope = {"full_attention": {"rope_theta": 80.0, "rope_type": "linear", "factor": 2.0}}
    edit_json(source / "config.json", rope_parameters=rope)
    with pytest.raises(ValueError, match="rope_type 'default'"):
        export(source, tmp_path / "out", variants="fp32", progress=False)


# ---------------------------------------------------------------- transformers versions, lengths, lookalikes


@pytest.mark.parametrize(
    ("version", "ok"),
    [
        ("4.57.6", True),
        ("4.48.0", True),
        ("5.25.0", True),
        ("4.47.1", False),
        ("5.0.0rc1", False),
        ("5.7.0", False),
        ("5.24.0", False),
        ("6.0.0", False),
    ],
)
def test_transformers_outside_the_tested_range_is_refused(version, ok):
    """4.48 to 4.x (CI: 4.57.6) and 5.25 on: 5.7's masking utilities break the trace (tried in a scratch venv)."""
    if ok:
        check_transformers_version(version)
        return
    with pytest.raises(RuntimeError) as refused:
        check_transformers_version(version)
    message = str(refused.value)
    assert f"transformers {version} is installed" in message and "4.57.6" in message and "5.25.0" in message
    assert 'pip install "transformers>=4.48,<5"' in message


def test_the_export_refuses_an_untested_transformers(sources, tmp_path, monkeypatch):
    import transformers

    monkeypatch.setattr(transformers, "__version__", "5.7.0")  # the version check reads it at export time
    with pytest.raises(RuntimeError, match=r'pip install "transformers>=4.48,<5"'):
        export(sources["gte"], tmp_path / "out", variants="fp32", progress=False)
    assert not (tmp_path / "out").exists()


def test_max_seq_length_and_pad_id(sources, exports, tmp_path):
    """sentence_bert_config.json's max_seq_length wins; without it and without a tokenizer limit, the positions:
    max_position_embeddings itself (rotary positions, no pad offset: gte-modernbert's 8192). The pad id the runtime
    pads with is config.json's."""
    source = clone_dir(sources["gte"], tmp_path / "src")
    assert TransformerConfig.from_dir(source).max_seq_length == MAX_SEQ_LENGTH
    edit_json(source / "sentence_bert_config.json", max_seq_length=None)
    edit_json(source / "tokenizer_config.json", model_max_length=None)
    assert TransformerConfig.from_dir(source).max_seq_length == MAX_POSITIONS
    edit_json(source / "config.json", max_position_embeddings=8192, pad_token_id=50283)
    assert TransformerConfig.from_dir(source).max_seq_length == 8192
    config = json.loads((exports["gte"] / "config.json").read_text())
    assert Encoder.load(exports["gte"]).tokenizer.pad_id == config["pad_token_id"]


def test_transformers_own_modernbert_classes_are_accepted(sources, tmp_path):
    from embedrt.export.layout import check_transformer

    source = clone_dir(sources["gte"], tmp_path / "src")
    for name in ("ModernBertForMaskedLM", "ModernBertModel"):
        edit_json(source / "config.json", architectures=[name])
        architecture, sizes = check_transformer(source, allow_pickle=False)
        assert architecture.model_type == "modernbert" and architecture.inputs == ("input_ids", "attention_mask")
        assert sizes == {"num_heads": 4, "hidden_size": HIDDEN}


def test_a_modernbert_lookalike_is_refused(sources, tmp_path):
    source = clone_dir(sources["gte"], tmp_path / "src")
    edit_json(source / "config.json", auto_map={"AutoModel": "someone/modernbert-custom--modeling.Custom"})
    with pytest.raises(ValueError, match="'auto_map'"):
        export(source, tmp_path / "out", variants="fp32", progress=False)


def test_window_and_theta_fixture_values_are_not_transformers_defaults():
    """The tests above would pass a wrong theta only if the fixtures used the defaults."""
    from transformers import ModernBertConfig

    default = ModernBertConfig()
    assert default.global_rope_theta != GLOBAL_THETA and default.local_rope_theta != LOCAL_THETA
