"""Hostile text and a SentencePiece-format charsmap builder for tests/test_unigram.py."""

from __future__ import annotations

import random
import struct

from test_tokenizer import BLOCKS, FIXED, FORMAT, MARKS, SPACES

SPECIAL = [
    "<s>", "</s>", "<pad>", "<unk>", "<mask>", "<MASK>", "<mask", "mask>", "< mask>", "<s><s>", "</s></s>",
    "<s>x</s>", "x<mask>y", " <mask> ", "\t<mask>", "\u3000<mask>", "<mask>\n", "▁", "▁▁", "▁x", "<0x41>", "<0xFF>",
    "＜mask＞", "＜s＞", "[MASK]",
]  # fmt: skip
EMOJI = [
    "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466", "\U0001f3f3\ufe0f\u200d\U0001f308", "\u2764\ufe0f",
    "\U0001f44d\U0001f3fd", "\U0001f1fa\U0001f1f8\U0001f1eb", "\U0001f1e6", "\u00a9\u200d\u00a9", "\u2122\u0301",
    "\U0001f9d1\U0001f3ff\u200d\U0001f9b0", "#\ufe0f\u20e3", "\u263a", "\U0001f600\u200d",
]  # fmt: skip
# Clusters that Precompiled treats specially (under 6 UTF-8 bytes, or an Indic conjunct) and their look-alikes.
CLUSTERS = [
    "e\u0301", "E\u0301\u0327", "\ufb01\u0301", "\u00a8\u0301", "\r\n", "\n\r", "\r\r\n", "a\u0308\u0304",
    "\u1100\u1161", "\u1100\u1161\u11a8", "\u1100\u1100\u1161", "\uac00\u11a8", "\u1161\u11a8", "\u11a8\u11a8",
    "\u0915\u094d\u0937", "\u0915\u094d\u200d\u0937", "\u0958\u0301", "\u0915\u094d\u0958\u0301", "\u0e01\u0e33",
    "\u0600a", "\u0600 ", "\u0600\u0301", "\U000110bd\u0915", "\u0d4e\u0d15", "x\u200d", "\u200d\u0301",
    "\u0ec8\u0ec8", "\u3099", "\u304b\u3099", "\u30a6\u3099", "\u2126\u0301", "\u212b", "A\u030a", "\u0345\u0301",
    "\u00bd\u0301", "\u3300\u0301", "\u01c4\u030c", "\u1e9b\u0323", "\u0390", "\u1f80\u0345",
]  # fmt: skip
CONTROL = "\x00\x01\x07\x08\x0b\x0c\x0e\x1b\x1f\x7f\x80\x85\x9f\xad\u200b\u200e\u2028\u2060\ufeff\ufff9\U000e0001"
FULLWIDTH = [chr(cp) for cp in range(0xFF01, 0xFF5F)] + [chr(cp) for cp in range(0xFF61, 0xFFEF)]
PRIVATE_AND_UNASSIGNED = [0xE000, 0xF8FF, 0xF0000, 0x10FFFD, 0x0378, 0x0530, 0x2FFFD, 0xE0080, 0x1FFFE, 0x10FFFF]


def _block_char(rng: random.Random) -> str:
    lo, hi = rng.choice(BLOCKS)
    cp = rng.randint(lo, hi)
    return chr(cp) if not 0xD800 <= cp <= 0xDFFF else "?"


def _unit(rng: random.Random, words: list[str]) -> str:
    """One piece of a hostile text, weighted towards what breaks naive Unigram ports."""
    kind = rng.random()
    if kind < 0.30:
        word = rng.choice(words)
        return word.upper() if rng.random() < 0.15 else word.capitalize() if rng.random() < 0.15 else word
    if kind < 0.42:
        return "".join(_block_char(rng) for _ in range(rng.randint(1, 6)))
    if kind < 0.50:
        return _block_char(rng) + "".join(chr(rng.choice(MARKS)) for _ in range(rng.randint(1, 4)))
    if kind < 0.56:
        return rng.choice(CLUSTERS)
    if kind < 0.64:
        return "".join(rng.choice(SPACES + "    ") for _ in range(rng.randint(1, 5)))
    if kind < 0.68:
        return rng.choice(CONTROL + FORMAT)
    if kind < 0.75:
        return rng.choice(SPECIAL)
    if kind < 0.80:
        return rng.choice(EMOJI)
    if kind < 0.84:
        return rng.choice(FIXED)
    if kind < 0.88:
        return "".join(rng.choice(FULLWIDTH) for _ in range(rng.randint(1, 5)))
    if kind < 0.90:
        return chr(rng.choice(PRIVATE_AND_UNASSIGNED))
    if kind < 0.93:
        return rng.choice(words) * rng.choice([3, 10, 40])  # long words
    return str(rng.randint(0, 10**9)) + rng.choice(".,;:!?-'\"()[]{}<>/\\@#$%^&*_=+|~`")


def hostile_texts(n: int, seed: int, words: list[str]) -> list[str]:
    """``n`` texts of 1-25 units (1% of 300-1200 units: past any max_length), joined by spaces or not."""
    rng = random.Random(seed)
    texts = []
    for _ in range(n):
        units = rng.randint(300, 1200) if rng.random() < 0.01 else rng.randint(1, 25)
        sep = rng.choice(["", " ", " ", " ", "  "])
        text = sep.join(_unit(rng, words) for _ in range(units))
        if rng.random() < 0.2:
            text = rng.choice(SPACES) + text + rng.choice(SPACES)
        texts.append(text)
    return texts


def build_charsmap(rules: dict[str, str]) -> bytes:
    """A SentencePiece precompiled charsmap (darts-clone double array + NUL-terminated replacements).

    Written from the format spm_precompiled reads: unit = label (low 8 bits) | has_leaf (bit 8) | offset << 10,
    where a node's children sit at ``pos ^ offset ^ byte`` and a leaf's value unit (bit 31 set) at
    ``pos ^ offset``. Every base here is a multiple of 256 and serves one node, so offsets stay below 2**21 for
    small tries.
    """
    blob = bytearray()
    values: dict[bytes, int] = {}
    for key, replacement in rules.items():
        values[key.encode("utf-8")] = len(blob)
        blob += replacement.encode("utf-8") + b"\0"
    # Trie of byte keys: node = (children: dict[byte, node], value or None).
    root: dict = {}
    leaf: dict[int, int] = {}
    for key, value in values.items():
        node = root
        for byte in key:
            node = node.setdefault(byte, {})
        leaf[id(node)] = value
    units: list[int] = [0] * 256
    used = [False] * 256
    bases: set[int] = set()  # a base serves one node only, else the label check could not tell parents apart

    def grow(size: int) -> None:
        while len(units) < size:
            units.extend([0] * 256)
            used.extend([False] * 256)

    def place(node: dict, pos: int) -> None:
        """Give ``node`` (at ``pos``) a base and lay out its children there."""
        labels = sorted(node)
        has_leaf = id(node) in leaf
        base = 256
        while True:
            grow(base + 256)
            slots = [base ^ label for label in labels] + ([base] if has_leaf else [])
            if base not in bases and not any(used[s] for s in slots):
                break
            base += 256
        bases.add(base)
        offset = pos ^ base
        assert offset < 2**21
        units[pos] = (units[pos] & 0xFF) | (has_leaf << 8) | (offset << 10)
        for s in slots:
            used[s] = True
        if has_leaf:
            units[base] = (1 << 31) | leaf[id(node)]
        for label in labels:
            units[base ^ label] = label
        for label in labels:
            place(node[label], base ^ label)

    used[0] = True
    place(root, 0)
    trie = struct.pack(f"<{len(units)}I", *units)
    return struct.pack("<I", len(trie)) + trie + bytes(blob)
