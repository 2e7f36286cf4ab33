#!/usr/bin/env python
"""Freeze the grapheme cluster tables of Rust's unicode-segmentation into runtime/tokenizers/tables/grapheme.py.

The Hugging Face ``Precompiled`` normalizer (SentencePiece charsmaps, XLM-R) works grapheme by grapheme, with
``unicode-segmentation`` 1.12.0: the version tokenizers 0.22.2 pins in bindings/python/Cargo.lock. That crate
is at Unicode 16.0.0 and implements GB9c (Indic_Conjunct_Break). Python's stdlib has no grapheme properties, so
they are read here from the ``regex`` package, which must be a release at Unicode 16.0.0 as well: newer ones
(Unicode 17) differ in 1,500 code points (InCB=Consonant for more scripts, new marks, Extended_Pictographic).
The crate's table layout is reproduced: one category per code point, with Extended_Pictographic and
InCB=Consonant as categories of their own (they never overlap a Grapheme_Cluster_Break value other than Other).

Usage (regex 2024.11.6 is the last release at Unicode 16.0.0; install it beside, not into, the project venv):
    pip install --target /tmp/regex-u16 regex==2024.11.6
    PYTHONPATH=/tmp/regex-u16 python scripts/gen_grapheme_tables.py          # rewrite the module
    PYTHONPATH=/tmp/regex-u16 python scripts/gen_grapheme_tables.py --check  # exit 1 if it is stale
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gen_tokenizer_tables import Ranges, scalar_values, to_ranges  # the same helpers, beside this script

OUTPUT = Path(__file__).resolve().parent.parent / "runtime" / "tokenizers" / "tables" / "grapheme.py"
UNICODE_VERSION = "16.0.0"
CRATE = "unicode-segmentation 1.12.0"
# Grapheme_Cluster_Break values in the crate's enum order after Any (Other), then the two extra categories.
CATEGORIES = (
    "Any",
    "CR",
    "LF",
    "Control",
    "Extend",
    "ZWJ",
    "Regional_Indicator",
    "Prepend",
    "SpacingMark",
    "L",
    "V",
    "T",
    "LV",
    "LVT",
    "Extended_Pictographic",
    "InCB_Consonant",
)


def _load_regex():  # noqa: ANN202 - the module type of a third-party package
    import regex

    # U+113B8 (Tulu-Tigalari, new in 16.0) is a mark; U+1ACF (new in 17.0) is still unassigned in 16.0.
    extend = regex.compile(r"\p{Grapheme_Cluster_Break=Extend}")
    if not extend.match("\U000113b8") or extend.match("\u1acf"):
        raise SystemExit(
            f"regex {regex.__version__} (module version) is not at Unicode {UNICODE_VERSION}; install "
            "regex==2024.11.6 beside the venv (see this script's docstring)"
        )
    return regex


def categories() -> tuple[list[tuple[int, int, int]], Ranges, list[int]]:
    """(category ranges without Any, InCB=Extend ranges, InCB=Linker code points) as the crate's tables hold them."""
    regex = _load_regex()
    gcb = [(i, regex.compile(rf"\p{{Grapheme_Cluster_Break={name}}}")) for i, name in enumerate(CATEGORIES[1:14], 1)]
    pictographic = regex.compile(r"\p{Extended_Pictographic}")
    consonant = regex.compile(r"\p{InCB=Consonant}")
    incb_extend = regex.compile(r"\p{InCB=Extend}")
    linker = regex.compile(r"\p{InCB=Linker}")
    cats: list[tuple[int, int, int]] = []
    extend: list[int] = []
    linkers: list[int] = []
    for cp in scalar_values():
        c = chr(cp)
        cat = next((i for i, pattern in gcb if pattern.match(c)), 0)
        if pictographic.match(c):
            if cat:
                raise RuntimeError(f"U+{cp:04X} is Extended_Pictographic and {CATEGORIES[cat]}")
            cat = CATEGORIES.index("Extended_Pictographic")
        if consonant.match(c):
            if cat:
                raise RuntimeError(f"U+{cp:04X} is InCB=Consonant and {CATEGORIES[cat]}")
            cat = CATEGORIES.index("InCB_Consonant")
        if cat:
            if cats and cats[-1][2] == cat and cats[-1][1] == cp - 1:
                cats[-1] = (cats[-1][0], cp, cat)
            else:
                cats.append((cp, cp, cat))
        if incb_extend.match(c):
            extend.append(cp)
        if linker.match(c):
            linkers.append(cp)
    return cats, to_ranges(extend), linkers


def generate_source() -> str:
    """Return the text of runtime/tokenizers/tables/grapheme.py."""
    from importlib.metadata import version

    cats, extend, linkers = categories()
    cat_items = [f"(0x{a:04X}, 0x{b:04X}, {c})" for a, b, c in cats]
    ext_items = [f"(0x{a:04X}, 0x{b:04X})" for a, b in extend]

    def rows(items: list[str]) -> str:
        """The items, comma-terminated, packed into indented lines of at most 120 characters."""
        lines = [""]
        for item in items:
            if lines[-1] and len(lines[-1]) + len(item) + 1 > 120 - 4:
                lines.append("")
            lines[-1] += f"{item}, "
        return "\n".join("    " + line.rstrip() for line in lines)

    names = [f'"{name}"' for name in CATEGORIES]

    return (
        f'"""Extended grapheme cluster tables of {CRATE} (Unicode {UNICODE_VERSION}), as tokenizers 0.22 uses it.\n\n'
        f"Generated by scripts/gen_grapheme_tables.py from regex {version('regex')}, do not edit.\n"
        "GRAPHEME_CATEGORY holds (first, last, category index into CATEGORIES); code points in no range are Any.\n"
        '"""\n\n'
        f'UNICODE_VERSION = "{UNICODE_VERSION}"\n\n'
        "# fmt: off\n"
        f"CATEGORIES = (\n{rows(names)}\n)\n\n"
        f"# {len(cats)} ranges\n"
        f"GRAPHEME_CATEGORY = (\n{rows(cat_items)}\n)\n\n"
        f"# Indic_Conjunct_Break=Extend ({sum(b - a + 1 for a, b in extend)} code points)\n"
        f"INCB_EXTEND = (\n{rows(ext_items)}\n)\n\n"
        "# Indic_Conjunct_Break=Linker\n"
        f"INCB_LINKER = ({', '.join(f'0x{cp:04X}' for cp in linkers)})\n"
        "# fmt: on\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="exit 1 if the generated module is stale")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    source = generate_source()
    if args.check:
        if args.output.is_file() and args.output.read_text(encoding="utf-8") == source:
            print(f"{args.output} is current")
            return 0
        print(f"{args.output} is stale: run python scripts/gen_grapheme_tables.py", file=sys.stderr)
        return 1
    args.output.write_text(source, encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
