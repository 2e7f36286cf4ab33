#!/usr/bin/env python
r"""Freeze the ByteLevel pre-tokenizer's character classes into runtime/tokenizers/tables/byte_level.py.

The reference splits text with GPT-2's regex, run by Oniguruma with its own Unicode tables::

    's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+

Python's ``re`` has no ``\p{..}`` and its ``\s`` is not Oniguruma's, so the three classes (letters, numbers,
whitespace; everything else is the fourth) are measured here by probing every Unicode scalar value through the
installed ``tokenizers`` library: ``"a{c}"`` is one piece only for a letter, ``"1{c}"`` for a number, ``"!{c}"`` for
the fourth class; the rest is whitespace, and ``"a{c}{c}b"`` in four pieces confirms it. The word characters of the
added tokens' ``single_word`` check (the Rust regex crate's ``\w``) are measured through an added token too.

Usage:
    python scripts/gen_byte_level_tables.py            # rewrite runtime/tokenizers/tables/byte_level.py
    python scripts/gen_byte_level_tables.py --check    # exit 1 if the committed module is stale
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

OUTPUT = Path(__file__).resolve().parent.parent / "runtime" / "tokenizers" / "tables" / "byte_level.py"

Ranges = list[tuple[int, int]]


def scalar_values() -> list[int]:
    """Every Unicode scalar value (every code point but surrogates, which Rust strings cannot hold)."""
    return [*range(0xD800), *range(0xE000, 0x110000)]


def to_ranges(code_points: Iterable[int]) -> Ranges:
    """Collapse code points into sorted inclusive (first, last) ranges."""
    ranges: Ranges = []
    for cp in sorted(code_points):
        if ranges and ranges[-1][1] == cp - 1:
            ranges[-1] = (ranges[-1][0], cp)
        else:
            ranges.append((cp, cp))
    return ranges


@dataclass(frozen=True)
class Tables:
    """The classes as measured on the reference."""

    letters: list[int]
    numbers: list[int]
    whitespace: list[int]
    word: list[int]


def _piece_counts(texts: list[str]) -> list[int]:
    """How many pieces the reference's ByteLevel pre-tokenizer makes of each text (one unknown token per piece)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    return [len(e.ids) for e in tok.encode_batch(texts, add_special_tokens=False)]


def _word_chars(chars: list[int]) -> list[int]:
    """Characters after which a ``single_word`` added token is not matched: the Rust regex crate's ``\\w``."""
    from tokenizers import AddedToken, Tokenizer, models

    tok = Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    tok.add_tokens([AddedToken("\u00a7", single_word=True, normalized=False)])
    added = tok.token_to_id("\u00a7")
    encodings = tok.encode_batch([chr(cp) + "\u00a7" for cp in chars], add_special_tokens=False)
    return [cp for cp, e in zip(chars, encodings, strict=True) if added not in e.ids]


def probe_all() -> Tables:
    """Probe every scalar value; raise if the four classes do not partition them as the regex assumes."""
    chars = scalar_values()
    letters = [cp for cp, n in zip(chars, _piece_counts(["a" + chr(cp) for cp in chars]), strict=True) if n == 1]
    numbers = [cp for cp, n in zip(chars, _piece_counts(["1" + chr(cp) for cp in chars]), strict=True) if n == 1]
    other = {cp for cp, n in zip(chars, _piece_counts(["!" + chr(cp) for cp in chars]), strict=True) if n == 1}
    classified = set(letters) | set(numbers)
    if len(classified) != len(letters) + len(numbers) or not classified.isdisjoint(other):
        raise RuntimeError("the probed letter, number and other classes overlap")
    whitespace = [cp for cp in chars if cp not in classified and cp not in other]
    counts = _piece_counts([f"a{chr(cp)}{chr(cp)}b" for cp in whitespace])
    odd = [f"U+{cp:04X}" for cp, n in zip(whitespace, counts, strict=True) if n != 4 and cp != 0x20]
    if odd:
        raise RuntimeError(f"not whitespace by the \\s+(?!\\S) rule: {odd[:10]}")
    return Tables(letters, numbers, whitespace, _word_chars(chars))


def _format_ranges(name: str, comment: str, ranges: Ranges) -> str:
    items = [f"(0x{a:04X}, 0x{b:04X})" for a, b in ranges]
    lines = [", ".join(items[i : i + 6]) + "," for i in range(0, len(items), 6)]
    body = "\n".join("    " + line for line in lines)
    return f"# {comment} ({sum(b - a + 1 for a, b in ranges)} code points)\n{name} = (\n{body}\n)\n"


def generate_source() -> str:
    """Probe the installed tokenizers library and return the text of runtime/tokenizers/tables/byte_level.py."""
    import tokenizers

    t = probe_all()
    header = (
        f'"""ByteLevel pre-tokenizer character classes frozen from tokenizers {tokenizers.__version__}.\n\n'
        "Generated by scripts/gen_byte_level_tables.py, do not edit.\n"
        "Ranges are inclusive (first, last) pairs.\n"
        '"""\n\n'
        f'TOKENIZERS_VERSION = "{tokenizers.__version__}"\n\n'
    )
    parts = [
        _format_ranges("LETTERS", "Oniguruma's \\p{L}", to_ranges(t.letters)),
        _format_ranges("NUMBERS", "Oniguruma's \\p{N}", to_ranges(t.numbers)),
        _format_ranges("WHITESPACE", "Oniguruma's \\s", to_ranges(t.whitespace)),
        _format_ranges("WORD", "the regex crate's \\w (added tokens' single_word check)", to_ranges(t.word)),
    ]
    return header + "\n".join(parts)


def check(path: Path = OUTPUT) -> bool:
    """Return True when the module at `path` equals what the installed tokenizers library generates."""
    return path.is_file() and path.read_text(encoding="utf-8") == generate_source()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="exit 1 if the generated module is stale")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    if args.check:
        if check(args.output):
            print(f"{args.output} is current")
            return 0
        print(f"{args.output} is stale: run python scripts/gen_byte_level_tables.py", file=sys.stderr)
        return 1
    args.output.write_text(generate_source(), encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
