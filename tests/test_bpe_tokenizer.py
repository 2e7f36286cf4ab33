"""embedrt.tokenizers.bpe against the reference: the HF fast tokenizer on byte-level BPE files.

Tokenizers are trained here with ``tokenizers`` on sts-train and saved by transformers (tests/bpe_helpers.py), in
every configuration embedrt reproduces: RoBERTa's (RobertaProcessing, add_prefix_space off and on), ModernBERT's
(TemplateProcessing, ``[MASK]`` lstrip, normalized / single_word / rstrip added tokens), a Split + ByteLevel
Sequence, ignore_merges, subword affixes, byte fallback with fused and unfused unknown tokens. Each is compared
with ``AutoTokenizer`` called as sentence-transformers and CrossEncoder call it.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from bpe_helpers import REPO, bpe_hostile, build_dirs
from test_tokenizer import describe, mismatches, pack, scalar_values

from embedrt.tokenizers import BPETokenizer, TokenizerError, load_tokenizer
from embedrt.tokenizers.pairs import encode_pairs_truncated, pad_pairs

HOSTILE = 20_000
SIDES = ("right", "left")


@pytest.fixture(scope="module")
def dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build_dirs(tmp_path_factory.mktemp("bpe"))


@pytest.fixture(scope="module")
def hostile() -> list[str]:
    return bpe_hostile(HOSTILE, seed=20261207)


@pytest.fixture(scope="module")
def sts_test() -> list[str]:
    path = REPO.parent / "shared" / "data" / "stsbenchmark" / "sts-test.csv"
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [r[5] for r in rows] + [r[6] for r in rows]


_REFS: dict[tuple[Path, str], object] = {}


def reference(model_dir: Path, side: str = "right"):
    from transformers import AutoTokenizer

    if (model_dir, side) not in _REFS:
        _REFS[(model_dir, side)] = AutoTokenizer.from_pretrained(str(model_dir), truncation_side=side)
    return _REFS[(model_dir, side)]


VARIANTS = [
    "roberta",
    "roberta_prefix",
    "modernbert",
    "split_sequence",
    "split_prefix",
    "bytelevel_post",
    "nfc",
    "merges_as_strings",
    "ignore_merges",
    "affixes",
    "fallback_fused",
    "unk_unfused",
    "fallback_no_unk",
]


# ---------------------------------------------------------------- single texts


@pytest.mark.parametrize("variant", VARIANTS)
def test_sts_test_sentences(dirs, sts_test, variant):
    tok, ref = load_tokenizer(dirs[variant]), reference(dirs[variant])
    assert isinstance(tok, BPETokenizer)
    for max_length in (512, 16):
        bad = mismatches(tok, ref, sts_test, max_length=max_length)
        assert not bad, describe(sts_test, bad)
    print(f"{variant}: sts-test {len(sts_test)} sentences identical at max_length 512 and 16")


@pytest.mark.parametrize("variant", VARIANTS)
def test_hostile_strings(dirs, hostile, variant):
    tok, ref = load_tokenizer(dirs[variant]), reference(dirs[variant])
    # All 20,000 on the two real-world shapes; 5,000 on the other configurations keeps the file's time down.
    texts = hostile if variant in ("roberta", "modernbert") else hostile[:5000]
    bad = mismatches(tok, ref, texts, max_length=512)
    print(f"{variant}: hostile {len(texts)} strings, {sum(map(len, texts))} chars, {len(bad)} mismatches")
    assert not bad, describe(texts, bad)
    rows = tok.encode_batch(texts, 512)
    assert sum(len(r) == 512 for r in rows) > 10  # the long ones were truncated
    special = tok.special_ids - {tok.cls_id, tok.sep_id}
    assert sum(not special.isdisjoint(r[1:-1]) for r in rows) > 100  # literal special tokens were common


def test_the_configurations_reach_their_features(dirs, hostile):
    """The variants differ where they should: a test over identical tokenizers could not fail on a feature."""
    texts = hostile[:3000]
    ids = {v: load_tokenizer(dirs[v]).encode_batch(texts, 512) for v in VARIANTS}
    for variant in ("roberta_prefix", "split_prefix"):
        tok = load_tokenizer(dirs[variant])
        assert tok.tokenize_ids("hello") == tok.tokenize_ids(" hello")  # the prefix space is there
    plain = load_tokenizer(dirs["split_sequence"])
    assert plain.tokenize_ids("hello") != plain.tokenize_ids(" hello")
    fused, unfused = load_tokenizer(dirs["fallback_fused"]), load_tokenizer(dirs["unk_unfused"])
    byte_ids = {i for i, t in fused.tokens_by_id().items() if t.startswith("<0x")}
    assert sum(not byte_ids.isdisjoint(r) for r in ids["fallback_fused"]) > 500
    assert sum(fused.unk_id in r for r in ids["fallback_fused"]) > 100
    assert sum(r.count(unfused.unk_id) for r in ids["unk_unfused"]) > sum(
        r.count(fused.unk_id) for r in ids["fallback_fused"]
    )
    assert load_tokenizer(dirs["fallback_no_unk"]).unk_id == -1
    nfc, plain = load_tokenizer(dirs["nfc"]), load_tokenizer(dirs["split_sequence"])
    assert nfc.tokenize_ids("cafe\u0301") == nfc.tokenize_ids("caf\u00e9")
    assert plain.tokenize_ids("cafe\u0301") != plain.tokenize_ids("caf\u00e9")
    modern = load_tokenizer(dirs["modernbert"])
    sw = modern._added.ids["<|sw|>"]
    assert modern.tokenize_ids("a <|sw|> b").count(sw) == 1 and sw not in modern.tokenize_ids("a<|sw|>b")
    assert ids["ignore_merges"] != ids["modernbert"]  # different training runs' vocabularies, at least


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("max_length", [3, 8, 64])
def test_truncation_on_either_side(dirs, sts_test, hostile, side, max_length):
    long = [t for t in hostile if len(t) > 1000][: 100 if max_length > 8 else 20]
    texts = sts_test[:300] + long + ["", " ", "<s>", "<mask>", "[MASK]", "\u3000", "it's"]
    for variant in ("roberta", "modernbert", "roberta_prefix"):
        tok, ref = load_tokenizer(dirs[variant]), reference(dirs[variant], side)
        out = ref(texts, padding=True, truncation="longest_first", max_length=max_length, return_tensors="np")
        ids, mask = tok.pad(tok.encode_batch(texts, max_length, side))
        np.testing.assert_array_equal(ids, out["input_ids"])
        np.testing.assert_array_equal(mask, out["attention_mask"])


def test_long_texts_are_cut_before_tokenizing_with_the_same_ids(dirs, hostile):
    """Only the kept end of a long text is tokenized (cut before a space between ASCII letters or digits); the ids
    equal tokenizing it all, then truncating, and the reference's."""
    rng = random.Random(7)
    long = [" ".join(hostile[i : i + 400]) for i in range(0, 4_000, 400)]
    long += ["".join(rng.choice(hostile) for _ in range(300)) for _ in range(5)]
    long += ["x " * 3000, " " * 50_000 + "word", "word" * 20_000, "<s> " * 5000, "[MASK] " * 5000, "it's " * 4000]
    for variant in ("roberta", "modernbert"):
        tok = load_tokenizer(dirs[variant])
        full = [tok.tokenize_ids(t) for t in long]
        for side in SIDES:
            for max_length in (3, 128, 512):
                rows, truncated = tok.encode_batch_truncated(long, max_length, side)
                keep = max_length - 2
                want = [ids[:keep] if side == "right" else ids[max(0, len(ids) - keep) :] for ids in full]
                assert rows == [[tok.cls_id, *ids, tok.sep_id] for ids in want]
                assert truncated == [len(ids) > keep for ids in full]
        bad = mismatches(tok, reference(dirs[variant]), long, max_length=256, chunk=200)
        assert not bad, describe(long, bad)


@pytest.mark.parametrize("context", ["a{c}b", "{c}", " {c}{c} 1"])
def test_every_code_point(dirs, context):
    tok, ref = load_tokenizer(dirs["modernbert"]), reference(dirs["modernbert"])
    units = [context.format(c=chr(cp)) for cp in scalar_values()[:: 5 if context == "a{c}b" else 11]]
    texts = pack(units)
    bad = mismatches(tok, ref, texts, max_length=4096, chunk=5000)
    assert not bad, describe(texts, bad)
    print(f"context {context!r}: {len(units)} code points in {len(texts)} texts identical")


# ---------------------------------------------------------------- pairs, as CrossEncoder calls the tokenizer


def _pairs(hostile: list[str], sts_test: list[str], n: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    texts = hostile[:4000] + sts_test[:1000] + ["", "<pad>", "a <pad> b", "<s>", "</s>", "[MASK]", " "]
    pairs = [(rng.choice(texts), rng.choice(texts)) for _ in range(n)]
    # The reference keeps every overflow window of both texts, their product: at max_length 5 (one token per
    # window) a long text beside another exhausts its memory. Long texts are cut to 1,000 characters, and the
    # other text beside one to 100.
    pairs = [(a[:1000], b[:100]) if len(a) > 300 else (a[:100], b[:1000]) if len(b) > 300 else (a, b) for a, b in pairs]
    return pairs


def _pair_mismatches(tok, ref, pairs, max_length: int, side: str) -> int:
    bad = 0
    for start in range(0, len(pairs), 100):
        batch = pairs[start : start + 100]
        want = ref(
            [a for a, _ in batch],
            [b for _, b in batch],
            padding=True,
            truncation="longest_first",
            max_length=max_length,
            return_tensors="np",
            return_token_type_ids=True,
        )
        rows, starts, _ = encode_pairs_truncated(tok, batch, max_length, side)
        got = pad_pairs(tok.pad_id, rows, starts)
        if got["input_ids"].shape != want["input_ids"].shape:
            bad += len(batch)
            continue
        differ = np.zeros(len(batch), dtype=bool)
        for key in ("input_ids", "attention_mask", "token_type_ids"):
            differ |= (got[key] != want[key]).any(axis=1)
        bad += int(differ.sum())
    return bad


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("variant", ["roberta", "modernbert", "bytelevel_post"])
def test_pairs_match_the_fast_tokenizer(dirs, hostile, sts_test, variant, side):
    tok, ref = load_tokenizer(dirs[variant]), reference(dirs[variant], side)
    pairs = _pairs(hostile, sts_test, 1000, seed=len(side) + len(variant))
    for max_length in (5, 9, 16, 64):
        # Each overflow window of one text times each of the other: at one or two tokens per window, 300 pairs
        # of texts cut to 60 characters keep the reference's memory in bounds.
        some = pairs if max_length > 9 else [(a[:60], b[:60]) for a, b in pairs[:300]]
        bad = _pair_mismatches(tok, ref, some, max_length, side)
        print(f"{variant} pairs, {side}, max_length {max_length}: {bad} mismatches of {len(some)}")
        assert bad == 0


def test_pair_layouts(dirs):
    roberta, modern = load_tokenizer(dirs["roberta"]), load_tokenizer(dirs["modernbert"])
    rows, starts, _ = encode_pairs_truncated(roberta, [("a", "b")], 64)
    assert rows[0][:1] == [roberta.cls_id] and rows[0].count(roberta.sep_id) == 3 and starts == [len(rows[0])]
    rows, starts, _ = encode_pairs_truncated(modern, [("a", "b")], 64)
    assert rows[0][:1] == [modern.cls_id] and rows[0].count(modern.sep_id) == 2 and starts == [len(rows[0])]


# ---------------------------------------------------------------- loading and refusals


def test_properties_and_padding(dirs):
    tok, ref = load_tokenizer(dirs["roberta"]), reference(dirs["roberta"])
    assert (tok.cls_id, tok.sep_id, tok.pad_id) == (ref.cls_token_id, ref.sep_token_id, ref.pad_token_id)
    assert tok.vocab_size == len(ref)
    assert tok.tokens_by_id() == {i: t for t, i in ref.get_vocab().items()}
    assert tok.special_ids == frozenset(ref.all_special_ids)
    ids, mask = tok(["a", "a longer text here", "<pad>"], 64)
    want = ref(["a", "a longer text here", "<pad>"], padding=True, truncation=True, max_length=64, return_tensors="np")
    np.testing.assert_array_equal(ids, want["input_ids"])
    np.testing.assert_array_equal(mask, want["attention_mask"])


def _broken(src: Path, dst: Path, edit=None, edit_config=None) -> Path:
    shutil.copytree(src, dst)
    if edit is not None:
        data = json.loads((dst / "tokenizer.json").read_text(encoding="utf-8"))
        edit(data)
        (dst / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    if edit_config is not None:
        config = json.loads((dst / "tokenizer_config.json").read_text(encoding="utf-8"))
        edit_config(config)
        (dst / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return dst


@pytest.mark.parametrize(
    ("edit", "edit_config", "message"),
    [
        (lambda d: d["model"].update(dropout=0.1), None, r"model: dropout 0\.1"),
        (lambda d: d.update(normalizer={"type": "NFKC"}), None, r"normalizer is 'NFKC'"),
        (lambda d: d.update(pre_tokenizer={"type": "Whitespace"}), None, r"pre_tokenizer is 'Whitespace'.*ByteLevel"),
        (
            lambda d: d.update(
                pre_tokenizer={
                    "type": "Sequence",
                    "pretokenizers": [
                        {"type": "Split", "pattern": {"Regex": r"\d"}, "behavior": "Isolated", "invert": False},
                        {"type": "ByteLevel", "add_prefix_space": False, "use_regex": False},
                    ],
                }
            ),
            None,
            r"pretokenizers\[0\]: pattern .*GPT-2",
        ),
        (lambda d: d["model"].update(merges=["a b c"]), None, r"merges\[0\] is 'a b c'"),
        (lambda d: d["model"].update(merges=[["Ġ", "zzzq"]]), None, r"merges\[0\].*'zzzq' is not in the vocabulary"),
        (None, lambda c: c.update(tokenizer_class="GPT2TokenizerFast"), r"tokenizer_class 'GPT2TokenizerFast'"),
    ],
)
def test_unsupported_files_are_refused_by_name(dirs, tmp_path, edit, edit_config, message):
    model_dir = _broken(dirs["roberta"], tmp_path / "broken", edit, edit_config)
    with pytest.raises(TokenizerError, match=message) as err:
        load_tokenizer(model_dir)
    assert str(model_dir) in str(err.value)


def test_do_lower_case_is_refused(dirs):
    with pytest.raises(TokenizerError, match="do_lower_case"):
        load_tokenizer(dirs["roberta"], do_lower_case=True)


def test_lone_surrogate(dirs):
    tok = load_tokenizer(dirs["roberta"])
    with pytest.raises(TokenizerError, match=r"texts\[1\] contains a lone surrogate U\+D800 at position 1"):
        tok(["fine", "a\ud800b"], 128)


def test_byte_level_tables_are_current():
    spec = importlib.util.spec_from_file_location("gen_byte_level_tables", REPO / "scripts/gen_byte_level_tables.py")
    assert spec is not None and spec.loader is not None
    generator = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = generator  # its dataclass resolves annotations through sys.modules
    try:
        spec.loader.exec_module(generator)
    finally:
        del sys.modules[spec.name]
    assert generator.check(), "runtime/tokenizers/tables/byte_level.py is stale: run scripts/gen_byte_level_tables.py"


def test_nfc_tables_are_current():
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts/gen_nfc_tables.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("context", ["{c}", "a{c}\u0301", "{c}\u0334\u0301", "\u0345{c}", "\u1100{c}\u11a8"])
def test_nfc_on_every_code_point(dirs, context):
    """The NFC variant against the reference: every code point (a third of them) beside marks that reorder and
    compose, and Hangul jamo."""
    tok, ref = load_tokenizer(dirs["nfc"]), reference(dirs["nfc"])
    units = [context.format(c=chr(cp)) for cp in scalar_values()[::3]]
    texts = pack(units)
    bad = mismatches(tok, ref, texts, max_length=8192, chunk=5000)
    assert not bad, describe(texts, bad)


def test_runtime_needs_no_tokenizer_packages():
    """embedrt.tokenizers.bpe imports nothing beyond the stdlib, numpy and embedrt (no regex, no tokenizers)."""
    script = (
        "import json, sys\nimport numpy\nmid = set(sys.modules)\nimport embedrt.tokenizers.bpe\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in set(sys.modules) - mid})))"
    )
    added = set(json.loads(subprocess.run([sys.executable, "-c", script], capture_output=True, check=True).stdout))
    assert added <= set(sys.stdlib_module_names) | {"embedrt"}, sorted(added - set(sys.stdlib_module_names))
