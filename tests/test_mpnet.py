"""MPNet embedders (all-mpnet-base-v2, multi-qa-mpnet-base-*, paraphrase-mpnet-base-v2): a random-weight 2-layer
``MPNetModel`` with an MPNet tokenizer built offline (mpnet_helpers), saved by sentence-transformers, exported and
compared with it; the relative position buckets proved at their boundaries; lookalikes refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import clone_dir, edit_json, fp16_runs_on_cpu, reference_encode
from mpnet_helpers import build_mpnet_tokenizer, hub_layout

from embedrt import Encoder
from embedrt.config import TransformerConfig
from embedrt.export import export
from embedrt.export.architectures.mpnet import bucket_table, use_bucket_table
from embedrt.export.parity import CHECK_SENTENCES, TOLERANCE, compare
from embedrt.manifest import Manifest, Variant

MAX_POSITIONS = 130  # usable: 128, as 514 -> 512 in MPNet base
MAX_SEQ_LENGTH = 128  # distances past 91 reach the last buckets (15 and 31)
HIDDEN = 64
NUM_BUCKETS = 32  # relative_attention_num_buckets of the real models
SPECIAL_TEXTS = [
    "a <pad> b",
    "<pad>",
    "<pad> <pad> leading pads",
    "<s> starts </s> and ends </s>",
    "fill the <mask> here",
    "fill the\u3000 <mask>\there",
    "<unk> [UNK] <mask><pad></s><s>",
]
LONG_TEXTS = [" ".join(CHECK_SENTENCES) * 6, "word " * 700, "<pad> " * 200, "a b " * 40, "x " * 70]
# Relative distances where a float32 log lands exactly on a bucket boundary, and their neighbours.
BOUNDARIES = sorted({s * (b + o) for b in (16, 32, 64) for o in (-1, 0, 1) for s in (-1, 1)})


@pytest.fixture(scope="module")
def mpnet_source(tmp_path_factory: pytest.TempPathFactory, minilm_dir: Path) -> Path:
    """A 2-layer MPNetModel (pad id 1, 32 relative buckets) -> mean Pooling -> Normalize, hub tokenizer layout."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Normalize, Pooling, Transformer
    from transformers import AutoTokenizer, MPNetConfig, MPNetModel

    root = tmp_path_factory.mktemp("mpnet")
    tok_dir = hub_layout(build_mpnet_tokenizer(minilm_dir, root / "tok", model_max_length=512))
    tokenizer = AutoTokenizer.from_pretrained(str(tok_dir))
    assert tokenizer.pad_token_id == 1
    torch.manual_seed(25)
    config = MPNetConfig(
        vocab_size=len(tokenizer.get_vocab()),
        hidden_size=HIDDEN,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=MAX_POSITIONS,
        relative_attention_num_buckets=NUM_BUCKETS,
    )
    model = MPNetModel(config, add_pooling_layer=False)
    with torch.no_grad():
        # The random init zeroes the pad row and keeps the bias small: make positions and buckets matter.
        model.embeddings.position_embeddings.weight.normal_(0, 0.5)
        model.encoder.relative_attention_bias.weight.normal_(0, 2.0)
    hf = root / "hf"
    model.save_pretrained(hf, safe_serialization=True)
    tokenizer.save_pretrained(str(hf))
    modules = [Transformer(str(hf), max_seq_length=MAX_SEQ_LENGTH), Pooling(HIDDEN, "mean"), Normalize()]
    source = root / "st"
    SentenceTransformer(modules=modules, device="cpu").save(str(source))
    return source


@pytest.fixture(scope="module")
def mpnet_export(mpnet_source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export(
        mpnet_source, tmp_path_factory.mktemp("mpnet-out") / "model", variants="fp32,fp16,int8", progress=False
    )


@pytest.fixture(scope="module")
def texts(sts_pairs) -> list[str]:
    return [*sts_pairs.sentences, *LONG_TEXTS, *SPECIAL_TEXTS]


def _torch_model(source: Path):
    from transformers import MPNetModel

    return MPNetModel.from_pretrained(str(source), add_pooling_layer=False, attn_implementation="eager").eval()


def test_the_source_is_what_it_claims(mpnet_source):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(mpnet_source), device="cpu")
    assert type(model[0].auto_model).__name__ == "MPNetModel"
    assert model.max_seq_length == MAX_SEQ_LENGTH
    assert TransformerConfig.from_dir(mpnet_source).max_seq_length == MAX_SEQ_LENGTH
    lengths = model.tokenize(LONG_TEXTS)["attention_mask"].sum(1)
    assert int(lengths.max()) == MAX_SEQ_LENGTH  # distances up to 127: every bucket a distance can reach


# ---------------------------------------------------------------- the relative position buckets


def test_bucket_table_is_transformers_buckets_at_every_distance():
    """The table, indexed as the graph indexes it, equals transformers' buckets of the [length, length] relative
    positions that compute_position_bias builds (torch float32), for every length up to 514."""
    import torch
    from transformers.models.mpnet.modeling_mpnet import MPNetEncoder

    max_length = 514
    table = bucket_table(max_length, NUM_BUCKETS)
    positions = torch.arange(max_length, dtype=torch.long)
    relative = positions[None, :] - positions[:, None]
    expected = MPNetEncoder.relative_position_bucket(relative, num_buckets=NUM_BUCKETS)
    assert torch.equal(table[relative + max_length - 1], expected)
    # Every bucket but 16, which would be distance 0 on the side of keys after the query.
    assert set(table.tolist()) == set(range(NUM_BUCKETS)) - {NUM_BUCKETS // 2}


def test_the_boundaries_land_on_exact_integers():
    """At distances 16, 32, 64 the bucket's log is exactly 2, 4, 6 (of 8 log-spaced buckets over 8..128): torch's
    float32 gives the exact mathematical bucket there and around it, which a one-ulp-low Log would not."""
    import torch
    from transformers.models.mpnet.modeling_mpnet import MPNetEncoder

    def exact(n: int) -> int:
        """8 + floor(8 * log(n / 8) / log(16)) in integers: the largest k with 64 * 2**k <= n * n, capped at 15."""
        if n < 8:
            return n
        k = max(k for k in range(32) if 64 * 2**k <= n * n)
        return min(8 + k, 15)

    distances = torch.tensor(BOUNDARIES + list(range(-127, 128)), dtype=torch.long)
    got = MPNetEncoder.relative_position_bucket(distances, num_buckets=NUM_BUCKETS).tolist()
    # relative = key - query; n = -relative; a key after the query (n < 0) takes the upper 16 buckets.
    want = [exact(abs(d)) + (16 if d > 0 else 0) for d in distances.tolist()]
    assert got == want
    table = bucket_table(MAX_POSITIONS, NUM_BUCKETS)
    assert [int(table[d + MAX_POSITIONS - 1]) for d in BOUNDARIES] == want[: len(BOUNDARIES)]
    assert [want[BOUNDARIES.index(d)] for d in (-15, -16, -31, -32, -63, -64)] == [9, 10, 11, 12, 13, 14]


def test_onnx_position_bias_equals_torch_at_every_distance(mpnet_source, tmp_path):
    """The bias the exported graph computes equals transformers' compute_position_bias bit for bit, at every length
    (so every distance, the boundaries +-16, +-32, +-64 included), with no Log in the graph."""
    import onnx
    import onnxruntime
    import torch

    reference = _torch_model(mpnet_source).encoder
    tabled = use_bucket_table(_torch_model(mpnet_source)).encoder

    class Bias(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = tabled

        def forward(self, hidden: torch.Tensor) -> torch.Tensor:
            return self.encoder.compute_position_bias(hidden)

    path = tmp_path / "bias.onnx"
    axes = {"hidden": {0: "batch", 1: "sequence"}}
    with torch.no_grad():
        torch.onnx.export(
            Bias(), (torch.zeros(1, 8, HIDDEN),), str(path), input_names=["hidden"], output_names=["bias"],
            dynamic_axes=axes, opset_version=17, dynamo=False,
        )  # fmt: skip
    assert "Log" not in {n.op_type for n in onnx.load(str(path)).graph.node}
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for length in [1, 2, 15, 16, 17, 33, 65, 66, 100, MAX_SEQ_LENGTH, MAX_POSITIONS]:
        hidden = torch.zeros(1, length, HIDDEN)
        got = session.run(None, {"hidden": hidden.numpy()})[0]
        with torch.no_grad():
            want = reference.compute_position_bias(hidden).numpy()
        np.testing.assert_array_equal(got, want, err_msg=f"length {length}")


def test_no_variant_computes_a_log(mpnet_export):
    import onnx

    manifest = Manifest.from_file(mpnet_export / "manifest.json")
    for variant, info in manifest.variants.items():
        ops = {n.op_type for n in onnx.load(str(mpnet_export / info.file), load_external_data=False).graph.node}
        assert "Log" not in ops, variant


# ---------------------------------------------------------------- the exported model against sentence-transformers


def test_fp32_is_exact_on_sts_test_long_and_special_texts(mpnet_source, mpnet_export, texts):
    reference = reference_encode(mpnet_source, texts)
    figures = compare(reference, Encoder.load(mpnet_export, variant="fp32").encode(texts))
    print(f"fp32 vs sentence-transformers: {figures}")
    assert figures.min_cosine >= 0.99999 and figures.max_abs_diff <= 1e-4, figures


def test_int8_passes_the_export_gate(mpnet_source, mpnet_export, texts, sts_pairs):
    """The export's int8 gate, and MiniLM's gates on all of sts-test: min cosine, and Spearman within 0.03 of the
    reference's (a random model's Spearman against the gold scores means nothing; the difference still does)."""
    manifest = Manifest.from_file(mpnet_export / "manifest.json")
    min_cos, max_abs = TOLERANCE[Variant.INT8]
    parity = manifest.variants[Variant.INT8].parity
    print(f"int8 export gate: {parity}")
    assert parity["min_cosine"] >= min_cos and parity["max_abs_diff"] <= max_abs, parity
    reference = reference_encode(mpnet_source, texts)
    got = Encoder.load(mpnet_export, variant="int8").encode(texts)
    figures = compare(reference, got)
    n = len(sts_pairs.sentences)
    delta = sts_pairs.spearman(got[:n]) - sts_pairs.spearman(reference[:n])
    print(f"int8 vs sentence-transformers: {figures}, Spearman delta {delta:+.4f}")
    assert figures.within(Variant.INT8), figures
    assert abs(delta) <= 0.03


def test_fp16_is_written_and_within_its_gate_where_it_runs(mpnet_source, mpnet_export, texts):
    path = mpnet_export / Variant.FP16.file_name
    assert path.is_file()
    if not fp16_runs_on_cpu(path):
        pytest.skip("this onnxruntime's CPU provider lacks fp16 kernels; the file is for CUDA")
    figures = compare(reference_encode(mpnet_source, texts), Encoder.load(mpnet_export, variant="fp16").encode(texts))
    assert figures.within(Variant.FP16), figures


def test_graph_inputs_are_ids_and_mask_only(mpnet_export):
    import onnx

    manifest = Manifest.from_file(mpnet_export / "manifest.json")
    for variant, info in manifest.variants.items():
        graph = onnx.load(str(mpnet_export / info.file), load_external_data=False).graph
        assert [i.name for i in graph.input] == ["input_ids", "attention_mask"], variant
        assert info.inputs == ("input_ids", "attention_mask")


def test_a_literal_pad_keeps_attention_and_matches(mpnet_source, mpnet_export):
    from sentence_transformers import SentenceTransformer

    encoder = Encoder.load(mpnet_export)
    assert encoder.tokenizer.pad_id == 1
    batch = encoder.tokenize(["a <pad> b", "<pad>", "a much longer text so that the others are padded"])
    reference = SentenceTransformer(str(mpnet_source), device="cpu").tokenize(
        ["a <pad> b", "<pad>", "a much longer text so that the others are padded"]
    )
    np.testing.assert_array_equal(batch["input_ids"], reference["input_ids"].numpy())
    np.testing.assert_array_equal(batch["attention_mask"], reference["attention_mask"].numpy())
    assert batch["input_ids"][1].tolist()[:3] == [0, 1, 2] and batch["attention_mask"][1].tolist()[:3] == [1, 1, 1]
    texts = SPECIAL_TEXTS
    single = np.stack([encoder.encode(t) for t in texts])
    batched = encoder.encode(texts)
    reference_vectors = reference_encode(mpnet_source, texts)
    for got in (single, batched):
        figures = compare(reference_vectors, got)
        assert figures.min_cosine >= 0.99999 and figures.max_abs_diff <= 1e-4, figures


def test_max_seq_length_rules(mpnet_source, tmp_path):
    """The legacy max_seq_length wins; else the tokenizer's model_max_length, capped at max_position_embeddings - 2
    (MPNet hard-codes pad id 1 for its positions, whatever config.json's pad_token_id says)."""
    source = clone_dir(mpnet_source, tmp_path / "src")
    sbert = source / "sentence_bert_config.json"
    edit_json(sbert, max_seq_length=32)
    assert TransformerConfig.from_dir(source).max_seq_length == 32
    edit_json(sbert, max_seq_length=None)
    edit_json(source / "tokenizer_config.json", model_max_length=100)
    assert TransformerConfig.from_dir(source).max_seq_length == 100
    edit_json(source / "tokenizer_config.json", model_max_length=None)
    assert TransformerConfig.from_dir(source).max_seq_length == MAX_POSITIONS - 2
    edit_json(source / "config.json", pad_token_id=0)
    assert TransformerConfig.from_dir(source).max_seq_length == MAX_POSITIONS - 2


# ---------------------------------------------------------------- lookalikes


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"auto_map": {"AutoModel": "someone/mpnet-custom--modeling.MPNetCustom"}}, "'auto_map'"),
        ({"position_embedding_type": "rotary"}, "'position_embedding_type' is 'rotary'"),
        ({"architectures": ["MPNetCustomModel"]}, "'architectures' holds ['MPNetCustomModel']"),
        ({"architectures": ["BertModel"]}, "'architectures' holds ['BertModel']"),
        ({"architectures": ["XLMRobertaModel"]}, "'architectures' holds ['XLMRobertaModel']"),
    ],
)
def test_an_mpnet_lookalike_is_refused_naming_the_file_and_key(mpnet_source, tmp_path, changes, key):
    source = clone_dir(mpnet_source, tmp_path / "src")
    edit_json(source / "config.json", **changes)
    with pytest.raises(ValueError) as refused:
        export(source, tmp_path / "out", variants="fp32", progress=False)
    message = str(refused.value)
    assert str(source / "config.json") in message and key in message, message
    assert "custom code" in message or "absolute" in message
    assert not (tmp_path / "out").exists()


def test_transformers_own_mpnet_classes_are_accepted(mpnet_source):
    from embedrt.export.layout import check_transformer

    config = json.loads((mpnet_source / "config.json").read_text())
    assert config["model_type"] == "mpnet" and config["architectures"] == ["MPNetModel"]
    for name in ("MPNetForMaskedLM", "MPNetModel"):
        config["architectures"] = [name]
        architecture, sizes = check_transformer(mpnet_source, allow_pickle=False)
        assert architecture.inputs == ("input_ids", "attention_mask")
        assert sizes == {"num_heads": 4, "hidden_size": HIDDEN}


def test_an_mpnet_cross_encoder_is_refused_clearly(mpnet_source, tmp_path):
    import torch
    from transformers import MPNetConfig, MPNetForSequenceClassification

    config = MPNetConfig.from_pretrained(str(mpnet_source))
    config.num_labels = 1
    torch.manual_seed(4)
    hf = tmp_path / "reranker"
    MPNetForSequenceClassification(config).save_pretrained(hf, safe_serialization=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        (hf / name).write_bytes((mpnet_source / name).read_bytes())
    with pytest.raises(ValueError, match=r"cross-encoder of model_type 'mpnet'.*not supported yet") as refused:
        export(hf, tmp_path / "out", variants="fp32", progress=False)
    assert "MPNetForSequenceClassification" in str(refused.value)
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- attention with the relative bias, fused


def _op_counts(path: Path) -> dict[str, int]:
    import collections

    import onnx

    return dict(collections.Counter(n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node))


def test_fp16_and_int8_fuse_attention_with_the_relative_bias_and_fp32_does_not(mpnet_export):
    """onnxruntime's optimizer leaves MPNet's attention unfused (the bias Add breaks its pattern); embedrt's pass
    fuses every layer of the fp16 file (for CUDA) into a contrib Attention node that takes the bias as its
    attention_bias input, and int8's MultiHeadAttention takes it the same way. The CPU's fp32 file keeps the
    unfused attention, which ran faster there (benchmarks/mpnet_attention.py)."""
    import onnx

    manifest = Manifest.from_file(mpnet_export / "manifest.json")
    fp32 = _op_counts(mpnet_export / manifest.variants[Variant.FP32].file)
    assert "Attention" not in fp32 and fp32.get("Softmax") == 2, fp32
    assert "relative position bias" not in manifest.variants[Variant.FP32].recipe
    for variant in (Variant.FP16,):
        path = mpnet_export / manifest.variants[variant].file
        counts = _op_counts(path)
        assert counts.get("Attention") == 2 and "Softmax" not in counts, (variant, counts)
        assert "Attention (relative position bias, embedrt) x2" in manifest.variants[variant].recipe
        for node in onnx.load(str(path), load_external_data=False).graph.node:
            if node.op_type == "Attention":
                assert len(node.input) == 6 and node.input[5], node.input  # attention_bias
    # int8: embedrt's own fusion (export/fusion.py) into MultiHeadAttention, the bias as its attention_bias.
    info = manifest.variants[Variant.INT8]
    assert "MultiHeadAttention x2" in info.recipe
    mha = [n for n in onnx.load(str(mpnet_export / info.file)).graph.node if n.op_type == "MultiHeadAttention"]
    assert len(mha) == 2 and all(len(n.input) == 6 and n.input[5] for n in mha)
    assert "Softmax" not in _op_counts(mpnet_export / info.file)


def test_fused_and_unfused_graphs_agree(mpnet_source, mpnet_export, tmp_path, texts):
    """Both graphs can be written (the lead times them); their vectors agree with each other and the reference."""
    import onnxruntime

    from embedrt.export.architectures.mpnet import MPNET
    from embedrt.export.onnx_files import export_plain, write_fp32

    plain = tmp_path / "plain.onnx"
    export_plain(mpnet_source, plain, allow_pickle=False, architecture=MPNET)
    vectors = {}
    for fused in (False, True):
        path = tmp_path / f"fused-{fused}.onnx"
        recipe = write_fp32(plain, path, num_heads=4, hidden_size=HIDDEN, relative_bias_attention=fused)
        assert ("Attention (relative position bias, embedrt) x2" in recipe) is fused
        assert ("Attention" in _op_counts(path)) is fused
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        encoder = Encoder.from_session(mpnet_export, session, Variant.FP32)
        vectors[fused] = encoder.encode(texts)
    reference = reference_encode(mpnet_source, texts)
    for fused, got in vectors.items():
        figures = compare(reference, got)
        print(f"fp32 {'fused' if fused else 'unfused'} attention vs sentence-transformers: {figures}")
        assert figures.min_cosine >= 0.99999 and figures.max_abs_diff <= 1e-4, figures


def test_a_vocab_txt_only_source_gets_the_converted_tokenizer_json(mpnet_source, tmp_path, minilm_dir):
    """Without tokenizer.json, transformers converts MPNet's vocab.txt its own way (<s> A </s>, added tokens matched
    after normalization): the export writes that conversion, and the runtime refuses to guess from vocab.txt."""
    from transformers import AutoTokenizer
    from unigram_helpers import hostile_texts

    from embedrt.tokenizers import TokenizerError, load_tokenizer

    source = clone_dir(mpnet_source, tmp_path / "src")
    (source / "tokenizer.json").unlink()
    with pytest.raises(TokenizerError, match=r"MPNet vocab\.txt without tokenizer\.json"):
        load_tokenizer(source)
    out = export(source, tmp_path / "out", variants="fp32", progress=False)
    assert (out / "tokenizer.json").is_file()
    words = [w for w in (minilm_dir / "vocab.txt").read_text(encoding="utf-8").splitlines() if w[:1] != "["]
    texts = [*SPECIAL_TEXTS, "<S> <MASK> <Pad>", *hostile_texts(500, seed=3, words=words)]
    reference = AutoTokenizer.from_pretrained(str(source))
    assert type(reference).__name__ == "MPNetTokenizerFast"
    ours = Encoder.load(out).tokenizer
    for text in texts:
        want = reference(text, truncation=True, max_length=MAX_SEQ_LENGTH)["input_ids"]
        assert ours([text], MAX_SEQ_LENGTH)[0][0].tolist() == want, ascii(text)


def test_do_lower_case_matches_sentence_transformers(mpnet_source, tmp_path, minilm_dir):
    """sentence_bert_config.json's do_lower_case: sentence-transformers prepends a Lowercase normalizer after the
    raw added tokens are split out (hub layout: a literal <S> is lowercased, not matched as <s>)."""
    from sentence_transformers import SentenceTransformer
    from unigram_helpers import hostile_texts

    source = clone_dir(mpnet_source, tmp_path / "src")
    edit_json(source / "sentence_bert_config.json", do_lower_case=True)
    out = export(source, tmp_path / "out", variants="fp32", progress=False)
    words = [w for w in (minilm_dir / "vocab.txt").read_text(encoding="utf-8").splitlines() if w[:1] != "["]
    texts = [*SPECIAL_TEXTS, "<S> <MASK> <PAD> İSTANBUL ΟΔΟΣ", *hostile_texts(1000, seed=9, words=words)]
    model = SentenceTransformer(str(source), device="cpu")
    encoder = Encoder.load(out)
    assert encoder.tokenizer.do_lower_case
    for start in range(0, len(texts), 250):
        part = texts[start : start + 250]
        features = model.tokenize(part)
        batch = encoder.tokenize(part)
        np.testing.assert_array_equal(batch["input_ids"], features["input_ids"].numpy())
        np.testing.assert_array_equal(batch["attention_mask"], features["attention_mask"].numpy())
