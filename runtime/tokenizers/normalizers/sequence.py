"""A tokenizer.json normalizer (one step or a ``Sequence``) as a chain of steps.

Normalizers embedrt cannot reproduce exactly are refused, naming the file and the key.
"""

from __future__ import annotations

import base64
import binascii
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import chain
from typing import Any, TypeAlias

from embedrt.config import require
from embedrt.tokenizers.base import TokenizerError
from embedrt.tokenizers.charsets import WHITE_SPACE
from embedrt.tokenizers.normalizers.alignments import Origins
from embedrt.tokenizers.normalizers.nfc import NFC
from embedrt.tokenizers.normalizers.precompiled import Precompiled
from embedrt.tokenizers.normalizers.simple import LOWERCASE, Lowercase, Replace, Strip

__all__ = ["Normalizer", "build_normalizer"]

Step: TypeAlias = Strip | Replace | Lowercase | Precompiled | NFC


@dataclass(frozen=True)
class Normalizer:
    """The file's normalizer as a chain of steps, and what ``_find_cut`` may rely on."""

    steps: tuple[Step, ...] = ()
    # Whether the chain is local around a space between two plain characters (see UnigramTokenizer._cut_at).
    cuttable: bool = True

    def __call__(self, text: str) -> str:
        """The text through every step."""
        for step in self.steps:
            text = step(text)
        return text

    def unstripped(self, text: str) -> str:
        """The text through every step but Strip (what a character becomes inside a longer text)."""
        for step in self.steps:
            if not isinstance(step, Strip):
                text = step(text)
        return text

    def track(self, text: str, origins: Origins) -> tuple[str, Origins]:
        """The normalized text and the alignment origin of each of its characters."""
        for step in self.steps:
            text, origins = step.track(text, origins)
        return text, origins


# Regex patterns of Replace that are runs of spaces: they cannot reach past a space between two other characters.
_SPACE_RUN = re.compile(r" (?:\{\d+,\d*\}|[+*?])?|  +| +\{\d+,\d*\}")
# Regex syntax whose meaning differs between Oniguruma (the reference's engine) and Python's re, or is unknown here.
_UNSAFE_REGEX = re.compile(r"\\[A-Za-z0-9]|\(\?|\[\[:|[$^]")


def _replace_step(spec: Mapping[str, Any], where: str) -> Normalizer:
    """A ``Replace`` normalizer; local around a plain space unless its pattern or content can reach one."""
    pattern = require(spec, "pattern", where, Mapping)
    content = require(spec, "content", where, str)
    # A replacement ending in whitespace (or empty) could end a chunk in whitespace that Strip would then eat.
    keeps_cut = bool(content) and not any(c in WHITE_SPACE for c in content)
    if "String" in pattern:
        literal = require(pattern, "String", f"{where}.pattern", str)
        if not literal:
            raise TokenizerError(f"{where}: an empty String pattern is not supported")
        return Normalizer((Replace(re.compile(re.escape(literal)), content),), keeps_cut and " " not in literal)
    if "Regex" in pattern:
        source = require(pattern, "Regex", f"{where}.pattern", str)
        if _UNSAFE_REGEX.search(source):
            raise TokenizerError(
                f"{where}: regex {source!r} uses syntax (class escapes, groups with '(?', anchors) whose Oniguruma "
                "meaning embedrt does not reproduce"
            )
        try:
            compiled = re.compile(source)
        except re.error as exc:
            raise TokenizerError(f"{where}: regex {source!r} does not compile: {exc}") from None
        if compiled.fullmatch(""):
            raise TokenizerError(f"{where}: regex {source!r} matches the empty string; not supported")
        return Normalizer((Replace(compiled, content),), keeps_cut and bool(_SPACE_RUN.fullmatch(source)))
    raise TokenizerError(f"{where}: pattern {dict(pattern)!r} is neither String nor Regex")


def build_normalizer(spec: Any, source: str, where: str = "normalizer", *, nfc: bool = False) -> Normalizer:
    """The file's normalizer (None, one step, or a Sequence of them), refusing types embedrt cannot reproduce.

    ``nfc``: accept ``NFC`` (the BPE tokenizer; it needs no alignments).
    """
    if spec is None:
        return Normalizer()
    kind = spec.get("type") if isinstance(spec, Mapping) else spec
    at = f"{source}: {where}"
    if kind == "Sequence":
        parts = [
            build_normalizer(sub, source, f"{where}.normalizers[{i}]", nfc=nfc)
            for i, sub in enumerate(require(spec, "normalizers", at, list))
        ]
        steps = tuple(chain.from_iterable(p.steps for p in parts))
        return Normalizer(steps, all(p.cuttable for p in parts))
    if kind == "Precompiled":
        encoded = spec.get("precompiled_charsmap")
        if not encoded:  # tokenizers accepts a missing charsmap as "nothing to do"
            return Normalizer()
        try:
            charsmap = base64.b64decode(require(spec, "precompiled_charsmap", at, str), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise TokenizerError(f"{at}: precompiled_charsmap is not base64: {exc}") from None
        precompiled = Precompiled(charsmap, at)
        # Around a cut the space must stay a space, and so must the ASCII letters and digits next to it.
        local = all(precompiled.transform(c) is None for c in " " + string.ascii_letters + string.digits)
        return Normalizer((precompiled,), local)
    if kind == "Strip":
        return Normalizer((Strip(bool(spec.get("strip_left", True)), bool(spec.get("strip_right", True))),))
    if kind == "Replace":
        return _replace_step(spec, at)
    if kind == "Lowercase":
        return Normalizer((LOWERCASE,))
    if kind == "NFC" and nfc:
        return Normalizer((NFC(),), False)  # a mark after a cut's space would compose across it: no cuts
    if kind in ("NFC", "NFD", "NFKC", "NFKD"):
        # The reference's unicode-normalization tables are older than Python's unicodedata (72 code points differ
        # under NFKC alone), and compositions differ with them: not reproducible without tables of its own.
        raise TokenizerError(
            f"{at} is {kind!r}: the reference's Unicode normalization tables differ from Python's, so embedrt "
            "does not reproduce it; supported: Precompiled, Strip, Replace, Lowercase and Sequence"
        )
    raise TokenizerError(
        f"{at} is {kind!r}; embedrt's Unigram tokenizer supports Precompiled, Strip, Replace, Lowercase and Sequence"
    )
