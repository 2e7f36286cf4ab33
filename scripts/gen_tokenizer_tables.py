#!/usr/bin/env python
"""Freeze the BERT character classes of the installed `tokenizers` library into runtime/tokenizers/tables/unicode.py.

The reference tokenizer's character classes are not Python's `unicodedata` ones (Unicode 8-era category
tables, Rust lowercase rules, a different NFD for a few code points), so they are measured here by probing
every Unicode scalar value through BertNormalizer / BertPreTokenizer, one flag on at a time, as "a{c}b".

Usage:
    python scripts/gen_tokenizer_tables.py            # rewrite runtime/tokenizers/tables/unicode.py
    python scripts/gen_tokenizer_tables.py --check    # exit 1 if the committed module is stale
"""

from __future__ import annotations

import argparse
import sys
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

OUTPUT = Path(__file__).resolve().parent.parent / "runtime" / "tokenizers" / "tables" / "unicode.py"
SURROGATES = range(0xD800, 0xE000)

Ranges = list[tuple[int, int]]


def scalar_values() -> Iterator[int]:
    """Yield every Unicode scalar value (every code point but surrogates, which Rust strings cannot hold)."""
    yield from range(0xD800)
    yield from range(0xE000, 0x110000)


def to_ranges(code_points: Iterable[int]) -> Ranges:
    """Collapse sorted code points into inclusive (first, last) ranges."""
    ranges: Ranges = []
    for cp in sorted(code_points):
        if ranges and ranges[-1][1] == cp - 1:
            ranges[-1] = (ranges[-1][0], cp)
        else:
            ranges.append((cp, cp))
    return ranges


class _Probe:
    """One-flag-at-a-time views of the reference normalizer and pre-tokenizer."""

    def __init__(self) -> None:
        from tokenizers.normalizers import BertNormalizer
        from tokenizers.pre_tokenizers import BertPreTokenizer

        def only(**flag: bool) -> BertNormalizer:
            flags = {
                "clean_text": False,
                "handle_chinese_chars": False,
                "strip_accents": False,
                "lowercase": False,
            }
            flags.update(flag)
            return BertNormalizer(**flags)

        self.clean = only(clean_text=True).normalize_str
        self.cjk = only(handle_chinese_chars=True).normalize_str
        self.strip = only(strip_accents=True).normalize_str
        self.lower = only(lowercase=True).normalize_str
        self.pre = BertPreTokenizer().pre_tokenize_str


@dataclass(frozen=True)
class Tables:
    """Everything the runtime needs, as measured on the reference."""

    delete: list[int]
    to_space: list[int]
    cjk: list[int]
    marks: list[int]
    nfd_exceptions: dict[int, str]
    lower: dict[int, str]
    whitespace: list[int]
    punct: list[int]


def probe_all() -> Tables:
    """Classify every scalar value; raise if the reference does something this table layout cannot express."""
    probe = _Probe()
    delete: list[int] = []
    to_space: list[int] = []
    cjk: list[int] = []
    strip_out: dict[int, str] = {}
    lower: dict[int, str] = {}
    whitespace: list[int] = []
    punct: list[int] = []
    for cp in scalar_values():
        c = chr(cp)
        s = f"a{c}b"
        cleaned = probe.clean(s)
        if cleaned == "ab":
            delete.append(cp)
        elif cleaned == "a b" and c != " ":
            to_space.append(cp)
        elif cleaned != s:
            raise RuntimeError(f"clean_text maps U+{cp:04X} to {cleaned!r}")
        spaced = probe.cjk(s)
        if spaced == f"a {c} b":
            cjk.append(cp)
        elif spaced != s:
            raise RuntimeError(f"handle_chinese_chars maps U+{cp:04X} to {spaced!r}")
        stripped = probe.strip(s)
        if stripped[0] != "a" or stripped[-1] != "b":
            raise RuntimeError(f"strip_accents changes the context of U+{cp:04X}: {stripped!r}")
        if stripped[1:-1] != c:
            strip_out[cp] = stripped[1:-1]
        lowered = probe.lower(s)
        if lowered[1:-1] != c:
            lower[cp] = lowered[1:-1]
        pieces = [p for p, _ in probe.pre(s)]
        if pieces == ["a", "b"]:
            whitespace.append(cp)
        elif pieces == ["a", c, "b"]:
            punct.append(cp)
        elif pieces != [s]:
            raise RuntimeError(f"BertPreTokenizer splits 'a' U+{cp:04X} 'b' as {pieces!r}")
    marks = [cp for cp, out in strip_out.items() if out == ""]
    return Tables(delete, to_space, cjk, marks, nfd_exceptions(strip_out, set(marks)), lower, whitespace, punct)


def nfd_exceptions(strip_out: dict[int, str], marks: set[int]) -> dict[int, str]:
    """Code points where Python's NFD followed by dropping `marks` differs from the reference strip_accents.

    The runtime keeps these out of `unicodedata.normalize`; that is only safe for starters (combining class
    0), because splitting a string at a starter cannot change canonical reordering.
    """
    drop = dict.fromkeys(marks)
    exceptions: dict[int, str] = {}
    for cp in scalar_values():
        c = chr(cp)
        want = strip_out.get(cp, c)
        if unicodedata.normalize("NFD", c).translate(drop) != want:
            if unicodedata.combining(c):
                raise RuntimeError(f"NFD exception U+{cp:04X} is not a starter; runtime split would be unsafe")
            exceptions[cp] = want
    return exceptions


def _format_ranges(name: str, comment: str, ranges: Ranges) -> str:
    items = [f"(0x{a:04X}, 0x{b:04X})" for a, b in ranges]
    lines = [", ".join(items[i : i + 6]) + "," for i in range(0, len(items), 6)]
    body = "\n".join("    " + line for line in lines)
    return f"# {comment} ({sum(b - a + 1 for a, b in ranges)} code points)\n{name} = (\n{body}\n)\n"


def _format_map(name: str, comment: str, mapping: dict[int, str]) -> str:
    items = [f"0x{cp:04X}: {mapping[cp]!r}" for cp in sorted(mapping)]
    lines = [", ".join(items[i : i + 6]) + "," for i in range(0, len(items), 6)]
    body = "\n".join("    " + line for line in lines)
    return f"# {comment} ({len(mapping)} code points)\n{name} = {{\n{body}\n}}\n"


def generate_source() -> str:
    """Probe the installed tokenizers library and return the text of runtime/tokenizers/tables/unicode.py."""
    import tokenizers

    t = probe_all()
    header = (
        f'"""BERT character tables frozen from tokenizers {tokenizers.__version__}.\n\n'
        "Generated by scripts/gen_tokenizer_tables.py, do not edit.\n"
        "Ranges are inclusive (first, last) pairs.\n"
        '"""\n\n'
        f'TOKENIZERS_VERSION = "{tokenizers.__version__}"\n'
        "# NFD_EXCEPTIONS are relative to this Python unicodedata version.\n"
        f'UNIDATA_VERSION = "{unicodedata.unidata_version}"\n\n'
    )
    parts = [
        _format_ranges("CLEAN_DELETE", "clean_text: deleted", to_ranges(t.delete)),
        _format_ranges("CLEAN_TO_SPACE", "clean_text: replaced by U+0020", to_ranges(t.to_space)),
        _format_ranges("CJK", "handle_chinese_chars: surrounded by spaces", to_ranges(t.cjk)),
        _format_ranges("STRIP_MARKS", "strip_accents: dropped after NFD", to_ranges(t.marks)),
        _format_map("NFD_EXCEPTIONS", "strip_accents: output where Python NFD disagrees", t.nfd_exceptions),
        _format_map("LOWERCASE", "lowercase: per-character mapping, only where it changes", t.lower),
        _format_ranges("WHITESPACE", "BertPreTokenizer: split and dropped", to_ranges(t.whitespace)),
        _format_ranges("PUNCTUATION", "BertPreTokenizer: isolated", to_ranges(t.punct)),
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
        print(f"{args.output} is stale: run python scripts/gen_tokenizer_tables.py", file=sys.stderr)
        return 1
    args.output.write_text(generate_source(), encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
