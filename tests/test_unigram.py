"""embedrt.unigram against the reference: the HF fast tokenizer on real XLM-R style (SentencePiece Unigram) files.

Three tokenizers are trained here with sentencepiece (nmt_nfkc) and converted by transformers, as the design note
says: different vocabulary sizes and training text, one with byte fallback. Variants of their tokenizer.json
cover the other normalizer, pre-tokenizer, added-token and post-processor shapes embedrt accepts.
"""

from __future__ import annotations

import base64
import json
import os
import random
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from embedrt.tokenizer import Tokenizer, TokenizerError, load_tokenizer
from embedrt.unigram import UnigramTokenizer, _Precompiled, _serde_f64

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # benchmarks/ holds the tokenizer builder the benchmark shares
    sys.path.insert(0, str(REPO))

from test_tokenizer import describe, mismatches, pack, ref_call, scalar_values, unpadded  # noqa: E402
from unigram_helpers import build_charsmap, hostile_texts  # noqa: E402

from benchmarks.xlmr_tokenizer import (  # noqa: E402
    multilingual_lines,
    multilingual_words,
    sts_sentences,
    train_xlmr_tokenizer,
    training_lines,
)

# name: (vocabulary size, generated multilingual lines, STS training sentences used, byte fallback, coverage)
SPECS = {
    "sts4k": (4000, 3000, None, False, 0.9995),
    "multi6k_bytes": (6000, 6000, 6000, True, 0.9995),
    "small1500": (1500, 2000, 3000, False, 0.98),
}
HOSTILE = 20_000


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def xlmr_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The three trained tokenizers (about 10 s in all)."""
    sts = sts_sentences("train")
    dirs = {}
    for seed, (name, (vocab, multi, n_sts, byte_fallback, coverage)) in enumerate(SPECS.items()):
        lines = training_lines(sts[:n_sts], multi, seed=seed)
        dirs[name] = train_xlmr_tokenizer(
            tmp_path_factory.mktemp(name),
            lines,
            vocab_size=vocab,
            byte_fallback=byte_fallback,
            character_coverage=coverage,
        )
    return dirs


_REFS: dict[Path, object] = {}


def reference(model_dir: Path):
    from transformers import AutoTokenizer

    if model_dir not in _REFS:
        _REFS[model_dir] = AutoTokenizer.from_pretrained(str(model_dir))
    return _REFS[model_dir]


@pytest.fixture(scope="session", params=list(SPECS))
def name(request) -> str:
    return request.param


@pytest.fixture(scope="session")
def toks(xlmr_dirs) -> dict[str, UnigramTokenizer]:
    return {n: UnigramTokenizer.from_dir(d) for n, d in xlmr_dirs.items()}


@pytest.fixture(scope="session")
def sts_test() -> list[str]:
    return sts_sentences("test")


@pytest.fixture(scope="session")
def words() -> list[str]:
    sts_words = [w for s in sts_sentences("train")[:3000] for w in s.split()]
    return sts_words[:6000] + multilingual_words(7)


@pytest.fixture(scope="session")
def hostile(words) -> list[str]:
    return hostile_texts(HOSTILE, seed=20240611, words=words)


# ---------------------------------------------------------------- parity on the trained tokenizers


def test_sts_test_sentences(name, xlmr_dirs, toks, sts_test):
    ref = reference(xlmr_dirs[name])
    for max_length in (256, 16):
        ids, mask = toks[name](sts_test, max_length)
        ref_ids, ref_mask = ref_call(ref, sts_test, max_length)
        assert ids.dtype == mask.dtype == np.int64
        np.testing.assert_array_equal(ids, ref_ids)
        np.testing.assert_array_equal(mask, ref_mask)
    print(f"{name}: sts-test {len(sts_test)} sentences identical at max_length 256 and 16")


def test_hostile_strings(name, xlmr_dirs, toks, hostile):
    ref = reference(xlmr_dirs[name])
    bad = mismatches(toks[name], ref, hostile, max_length=512)
    print(f"{name}: hostile {len(hostile)} strings, {sum(map(len, hostile))} chars, {len(bad)} mismatches")
    assert not bad, describe(hostile, bad)
    rows = toks[name].encode_batch(hostile, 512)
    assert sum(len(r) == 512 for r in rows) > 50  # the long ones were truncated
    fallback = {i for i, t in toks[name].tokens_by_id().items() if t.startswith("<0x")} | {toks[name].unk_id}
    assert sum(not fallback.isdisjoint(r) for r in rows) > 1000  # unknown characters (or their bytes) were common


@pytest.mark.parametrize("max_length", [3, 8, 64])
def test_truncation(xlmr_dirs, toks, sts_test, hostile, max_length):
    # The reference splits what it cuts off into max_length-sized overflow parts: slow for tiny lengths.
    long = [t for t in hostile if len(t) > 1000][: 150 if max_length > 8 else 20]
    texts = sts_test[:300] + long + ["", " ", "<s>", "<mask>", "\u3000"]
    for name in SPECS:
        ref = reference(xlmr_dirs[name])
        bad = mismatches(toks[name], ref, texts, max_length=max_length)
        assert not bad, describe(texts, bad)
        assert [len(r) for r in toks[name].encode_batch(texts, max_length)] == [
            len(r) for r in unpadded(*ref_call(ref, texts, max_length))
        ]


def test_long_texts_are_cut_before_tokenizing_with_the_same_ids(xlmr_dirs, toks, hostile):
    """Only a prefix of a long text is tokenized (cut before a space between plain characters); the ids equal
    tokenizing it all, then truncating, and the reference's; the truncated flag says whether tokens were dropped."""
    tok, ref = toks["sts4k"], reference(xlmr_dirs["sts4k"])
    rng = random.Random(7)
    long = [" ".join(hostile[i : i + 400]) for i in range(0, 16_000, 400)]  # 40 texts of 40-60 k characters
    long += ["".join(rng.choice(hostile) for _ in range(300)) for _ in range(10)]  # joined without spaces
    long += [" ".join(multilingual_lines(600, seed)) for seed in range(5)]  # non-ASCII cut points
    long += ["x " * 3000, " " * 50_000 + "word", "word" * 20_000, "<s> " * 5000, "<mask> " * 5000]
    long += ["a\u0301 " * 5000, "\u0600a b " * 3000, "\u00a8 \u00a8 " * 3000, "A " * 2000 + "\u3000 " * 2000]
    full = [tok.tokenize_ids(t) for t in long]
    for max_length in (3, 128, 512):
        rows, truncated = tok.encode_batch_truncated(long, max_length)
        assert rows == [[tok.cls_id, *ids[: max_length - 2], tok.sep_id] for ids in full]
        assert truncated == [len(ids) > max_length - 2 for ids in full]
    bad = mismatches(tok, ref, long, max_length=256, chunk=200)
    assert not bad, describe(long, bad)


@pytest.mark.parametrize(("which", "context", "step"), [("sts4k", "a{c}b", 2), ("multi6k_bytes", "{c}", 3)])
def test_every_code_point(xlmr_dirs, toks, which, context, step):
    units = [context.format(c=chr(cp)) for cp in scalar_values()[::step]]
    texts = pack(units)
    bad = mismatches(toks[which], reference(xlmr_dirs[which]), texts, max_length=512, chunk=5000)
    assert not bad, describe(texts, bad)
    print(f"{which} context {context!r}: {len(units)} code points in {len(texts)} texts identical")


# ---------------------------------------------------------------- the Precompiled normalizer and graphemes


def _charsmap(model_dir: Path) -> bytes:
    data = json.loads((model_dir / "tokenizer.json").read_text(encoding="utf-8"))
    return base64.b64decode(data["normalizer"]["normalizers"][0]["precompiled_charsmap"])


@pytest.mark.parametrize("context", ["{c}", "{c}\u0301", "\ufb01{c}", "\u00a8{c}z", "{c}\u094d\u0915", "\r{c}"])
def test_precompiled_matches_reference_on_every_code_point(xlmr_dirs, context):
    """nmt_nfkc charsmap, grapheme by grapheme: the whole-cluster look-up under 6 bytes and its first-match quirk."""
    from tokenizers.normalizers import Precompiled

    charsmap = _charsmap(xlmr_dirs["sts4k"])
    theirs, ours = Precompiled(charsmap), _Precompiled(charsmap, "test")
    units = [context.format(c=chr(cp)) for cp in scalar_values()]
    bad = []
    for start in range(0, len(units), 4096):
        text = "\x00".join(units[start : start + 4096])  # NUL: a cluster of its own that the charsmap never maps
        if ours(text) != theirs.normalize_str(text):
            bad += [u for u in units[start : start + 4096] if ours(u) != theirs.normalize_str(u)]
    assert not bad, f"{len(bad)} differ, e.g. {[ascii(u) for u in bad[:5]]}"


def _category_pool(rng: random.Random) -> list[str]:
    """Characters of every grapheme category of the frozen tables, short ones (1-2 UTF-8 bytes) favoured."""
    from embedrt import _grapheme_tables as tables

    by_category: dict[int, list[int]] = {}
    for first, last, cat in tables.GRAPHEME_CATEGORY:
        by_category.setdefault(cat, []).extend(range(first, min(last, first + 40) + 1))
    pool = list("ab \r\n\t")
    for cps in by_category.values():
        short = [cp for cp in cps if cp < 0x800]
        pool += [chr(cp) for cp in rng.sample(cps, min(20, len(cps))) + rng.sample(short, min(10, len(short)))]
    pool += [chr(cp) for cp in tables.INCB_LINKER] + [chr(a) for a, _ in tables.INCB_EXTEND[:40]]
    pool += ["\u200d", "\u0300", "\u0915", "\u0958", "\U0001f1e6", "\U0001f1e7", "\u00a9", "\U0001f600", "\u0600"]
    return sorted(set(pool))


def test_grapheme_clusters_match_reference():
    """With a charsmap that maps every character to itself, the reference keeps only the first character of each
    cluster under 6 bytes, so its output shows the clusters: compare on random strings of every category."""
    from tokenizers.normalizers import Precompiled

    rng = random.Random(0)
    pool = _category_pool(rng)
    charsmap = build_charsmap({c: c for c in pool} | {"a": "Z", "ab": "Y", "\u0301": "", "x\u0301": "X"})
    theirs, ours = Precompiled(charsmap), _Precompiled(charsmap, "test")
    texts = ["".join(rng.choice(pool) for _ in range(rng.randint(1, 10))) for _ in range(40_000)]
    bad = [t for t in texts if ours(t) != theirs.normalize_str(t)]
    assert not bad, f"{len(bad)} differ, e.g. {[ascii(t) for t in bad[:5]]}"


def test_graphemes_examples():
    from embedrt._graphemes import graphemes

    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"
    assert graphemes(f"a{family}b") == ["a", family, "b"]
    assert graphemes("\U0001f1fa\U0001f1f8\U0001f1eb") == ["\U0001f1fa\U0001f1f8", "\U0001f1eb"]
    assert graphemes("\r\n\n") == ["\r\n", "\n"]
    assert graphemes("\u0915\u094d\u0937\u093f") == ["\u0915\u094d\u0937\u093f"]  # GB9c conjunct
    assert graphemes("\u0915\u094d a") == ["\u0915\u094d", " ", "a"]
    assert graphemes("\u1100\u1161\u11a8\u1100") == ["\u1100\u1161\u11a8", "\u1100"]
    assert graphemes("\u0600a") == ["\u0600a"]  # Prepend
    assert graphemes("") == []


# regex 2024.11.6, the last release at Unicode 16.0 (the grapheme tables' version): `make install` puts it here.
REGEX_AT_UNICODE_16 = REPO / ".cache" / "regex-2024.11.6"


def test_grapheme_tables_are_current():
    """Regenerating the tables from regex at Unicode 16 (installed beside the venv by `make install`) changes nothing.

    The test makes no network call; without that install it fails (never skips), naming the step to run.
    """
    target = REGEX_AT_UNICODE_16
    if not (target / "regex-2024.11.6.dist-info").is_dir():
        pytest.fail(
            f"{target} holds no regex 2024.11.6: run `make install` (it runs `pip install --target {target} "
            "regex==2024.11.6`)"
        )
    env = {**os.environ, "PYTHONPATH": str(target)}
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts/gen_grapheme_tables.py"), "--check"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------- scores as the reference reads them


def test_scores_are_parsed_like_the_reference():
    """serde_json without float_roundtrip: not always the nearest double, and ties in Viterbi depend on it."""
    from tokenizers import Tokenizer as RustTokenizer

    rng = random.Random(3)
    texts = [repr(struct.unpack("<f", struct.pack("<f", -rng.uniform(0, 30)))[0]) for _ in range(2000)]
    texts += [repr(-rng.uniform(0, 30)) for _ in range(2000)]
    texts += ["-0.0", "0.0", "-1e-05", "-1.5E+3", "-12345678901234567890.5", "-0.12345678901234567890123456789"]
    texts += ["-1e-320", "-4.9e-324", "-123456789012345678901234567890e-20", "-1.7976931348623157e308"]
    vocab = ",".join(f'["t{i}", {t}]' for i, t in enumerate(texts))
    model = f'{{"type": "Unigram", "unk_id": 0, "vocab": [["<unk>", 0.0], {vocab}], "byte_fallback": false}}'
    tokenizer = RustTokenizer.from_str(f'{{"version": "1.0", "added_tokens": [], "model": {model}}}')
    parsed = [score for _, score in json.loads(tokenizer.to_str())["model"]["vocab"][1:]]
    ours = [_serde_f64(t) for t in texts]
    assert ours == parsed
    assert sum(o != float(t) for o, t in zip(ours, texts, strict=True)) > 100  # not Python's parsing


def test_viterbi_tie_follows_the_reference_parsing(tmp_path):
    """score("ab") == score("a") + score("b") as the reference reads them (a tie: the earliest start, "ab",
    stays), while Python's nearest-double parsing makes "a" + "b" better by one ulp."""
    from tokenizers import Tokenizer as RustTokenizer

    a, b, ab = "-8.2114196608918686", "-1.2447198642684283", "-9.456139525160298"
    assert _serde_f64(a) + _serde_f64(b) == _serde_f64(ab) and float(a) + float(b) > float(ab)
    special = {t: {"id": t, "ids": [i], "tokens": [t]} for t, i in (("<s>", 1), ("</s>", 2))}
    text = (
        '{"version": "1.0", "added_tokens": [], "normalizer": null,'
        ' "pre_tokenizer": {"type": "Metaspace", "replacement": "\\u2581", "prepend_scheme": "never"},'
        ' "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},'
        ' {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "</s>", "type_id": 0}}], "pair": [],'
        f' "special_tokens": {json.dumps(special)}}}, "model": {{"type": "Unigram", "unk_id": 0,'
        f' "vocab": [["<unk>", 0.0], ["<s>", 0.0], ["</s>", 0.0], ["<pad>", 0.0], ["a", {a}], ["b", {b}],'
        f' ["ab", {ab}]]}}}}'
    )
    (tmp_path / "tokenizer.json").write_text(text, encoding="utf-8")
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "pad_token": "<pad>"}
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    assert RustTokenizer.from_str(text).encode("ab ab", add_special_tokens=False).ids == [6, 0, 6]
    tok = UnigramTokenizer.from_dir(tmp_path)
    assert tok.tokenize_ids("ab ab") == [6, 0, 6]  # "▁" is unknown here
    assert tok(["ab"], 8)[0].tolist() == [[1, 6, 2]]


# ---------------------------------------------------------------- other shapes of tokenizer.json


def _variant(src: Path, dst: Path, edit=None, edit_config=None) -> Path:
    shutil.copytree(src, dst)
    if edit is not None:
        data = json.loads((src / "tokenizer.json").read_text(encoding="utf-8"))
        edit(data)
        (dst / "tokenizer.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    if edit_config is not None:
        config = json.loads((src / "tokenizer_config.json").read_text(encoding="utf-8"))
        edit_config(config)
        (dst / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return dst


def _pre(**fields):
    return lambda d: d["pre_tokenizer"].update(fields)


def _norms(edit):
    return lambda d: edit(d["normalizer"]["normalizers"])


def _mask(**flags):
    return lambda d: next(t for t in d["added_tokens"] if t["content"] == "<mask>").update(flags)


def _both(*edits):
    def edit(d):
        for e in edits:
            e(d)

    return edit


def _no_mask(d):
    d["added_tokens"] = [t for t in d["added_tokens"] if t["content"] != "<mask>"]


def _padding(d):
    d["padding"] = {
        "strategy": "BatchLongest",
        "direction": "Right",
        "pad_to_multiple_of": None,
        "pad_id": 1,
        "pad_type_id": 0,
        "pad_token": "<pad>",
    }


STRIP_BOTH = _norms(lambda n: n.__setitem__(1, {"type": "Strip", "strip_left": True, "strip_right": True}))
VARIANTS = {
    "prepend_first": (_pre(prepend_scheme="first"), None),
    "prepend_never": (_pre(prepend_scheme="never"), None),
    "no_split": (_pre(split=False), None),
    "add_prefix_space": (lambda d: d.update(pre_tokenizer={"type": "Metaspace", "replacement": "▁"}), None),
    "legacy_add_prefix_space": (
        lambda d: d.update(pre_tokenizer={"type": "Metaspace", "replacement": "▁", "add_prefix_space": True}),
        None,
    ),
    "pre_tokenizer_sequence": (
        lambda d: d.update(pre_tokenizer={"type": "Sequence", "pretokenizers": [d["pre_tokenizer"]]}),
        None,
    ),
    "strip_both": (STRIP_BOTH, None),
    "strip_both_first": (_both(STRIP_BOTH, _pre(prepend_scheme="first")), None),
    "lowercase_normalizer": (_norms(lambda n: n.insert(1, {"type": "Lowercase"})), None),
    "replace_string": (
        _norms(lambda n: n.append({"type": "Replace", "pattern": {"String": "th"}, "content": "Θ"})),
        None,
    ),
    "replace_first": (
        _both(
            _norms(lambda n: n.insert(0, {"type": "Replace", "pattern": {"Regex": "[a-c]+"}, "content": "<>"})),
            _pre(prepend_scheme="first"),
        ),
        None,
    ),
    "no_normalizer": (lambda d: d.update(normalizer=None), None),
    "mask_raw_rstrip": (_mask(normalized=False, rstrip=True), None),
    "mask_raw_rstrip_first": (
        _both(_mask(normalized=False, rstrip=True, lstrip=False), _pre(prepend_scheme="first")),
        None,
    ),
    "roberta_processing": (
        lambda d: d.update(
            post_processor={"type": "RobertaProcessing", "sep": ["</s>", 2], "cls": ["<s>", 0], "trim_offsets": True}
        ),
        None,
    ),
    # transformers re-adds <mask> from tokenizer_config.json's added_tokens_decoder ...
    "mask_only_in_config": (_no_mask, None),
    # ... or, in a legacy directory, from special_tokens_map.json (lstrip, normalized) over tokenizer_config.json's
    "legacy_config": (_no_mask, lambda c: c.pop("added_tokens_decoder")),
    "pretrained_fast_padding": (
        _padding,
        lambda c: (c.update(tokenizer_class="PreTrainedTokenizerFast"), c.pop("pad_token")),
    ),
    "extra_special_tokens": (None, lambda c: c.update(additional_special_tokens=["<extra>", "hello"])),
}
EXTRA_TEXTS = ["<extra> hello <mask>", "hello<extra>", "Hello <mask>  <mask>x", "th the Thé", "abc cab", "  x  "]


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_tokenizer_json_variants(xlmr_dirs, tmp_path, sts_test, hostile, variant):
    edit, edit_config = VARIANTS[variant]
    model_dir = _variant(xlmr_dirs["sts4k"], tmp_path / variant, edit, edit_config)
    ref = reference(model_dir)
    tok = UnigramTokenizer.from_dir(model_dir)
    texts = EXTRA_TEXTS + sts_test[:300] + hostile[:2500]
    bad = mismatches(tok, ref, texts, max_length=512)
    assert not bad, describe(texts, bad)
    assert (tok.pad_id, tok.cls_id, tok.sep_id) == (ref.pad_token_id, ref.cls_token_id, ref.sep_token_id)
    assert tok.vocab_size == max(ref.get_vocab().values()) + 1


@pytest.mark.parametrize("variant", ["sts4k", "prepend_first"])
def test_do_lower_case_matches_sentence_transformers(xlmr_dirs, tmp_path, sts_test, hostile, variant):
    """sentence-transformers >= 5 puts a Lowercase normalizer first (its Transformer module, do_lower_case)."""
    from tokenizers.normalizers import Lowercase, Sequence
    from transformers import AutoTokenizer

    model_dir = xlmr_dirs["sts4k"]
    if variant != "sts4k":
        model_dir = _variant(model_dir, tmp_path / variant, *VARIANTS[variant])
    ref = AutoTokenizer.from_pretrained(str(model_dir))
    normalizer = ref.backend_tokenizer.normalizer  # the same lines as sentence_transformers' Transformer
    ref.backend_tokenizer.normalizer = Sequence([Lowercase(), *list(normalizer)])
    tok = UnigramTokenizer.from_dir(model_dir, do_lower_case=True)
    texts = ["ΟΔΟΣ ΟΔΟΣ", "<MASK> x <mask>", "İSTANBUL", "ǅ ẞ", "ＡＢＣ", *sts_test[:300], *hostile[:3000]]
    bad = mismatches(tok, ref, texts, max_length=512)
    assert not bad, describe(texts, bad)


# ---------------------------------------------------------------- interface, loading and errors


def test_properties_and_padding(xlmr_dirs, toks):
    tok, ref = toks["sts4k"], reference(xlmr_dirs["sts4k"])
    data = json.loads((xlmr_dirs["sts4k"] / "tokenizer.json").read_text(encoding="utf-8"))
    assert (tok.cls_id, tok.sep_id, tok.pad_id) == (ref.cls_token_id, ref.sep_token_id, ref.pad_token_id) == (0, 2, 1)
    assert tok.unk_id == data["model"]["unk_id"] == 3  # the model's; "<unk>" the added token is id 4 here
    assert tok.vocab_size == max(ref.get_vocab().values()) + 1 == len(data["model"]["vocab"])
    by_id = tok.tokens_by_id()
    assert [by_id[i] for i in range(tok.vocab_size)] == ref.convert_ids_to_tokens(list(range(tok.vocab_size)))
    assert {0, 1, 2, 3, 4, tok.vocab_size - 1} <= tok.special_ids
    assert tok.pair_template == ((0,), "A", (2,), (2,), "B", (2,))
    ids, mask = tok([], 16)
    assert ids.shape == mask.shape == (0, 0)
    ids, mask = tok(["a", "a much longer text than a"], 16)
    assert ids[0, -1] == 1 and mask[0, -1] == 0  # padded with <pad> = 1, not 0
    assert tok.tokenize_ids("Hello, world!") == ref("Hello, world!", add_special_tokens=False)["input_ids"]


def test_load_tokenizer_picks_by_model_type(xlmr_dirs, minilm_dir, tmp_path):
    assert isinstance(load_tokenizer(xlmr_dirs["sts4k"]), UnigramTokenizer)
    assert isinstance(load_tokenizer(minilm_dir), Tokenizer)
    for file in ("vocab.txt", "tokenizer_config.json"):
        shutil.copy(minilm_dir / file, tmp_path / file)
    assert isinstance(load_tokenizer(tmp_path), Tokenizer)  # vocab.txt only
    data = json.loads((xlmr_dirs["sts4k"] / "tokenizer.json").read_text(encoding="utf-8"))
    data["model"] = {"type": "WordLevel", "vocab": {}, "unk_token": "<unk>"}
    (tmp_path / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(TokenizerError, match=r"tokenizer\.json: model type is 'WordLevel'.*WordPiece, Unigram, BPE"):
        load_tokenizer(tmp_path)
    with pytest.raises(FileNotFoundError):
        load_tokenizer(tmp_path / "missing")


@pytest.mark.parametrize(
    ("edit", "edit_config", "message"),
    [
        (_norms(lambda n: n.append({"type": "NFKC"})), None, r"normalizer\.normalizers\[3\] is 'NFKC'.*Precompiled"),
        (lambda d: d.update(normalizer={"type": "BertNormalizer"}), None, r"normalizer is 'BertNormalizer'"),
        (lambda d: d.update(pre_tokenizer={"type": "Whitespace"}), None, r"pre_tokenizer is 'Whitespace'.*Metaspace"),
        (
            lambda d: d.update(
                pre_tokenizer={"type": "Sequence", "pretokenizers": [{"type": "WhitespaceSplit"}, d["pre_tokenizer"]]}
            ),
            None,
            r"Sequence of \['WhitespaceSplit', 'Metaspace'\]",
        ),
        (_pre(add_prefix_space=False), None, "add_prefix_space does not match"),
        (lambda d: d["model"].update(type="WordPiece"), None, r"model is 'WordPiece'.*only Unigram"),
        (
            _mask(single_word=True),
            lambda c: next(t for t in c["added_tokens_decoder"].values() if t["content"] == "<mask>").update(
                single_word=True
            ),
            r"'<mask>' sets single_word",
        ),
        (
            _norms(lambda n: n.append({"type": "Replace", "pattern": {"Regex": r"\s+"}, "content": " "})),
            None,
            "Oniguruma",
        ),
        (lambda d: d.update(post_processor={"type": "ByteLevel"}), None, r"post_processor is 'ByteLevel'"),
        (_norms(lambda n: n[0].update(precompiled_charsmap="!!")), None, "not base64"),
        (
            None,
            lambda c: c.update(tokenizer_class="T5Tokenizer"),
            r"tokenizer_class 'T5Tokenizer'.*XLMRobertaTokenizer",
        ),
    ],
)
def test_unsupported_files_are_refused_by_name(xlmr_dirs, tmp_path, edit, edit_config, message):
    model_dir = _variant(xlmr_dirs["sts4k"], tmp_path / "broken", edit, edit_config)
    with pytest.raises(TokenizerError, match=message) as err:
        UnigramTokenizer.from_dir(model_dir)
    assert str(model_dir) in str(err.value)


def test_lone_surrogate(xlmr_dirs, toks):
    tok, ref = toks["sts4k"], reference(xlmr_dirs["sts4k"])
    texts = ["fine", "also fine", "a\ud800b"]
    with pytest.raises(TypeError):  # the reference cannot convert it to a Rust string
        ref_call(ref, texts)
    with pytest.raises(TokenizerError, match=r"texts\[2\] contains a lone surrogate U\+D800 at position 1"):
        tok(texts, 128)
    with pytest.raises(TokenizerError, match=r"lone surrogate U\+DFFF at position 0"):
        tok.tokenize_ids("\udfff")


def test_runtime_needs_no_tokenizer_packages():
    """embedrt.unigram imports nothing beyond the stdlib, numpy and embedrt (no sentencepiece, regex, tokenizers)."""
    script = (
        "import json, sys\nbefore = set(sys.modules)\nimport numpy\nmid = set(sys.modules)\n"
        "import embedrt.unigram, embedrt.tokenizer\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in set(sys.modules) - mid})))"
    )
    added = set(json.loads(subprocess.run([sys.executable, "-c", script], capture_output=True, check=True).stdout))
    assert added <= set(sys.stdlib_module_names) | {"embedrt"}, sorted(added - set(sys.stdlib_module_names))
