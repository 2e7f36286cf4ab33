r"""A SentencePiece Unigram (XLM-R style) tokenizer that reproduces the Hugging Face fast tokenizer, in pure Python.

The reference is ``transformers.AutoTokenizer`` (Rust ``tokenizers`` 0.22) on a tokenizer.json whose model is
``Unigram``, called the way sentence-transformers calls it. Pipeline for one text (the reference's order):

1. Added tokens with ``normalized: false`` (``<s>``, ``</s>`` ...) are split out of the raw text, leftmost-longest,
   honouring their ``lstrip``/``rstrip`` flags.
2. Each remaining segment is normalized: ``do_lower_case`` (sentence_bert_config.json) first, as sentence-
   transformers >= 5 prepends a ``Lowercase`` normalizer; then the file's normalizer: ``Precompiled`` (the
   SentencePiece charsmap, applied grapheme by grapheme as the reference does), ``Strip``, ``Replace``,
   ``Lowercase``, in a ``Sequence``.
3. Added tokens with ``normalized: true`` (XLM-R's ``<mask>``, lstrip) are split out of each normalized segment.
4. ``Metaspace`` replaces spaces by ``▁``, prepends one, and splits before each ``▁``.
5. Unigram: the best segmentation of each piece (Viterbi, ties to the earliest start), unknown characters fused
   into one unknown token, optionally byte fallback; cached per piece.
6. ``TemplateProcessing`` puts ``<s>`` ... ``</s>`` around the ids after truncation.

Scores are read from tokenizer.json the way the reference's JSON parser reads them (serde_json without
``float_roundtrip``: significand as f64, then one multiplication or division by a power of ten), which is not
always the nearest double: Python's own parsing would break Viterbi ties differently.

Lone surrogates raise :class:`~embedrt.tokenizer.TokenizerError`, as in the WordPiece tokenizer.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import string
import struct
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import chain
from pathlib import Path
from typing import Any

from embedrt import _graphemes as _gr
from embedrt import _unicode_tables as _tables
from embedrt.config import require
from embedrt.tokenizer import (
    BatchEncoder,
    TokenizerError,
    _read_json,
    cache_add,
)

__all__ = ["UnigramTokenizer", "read_tokenizer_json"]

# Bounds of the per-character / per-grapheme charsmap caches (entries); the per-piece cache is bounded by
# embedrt.tokenizer.cache_add.
_CHARSMAP_CACHE_CAP = 65_536
# Pieces (Metaspace words) and grapheme clusters longer than this are never cached: real words are shorter, and
# a text with no space would otherwise be kept whole.
_CACHED_PIECE_CHARS = 100
# Characters past which a run without a cut is cut anyway: 16 chunks (65k characters at 512 tokens, a Viterbi of
# about 65 ms over a space-free run), see _run_cap.
_RUN_CAP = 16
_JOINING = frozenset((_gr.EXTEND, _gr.ZWJ, _gr.SPACING_MARK))  # grapheme categories that join what precedes
# Rust's char::is_whitespace and regex \s: the White_Space property (Python's str.isspace adds U+001C-U+001F).
_WHITE_SPACE = "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"  # noqa: E501
_K_UNK_PENALTY = 10.0  # tokenizers' kUnkPenalty: unknown characters score min_score - 10


# ---------------------------------------------------------------- reading tokenizer.json


_POW10 = [float(f"1e{i}") for i in range(309)]
_U64_MAX = 2**64 - 1
_I32_MAX = 2**31 - 1
_NUMBER = re.compile(r"(-?)(\d+)(?:\.(\d+))?(?:[eE]([+-]?)(\d+))?")


def _serde_f64(text: str) -> float:
    """A JSON float as serde_json 1.0 parses it without its ``float_roundtrip`` feature (tokenizers' build).

    The digits go into a u64 significand (later digits, once it would overflow, only move the exponent or are
    dropped), which is converted to f64 and then multiplied or divided once by an f64 power of ten.
    """
    match = _NUMBER.fullmatch(text)
    if match is None:
        raise ValueError(f"not a JSON number: {text!r}")
    sign, integer, fraction, exp_sign, exp_digits = match.groups()
    significand, exponent, overflowed = 0, 0, False
    for digit in map(int, integer):
        if overflowed or significand * 10 + digit > _U64_MAX:
            overflowed = True  # parse_long_integer: the digit is dropped, the exponent grows
            exponent += 1
        else:
            significand = significand * 10 + digit
    for digit in map(int, fraction or ""):
        if significand * 10 + digit > _U64_MAX:
            break  # parse_decimal_overflow: the remaining fraction digits are ignored
        significand = significand * 10 + digit
        exponent -= 1
    if exp_digits is not None:
        exp = int(exp_digits)
        if exp > _I32_MAX:  # parse_exponent_overflow
            if significand and exp_sign != "-":
                raise ValueError(f"number out of range: {text!r}")
            return -0.0 if sign else 0.0
        exponent = max(-(2**31), min(_I32_MAX, exponent - exp if exp_sign == "-" else exponent + exp))
    value = float(significand)
    while True:
        if abs(exponent) < len(_POW10):
            value = value * _POW10[exponent] if exponent >= 0 else value / _POW10[-exponent]
            if value == float("inf"):
                raise ValueError(f"number out of range: {text!r}")
            break
        if value == 0.0:
            break
        if exponent >= 0:
            raise ValueError(f"number out of range: {text!r}")
        value /= 1e308
        exponent += 308
    return -value if sign else value


def read_tokenizer_json(path: Path) -> dict[str, Any]:
    """Read tokenizer.json with floats parsed as the reference parses them; errors name the file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"), parse_float=_serde_f64)
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path} is not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    except (json.JSONDecodeError, ValueError) as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object")
    return data


# ---------------------------------------------------------------- the Precompiled normalizer


class _CharMap(dict[int, str]):
    """A ``str.translate`` table of per-character replacements, computed on first use of each code point."""

    def __init__(self, compute: Callable[[str], str]) -> None:
        super().__init__()
        self._compute = compute

    def __missing__(self, cp: int) -> str:
        value = self._compute(chr(cp))
        if len(self) < _CHARSMAP_CACHE_CAP:
            self[cp] = value
        return value


class _Precompiled:
    """SentencePiece's precompiled charsmap as tokenizers' ``Precompiled`` normalizer applies it.

    The charsmap is a little-endian u32 trie size in bytes, the trie (darts-clone double-array units), then
    NUL-terminated replacement strings that trie values point into. ``transform`` takes the FIRST (shortest)
    match of a common-prefix search and replaces the whole chunk with it, even where the match is shorter than the
    chunk. Calling the normalizer works grapheme by grapheme: a cluster of fewer than 6 UTF-8 bytes is looked up
    whole, anything else (and a whole cluster without a match) character by character. Most text has no cluster of
    two characters or more, and is one ``str.translate`` over a lazily filled table.
    """

    def __init__(self, charsmap: bytes, source: str) -> None:
        if len(charsmap) < 4:
            raise TokenizerError(f"{source}: precompiled_charsmap is too short ({len(charsmap)} bytes)")
        (trie_size,) = struct.unpack_from("<I", charsmap)
        if 4 + trie_size // 4 * 4 > len(charsmap):
            raise TokenizerError(f"{source}: precompiled_charsmap trie of {trie_size} bytes is cut short")
        self._units = list(struct.unpack_from(f"<{trie_size // 4}I", charsmap, 4))
        self._blob = charsmap[4 + trie_size // 4 * 4 :]
        try:
            self._blob.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise TokenizerError(f"{source}: precompiled_charsmap replacements are not UTF-8: {exc}") from None
        if not self._units:
            raise TokenizerError(f"{source}: precompiled_charsmap has an empty trie")
        self._single = _CharMap(self._single_char)
        self._chunks: dict[str, str | None] = {}
        # Precomputed so that ASCII text is one str.translate call that never calls back into Python.
        self._ascii = {cp: self._single[cp] for cp in range(128)}

    def transform(self, chunk: str) -> str | None:
        """The replacement of the shortest charsmap key that starts ``chunk``, or None."""
        units = self._units
        size = len(units)
        unit = units[0]
        pos = (unit >> 10) << ((unit & 0x200) >> 6)
        for byte in chunk.encode("utf-8"):
            if byte == 0:  # the search stops at NUL
                return None
            pos ^= byte
            if pos >= size:
                return None
            unit = units[pos]
            if unit & 0x800000FF != byte:
                return None
            pos ^= (unit >> 10) << ((unit & 0x200) >> 6)
            if (unit >> 8) & 1:
                if pos >= size:
                    return None
                start = units[pos] & 0x7FFFFFFF
                end = self._blob.find(b"\0", start)
                return self._blob[start : len(self._blob) if end < 0 else end].decode("utf-8")
        return None

    def _single_char(self, char: str) -> str:
        replacement = self.transform(char)
        return char if replacement is None else replacement

    def _cluster(self, cluster: str) -> str:
        """A cluster of two or more characters: whole if under 6 bytes and the charsmap has it, else per char."""
        if len(cluster) < 6 and len(cluster.encode("utf-8")) < 6:
            if cluster in self._chunks:
                replacement = self._chunks[cluster]
            else:
                replacement = self.transform(cluster)
                if len(self._chunks) < _CHARSMAP_CACHE_CAP:
                    self._chunks[cluster] = replacement
            if replacement is not None:
                return replacement
        return cluster.translate(self._single)

    def track(self, text: str, origins: Origins) -> tuple[str, Origins]:
        """The reference's transformations, cluster by cluster, applied to the alignments."""
        parts: list[str] = []
        changes: list[int] = []
        for cluster in _gr.graphemes(text):
            if len(cluster.encode("utf-8")) < 6:
                replacement = self.transform(cluster)
                if replacement is not None:
                    parts.append(replacement)
                    _replace_changes(changes, len(cluster), len(replacement))
                    continue
            for char in cluster:
                replacement = self.transform(char)
                if replacement is None:
                    parts.append(char)
                    changes.append(0)
                else:
                    parts.append(replacement)
                    _replace_changes(changes, 1, len(replacement))
        return "".join(parts), _transform(origins, changes)

    def __call__(self, text: str) -> str:
        if text.isascii():
            if "\r\n" not in text:
                return text.translate(self._ascii)
            spans = _gr.multi_char_spans(text)
        else:
            spans = _gr.multi_char_spans(text)
            if not spans:
                return text.translate(self._single)
        parts: list[str] = []
        done = 0
        for start, stop in spans:
            parts.append(text[done:start].translate(self._single))
            parts.append(self._cluster(text[start:stop]))
            done = stop
        parts.append(text[done:].translate(self._single))
        return "".join(parts)


# ---------------------------------------------------------------- normalizers
#
# Each step maps str -> str. ``track`` also maps ``origins`` (per character: the index of the original character
# its alignment starts at) the way NormalizedString moves alignments. Only Metaspace's prepend_scheme "first"
# needs that (it asks whether a segment still starts at original offset 0), so it is a separate, slower path.

Origins = list[int]


def _transform(origins: Origins, changes: Sequence[int], skip: int = 0) -> Origins:
    """NormalizedString::transform_range on character alignments.

    A change of 0 replaces the next input character (and takes its alignment), a negative one also swallows that
    many more, a positive one inserts (with the previous input character's alignment, or 0 at the start).
    """
    out: Origins = []
    at = skip
    for change in changes:
        if change > 0:
            out.append(origins[at - 1] if at >= 1 else 0)
        else:
            out.append(origins[at] if at < len(origins) else (origins[-1] if origins else 0))
            at += 1 - change
    return out


def _replace_changes(changes: list[int], old_count: int, new_count: int) -> None:
    """The Precompiled normalizer's ``replace`` on a list of changes.

    New characters are 0; extra ones are insertions; missing ones are swallowed by the last transformation
    recorded so far (none at the very start: a quirk kept as is).
    """
    changes.extend([0] * new_count)
    diff = new_count - old_count
    if diff > 0:
        for i in range(len(changes) - diff, len(changes)):
            changes[i] = 1
    elif diff < 0 and changes:
        changes[-1] += diff


@dataclass(frozen=True)
class _Strip:
    """tokenizers' ``Strip``: White_Space off either end."""

    left: bool
    right: bool

    def __call__(self, text: str) -> str:
        if self.left:
            text = text.lstrip(_WHITE_SPACE)
        return text.rstrip(_WHITE_SPACE) if self.right else text

    def track(self, text: str, origins: Origins) -> tuple[str, Origins]:
        """``lrstrip``: kept characters keep their alignments.

        The trailing count goes to the character at the *byte* length minus the trailing count, as the reference
        computes it.
        """
        out = self(text)
        if out == text:
            return out, origins
        leading = len(text) - len(text.lstrip(_WHITE_SPACE)) if self.left else 0
        trailing = len(text) - len(text.rstrip(_WHITE_SPACE)) if self.right else 0
        marked = len(text.encode("utf-8")) - trailing - 1
        changes = [-trailing if i == marked else 0 for i in range(leading, len(text) - trailing)]
        return out, _transform(origins, changes, leading)


@dataclass(frozen=True)
class _Replace:
    """tokenizers' ``Replace``: every leftmost match of a literal or a regex becomes ``content``."""

    pattern: re.Pattern[str]
    content: str

    def __call__(self, text: str) -> str:
        return self.pattern.sub(self._content, text)

    def _content(self, _: re.Match[str]) -> str:
        return self.content

    def track(self, text: str, origins: Origins) -> tuple[str, Origins]:
        """Replacement characters all take the alignment of the match's last character."""
        out_origins: Origins = []
        done = 0
        for match in self.pattern.finditer(text):
            start, stop = match.span()
            out_origins += origins[done:start]
            out_origins += [origins[stop - 1]] * len(self.content)
            done = stop
        return self(text), out_origins + origins[done:]


class _Lowercase:
    """tokenizers' ``Lowercase``: Rust's per-character lowercase (frozen with the WordPiece tables)."""

    def __call__(self, text: str) -> str:
        return text.translate(_LOWER)

    def track(self, text: str, origins: Origins) -> tuple[str, Origins]:
        """Extra characters of a lowercase expansion are insertions after the first."""
        changes: list[int] = []
        for char in text:
            changes += [0] + [1] * (len(char.translate(_LOWER)) - 1)
        return self(text), _transform(origins, changes)


Step = _Strip | _Replace | _Lowercase | _Precompiled


@dataclass(frozen=True)
class _Normalizer:
    """The file's normalizer as a chain of steps, and what ``_find_cut`` may rely on."""

    steps: tuple[Step, ...] = ()
    # Whether the chain is local around a space between two plain characters (see UnigramTokenizer._cut_at).
    cuttable: bool = True

    def __call__(self, text: str) -> str:
        for step in self.steps:
            text = step(text)
        return text

    def unstripped(self, text: str) -> str:
        """The text through every step but Strip (what a character becomes inside a longer text)."""
        for step in self.steps:
            if not isinstance(step, _Strip):
                text = step(text)
        return text

    def track(self, text: str, origins: Origins) -> tuple[str, Origins]:
        """The normalized text and the alignment origin of each of its characters."""
        for step in self.steps:
            text, origins = step.track(text, origins)
        return text, origins


_LOWER: dict[int, str] = dict(_tables.LOWERCASE)
_LOWERCASE = _Lowercase()
# Regex patterns of Replace that are runs of spaces: they cannot reach past a space between two other characters.
_SPACE_RUN = re.compile(r" (?:\{\d+,\d*\}|[+*?])?|  +| +\{\d+,\d*\}")
# Regex syntax whose meaning differs between Oniguruma (the reference's engine) and Python's re, or is unknown here.
_UNSAFE_REGEX = re.compile(r"\\[A-Za-z0-9]|\(\?|\[\[:|[$^]")


def _replace_step(spec: Mapping[str, Any], where: str) -> _Normalizer:
    """A ``Replace`` normalizer; local around a plain space unless its pattern or content can reach one."""
    pattern = require(spec, "pattern", where, Mapping)
    content = require(spec, "content", where, str)
    # A replacement ending in whitespace (or empty) could end a chunk in whitespace that Strip would then eat.
    keeps_cut = bool(content) and not any(c in _WHITE_SPACE for c in content)
    if "String" in pattern:
        literal = require(pattern, "String", f"{where}.pattern", str)
        if not literal:
            raise TokenizerError(f"{where}: an empty String pattern is not supported")
        return _Normalizer((_Replace(re.compile(re.escape(literal)), content),), keeps_cut and " " not in literal)
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
        return _Normalizer((_Replace(compiled, content),), keeps_cut and bool(_SPACE_RUN.fullmatch(source)))
    raise TokenizerError(f"{where}: pattern {dict(pattern)!r} is neither String nor Regex")


def _build_normalizer(spec: Any, source: str, where: str = "normalizer") -> _Normalizer:
    """The file's normalizer (None, one step, or a Sequence of them), refusing types embedrt cannot reproduce."""
    if spec is None:
        return _Normalizer()
    kind = spec.get("type") if isinstance(spec, Mapping) else spec
    at = f"{source}: {where}"
    if kind == "Sequence":
        parts = [
            _build_normalizer(sub, source, f"{where}.normalizers[{i}]")
            for i, sub in enumerate(require(spec, "normalizers", at, list))
        ]
        steps = tuple(chain.from_iterable(p.steps for p in parts))
        return _Normalizer(steps, all(p.cuttable for p in parts))
    if kind == "Precompiled":
        encoded = spec.get("precompiled_charsmap")
        if not encoded:  # tokenizers accepts a missing charsmap as "nothing to do"
            return _Normalizer()
        try:
            charsmap = base64.b64decode(require(spec, "precompiled_charsmap", at, str), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise TokenizerError(f"{at}: precompiled_charsmap is not base64: {exc}") from None
        precompiled = _Precompiled(charsmap, at)
        # Around a cut the space must stay a space, and so must the ASCII letters and digits next to it.
        local = all(precompiled.transform(c) is None for c in " " + string.ascii_letters + string.digits)
        return _Normalizer((precompiled,), local)
    if kind == "Strip":
        return _Normalizer((_Strip(bool(spec.get("strip_left", True)), bool(spec.get("strip_right", True))),))
    if kind == "Replace":
        return _replace_step(spec, at)
    if kind == "Lowercase":
        return _Normalizer((_LOWERCASE,))
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


# ---------------------------------------------------------------- Metaspace


@dataclass(frozen=True)
class _Metaspace:
    """tokenizers' ``Metaspace`` pre-tokenizer: spaces become ``replacement``, which starts every piece."""

    replacement: str = "▁"
    prepend_scheme: str = "always"  # always | first | never
    split: bool = True

    @classmethod
    def from_spec(cls, spec: Any, source: str) -> _Metaspace:
        """Read the pre_tokenizer: a Metaspace, or a Sequence holding only one."""
        where = f"{source}: pre_tokenizer"
        kind = spec.get("type") if isinstance(spec, Mapping) else spec
        if kind == "Sequence":
            inner = require(spec, "pretokenizers", where, list)
            kinds = [p.get("type") if isinstance(p, Mapping) else p for p in inner]
            if kinds != ["Metaspace"]:
                raise TokenizerError(f"{where} is a Sequence of {kinds}; embedrt supports only [Metaspace] there")
            spec, where = inner[0], f"{where}.pretokenizers[0]"
        elif kind != "Metaspace":
            raise TokenizerError(f"{where} is {kind!r}; embedrt's Unigram tokenizer supports only Metaspace")
        replacement = require(spec, "replacement", where, str)
        if len(replacement) != 1:
            raise TokenizerError(f"{where}: replacement {replacement!r} is not one character")
        scheme = str(spec.get("prepend_scheme", "always"))
        if scheme not in ("always", "first", "never"):
            raise TokenizerError(f"{where}: prepend_scheme {scheme!r} is not always, first or never")
        # tokenizers: add_prefix_space=false means "never", and contradicts any other declared scheme
        # (prepend_scheme defaults to "always", so the older files that only say false are refused too).
        if spec.get("add_prefix_space") is False and scheme != "never":
            raise TokenizerError(f"{where}: add_prefix_space does not match declared prepend_scheme")
        split = spec.get("split")
        return cls(replacement, scheme, True if split is None else bool(split))

    def pieces(self, segment: str, first: bool) -> list[str]:
        """The pieces of one normalized segment; ``first``: it starts the text (for prepend_scheme "first")."""
        rep = self.replacement
        text = segment.replace(" ", rep)
        if not text.startswith(rep) and (self.prepend_scheme == "always" or (first and self.prepend_scheme == "first")):
            text = rep + text
        if not self.split:
            return [text]
        parts = text.split(rep)
        head = [parts[0]] if parts[0] else []
        return head + [rep + p for p in parts[1:]]


# ---------------------------------------------------------------- the Unigram model


class _Unigram(dict[str, "tuple[int, ...]"]):
    """Unigram ids per pre-tokenized piece, as tokenizers' ``encode_optimized``; the dict is the cache."""

    def __init__(self, spec: Mapping[str, Any], source: str) -> None:
        super().__init__()
        where = f"{source}: model"
        vocab = require(spec, "vocab", where, list)
        unk_id = spec.get("unk_id")
        if unk_id is not None and (not isinstance(unk_id, int) or not vocab or not 0 <= unk_id < len(vocab)):
            raise TokenizerError(f"{where}: unk_id {unk_id!r} is not an id of its {len(vocab)} pieces")
        self.unk_id: int | None = unk_id
        self.byte_fallback = bool(spec.get("byte_fallback", False))
        self.pieces: list[str] = []
        scores: list[float] = []
        for i, entry in enumerate(vocab):
            if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)):
                raise TokenizerError(f"{where}: vocab[{i}] is {entry!r}, not [piece, score]")
            if not isinstance(entry[1], (int, float)) or isinstance(entry[1], bool):
                raise TokenizerError(f"{where}: vocab[{i}] score {entry[1]!r} is not a number")
            self.pieces.append(entry[0])
            scores.append(float(entry[1]))
        # A piece listed twice keeps its last id (and that id's score), as the reference's map does.
        self.ids: dict[str, int] = {piece: i for i, piece in enumerate(self.pieces)}
        self._unk_score = min(scores, default=0.0) - _K_UNK_PENALTY
        self._trie = self._build_trie(self.ids, scores)
        self._bytes = [self.ids.get(f"<0x{b:02X}>") for b in range(256)]
        self._source = source
        self._chars = 0  # characters of the cached pieces

    @staticmethod
    def _build_trie(ids: Mapping[str, int], scores: Sequence[float]) -> dict[str, Any]:
        """Character trie: node[char] = [child node, id or -1, score]."""
        root: dict[str, Any] = {}
        for piece, i in ids.items():
            node, entry = root, None
            for char in piece:
                entry = node.get(char)
                if entry is None:
                    entry = node[char] = [{}, -1, 0.0]
                node = entry[0]
            if entry is not None:
                entry[1], entry[2] = i, scores[i]
        return root

    def __missing__(self, piece: str) -> tuple[int, ...]:
        ids = tuple(self._ids_of(self._viterbi(piece)))
        if len(piece) <= _CACHED_PIECE_CHARS:
            self._chars = cache_add(self, piece, ids, self._chars)
        return ids

    def _viterbi(self, piece: str) -> list[str]:
        """The best segmentation's strings, with runs of unknown characters fused into one string."""
        n = len(piece)
        trie, unk_score, unk_id = self._trie, self._unk_score, self.unk_id
        best = [0.0] * (n + 1)
        starts = [-1] * (n + 1)
        token = [0] * (n + 1)
        for i in range(n):
            base = best[i]
            node = trie
            single = False
            j = i
            while j < n:
                entry = node.get(piece[j])
                if entry is None:
                    break
                j += 1
                node, tid, score = entry
                if tid >= 0:
                    # Strictly better only: on a tie the path through the earliest start (seen first) stays.
                    if starts[j] < 0 or base + score > best[j]:
                        best[j], starts[j], token[j] = base + score, i, tid
                    if j == i + 1:
                        single = True
            if not single and (starts[i + 1] < 0 or base + unk_score > best[i + 1]):
                if unk_id is None:
                    raise TokenizerError(
                        f"{self._source}: {piece[i]!r} is not in the vocabulary and there is no unk_id"
                    )
                best[i + 1], starts[i + 1], token[i + 1] = base + unk_score, i, unk_id
        strings: list[str] = []
        unknown: list[str] = []
        end = n
        while end > 0:
            start = starts[end]
            if token[end] == unk_id:
                unknown.append(piece[start:end])
            else:
                if unknown:
                    strings.append("".join(reversed(unknown)))
                    unknown = []
                strings.append(piece[start:end])
            end = start
        if unknown:
            strings.append("".join(reversed(unknown)))
        strings.reverse()
        return strings

    def _ids_of(self, strings: list[str]) -> Iterator[int]:
        """Each string's id; a string not in the vocabulary is byte pieces (if all exist) or the unknown id."""
        ids = self.ids
        for text in strings:
            found = ids.get(text)
            if found is not None:
                yield found
                continue
            if self.byte_fallback:
                byte_ids = [self._bytes[b] for b in text.encode("utf-8")]
                if all(i is not None for i in byte_ids):
                    yield from byte_ids  # type: ignore[misc]
                    continue
            if self.unk_id is None:
                raise TokenizerError(f"{self._source}: {text!r} is not in the vocabulary and there is no unk_id")
            yield self.unk_id


# ---------------------------------------------------------------- added tokens


@dataclass(frozen=True)
class _AddedToken:
    """tokenizers' ``AddedToken`` (its defaults: normalized unless special)."""

    content: str
    single_word: bool = False
    lstrip: bool = False
    rstrip: bool = False
    normalized: bool = True
    special: bool = False

    @classmethod
    def from_spec(cls, spec: Any, where: str, *, special: bool | None = None) -> _AddedToken:
        """From tokenizer.json's added_tokens entry, a tokenizer_config.json token object, or a plain string."""
        if isinstance(spec, str):
            is_special = bool(special)
            return cls(spec, normalized=not is_special, special=is_special)
        content = require(spec, "content", where, str)
        is_special = bool(spec.get("special", False)) if special is None else special
        return cls(
            content,
            single_word=bool(spec.get("single_word", False)),
            lstrip=bool(spec.get("lstrip", False)),
            rstrip=bool(spec.get("rstrip", False)),
            normalized=bool(spec.get("normalized", not is_special)),
            special=is_special,
        )


_Split = tuple["int | None", int, int]  # (added token id or None, start, stop)


@dataclass
class _AddedVocabulary:
    """tokenizers' ``AddedVocabulary``: ids, the two patterns (raw text / normalized segments) and their splits."""

    ids: dict[str, int] = field(default_factory=dict)
    tokens: dict[int, _AddedToken] = field(default_factory=dict)
    special: list[_AddedToken] = field(default_factory=list)
    added: list[_AddedToken] = field(default_factory=list)
    patterns: list[str] = field(default_factory=list)  # the texts matched, raw and normalized
    _raw: tuple[re.Pattern[str] | None, list[int]] = (None, [])
    _normalized: tuple[re.Pattern[str] | None, list[int]] = (None, [])

    def add(self, tokens: Sequence[_AddedToken], model: _Unigram, normalizer: _Normalizer) -> None:
        """``add_tokens``: ids from the vocabulary where the content is there, else the next free ones."""
        special_set = {t.content for t in self.special}
        for token in tokens:
            if token.special and token.content and token.content not in special_set:
                self.special.append(token)
                special_set.add(token.content)
        existing = set(self.tokens.values())
        size = len(model.pieces)
        top = max(self.tokens, default=None)
        next_id = size if top is None else (top + 1 if top >= size or size == 0 else size)
        for token in tokens:
            if not token.content or token in existing:
                continue
            known = self.ids.get(token.content, model.ids.get(token.content))
            if known is None:
                known, next_id = next_id, next_id + 1
            self.ids[token.content] = known
            self.tokens[known] = token
            if token.content not in special_set:
                self.added.append(token)
            existing.add(token)
        self._refresh(normalizer)

    def _refresh(self, normalizer: _Normalizer) -> None:
        """Rebuild both patterns; normalized tokens are matched in their normalized form."""
        tokens = list(chain(self.special, self.added))
        raw = [(t.content, self.ids[t.content]) for t in tokens if not t.normalized]
        normalized = [(normalizer(t.content), self.ids[t.content]) for t in tokens if t.normalized]
        self.patterns = [p for p, _ in raw + normalized]
        self._raw = self._pattern(raw)
        self._normalized = self._pattern(normalized)

    @staticmethod
    def _pattern(patterns: list[tuple[str, int]]) -> tuple[re.Pattern[str] | None, list[int]]:
        """One group per pattern, longest first (stable), so re's leftmost-first is Aho-Corasick's leftmost-longest."""
        patterns = sorted((p for p in patterns if p[0]), key=lambda p: len(p[0]), reverse=True)
        if not patterns:
            return None, []
        return re.compile("|".join(f"({re.escape(p)})" for p, _ in patterns)), [i for _, i in patterns]

    def split_raw(self, text: str) -> list[_Split] | None:
        """Splits of the raw text at non-normalized tokens, or None when none occurs."""
        return self._split(text, *self._raw)

    def split_normalized(self, text: str) -> list[_Split] | None:
        """Splits of one normalized segment at normalized tokens, or None when none occurs."""
        return self._split(text, *self._normalized)

    def _split(self, text: str, pattern: re.Pattern[str] | None, ids: list[int]) -> list[_Split] | None:
        """``find_matches``: lstrip/rstrip move a token's edges over the whitespace next to it."""
        if pattern is None:
            return None
        splits: list[_Split] = []
        done = 0
        for match in pattern.finditer(text):
            start, stop = match.span()
            token_id = ids[(match.lastindex or 1) - 1]
            token = self.tokens[token_id]
            if token.lstrip:
                # The previous match may already own some of that whitespace.
                start = max(len(text[:start].rstrip(_WHITE_SPACE)), done)
            if token.rstrip:
                stop += len(text[stop:]) - len(text[stop:].lstrip(_WHITE_SPACE))
            if done < start:
                splits.append((None, done, start))
            splits.append((token_id, start, stop))
            done = stop
        if not splits:
            return None
        if done != len(text):
            splits.append((None, done, len(text)))
        return splits


# ---------------------------------------------------------------- post-processing


@dataclass(frozen=True)
class _Template:
    """The post-processor's templates: each item a sequence name ("A"/"B") or the ids of a special token."""

    single: tuple[str | tuple[int, ...], ...]
    pair: tuple[str | tuple[int, ...], ...]

    @classmethod
    def from_spec(cls, spec: Any, source: str) -> _Template:
        """TemplateProcessing, or RobertaProcessing / BertProcessing (fixed templates)."""
        where = f"{source}: post_processor"
        kind = spec.get("type") if isinstance(spec, Mapping) else spec
        if kind in ("RobertaProcessing", "BertProcessing"):
            cls_ids = (int(require(require(spec, "cls", where, list), 1, where)),)
            sep_ids = (int(require(require(spec, "sep", where, list), 1, where)),)
            middle = (sep_ids,) if kind == "RobertaProcessing" else ()
            return cls((cls_ids, "A", sep_ids), (cls_ids, "A", sep_ids, *middle, "B", sep_ids))
        if kind != "TemplateProcessing":
            raise TokenizerError(
                f"{where} is {kind!r}; embedrt supports TemplateProcessing, RobertaProcessing and BertProcessing"
            )
        specials = require(spec, "special_tokens", where, Mapping)

        def parse(name: str) -> tuple[str | tuple[int, ...], ...]:
            items: list[str | tuple[int, ...]] = []
            for item in require(spec, name, where, list):
                if isinstance(item, Mapping) and "Sequence" in item:
                    items.append(str(require(item["Sequence"], "id", f"{where}.{name}")))
                elif isinstance(item, Mapping) and "SpecialToken" in item:
                    token = str(require(item["SpecialToken"], "id", f"{where}.{name}"))
                    entry = require(specials, token, f"{where}.special_tokens", Mapping)
                    items.append(tuple(int(i) for i in require(entry, "ids", f"{where}.special_tokens.{token}", list)))
                else:
                    raise TokenizerError(f"{where}.{name}: item {item!r} is neither Sequence nor SpecialToken")
            return tuple(items)

        template = cls(parse("single"), parse("pair"))
        if [i for i in template.single if isinstance(i, str)] != ["A"]:
            raise TokenizerError(f"{where}.single must hold the sequence A once, holds {template.single!r}")
        return template

    def around_single(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """The special ids before and after the sequence of a single text."""
        at = self.single.index("A")
        before = tuple(chain.from_iterable(i for i in self.single[:at] if isinstance(i, tuple)))
        after = tuple(chain.from_iterable(i for i in self.single[at + 1 :] if isinstance(i, tuple)))
        return before, after


# ---------------------------------------------------------------- AutoTokenizer's view of the directory

# Special-token defaults of the transformers classes embedrt reproduces for Unigram files (their __init__ args).
_CLASS_DEFAULTS: dict[str, dict[str, str]] = {
    "XLMRobertaTokenizer": {
        "bos_token": "<s>",
        "eos_token": "</s>",
        "sep_token": "</s>",
        "cls_token": "<s>",
        "unk_token": "<unk>",
        "pad_token": "<pad>",
        "mask_token": "<mask>",
    },
    "PreTrainedTokenizer": {},
}
# transformers' SPECIAL_TOKENS_ATTRIBUTES, in its order.
_SPECIAL_NAMES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
_MODEL_TYPE_CLASSES = {"xlm-roberta": "XLMRobertaTokenizer"}


def _tokenizer_class(root: Path, tok_config: Mapping[str, Any]) -> str:
    """The transformers class AutoTokenizer picks: tokenizer_config.json's, else config.json's model type's."""
    name = tok_config.get("tokenizer_class")
    supported = " or ".join(f"{c}(Fast)" for c in _CLASS_DEFAULTS)
    if name is None:
        model_type = _read_json(root / "config.json").get("model_type")
        name = _MODEL_TYPE_CLASSES.get(str(model_type)) if model_type is not None else "PreTrainedTokenizer"
        if name is None:
            raise TokenizerError(
                f"{root}: no tokenizer_class in tokenizer_config.json and model_type {model_type!r} in config.json; "
                f"embedrt reproduces Unigram files only as {supported}"
            )
    base = str(name).removesuffix("Fast")
    if base not in _CLASS_DEFAULTS:
        raise TokenizerError(
            f"{root / 'tokenizer_config.json'}: tokenizer_class {name!r}; embedrt reproduces Unigram files only as "
            f"{supported}"
        )
    return base


def _as_token(value: Any, where: str, *, special: bool | None = None) -> _AddedToken | str:
    """A special-token value as transformers holds it: a string, or an AddedToken from a serialized object."""
    return _AddedToken.from_spec(value, where, special=special) if isinstance(value, Mapping) else str(value)


@dataclass(frozen=True)
class _TransformersView:
    """What ``AutoTokenizer.from_pretrained`` hands the backend beyond tokenizer.json (transformers 4.x).

    ``special``: the special-token attributes (bos ... mask, additional_special_tokens); ``decoder``: the
    added tokens it re-adds (tokenizer_config.json's added_tokens_decoder, or tokenizer.json's own in legacy
    directories); ``pad``: the pad token's text.
    """

    special: dict[str, Any]
    decoder: list[_AddedToken]
    pad: str | None

    @classmethod
    def read(cls, root: Path, data: Mapping[str, Any]) -> _TransformersView:
        """Resolve the directory's files as transformers does."""
        config_path = root / "tokenizer_config.json"
        tok_config = _read_json(config_path)
        class_name = _tokenizer_class(root, tok_config)
        special: dict[str, Any] = {}
        for key in (*_SPECIAL_NAMES, "additional_special_tokens"):
            value = tok_config.get(key)
            if key == "additional_special_tokens" and value is not None:
                special[key] = [_as_token(v, f"{config_path}: {key}") for v in value]
            elif value is not None:
                special[key] = _as_token(value, f"{config_path}: {key}")
        if "added_tokens_decoder" in tok_config:
            entries = require(tok_config, "added_tokens_decoder", config_path, Mapping)
            decoder = [_AddedToken.from_spec(entries[k], f"{config_path}: added_tokens_decoder[{k}]") for k in entries]
            decoder = [t for _, t in sorted(zip(map(int, entries), decoder, strict=True), key=lambda p: p[0])]
        else:  # legacy directory: special_tokens_map.json overrides, tokenizer.json's added tokens are re-read
            map_path = root / "special_tokens_map.json"
            for key, value in _read_json(map_path).items():
                if key == "additional_special_tokens" and isinstance(value, list):
                    merged = list(special.pop(key, None) or [])
                    merged += [t for t in (_as_token(v, str(map_path), special=True) for v in value) if t not in merged]
                    special[key] = merged
                elif value is not None:
                    special[key] = _as_token(value, f"{map_path}: {key}", special=True)
            where = f"{root / 'tokenizer.json'}: added_tokens"
            decoder = [_AddedToken.from_spec(t, where) for t in data.get("added_tokens") or []]
        by_content = {t.content: t for t in decoder}
        for key in _SPECIAL_NAMES:
            if key in special:
                special[key] = by_content.get(_token_content(special[key]), special[key])
        for key, default in _CLASS_DEFAULTS[class_name].items():
            special.setdefault(key, default)
        if class_name == "XLMRobertaTokenizer" and isinstance(special["mask_token"], str):
            # "Mask token behave like a normal word, i.e. include the space before it"
            special["mask_token"] = _AddedToken(special["mask_token"], lstrip=True)
        pad = special.get("pad_token")
        if pad is None:  # PreTrainedTokenizerFast falls back to tokenizer.json's padding token
            padding = data.get("padding")
            pad = padding.get("pad_token") if isinstance(padding, Mapping) else None
        return cls(special, decoder, None if pad is None else _token_content(pad))

    def tokens_to_add(self, known: set[str]) -> list[_AddedToken]:
        """PreTrainedTokenizerFast.__init__'s ``tokens_to_add``.

        Every decoder token (the backend skips identical ones), then the special tokens whose text it does not
        know yet; special tokens are marked special.
        """
        special_texts = set()
        extended: list[Any] = []
        for key in (*_SPECIAL_NAMES, "additional_special_tokens"):
            value = self.special.get(key)
            for token in value if isinstance(value, list) else [] if value is None else [value]:
                if _token_content(token) not in special_texts:
                    special_texts.add(_token_content(token))
                    extended.append(token)
        tokens = [replace(t, special=t.special or t.content in special_texts) for t in self.decoder]
        known = known | {t.content for t in tokens}
        for token in extended:
            if _token_content(token) not in known:
                known.add(_token_content(token))
                if isinstance(token, str):
                    tokens.append(_AddedToken(token, normalized=False, special=True))
                else:
                    tokens.append(replace(token, special=True))
        return tokens

    @property
    def unk(self) -> str | None:
        """The unk token's text, if any."""
        value = self.special.get("unk_token")
        return None if value is None else _token_content(value)


def _token_content(value: Any) -> str:
    if isinstance(value, _AddedToken):
        return value.content
    return str(value["content"]) if isinstance(value, Mapping) else str(value)


# ---------------------------------------------------------------- the tokenizer


class UnigramTokenizer(BatchEncoder):
    """SentencePiece Unigram tokenizer (XLM-R style tokenizer.json) with the reference's output.

    Same public interface as :class:`embedrt.tokenizer.Tokenizer`. Instances are safe to share between threads:
    the caches only ever hold complete entries.
    """

    # A space-free run (CJK text, words joined by newlines) is one Metaspace piece, and the Viterbi over it costs
    # Python time per character: past _RUN_CAP chunks without a cut, the rest is dropped unread.
    _run_cap = _RUN_CAP

    def __init__(
        self,
        data: Mapping[str, Any],
        *,
        source: str = "tokenizer.json",
        view: _TransformersView | None = None,
        do_lower_case: bool = False,
    ) -> None:
        """Build from a parsed tokenizer.json (``data``; floats as :func:`read_tokenizer_json` reads them).

        ``view`` is what ``from_dir`` resolves from tokenizer_config.json and special_tokens_map.json (without
        it: tokenizer.json's added tokens, and its padding token); ``do_lower_case`` is sentence_bert_config.json's
        flag.
        """
        model = data.get("model")
        kind = model.get("type", "Unigram") if isinstance(model, Mapping) else model
        if kind != "Unigram":
            raise TokenizerError(f"{source}: model is {kind!r}; embedrt's UnigramTokenizer supports only Unigram")
        assert isinstance(model, Mapping)
        self.source = source
        self.do_lower_case = do_lower_case
        self._normalizer = _build_normalizer(data.get("normalizer"), source)
        self._metaspace = _Metaspace.from_spec(data.get("pre_tokenizer"), source)
        self._model = _Unigram(model, source)
        self._template = _Template.from_spec(data.get("post_processor"), source)
        self._added = _AddedVocabulary()
        where = f"{source}: added_tokens"
        file_tokens = [
            _AddedToken.from_spec(t, f"{where}[{i}]") for i, t in enumerate(require(data, "added_tokens", source, list))
        ]
        self._added.add(file_tokens, self._model, self._normalizer)
        if view is not None:
            self._added.add(view.tokens_to_add(set(self._added.ids)), self._model, self._normalizer)
        for token in self._added.tokens.values():
            if token.single_word:
                raise TokenizerError(f"{source}: added token {token.content!r} sets single_word; not supported")
        self._prefix_ids, self._suffix_ids = self._template.around_single()
        if not self._prefix_ids or not self._suffix_ids:
            raise TokenizerError(f"{source}: post_processor puts no special token before and after a text")
        if view is None:
            padding = data.get("padding")
            pad = padding.get("pad_token") if isinstance(padding, Mapping) else None
            self._pad_id = self._resolve_pad(pad, None)
        else:
            self._pad_id = self._resolve_pad(view.pad, view.unk)
        self._pre_lower = _LOWER if do_lower_case else None
        # _find_cut may cut long texts before a space only where that provably gives the same ids.
        self._cuttable = (
            self._normalizer.cuttable
            and self._metaspace.split
            and self._metaspace.prepend_scheme == "always"
            and not any(" " in p for p in self._added.patterns)
        )

    # ------------------------------------------------------------ loading

    @classmethod
    def from_dir(cls, model_dir: str | Path, *, do_lower_case: bool = False) -> UnigramTokenizer:
        """Load tokenizer.json (+ tokenizer_config.json, special_tokens_map.json) from ``model_dir``.

        Special tokens, the pad token and the added tokens follow what ``transformers.AutoTokenizer`` builds from
        the same directory. ``do_lower_case`` is sentence_bert_config.json's flag.
        """
        root = Path(model_dir)
        path = root / "tokenizer.json"
        if not path.is_file():
            raise FileNotFoundError(f"no tokenizer.json in {root} (a Unigram tokenizer has no vocab.txt form)")
        return cls._from_tokenizer_json(root, read_tokenizer_json(path), do_lower_case=do_lower_case)

    @classmethod
    def _from_tokenizer_json(cls, root: Path, data: Mapping[str, Any], *, do_lower_case: bool) -> UnigramTokenizer:
        view = _TransformersView.read(root, data)
        return cls(data, source=str(root / "tokenizer.json"), view=view, do_lower_case=do_lower_case)

    def _resolve_pad(self, pad_token: str | None, unk_token: str | None) -> int:
        """convert_tokens_to_ids(pad_token): added tokens first, then the model; unknown -> the unk token's id."""
        if pad_token is None:
            raise TokenizerError(
                f"{self.source}: no pad token (tokenizer_config.json, special_tokens_map.json, padding)"
            )
        found = self._token_id(pad_token)
        if found is None and unk_token is not None:
            found = self._token_id(unk_token)
        if found is None:
            raise TokenizerError(f"{self.source}: pad token {pad_token!r} is not in the vocabulary")
        return found

    def _token_id(self, token: str) -> int | None:
        found = self._added.ids.get(token)
        return self._model.ids.get(token) if found is None else found

    # ------------------------------------------------------------ public interface

    @property
    def cls_id(self) -> int:
        """Id of the (first) token put before every text: ``<s>``."""
        return self._prefix_ids[0]

    @property
    def sep_id(self) -> int:
        """Id of the (first) token put after every text: ``</s>``."""
        return self._suffix_ids[0]

    @property
    def pad_id(self) -> int:
        """Id used to pad rows to the longest one (XLM-R's ``<pad>`` is 1)."""
        return self._pad_id

    @property
    def unk_id(self) -> int:
        """Id the model gives text it has no piece for (the model's unk_id; -1 if it has none)."""
        return -1 if self._model.unk_id is None else self._model.unk_id

    @property
    def vocab_size(self) -> int:
        """One more than the largest id (model pieces and added tokens)."""
        return max(len(self._model.pieces) - 1, *self._added.tokens, -1) + 1

    def tokens_by_id(self) -> dict[int, str]:
        """Each id's token text (model pieces, then added tokens over them)."""
        tokens = dict(enumerate(self._model.pieces))
        tokens.update({i: t.content for i, t in self._added.tokens.items()})
        return tokens

    @property
    def special_ids(self) -> frozenset[int]:
        """Ids of the special tokens: the template's, pad, unk and the added tokens marked special."""
        ids = {*self._prefix_ids, *self._suffix_ids, self.pad_id}
        ids.update(i for i, t in self._added.tokens.items() if t.special)
        if self._model.unk_id is not None:
            ids.add(self._model.unk_id)
        return frozenset(ids)

    @property
    def pair_template(self) -> tuple[str | tuple[int, ...], ...]:
        """The post-processor's template for a pair of texts ("A", "B" and special ids), for pair encoding."""
        return self._template.pair

    # ------------------------------------------------------------ encoding

    def _find_cut(self, text: str, lo: int, hi: int, last: bool) -> int:
        """The first (or last) cut in [lo, hi), or -1: just before a space that :meth:`_cut_at` accepts.

        That is a space between two plain characters, which no normalizer step, added token or pre-tokenizer rule
        reaches across, so the ids of the parts joined equal the ids of the whole text. The file's settings may
        allow none.
        """
        if not self._cuttable or lo >= hi:
            return -1
        pos = hi if last else lo
        while True:
            pos = text.rfind(" ", lo, pos) if last else text.find(" ", pos, hi)
            if pos < 0 or self._cut_at(text, pos):
                return pos
            pos += 0 if last else 1

    def _forced_cut(self, text: str, pos: int) -> int:
        """A grapheme boundary at or a little before ``pos`` (the Viterbi path may still differ near it)."""
        for back in range(pos, max(pos - 32, 1), -1):
            if _gr.category(text[back]) not in _JOINING and _gr.category(text[back - 1]) != _gr.PREPEND:
                return back
        return pos

    def _cut_at(self, text: str, pos: int) -> bool:
        """Whether the ids of text[:pos] and text[pos:] joined are those of the text, for a space at ``pos``.

        The space must be a grapheme of its own between two plain characters: the left one a whole grapheme
        (category Other, not after a Prepend) whose normalized form is not empty and does not end in whitespace,
        the right one not joining the space (not Extend, ZWJ or SpacingMark). The charsmap leaves the space alone
        and no Replace pattern holds one (checked at load), so no normalizer step, added token (none holds a
        space) or pre-tokenizer rule reaches across, and the right chunk's first Metaspace piece starts at it.
        """
        if pos < 2 or pos + 1 >= len(text):
            return False
        before, after, prev = text[pos - 1], text[pos + 1], text[pos - 2]
        if not (prev.isascii() or _gr.category(prev) != _gr.PREPEND):
            return False
        if before.isascii() and after.isascii():  # the common case: letters and digits are plain (load check)
            return before.isalnum() and after.isalnum()
        return self._plain_before(before) and self._plain_after(after)

    def _plain_before(self, char: str) -> bool:
        lowered = char.translate(self._pre_lower) if self._pre_lower is not None else char
        if len(lowered) != 1 or _gr.category(lowered) != _gr.ANY:
            return False
        normalized = self._normalizer.unstripped(lowered)
        return bool(normalized) and normalized[-1] not in _WHITE_SPACE

    def _plain_after(self, char: str) -> bool:
        lowered = char.translate(self._pre_lower) if self._pre_lower is not None else char
        return bool(lowered) and _gr.category(lowered[0]) not in (_gr.EXTEND, _gr.ZWJ, _gr.SPACING_MARK)

    def _encode(self, text: str) -> list[int]:
        splits = self._added.split_raw(text)
        if splits is None:
            return self._encode_segment(text, True)
        ids: list[int] = []
        for token_id, start, stop in splits:
            if token_id is not None:
                ids.append(token_id)
            elif stop > start:
                ids += self._encode_segment(text[start:stop], start == 0)
        return ids

    def _encode_segment(self, raw: str, at_start: bool) -> list[int]:
        """One raw segment between non-normalized added tokens: normalize, split normalized tokens, pieces."""
        origins: Origins | None = None
        if at_start and self._metaspace.prepend_scheme == "first":
            # Metaspace then asks whether a segment starts at original offset 0: follow the alignments.
            origins = list(range(len(raw)))
            if self._pre_lower is not None:
                raw, origins = _LOWERCASE.track(raw, origins)
            normalized, origins = self._normalizer.track(raw, origins)
        elif self._pre_lower is not None:
            normalized = self._normalizer(raw.translate(self._pre_lower))
        else:
            normalized = self._normalizer(raw)
        splits = self._added.split_normalized(normalized)
        if splits is None:
            return self._encode_pieces(normalized, origins is not None and origins[:1] == [0]) if normalized else []
        ids: list[int] = []
        for token_id, start, stop in splits:
            if token_id is not None:
                ids.append(token_id)
            elif stop > start:
                first = origins is not None and start < len(origins) and origins[start] == 0
                ids += self._encode_pieces(normalized[start:stop], first)
        return ids

    def _encode_pieces(self, segment: str, first: bool) -> list[int]:
        model = self._model
        return list(chain.from_iterable(map(model.__getitem__, self._metaspace.pieces(segment, first))))
