"""Real XLM-R style (SentencePiece Unigram) tokenizers, trained offline in seconds, for tests and benchmarks.

SentencePiece is trained on the STS sentences plus generated multilingual text (nmt_nfkc normalization, the
fairseq special-token order), then converted by ``transformers.XLMRobertaTokenizerFast``, which writes the
tokenizer.json that ``AutoTokenizer`` (and embedrt) load. Needs the test extra (sentencepiece, transformers).
"""

from __future__ import annotations

import csv
import random
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

STS_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "stsbenchmark"


def sts_sentences(split: str = "train", path: Path | None = None) -> list[str]:
    """Both sentence columns of an STS benchmark split (tab-separated, no quoting)."""
    path = path or STS_DIR / f"sts-{split}.csv"
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [r[5] for r in rows] + [r[6] for r in rows]


def _chars(*ranges: tuple[int, int]) -> list[str]:
    return [chr(cp) for a, b in ranges for cp in range(a, b + 1)]


# Per script: (syllable makers, whether words are separated by spaces). A maker draws one syllable.
_CYRILLIC = _chars((0x430, 0x44F))
_GREEK = _chars((0x3B1, 0x3C9)) + list("άέήίόύώ")
_ARABIC = _chars((0x628, 0x63A), (0x641, 0x64A))
_HARAKAT = _chars((0x64B, 0x652))
_HEBREW = _chars((0x5D0, 0x5EA))
_NIQQUD = _chars((0x5B0, 0x5BC))
_DEVA_CONS = _chars((0x915, 0x939))
_DEVA_MATRA = _chars((0x93E, 0x94C))
_BENG_CONS = _chars((0x995, 0x9A8), (0x9AA, 0x9B0))
_BENG_MATRA = _chars((0x9BE, 0x9C4))
_TAMIL = _chars((0xB95, 0xB95), (0xB99, 0xB9A), (0xB9C, 0xB9C), (0xB9E, 0xB9F), (0xBA3, 0xBA4), (0xBA8, 0xBAA))
_TAMIL_MATRA = _chars((0xBBE, 0xBC2), (0xBC6, 0xBC8))
_THAI = _chars((0xE01, 0xE2E))
_THAI_MARKS = [
    "\u0e31",
    "\u0e34",
    "\u0e35",
    "\u0e36",
    "\u0e37",
    "\u0e38",
    "\u0e39",
    "\u0e48",
    "\u0e49",
    "\u0e33",
    "\u0e32",
]
_GEORGIAN = _chars((0x10D0, 0x10F0))
_ARMENIAN = _chars((0x561, 0x586))
_ETHIOPIC = _chars((0x1200, 0x1248))
_KANA = _chars((0x3042, 0x3093), (0x30A2, 0x30F3))
_CJK = _chars((0x4E00, 0x4FFF))
_HANGUL = _chars((0xAC00, 0xAE00))
_LATIN = list("abcdefghijklmnopqrstuvwxyzàâäçéèêëîïôöùûüÿñßøåæœąćęłńóśźżčďěňřšťůž")
_EMOJI = ["😀", "👍🏽", "❤️", "🇫🇷", "🇯🇵", "👨\u200d👩\u200d👧", "🏳️\u200d🌈", "✨", "🎉", "🙂"]


def _syllable(rng: random.Random, script: str) -> str:
    pick = rng.choice
    if script == "cyrillic":
        return pick(_CYRILLIC) + pick("аеиоуыэюя")
    if script == "greek":
        return pick(_GREEK) + pick(_GREEK)
    if script == "arabic":
        return pick(_ARABIC) + (pick(_HARAKAT) if rng.random() < 0.3 else "")
    if script == "hebrew":
        return pick(_HEBREW) + (pick(_NIQQUD) if rng.random() < 0.2 else "")
    if script == "devanagari":  # consonant (+ virama + consonant: an Indic conjunct) + vowel sign
        conj = "\u094d" + pick(_DEVA_CONS) if rng.random() < 0.2 else ""
        return pick(_DEVA_CONS) + conj + (pick(_DEVA_MATRA) if rng.random() < 0.6 else "")
    if script == "bengali":
        conj = "\u09cd" + pick(_BENG_CONS) if rng.random() < 0.2 else ""
        return pick(_BENG_CONS) + conj + (pick(_BENG_MATRA) if rng.random() < 0.6 else "")
    if script == "tamil":
        return pick(_TAMIL) + (pick(_TAMIL_MATRA) if rng.random() < 0.6 else "\u0bcd")
    if script == "thai":
        return pick(_THAI) + (pick(_THAI_MARKS) if rng.random() < 0.5 else "")
    if script == "georgian":
        return pick(_GEORGIAN) + pick(_GEORGIAN)
    if script == "armenian":
        return pick(_ARMENIAN) + pick(_ARMENIAN)
    if script == "ethiopic":
        return pick(_ETHIOPIC)
    if script == "japanese":
        return pick(_KANA) if rng.random() < 0.7 else pick(_CJK)
    if script == "chinese":
        return pick(_CJK)
    if script == "korean":
        return pick(_HANGUL)
    if script == "latin":
        return pick(_LATIN) + pick("aeiouéèàäöü")
    raise ValueError(script)


_SCRIPTS = {  # script: (syllables per word, space-separated)
    "cyrillic": ((2, 4), True),
    "greek": ((1, 3), True),
    "arabic": ((2, 4), True),
    "hebrew": ((2, 4), True),
    "devanagari": ((1, 3), True),
    "bengali": ((1, 3), True),
    "tamil": ((2, 3), True),
    "thai": ((2, 4), False),
    "georgian": ((2, 3), True),
    "armenian": ((2, 3), True),
    "ethiopic": ((2, 4), True),
    "japanese": ((2, 4), False),
    "chinese": ((1, 2), False),
    "korean": ((1, 3), True),
    "latin": ((1, 4), True),
}


def multilingual_lines(n: int, seed: int, words_per_script: int = 300) -> list[str]:
    """``n`` lines of generated text in 15 scripts: a Zipf-distributed lexicon per script, so pieces recur."""
    rng = random.Random(seed)
    lexicons = {
        script: ["".join(_syllable(rng, script) for _ in range(rng.randint(*sizes))) for _ in range(words_per_script)]
        for script, (sizes, _) in _SCRIPTS.items()
    }
    weights = [1.0 / (rank + 1) for rank in range(words_per_script)]
    lines = []
    for _ in range(n):
        script = rng.choice(list(_SCRIPTS))
        words = rng.choices(lexicons[script], weights, k=rng.randint(3, 14))
        if rng.random() < 0.15:
            words.insert(rng.randrange(len(words) + 1), rng.choice(_EMOJI))
        if rng.random() < 0.15:
            words.insert(rng.randrange(len(words) + 1), str(rng.randint(0, 9999)))
        sep = " " if _SCRIPTS[script][1] else ""
        lines.append(sep.join(words) + rng.choice(["", ".", "!", "?", "。", "،"]))
    return lines


def multilingual_words(seed: int, per_script: int = 50) -> list[str]:
    """Words of the generated scripts (not necessarily in a trained vocabulary)."""
    rng = random.Random(seed)
    return [
        "".join(_syllable(rng, script) for _ in range(rng.randint(*sizes)))
        for script, (sizes, _) in _SCRIPTS.items()
        for _ in range(per_script)
    ]


def train_xlmr_tokenizer(
    out_dir: Path,
    lines: Iterable[str],
    *,
    vocab_size: int,
    byte_fallback: bool = False,
    character_coverage: float = 0.9995,
) -> Path:
    """Train a SentencePiece Unigram model on ``lines`` and save it as an XLM-R fast tokenizer in ``out_dir``.

    The special pieces take XLM-R's fairseq order (<s>=0, <pad>=1, </s>=2, <unk>=3); the converter adds
    ``<mask>`` last. With ``byte_fallback`` SentencePiece adds the 256 ``<0xXX>`` pieces; transformers' XLM-R
    converter does not carry the flag over (it warns), so it is set in tokenizer.json here, as converters that
    handle it (Llama's, T5's) write it.
    """
    import sentencepiece as spm
    from transformers import XLMRobertaTokenizerFast

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    train_file = out_dir / "train.txt"
    train_file.write_text("\n".join(lines), encoding="utf-8")
    prefix = out_dir / "spm"
    spm.SentencePieceTrainer.train(
        input=str(train_file),
        model_prefix=str(prefix),
        vocab_size=vocab_size,
        model_type="unigram",
        normalization_rule_name="nmt_nfkc",
        character_coverage=character_coverage,
        byte_fallback=byte_fallback,
        pad_id=1,
        unk_id=3,
        bos_id=0,
        eos_id=2,
        pad_piece="<pad>",
        unk_piece="<unk>",
        bos_piece="<s>",
        eos_piece="</s>",
        num_threads=2,
        minloglevel=2,
    )
    tok_dir = out_dir / "tokenizer"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "byte fallback option which is not implemented"
        XLMRobertaTokenizerFast(vocab_file=str(prefix) + ".model").save_pretrained(str(tok_dir))
    train_file.unlink()
    if byte_fallback:
        path = tok_dir / "tokenizer.json"
        text = path.read_text(encoding="utf-8")
        at = text.rindex('"byte_fallback": false')  # the model's: the last key of the file's last section
        path.write_text(text[:at] + '"byte_fallback": true' + text[at + len('"byte_fallback": false') :], "utf-8")
    return tok_dir


def training_lines(sts: Sequence[str], multilingual: int, seed: int) -> list[str]:
    """STS sentences followed by ``multilingual`` generated lines, shuffled together."""
    lines = [*sts, *multilingual_lines(multilingual, seed)]
    random.Random(seed).shuffle(lines)
    return lines
