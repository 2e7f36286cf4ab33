"""XLM-R rerankers (XLMRobertaForSequenceClassification, the bge-reranker-base / -large / -v2-m3 shape): a
random-weight 2-layer model with a Unigram tokenizer trained here, in the plain Hugging Face layout (as the hub's
bge-reranker-*: no activation configured, so Sigmoid) and as sentence-transformers >= 5 saves a CrossEncoder,
exported and compared with ``CrossEncoder.predict``; one server test of /rerank and /v1/rerank."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from serve_helpers import start_server  # noqa: E402

from benchmarks.xlmr_tokenizer import multilingual_lines, sts_sentences, train_xlmr_tokenizer, training_lines  # noqa: E402
from embedrt.export import export  # noqa: E402
from embedrt.export.cross_encoder import CHECK_PAIRS, SCORE_TOLERANCE  # noqa: E402
from embedrt.export.parity import STS_DIR, StsPairs, _spearman  # noqa: E402
from embedrt.manifest import Variant  # noqa: E402
from embedrt.reranker import Reranker  # noqa: E402

MAX_POSITIONS = 66  # usable: 64, as 514 -> 512 in XLM-R base
MAX_LENGTH = 48
SPECIAL_PAIRS = [
    ("a <pad> b", "<pad>"),  # a literal <pad> is id 1, the pad id, and is attended to
    ("<s> query </s>", "document <mask> with </s></s> inside"),
    ("a", ""),  # kept empty: <s> a </s></s></s>, as CrossEncoder's batch call gives it
    ("", ""),
]
RANK_QUERIES, RANK_DOCS, TOP = 20, 100, 10


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    lines = training_lines(sts_sentences("train")[:4000], 2000, seed=8)
    return train_xlmr_tokenizer(tmp_path_factory.mktemp("xlmr-ce-spm"), lines, vocab_size=3000)


def save_xlmr_cross_encoder(root: Path, tok_dir: Path, num_labels: int) -> Path:
    """A random 2-layer XLMRobertaForSequenceClassification (pad id 1, type_vocab_size 1), plain HF layout."""
    import torch
    from transformers import AutoTokenizer, XLMRobertaConfig, XLMRobertaForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(str(tok_dir), model_max_length=MAX_LENGTH)
    torch.manual_seed(25 + num_labels)
    config = XLMRobertaConfig(
        vocab_size=max(tokenizer.get_vocab().values()) + 1,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=MAX_POSITIONS,
        type_vocab_size=1,
        num_labels=num_labels,
        initializer_range=0.3,  # 0.02 scores every pair within 1e-5 of the others: no order to check
    )
    XLMRobertaForSequenceClassification(config).save_pretrained(root, safe_serialization=True)
    tokenizer.save_pretrained(str(root))
    return root


@pytest.fixture(scope="module", params=[("hf", 1), ("st", 1), ("st", 3)], ids=lambda p: f"{p[0]}-{p[1]}")
def cross_encoder(request, tmp_path_factory, tok_dir):
    """(source dir, export dir) for each layout and label count."""
    from sentence_transformers import CrossEncoder

    layout, labels = request.param
    tmp = tmp_path_factory.mktemp(f"xlmr-ce-{layout}-{labels}")
    source = save_xlmr_cross_encoder(tmp / "hf", tok_dir, labels)
    if layout == "st":
        CrossEncoder(str(source), device="cpu", max_length=MAX_LENGTH).save(str(tmp / "st"))
        source = tmp / "st"
        assert (source / "modules.json").is_file()
    variants = "fp32,int8" if labels == 1 else "fp32"
    return source, export(source, tmp / "out", variants=variants, progress=False)


def _reference(source: Path, side: str = "right"):
    from sentence_transformers import CrossEncoder

    model = CrossEncoder(str(source), device="cpu")
    model.tokenizer.truncation_side = side
    return model


@pytest.fixture(scope="module")
def pairs() -> list[tuple[str, str]]:
    sts = StsPairs.from_file(STS_DIR / "sts-test.csv")
    multi = multilingual_lines(60, seed=4)
    long = " ".join(sts_sentences("test")[:40])
    return [
        *CHECK_PAIRS,
        *SPECIAL_PAIRS,
        *zip(sts.first[:300], sts.second[:300], strict=True),
        *zip(multi[::2], multi[1::2], strict=True),
        (long, "short document"),
        ("short query", long),
        (long, long[::-1]),
    ]


def test_the_source_is_what_it_claims(cross_encoder):
    source, out = cross_encoder
    model = _reference(source)
    assert type(model.model).__name__ == "XLMRobertaForSequenceClassification"
    head = type(model.model.classifier).__name__
    assert head == "XLMRobertaClassificationHead" or head == "RobertaClassificationHead"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "cross-encoder"
    default = "Sigmoid" if model.num_labels == 1 else "Identity"
    assert manifest["cross_encoder"] == {"num_labels": model.num_labels, "activation": default, "max_length": 48}
    assert type(model.activation_fn).__name__ == default
    import onnx

    graph = onnx.load(str(out / Variant.FP32.file_name), load_external_data=False).graph
    assert [i.name for i in graph.input] == ["input_ids", "attention_mask"]


def test_fp32_logits_match_cross_encoder(cross_encoder, pairs):
    import torch

    source, out = cross_encoder
    ce, reranker = _reference(source), Reranker.load(out, variant="fp32")
    want = np.asarray(ce.predict(pairs, activation_fn=torch.nn.Identity()), dtype=np.float32)
    got = reranker.predict(pairs, activation="Identity")
    diff = float(np.abs(got - want).max())
    spread = float(want.max() - want.min())
    print(f"fp32 vs CrossEncoder ({len(pairs)} pairs): max abs logit diff {diff:.2e}, logit spread {spread:.2f}")
    assert got.shape == want.shape and diff <= 1e-4 and spread > 0.5
    if ce.num_labels == 1:
        # The same order: any two pairs whose logits differ by more than the tolerance are ranked alike.
        order = np.argsort(-want, kind="stable")
        assert np.all(np.diff(got[order]) <= 2e-4)
        assert np.abs(reranker.predict(pairs) - ce.predict(pairs)).max() <= 1e-4  # the default activation: Sigmoid
    else:
        soft = reranker.predict(pairs, apply_softmax=True)
        assert np.abs(soft - ce.predict(pairs, apply_softmax=True)).max() <= 1e-4
    single = reranker.predict(SPECIAL_PAIRS[2])
    assert np.allclose(single, ce.predict(SPECIAL_PAIRS[2]), atol=1e-4)


@pytest.mark.parametrize("side", ["left", "right"])
def test_truncation_direction_matches_the_tokenizer_side(cross_encoder, pairs, side):
    """Reranker.score(truncation=side) against CrossEncoder with its tokenizer's truncation_side, on pairs cut."""
    import torch

    source, out = cross_encoder
    ce = _reference(source, side)
    long_pairs = [p for p in pairs if len(p[0]) + len(p[1]) > 150] + SPECIAL_PAIRS
    want = np.asarray(ce.predict(long_pairs, activation_fn=torch.nn.Identity()), dtype=np.float32)
    scored = Reranker.load(out).score(long_pairs, truncation=side)
    got = scored.logits[:, 0] if ce.num_labels == 1 else scored.logits
    assert np.abs(got - want).max() <= 1e-4
    encoded = ce.tokenizer([a for a, _ in long_pairs], [b for _, b in long_pairs], truncation="longest_first",
                           max_length=MAX_LENGTH)  # fmt: skip
    assert scored.tokens == [len(ids) for ids in encoded["input_ids"]]
    assert any(scored.truncated)


def test_int8_passes_the_reranker_gates(cross_encoder):
    """The export's gate (max abs logit difference on the check pairs), then on sts-test: Spearman of int8's
    scores against fp32's, and the top-10 overlap when a query ranks 100 documents (as benchmarks/rerank.py)."""
    _, out = cross_encoder
    manifest = json.loads((out / "manifest.json").read_text())
    if "int8" not in manifest["variants"]:
        pytest.skip("int8 is exported for the one-label models")
    parity = manifest["variants"]["int8"]["parity"]
    assert parity["max_abs_diff"] <= SCORE_TOLERANCE[Variant.INT8], parity
    sts = StsPairs.from_file(STS_DIR / "sts-test.csv")
    sts_pairs = list(zip(sts.first, sts.second, strict=True))
    fp32, int8 = Reranker.load(out, variant="fp32"), Reranker.load(out, variant="int8")
    s32, s8 = fp32.predict(sts_pairs), int8.predict(sts_pairs)
    spearman = _spearman(s8.astype(np.float64), s32.astype(np.float64))
    overlaps = []
    for q in range(RANK_QUERIES):
        block = (q * RANK_DOCS) % (len(sts_pairs) - RANK_DOCS)
        docs = list(sts.second[block : block + RANK_DOCS])
        query = sts.first[block + q % RANK_DOCS]
        top32 = {r["corpus_id"] for r in fp32.rank(query, docs, top_k=TOP)}
        top8 = {r["corpus_id"] for r in int8.rank(query, docs, top_k=TOP)}
        overlaps.append(len(top32 & top8) / TOP)
    print(
        f"int8 vs fp32 on sts-test: export gate max abs {parity['max_abs_diff']:.3f}, Spearman {spearman:.4f}, "
        f"top-10 overlap mean {np.mean(overlaps):.3f} min {np.min(overlaps):.2f}, "
        f"max abs sigmoid diff {np.abs(s8 - s32).max():.4f}"
    )
    assert spearman >= 0.99 and np.mean(overlaps) >= 0.85, (spearman, overlaps)


def test_rank_matches_cross_encoder(cross_encoder):
    source, out = cross_encoder
    ce, reranker = _reference(source), Reranker.load(out)
    if ce.num_labels != 1:
        pytest.skip("rank() is for one-label models")
    query, documents = CHECK_PAIRS[0][0], [p[1] for p in CHECK_PAIRS]
    want = ce.rank(query, documents, top_k=5)
    got = reranker.rank(query, documents, top_k=5)
    assert np.allclose([r["score"] for r in got], [float(r["score"]) for r in want], atol=1e-4)
    wanted = {r["corpus_id"]: float(r["score"]) for r in ce.rank(query, documents)}
    assert all(abs(wanted[r["corpus_id"]] - r["score"]) <= 1e-4 for r in got)


def test_rerank_routes_serve_an_xlmr_reranker(cross_encoder):
    """/rerank (TEI) and /v1/rerank (Cohere) on the XLM-R export: sigmoid scores, sorted, usage counts 4 specials."""
    source, out = cross_encoder
    ce = _reference(source)
    if ce.num_labels != 1 or not (source / "modules.json").is_file():
        pytest.skip("one server test: the sentence-transformers layout, one label")
    import torch

    query = "What is the capital of France?"
    documents = ["Paris is the capital of France.", "", "<pad> a <pad>", "word " * 80, *CHECK_PAIRS[3]]
    want = np.asarray(ce.predict([(query, d) for d in documents], activation_fn=torch.nn.Sigmoid()))
    server = start_server(out, "--variant", "fp32")
    try:
        rows = server.post("/rerank", {"query": query, "texts": documents}).json()
        assert sorted(r["index"] for r in rows) == list(range(len(documents)))
        got = np.array([r["score"] for r in rows])
        assert np.all(np.diff(got) <= 0)
        np.testing.assert_allclose(got, want[[r["index"] for r in rows]], atol=1e-4)
        body = server.post("/v1/rerank", {"query": query, "documents": documents, "top_n": 3}).json()
        results = body["results"]
        assert len(results) == 3
        np.testing.assert_allclose([r["relevance_score"] for r in results], np.sort(want)[::-1][:3], atol=1e-4)
        encoded = ce.tokenizer([query] * len(documents), documents, truncation="longest_first", max_length=MAX_LENGTH)
        tokens = sum(len(ids) for ids in encoded["input_ids"])
        assert body["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}
        refused = server.post("/rerank", {"query": query, "texts": documents, "truncate": False})
        assert refused.status_code == 422
        assert f"more than {MAX_LENGTH - 4} tokens besides the 4 special tokens" in refused.text
    finally:
        assert server.stop() == 0


def test_without_a_limit_the_export_truncates_at_the_usable_positions(tok_dir, tmp_path):
    """CrossEncoder caps at max_position_embeddings (66), where XLM-R fails in PyTorch past 64 tokens; embedrt
    truncates at 64 and the export's check compares with CrossEncoder at that limit."""
    import torch

    source = save_xlmr_cross_encoder(tmp_path / "hf", tok_dir, 1)
    config = json.loads((source / "tokenizer_config.json").read_text())
    config.pop("model_max_length")
    (source / "tokenizer_config.json").write_text(json.dumps(config))
    out = export(source, tmp_path / "out", variants="fp32", progress=False)
    reranker = Reranker.load(out)
    assert reranker.max_length == MAX_POSITIONS - 2
    ce = _reference(source)
    assert ce.max_length == MAX_POSITIONS
    ce.max_length = MAX_POSITIONS - 2
    pairs = [("word " * 100, "x " * 100), ("short", "word " * 100), *SPECIAL_PAIRS]
    want = np.asarray(ce.predict(pairs, activation_fn=torch.nn.Identity()))
    assert np.abs(reranker.predict(pairs, activation="Identity") - want).max() <= 1e-4
