"""Long texts and truncation on both tokenizers: only the kept end of a text is tokenized, cut at exact boundaries,
with the ids of tokenizing it all and then truncating; left truncation and pairs as the HF fast tokenizer does them;
caches that never keep long pieces."""

from __future__ import annotations

import random

import pytest
from test_tokenizer import hostile_texts
from test_unigram import reference, xlmr_dirs  # noqa: F401 (the session fixture of the trained tokenizers)

from embedrt.pairs import PairText, encode_pairs_truncated
from embedrt.tokenizer import _CACHE_CHARS, Tokenizer, TruncationSide
from embedrt.unigram import UnigramTokenizer

CJK = [chr(cp) for cp in range(0x4E00, 0x4E00 + 2000)]
PUNCT = list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~¡¿«»–—…‘’“”„†•")


def long_texts(words: list[str], n_chars: int, seed: int) -> dict[str, str]:
    """Texts of about ``n_chars`` with no U+0020 in most: where a cut only before a space would read them whole."""
    rng = random.Random(seed)

    def joined(sep: str) -> str:
        out, size = [], 0
        while size < n_chars:
            out.append(rng.choice(words))
            size += len(out[-1]) + 1
        return sep.join(out)

    return {
        "cjk": "".join(rng.choice(CJK) for _ in range(n_chars)),
        "punctuation": "".join(rng.choice(PUNCT) for _ in range(n_chars)),
        "newlines": joined("\n"),
        "tabs": joined("\t"),
        "commas": joined(","),
        "mixed": "".join(rng.choice([*CJK[:50], "a", "b", "\n", ".", "é", " "]) for _ in range(n_chars)),
        "spaces": joined(" "),
    }


class Counting:
    """Wraps a tokenizer's ``_encode`` to count the characters it is given."""

    def __init__(self, tok) -> None:
        self.tok, self.chars = tok, 0
        self._encode = tok._encode

    def __enter__(self):
        def counted(text: str):
            self.chars += len(text)
            return self._encode(text)

        self.tok._encode = counted
        return self

    def __exit__(self, *exc) -> None:
        del self.tok._encode


@pytest.fixture(scope="module")
def wordpiece(minilm_dir) -> Tokenizer:
    return Tokenizer.from_dir(minilm_dir)


@pytest.fixture(scope="module")
def words(minilm_dir) -> list[str]:
    lines = (minilm_dir / "vocab.txt").read_text(encoding="utf-8").splitlines()
    return [w for w in lines[2000:8000] if w.isalpha()]


@pytest.fixture(scope="module")
def unigram(xlmr_dirs) -> UnigramTokenizer:  # noqa: F811
    return UnigramTokenizer.from_dir(xlmr_dirs["sts4k"])


def _truncated(tok, ids: list[int], max_length: int, side: str) -> list[int]:
    keep = max_length - 2
    kept = ids[:keep] if side == "right" else ids[max(0, len(ids) - keep) :]
    return [tok.cls_id, *kept, tok.sep_id]


@pytest.mark.parametrize("side", ["right", "left"])
def test_wordpiece_cuts_long_texts_anywhere_exactly(wordpiece, words, side):
    """CJK, punctuation, newline-, tab- and comma-joined texts of 300k characters: ids equal tokenizing it all and
    then truncating, at each max_length, from either end; only a few thousand characters are read."""
    texts = long_texts(words, 300_000, seed=1)
    full = {kind: wordpiece.tokenize_ids(text) for kind, text in texts.items()}
    for max_length in (3, 128, 512):
        with Counting(wordpiece) as counted:
            rows, truncated = wordpiece.encode_batch_truncated(list(texts.values()), max_length, side)
        for (kind, ids), row, cut in zip(full.items(), rows, truncated, strict=True):
            assert row == _truncated(wordpiece, ids, max_length, side), (kind, max_length)
            assert cut == (len(ids) > max_length - 2), kind
        read = counted.chars / sum(map(len, texts.values()))
        print(f"{side} max_length {max_length}: {read:.1%} of the characters tokenized")
        assert read < 0.1


@pytest.mark.parametrize("side", ["right", "left"])
def test_unigram_cuts_long_texts_and_caps_runs_without_a_cut(unigram, words, side):
    """Texts with spaces between plain characters are cut exactly from either end; a run with no such space (CJK,
    words joined by newlines) is read only up to a cap and flagged truncated (text-embeddings-inference caps
    characters too), with the same kept ids as the whole text here."""
    texts = long_texts(words, 300_000, seed=2)
    full = {kind: unigram.tokenize_ids(text) for kind, text in texts.items()}
    for max_length in (3, 128, 512):
        with Counting(unigram) as counted:
            rows, truncated = unigram.encode_batch_truncated(list(texts.values()), max_length, side)
        for (kind, ids), row, cut in zip(full.items(), rows, truncated, strict=True):
            assert row == _truncated(unigram, ids, max_length, side), (kind, max_length)
            assert cut, kind  # every text is over max_length (or capped)
        read = counted.chars / sum(map(len, texts.values()))
        print(f"{side} max_length {max_length}: {read:.1%} of the characters tokenized")
        assert read < 0.25  # five of the seven texts have no cut: 65k characters of each are read


def _reference_left(model_dir_or_ref, texts, max_length):
    ref = model_dir_or_ref
    ref.truncation_side = "left"
    try:
        out = ref(list(texts), truncation=True, max_length=max_length)
    finally:
        ref.truncation_side = "right"
    return out["input_ids"]


def test_wordpiece_left_truncation_matches_the_fast_tokenizer(minilm_dir, wordpiece, words, vocab_hostile):
    import transformers

    ref = transformers.AutoTokenizer.from_pretrained(str(minilm_dir))
    texts = vocab_hostile[:3000] + list(long_texts(words, 40_000, seed=3).values())
    texts += [" ".join(vocab_hostile[i : i + 300]) for i in range(0, 6000, 300)]
    for max_length in (3, 16, 256):
        assert wordpiece.encode_batch(texts, max_length, "left") == _reference_left(ref, texts, max_length)


def test_unigram_left_truncation_matches_the_fast_tokenizer(xlmr_dirs, unigram, words):  # noqa: F811
    rng = random.Random(4)
    texts = [" ".join(rng.choice(words) for _ in range(rng.randint(0, 3000))) for _ in range(60)]
    texts += ["<s> " * 3000, "a\u0301 " * 2000, "x " * 5000 + "<mask>"]
    ref = reference(xlmr_dirs["sts4k"])
    for max_length in (3, 16, 256):
        assert unigram.encode_batch(texts, max_length, "left") == _reference_left(ref, texts, max_length)


@pytest.fixture(scope="module")
def vocab_hostile(words) -> list[str]:
    return hostile_texts(20_000, seed=99, vocab=words)


@pytest.mark.parametrize("side", ["right", "left"])
def test_pairs_match_the_fast_tokenizer_with_long_texts(minilm_dir, wordpiece, words, vocab_hostile, side):
    """Pairs with 12k-character queries and documents (both over the budget, odd and even budgets): the same ids
    as the HF fast tokenizer truncating longest_first from ``side``; a shared PairText gives the same rows."""
    import transformers

    ref = transformers.AutoTokenizer.from_pretrained(str(minilm_dir))
    ref.truncation_side = side
    rng = random.Random(5)
    long = list(long_texts(words, 12_000, seed=6).values())
    texts = long + vocab_hostile[:200] + [" ".join(rng.choice(words) for _ in range(n)) for n in (250, 252, 253)]
    pairs = [(rng.choice(texts), rng.choice(texts)) for _ in range(200)]
    for max_length in (5, 16, 128, 512, 513):
        rows = encode_pairs_truncated(wordpiece, pairs, max_length, side)[0]
        expected = ref([a for a, _ in pairs], [b for _, b in pairs], truncation="longest_first", max_length=max_length)
        assert rows == expected["input_ids"], max_length
        query = PairText(wordpiece, long[0], max_length, side)
        shared = encode_pairs_truncated(wordpiece, [(query, b) for _, b in pairs], max_length, side)[0]
        assert shared == encode_pairs_truncated(wordpiece, [(long[0], b) for _, b in pairs], max_length, side)[0]


def test_a_pair_text_for_other_settings_is_refused(wordpiece):
    query = PairText(wordpiece, "a query", 16, "left")
    with pytest.raises(ValueError, match="max_length 16, left truncation"):
        encode_pairs_truncated(wordpiece, [(query, "doc")], 16, "right")
    with pytest.raises(ValueError, match="unknown truncationside 'middle'"):
        wordpiece.encode_batch(["a"], 16, "middle")
    assert TruncationSide.parse("left") is TruncationSide.LEFT


@pytest.mark.parametrize("which", ["wordpiece", "unigram"])
def test_caches_keep_no_long_pieces(request, which, words):
    """60 distinct 200k-character texts without spaces: the per-piece cache keeps none of them, and stays under its
    character bound."""
    tok = request.getfixturevalue(which)
    rng = random.Random(8)
    for i in range(60):
        text = "".join(rng.choice("abcdefghij") for _ in range(200_000)) + str(i)
        tok.tokenize_ids(text)
        tok.encode_batch([text], 256)
    cache = tok._wordpiece if which == "wordpiece" else tok._model
    assert max(map(len, cache), default=0) <= 100
    assert sum(map(len, cache)) <= _CACHE_CHARS
