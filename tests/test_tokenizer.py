"""embedrt.tokenizer against the reference: the HF fast tokenizer called as sentence-transformers calls it."""

from __future__ import annotations

import importlib.util
import json
import random
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from embedrt.tokenizer import Tokenizer, TokenizerError

REPO = Path(__file__).resolve().parent.parent
MAX_SEQ_LENGTH = 256


# ---------------------------------------------------------------- fixtures (minilm_dir, sts_pairs: conftest.py)


@pytest.fixture(scope="module")
def ref(minilm_dir):
    import transformers

    return transformers.AutoTokenizer.from_pretrained(str(minilm_dir))


@pytest.fixture(scope="module")
def tok(minilm_dir) -> Tokenizer:
    return Tokenizer.from_dir(minilm_dir)


@pytest.fixture(scope="module")
def sts_sentences(sts_pairs) -> list[str]:
    return sts_pairs.sentences


@pytest.fixture(scope="module")
def vocab_words(minilm_dir) -> list[str]:
    lines = (minilm_dir / "vocab.txt").read_text(encoding="utf-8").splitlines()
    return [w for w in lines if w and not w.startswith("[")]


@pytest.fixture(scope="module")
def hostile(vocab_words) -> list[str]:
    return hostile_texts(100_000, seed=20240611, vocab=vocab_words)


# ---------------------------------------------------------------- helpers


def ref_call(ref, texts, max_length: int = MAX_SEQ_LENGTH) -> tuple[np.ndarray, np.ndarray]:
    out = ref(list(texts), padding=True, truncation="longest_first", return_tensors="np", max_length=max_length)
    return out["input_ids"], out["attention_mask"]


def unpadded(ids: np.ndarray, mask: np.ndarray) -> list[list[int]]:
    return [row[: int(m.sum())].tolist() for row, m in zip(ids, mask, strict=True)]


def mismatches(tok, ref, texts, max_length: int = MAX_SEQ_LENGTH, chunk: int = 2000) -> list[int]:
    """Indices of texts whose ids or mask differ from the reference (compared chunk by chunk)."""
    bad: list[int] = []
    for start in range(0, len(texts), chunk):
        part = texts[start : start + chunk]
        ours = tok(part, max_length)
        theirs = ref_call(ref, part, max_length)
        if all(a.dtype == np.int64 and np.array_equal(a, b) for a, b in zip(ours, theirs, strict=True)):
            continue
        ours_rows, theirs_rows = unpadded(*ours), unpadded(*theirs)
        bad += [start + i for i, (a, b) in enumerate(zip(ours_rows, theirs_rows, strict=True)) if a != b]
        if not bad:  # same rows, different padding or mask encoding
            bad.append(start)
    return bad


def describe(texts, bad) -> str:
    return f"{len(bad)} mismatches, e.g. " + ", ".join(ascii(texts[i]) for i in bad[:5])


def scalar_values() -> list[int]:
    return [cp for cp in range(0x110000) if not 0xD800 <= cp <= 0xDFFF]


# Blocks with unusual case mappings, new or old assignments, marks, CJK edges, punctuation and symbols.
BLOCKS = [
    (0x20, 0x7E), (0xA0, 0x24F), (0x250, 0x2FF), (0x300, 0x36F), (0x370, 0x3FF), (0x400, 0x52F),
    (0x530, 0x58F), (0x590, 0x5FF), (0x600, 0x6FF), (0x700, 0x74F), (0x780, 0x7BF), (0x7C0, 0x7FF),
    (0x800, 0x8FF), (0x900, 0x97F), (0x980, 0x9FF), (0xB80, 0xBFF), (0xD00, 0xD7F), (0xE00, 0xE7F),
    (0xF00, 0xFFF), (0x10A0, 0x10FF), (0x1100, 0x11FF), (0x13A0, 0x13FF), (0x1680, 0x169F),
    (0x1700, 0x177F), (0x1800, 0x18AF), (0x1AB0, 0x1AFF), (0x1C80, 0x1CBF), (0x1D00, 0x1DFF),
    (0x1E00, 0x1FFF), (0x2000, 0x206F), (0x20A0, 0x20FF), (0x2100, 0x218F), (0x2190, 0x23FF),
    (0x2460, 0x24FF), (0x2C00, 0x2C7F), (0x2C80, 0x2CFF), (0x2D00, 0x2D2F), (0x2E00, 0x2E7F),
    (0x2F00, 0x2FDF), (0x3000, 0x303F), (0x3040, 0x30FF), (0x3100, 0x31FF), (0x3400, 0x4DBF),
    (0x4E00, 0x9FFF), (0xA640, 0xA69F), (0xA700, 0xA7FF), (0xA830, 0xA83F), (0xAB30, 0xABBF),
    (0xAC00, 0xD7AF), (0xE000, 0xE0FF), (0xF900, 0xFAFF), (0xFB00, 0xFB4F), (0xFD3E, 0xFDFF),
    (0xFE00, 0xFE6F), (0xFEFF, 0xFEFF), (0xFF00, 0xFFEF), (0xFFF0, 0xFFFF), (0x10400, 0x1044F),
    (0x104B0, 0x104FF), (0x10570, 0x105BF), (0x10D40, 0x10D8F), (0x110B0, 0x110CF), (0x111C0, 0x111DF),
    (0x11900, 0x1195F), (0x11F00, 0x11F5F), (0x13430, 0x1345F), (0x16E40, 0x16E9F), (0x1BCA0, 0x1BCA3),
    (0x1D160, 0x1D17F), (0x1D400, 0x1D7FF), (0x1E030, 0x1E08F), (0x1E900, 0x1E95F), (0x1F000, 0x1FAFF),
    (0x20000, 0x2A6DF), (0x2A700, 0x2B81F), (0x2B820, 0x2B91F), (0x2B920, 0x2CEAF), (0x2CEB0, 0x2EBEF),
    (0x2F800, 0x2FA1F), (0x30000, 0x3134F), (0xE0000, 0xE01EF), (0xF0000, 0xF00FF), (0x10FFF0, 0x10FFFF),
]  # fmt: skip
MARKS = [*range(0x300, 0x370), *range(0x1AB0, 0x1AFF), *range(0x1DC0, 0x1E00), *range(0x20D0, 0x20F1),
         0x93C, 0x94D, 0x9BC, 0x1734, 0x0F39, 0x1D165, 0x1D16D, 0x302A, 0x3099, 0x309A, 0x11938, 0x1193B,
         0x1E08F, 0xFE20, 0x0488, 0x20DD]  # fmt: skip
SPACES = (
    "\t\n\r\x0b\x0c\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2007\u200a\u200b\u2028\u2029\u202f\u205f\u3000\ufeff\u180e"
)
FORMAT = "\x00\x01\x7f\x9f\xad\u0600\u061c\u0890\u08e2\u200c\u200d\u200e\u202e\u2060\u2066\ufff9\ufffd\U000110bd"
SPECIAL = [
    "[SEP]",
    "[CLS]",
    "[MASK]",
    "[PAD]",
    "[UNK]",
    "[sep]",
    "[SEP",
    "[[SEP]]",
    "[CLS]x[MASK]",
    "##",
    "##ing",
]
FIXED = [
    "ΟΔΟΣ", "Σ", "ς", "İstanbul", "ǅ", "ẞ", "ﬁ", "Å", "Ω", "\U00011938",
    "\U0001f468\u200d\U0001f469\u200d\U0001f467", "\U0001f44d\U0001f3fd", "\u2764\ufe0f",
    "\U0001f1fa\U0001f1f8", "e\u0301", "\u1100\u1161\u11a8", "€", "©", "™", "°", "½", "²",
    "\U0002b820", "\U0002b91f", "\U0002b920", "https://x.y/z?a=1&b=2",
]  # fmt: skip


def _block_char(rng: random.Random) -> str:
    lo, hi = rng.choice(BLOCKS)
    cp = rng.randint(lo, hi)
    return chr(cp) if not 0xD800 <= cp <= 0xDFFF else "?"


def _unit(rng: random.Random, vocab: list[str]) -> str:
    """One piece of a hostile text; the mix is weighted towards what breaks naive tokenizers."""
    kind = rng.random()
    if kind < 0.25:
        word = rng.choice(vocab)
        return word.upper() if rng.random() < 0.2 else word.capitalize() if rng.random() < 0.2 else word
    if kind < 0.45:
        return "".join(_block_char(rng) for _ in range(rng.randint(1, 6)))
    if kind < 0.55:
        return _block_char(rng) + "".join(chr(rng.choice(MARKS)) for _ in range(rng.randint(1, 4)))
    if kind < 0.65:
        return "".join(rng.choice(SPACES) for _ in range(rng.randint(1, 3)))
    if kind < 0.70:
        return rng.choice(FORMAT)
    if kind < 0.78:
        return rng.choice(SPECIAL)
    if kind < 0.88:
        return rng.choice(FIXED)
    if kind < 0.92:
        return rng.choice("abcdé") * rng.choice([99, 100, 101, 150])
    return str(rng.randint(0, 10**9)) + rng.choice(".,;:!?-'\"()[]{}<>/\\@#$%^&*_=+|~`")


def hostile_texts(n: int, seed: int, vocab: list[str]) -> list[str]:
    rng = random.Random(seed)
    texts = []
    for _ in range(n):
        units = rng.randint(300, 1200) if rng.random() < 0.01 else rng.randint(1, 25)
        sep = "" if rng.random() < 0.3 else " "
        text = sep.join(_unit(rng, vocab) for _ in range(units))
        if rng.random() < 0.2:
            text = rng.choice(SPACES) + text + rng.choice(SPACES)
        texts.append(text)
    return texts


def pack(units: list[str], per_text: int = 32) -> list[str]:
    return [" ".join(units[i : i + per_text]) for i in range(0, len(units), per_text)]


# ---------------------------------------------------------------- parity


def test_sts_test_sentences(tok, ref, sts_sentences):
    ids, mask = tok(sts_sentences, MAX_SEQ_LENGTH)
    ref_ids, ref_mask = ref_call(ref, sts_sentences)
    assert ids.dtype == mask.dtype == np.int64
    assert ids.shape == ref_ids.shape
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_array_equal(mask, ref_mask)
    print(f"sts-test: {len(sts_sentences)} sentences identical")


@pytest.mark.parametrize("context", ["a{c}b", "{c}", "x {c}{c} y", "{c}\u4e00{c}", "\u00e9{c}\u0301!"])
def test_every_code_point(tok, ref, context):
    units = [context.format(c=chr(cp)) for cp in scalar_values()]
    texts = pack(units)
    bad = mismatches(tok, ref, texts, max_length=512, chunk=5000)
    assert not bad, describe(texts, bad)
    assert max(len(r) for r in tok.encode_batch(texts, 10_000)) < 512  # nothing was hidden by truncation
    print(f"context {context!r}: {len(units)} code points in {len(texts)} texts identical")


def test_every_bmp_code_point_alone(tok, ref):
    texts = [chr(cp) for cp in range(0x10000) if not 0xD800 <= cp <= 0xDFFF]
    bad = mismatches(tok, ref, texts, chunk=10_000)
    assert not bad, describe(texts, bad)


def test_hostile_strings(tok, ref, hostile):
    bad = mismatches(tok, ref, hostile)
    chars = sum(map(len, hostile))
    print(f"hostile: {len(hostile)} strings, {chars} chars, {len(bad)} mismatches")
    assert not bad, describe(hostile, bad)


@pytest.mark.parametrize("max_length", [3, 8, 128, 256, 512])
def test_truncation(tok, ref, sts_sentences, hostile, max_length):
    texts = sts_sentences[:500] + [t for t in hostile if len(t) > 1000][:200] + ["", " ", "[SEP]"]
    bad = mismatches(tok, ref, texts, max_length=max_length)
    assert not bad, describe(texts, bad)
    assert [len(r) for r in tok.encode_batch(texts, max_length)] == [
        len(r) for r in unpadded(*ref_call(ref, texts, max_length))
    ]


def test_long_texts_are_cut_before_tokenizing_with_the_same_ids(tok, ref, hostile, vocab_words):
    """Only a prefix of a long text is tokenized (cut before a space); the ids equal tokenizing it all, then
    truncating, and the reference's; the truncated flag says whether tokens were dropped."""
    rng = random.Random(7)
    long = [" ".join(hostile[i : i + 400]) for i in range(0, 40_000, 400)]  # 100 texts of 5-60 k characters
    long += ["".join(rng.choice(hostile) for _ in range(300)) for _ in range(20)]  # joined without spaces
    long += ["x " * 3000, " " * 50_000 + "word", "word" * 20_000, "[SEP] " * 5000]
    for max_length in (3, 128, 256, 512):
        rows, truncated = tok.encode_batch_truncated(long, max_length)
        full = [tok.tokenize_ids(t) for t in long]
        assert rows == [[tok.cls_id, *ids[: max_length - 2], tok.sep_id] for ids in full]
        assert truncated == [len(ids) > max_length - 2 for ids in full]
    bad = mismatches(tok, ref, long, max_length=256, chunk=200)
    assert not bad, describe(long, bad)


# ---------------------------------------------------------------- configurations


def _copy_with(minilm_dir: Path, tmp_path: Path, normalizer: dict | None = None, tok_config: dict | None = None):
    data = json.loads((minilm_dir / "tokenizer.json").read_text(encoding="utf-8"))
    if normalizer is not None:
        data["normalizer"].update(normalizer)
    (tmp_path / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    # PreTrainedTokenizerFast keeps tokenizer.json's normalizer (BertTokenizerFast would override it).
    config = tok_config or {"tokenizer_class": "PreTrainedTokenizerFast", "pad_token": "[PAD]"}
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return tmp_path


def _config_corpus(sts_sentences, hostile) -> list[str]:
    units = [f"a{chr(cp)}b" for cp in scalar_values()[::5]]
    return sts_sentences[:300] + hostile[:5000] + pack(units)


@pytest.mark.parametrize(
    "flags",
    [
        {"lowercase": False},
        {"strip_accents": True},
        {"strip_accents": False},
        {"strip_accents": None, "lowercase": False},
        {"strip_accents": True, "lowercase": False},
        {"handle_chinese_chars": False},
        {"clean_text": False},
    ],
    ids=lambda f: ",".join(f"{k}={v}" for k, v in f.items()),
)
def test_normalizer_flags(minilm_dir, tmp_path, sts_sentences, hostile, flags):
    from transformers import AutoTokenizer

    model_dir = _copy_with(minilm_dir, tmp_path, normalizer=flags)
    reference = AutoTokenizer.from_pretrained(str(model_dir))
    assert json.loads(reference.backend_tokenizer.normalizer.__getstate__())[next(iter(flags))] == next(
        iter(flags.values())
    )
    ours = Tokenizer.from_dir(model_dir)
    texts = _config_corpus(sts_sentences, hostile)
    bad = mismatches(ours, reference, texts, max_length=512)
    assert not bad, describe(texts, bad)


def test_bert_tokenizer_config_overrides_tokenizer_json(minilm_dir, tmp_path, sts_sentences, hostile):
    from transformers import AutoTokenizer

    tok_config = {
        "tokenizer_class": "BertTokenizer",
        "do_lower_case": False,
        "strip_accents": True,
        "tokenize_chinese_chars": False,
    }
    model_dir = _copy_with(minilm_dir, tmp_path, tok_config=tok_config)
    reference = AutoTokenizer.from_pretrained(str(model_dir))
    ours = Tokenizer.from_dir(model_dir)
    assert (ours.config.lowercase, ours.config.strip_accents, ours.config.handle_chinese_chars) == (
        False,
        True,
        False,
    )
    texts = _config_corpus(sts_sentences, hostile)
    bad = mismatches(ours, reference, texts, max_length=512)
    assert not bad, describe(texts, bad)


def test_vocab_txt_only(minilm_dir, tmp_path, sts_sentences, hostile):
    from transformers import AutoTokenizer

    for name in ("vocab.txt", "tokenizer_config.json"):
        shutil.copy(minilm_dir / name, tmp_path / name)
    reference = AutoTokenizer.from_pretrained(str(tmp_path))
    ours = Tokenizer.from_dir(tmp_path)
    assert ours.vocab_size == len(reference)
    texts = sts_sentences[:300] + hostile[:10_000]
    bad = mismatches(ours, reference, texts)
    assert not bad, describe(texts, bad)


def test_do_lower_case_matches_sentence_transformers(minilm_dir, tmp_path, sts_sentences, hostile):
    import sentence_transformers as st

    for item in minilm_dir.iterdir():
        (tmp_path / item.name).symlink_to(item)
    (tmp_path / "sentence_bert_config.json").unlink()
    (tmp_path / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": MAX_SEQ_LENGTH, "do_lower_case": True}), encoding="utf-8"
    )
    texts = ["ΟΔΟΣ ΟΔΟΣ", "[SEP] x [CLS]", "İSTANBUL", "ǅ ẞ", *sts_sentences[:200], *hostile[:3000]]
    for model_dir, lower in ((minilm_dir, False), (tmp_path, True)):
        model = st.SentenceTransformer(str(model_dir), device="cpu")
        ours = Tokenizer.from_dir(minilm_dir, do_lower_case=lower)
        for start in range(0, len(texts), 500):
            part = texts[start : start + 500]
            features = model.tokenize(part)
            ids, mask = ours(part, model.max_seq_length)
            np.testing.assert_array_equal(ids, features["input_ids"].numpy())
            np.testing.assert_array_equal(mask, features["attention_mask"].numpy())


# ---------------------------------------------------------------- errors


def test_non_wordpiece_tokenizer_json(minilm_dir, tmp_path):
    data = json.loads((minilm_dir / "tokenizer.json").read_text(encoding="utf-8"))
    data["model"]["type"] = "BPE"
    (tmp_path / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ValueError, match=r"tokenizer\.json: model is 'BPE'.*WordPiece"):
        Tokenizer.from_dir(tmp_path)
    data["model"]["type"] = "WordPiece"
    data["normalizer"] = {"type": "Sequence", "normalizers": []}
    (tmp_path / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ValueError, match=r"normalizer is 'Sequence'.*BertNormalizer"):
        Tokenizer.from_dir(tmp_path)
    data["normalizer"] = {"type": "BertNormalizer"}
    data["pre_tokenizer"] = {"type": "Whitespace"}
    (tmp_path / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ValueError, match=r"pre_tokenizer is 'Whitespace'.*BertPreTokenizer"):
        Tokenizer.from_dir(tmp_path)


def test_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"tokenizer\.json.*vocab\.txt") as err:
        Tokenizer.from_dir(tmp_path)
    assert str(tmp_path) in str(err.value)


@pytest.mark.parametrize(
    ("bad", "type_name"), [(None, "NoneType"), (b"x", "bytes"), (3, "int"), (1.5, "float"), (["x"], "list")]
)
def test_non_str_element(tok, bad, type_name):
    with pytest.raises(TypeError, match=rf"texts\[2\] is {type_name}; expected str"):
        tok(["a", "b", bad], MAX_SEQ_LENGTH)


def test_texts_not_a_sequence(tok):
    with pytest.raises(TypeError, match="list or tuple of str"):
        tok("just one string", MAX_SEQ_LENGTH)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_length"):
        tok(["x"], 1)


def test_lone_surrogate(tok, ref):
    texts = ["fine", "also fine", "a\ud800b"]
    with pytest.raises(TypeError):  # the reference cannot convert it to a Rust string
        ref_call(ref, texts)
    with pytest.raises(TokenizerError, match=r"texts\[2\] contains a lone surrogate U\+D800 at position 1"):
        tok(texts, MAX_SEQ_LENGTH)
    with pytest.raises(ValueError, match="lone surrogate U\\+DFFF at position 0"):
        tok.tokenize_ids("\udfff")


def test_single_text_matches_reference(tok, ref, sts_sentences):
    # One text takes pad's no-padding path; it must give what the reference gives for a batch of one.
    for text in [*sts_sentences[:20], "", "a " * 400]:
        ids, mask = tok([text], MAX_SEQ_LENGTH)
        ref_ids, ref_mask = ref_call(ref, [text])
        assert ids.dtype == mask.dtype == np.int64 and ids.flags.c_contiguous
        np.testing.assert_array_equal(ids, ref_ids)
        np.testing.assert_array_equal(mask, ref_mask)


def test_empty_batch_and_properties(tok, ref):
    ids, mask = tok([], MAX_SEQ_LENGTH)
    assert ids.shape == mask.shape == (0, 0)
    assert (tok.cls_id, tok.sep_id, tok.pad_id, tok.unk_id) == (
        ref.cls_token_id,
        ref.sep_token_id,
        ref.pad_token_id,
        ref.unk_token_id,
    )
    assert tok.vocab_size == len(ref)
    assert tok.tokenize_ids("Hello, world!") == ref("Hello, world!", add_special_tokens=False)["input_ids"]


# ---------------------------------------------------------------- generated tables


def test_unicode_tables_are_current():
    spec = importlib.util.spec_from_file_location("gen_tokenizer_tables", REPO / "scripts/gen_tokenizer_tables.py")
    assert spec is not None and spec.loader is not None
    generator = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = generator  # dataclasses look their module up while the class is created
    try:
        spec.loader.exec_module(generator)
    finally:
        del sys.modules[spec.name]
    assert generator.check(), "runtime/_unicode_tables.py is stale: run python scripts/gen_tokenizer_tables.py"
