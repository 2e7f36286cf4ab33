r"""A BERT WordPiece tokenizer that reproduces the Hugging Face fast tokenizer, in pure Python + numpy.

The reference is ``transformers.AutoTokenizer`` (Rust ``tokenizers``) called the way sentence-transformers
calls it: ``tokenizer(texts, padding=True, truncation="longest_first", max_length=max_seq_length)``.
Its character classes are not Python's ``unicodedata`` ones, so they are frozen from the reference library
into ``embedrt._unicode_tables`` by ``scripts/gen_tokenizer_tables.py``.

Pipeline for one text (the reference's order):

1. Added tokens with ``normalized: false`` (``[CLS]``, ``[SEP]``, ``[MASK]`` ...) are split out of the raw
   text, leftmost-longest; each remaining segment is normalized on its own.
2. ``do_lower_case`` (sentence_bert_config.json) prepends a per-character lowercase, as sentence-transformers
   >= 5 does by adding a ``Lowercase`` normalizer (older versions called ``str.lower()`` on the whole text).
3. BertNormalizer: clean_text + handle_chinese_chars (one ``str.translate``), strip_accents (NFD, drop
   marks), lowercase (one ``str.translate``, merged with the mark dropping).
4. BertPreTokenizer: one compiled regex (punctuation alone, runs of anything but whitespace/punctuation).
5. WordPiece, cached per piece.

Texts are not ``str.strip()``-ed: sentence-transformers >= 5 passes them unchanged, and with clean_text on
stripping could not change the result anyway.

Lone surrogates (e.g. ``"a\ud800b"``): the reference cannot convert such a string to Rust and raises
``TypeError``; this tokenizer raises :class:`TokenizerError` (a ``ValueError``) naming the text's index and
the position, instead of producing ids the reference would never produce.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from bisect import bisect_right
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from embedrt import _unicode_tables as _tables
from embedrt.config import Choice, read_json, require

if TYPE_CHECKING:
    from embedrt.unigram import UnigramTokenizer

__all__ = ["BatchEncoder", "Tokenizer", "TokenizerConfig", "TokenizerError", "TruncationSide", "load_tokenizer"]

Ranges = Sequence[tuple[int, int]]

_SURROGATE = re.compile("[\ud800-\udfff]")
# Bounds the per-piece WordPiece cache (entries, and characters of the pieces kept) and the lazily filled
# translate table (entries). A piece longer than a word can be is never kept: it is [UNK] after a length check.
_CACHE_CAP = 200_000
_CACHE_CHARS = 2_000_000
_TRANSLATE_CAP = 65_536
# The first chunk of a long text that _encode_within tokenizes (at least 8 characters per id it needs).
_MIN_CHUNK_CHARS = 4096


class TokenizerError(ValueError):
    """A tokenizer file that cannot be reproduced, or a text the reference tokenizer cannot encode."""


class _RangeSet:
    """Membership in sorted inclusive ranges (the CJK and private-use sets are too big for a ``set``)."""

    def __init__(self, ranges: Ranges) -> None:
        self._starts = [a for a, _ in ranges]
        self._ends = [b for _, b in ranges]

    def __contains__(self, cp: int) -> bool:
        i = bisect_right(self._starts, cp) - 1
        return i >= 0 and cp <= self._ends[i]


class _LazyTable(dict[int, "str | None"]):
    """A ``str.translate`` table computed on first use of each code point, so lookups stay in C afterwards."""

    def __init__(self, compute: Callable[[int], str | None]) -> None:
        super().__init__()
        self._compute = compute
        for cp in range(128):
            self[cp] = compute(cp)

    def __missing__(self, cp: int) -> str | None:
        value = self._compute(cp)
        if len(self) < _TRANSLATE_CAP:
            self[cp] = value
        return value


def cache_add(cache: dict[str, Any], key: str, value: Any, chars: int) -> int:
    """Add one entry to a per-piece cache, emptying it first when full (entries or characters); the new count."""
    if len(cache) >= _CACHE_CAP or chars + len(key) > _CACHE_CHARS:
        cache.clear()
        chars = 0
    cache[key] = value
    return chars + len(key)


class _WordPiece(dict[str, "tuple[int, ...]"]):
    """WordPiece ids per pre-tokenized piece; the dict is the cache and ``__missing__`` does the work."""

    def __init__(self, vocab: Mapping[str, int], unk_id: int, prefix: str, max_chars: int) -> None:
        super().__init__()
        self._vocab = vocab
        self._unk = (unk_id,)
        self._prefix = prefix
        self._max_chars = max_chars
        self._chars = 0  # characters of the cached pieces
        # No candidate longer than the longest vocabulary entry can match.
        self._max_first = max((len(t) for t in vocab), default=0)
        self._max_next = max((len(t) - len(prefix) for t in vocab if t.startswith(prefix)), default=0)

    def __missing__(self, piece: str) -> tuple[int, ...]:
        ids = self._split(piece)
        if len(piece) <= self._max_chars:  # a longer piece is [UNK] anyway: holding it would only cost memory
            self._chars = cache_add(self, piece, ids, self._chars)
        return ids

    def _split(self, piece: str) -> tuple[int, ...]:
        """Greedy longest match from the left; any unmatched position makes the whole piece [UNK]."""
        n = len(piece)
        if n > self._max_chars:
            return self._unk
        ids: list[int] = []
        start = 0
        while start < n:
            found = self._longest(piece, start)
            if found is None:
                return self._unk
            ids.append(found[0])
            start = found[1]
        return tuple(ids)

    def _longest(self, piece: str, start: int) -> tuple[int, int] | None:
        prefix = self._prefix if start else ""
        end = min(len(piece), start + (self._max_next if start else self._max_first))
        while end > start:
            token_id = self._vocab.get(prefix + piece[start:end])
            if token_id is not None:
                return token_id, end
            end -= 1
        return None


def _ranges(points: Sequence[int]) -> list[tuple[int, int]]:
    """Sorted code points as inclusive ranges."""
    ranges: list[tuple[int, int]] = []
    for cp in points:
        if ranges and ranges[-1][1] == cp - 1:
            ranges[-1] = (ranges[-1][0], cp)
        else:
            ranges.append((cp, cp))
    return ranges


def _char_class(ranges: Ranges) -> str:
    return "".join(f"\\U{a:08x}" if a == b else f"\\U{a:08x}-\\U{b:08x}" for a, b in ranges)


_PIECES = re.compile(
    f"[{_char_class(_tables.PUNCTUATION)}]|[^{_char_class(_tables.WHITESPACE)}{_char_class(_tables.PUNCTUATION)}]+"
)
_NFD_EXCEPTIONS = {chr(cp): out for cp, out in _tables.NFD_EXCEPTIONS.items()}
_NFD_EXCEPTION_RE = re.compile("(" + "|".join(map(re.escape, _NFD_EXCEPTIONS)) + ")") if _NFD_EXCEPTIONS else None


def _nfd(text: str) -> str:
    """NFD as the reference's Rust crate does it: Python's, except where the frozen tables say otherwise.

    The exceptions are starters, so normalizing the text between them on its own cannot change the result.
    """
    if _NFD_EXCEPTION_RE is None or _NFD_EXCEPTION_RE.search(text) is None:
        return unicodedata.normalize("NFD", text)
    parts = _NFD_EXCEPTION_RE.split(text)
    return "".join(_NFD_EXCEPTIONS[p] if i % 2 else unicodedata.normalize("NFD", p) for i, p in enumerate(parts))


@dataclass(frozen=True)
class TokenizerConfig:
    """The settings of a BERT WordPiece tokenizer, as read from tokenizer.json or tokenizer_config.json.

    ``strip_accents=None`` follows ``lowercase`` (the reference's rule). ``added_tokens`` are the
    ``normalized: false`` tokens split out of the raw text before normalization, with their ids.
    """

    lowercase: bool = True
    strip_accents: bool | None = None
    handle_chinese_chars: bool = True
    clean_text: bool = True
    unk_token: str = "[UNK]"
    cls_token: str = "[CLS]"
    sep_token: str = "[SEP]"
    pad_token: str = "[PAD]"
    max_input_chars_per_word: int = 100
    continuing_subword_prefix: str = "##"
    added_tokens: tuple[tuple[str, int], ...] = ()

    @property
    def strips_accents(self) -> bool:
        """Whether accents are stripped, after resolving ``strip_accents=None``."""
        return self.lowercase if self.strip_accents is None else self.strip_accents

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "tokenizer.json") -> TokenizerConfig:
        """Read the parsed content of a tokenizer.json; ``source`` names the file in error messages."""
        model = _require_type(data, "model", "WordPiece", source)
        norm = _require_type(data, "normalizer", "BertNormalizer", source)
        _require_type(data, "pre_tokenizer", "BertPreTokenizer", source)
        cls_token, sep_token = _cls_sep(data.get("post_processor"), source)
        padding = data.get("padding") or {}
        return cls(
            lowercase=bool(norm.get("lowercase", True)),
            strip_accents=norm.get("strip_accents"),
            handle_chinese_chars=bool(norm.get("handle_chinese_chars", True)),
            clean_text=bool(norm.get("clean_text", True)),
            unk_token=str(model.get("unk_token", "[UNK]")),
            cls_token=cls_token,
            sep_token=sep_token,
            pad_token=str(padding.get("pad_token", "[PAD]")),
            max_input_chars_per_word=int(model.get("max_input_chars_per_word", 100)),
            continuing_subword_prefix=str(model.get("continuing_subword_prefix", "##")),
            added_tokens=_added_tokens(data.get("added_tokens") or [], source),
        )

    @classmethod
    def from_file(cls, path: str | Path) -> TokenizerConfig:
        """Read a tokenizer.json file."""
        path = Path(path)
        return cls.from_dict(read_json(path), source=str(path))

    @classmethod
    def from_tokenizer_config(cls, data: Mapping[str, Any], vocab: Mapping[str, int]) -> TokenizerConfig:
        """Read a slow BertTokenizer's tokenizer_config.json as transformers converts it to a fast one."""
        names = {k: _token_text(data.get(k), d) for k, d in _SPECIAL_DEFAULTS.items()}
        extra = [_token_text(t, "") for t in data.get("additional_special_tokens") or []]
        specials = [*names.values(), *extra]
        ids = dict(vocab)
        for token in specials:
            ids.setdefault(token, len(ids))
        return cls(
            lowercase=bool(data.get("do_lower_case", True)),
            strip_accents=data.get("strip_accents"),
            handle_chinese_chars=bool(data.get("tokenize_chinese_chars", True)),
            clean_text=True,
            unk_token=names["unk_token"],
            cls_token=names["cls_token"],
            sep_token=names["sep_token"],
            pad_token=names["pad_token"],
            added_tokens=tuple((t, ids[t]) for t in dict.fromkeys(specials) if t),
        )


_SPECIAL_DEFAULTS = {
    "unk_token": "[UNK]",
    "sep_token": "[SEP]",
    "pad_token": "[PAD]",
    "cls_token": "[CLS]",
    "mask_token": "[MASK]",
}


def _token_text(value: Any, default: str) -> str:
    """Return a token as tokenizer_config.json writes it: a string or a serialized AddedToken."""
    if value is None:
        return default
    return str(require(value, "content", "tokenizer_config.json")) if isinstance(value, Mapping) else str(value)


def _require_type(data: Mapping[str, Any], key: str, expected: str, source: str) -> Mapping[str, Any]:
    section = data.get(key)
    found = section.get("type") if isinstance(section, Mapping) else section
    if found != expected:
        raise TokenizerError(f"{source}: {key} is {found!r}; embedrt's tokenizer supports only {expected}")
    return section  # type: ignore[return-value]


def _cls_sep(post: Any, source: str) -> tuple[str, str]:
    """Return the tokens the post-processor puts around a single sequence."""
    if isinstance(post, Mapping) and post.get("type") == "BertProcessing":
        where = f"{source}: post_processor"
        return str(require(require(post, "cls", where, list), 0, where)), str(
            require(require(post, "sep", where, list), 0, where)
        )
    if isinstance(post, Mapping) and post.get("type") == "TemplateProcessing":
        single = post.get("single") or []
        shape = [next(iter(item)) for item in single]
        if shape == ["SpecialToken", "Sequence", "SpecialToken"]:
            where = f"{source}: post_processor.single"
            first, last = (require(require(single[i], "SpecialToken", where, Mapping), "id", where) for i in (0, 2))
            return str(first), str(last)
        raise TokenizerError(f"{source}: post_processor template {shape} is not [CLS] A [SEP]")
    found = post.get("type") if isinstance(post, Mapping) else post
    raise TokenizerError(f"{source}: post_processor is {found!r}; expected BertProcessing or TemplateProcessing")


def _added_tokens(entries: Iterable[Mapping[str, Any]], source: str) -> tuple[tuple[str, int], ...]:
    tokens = []
    for entry in entries:
        flags = [k for k in ("normalized", "lstrip", "rstrip", "single_word") if entry.get(k)]
        if flags:
            raise TokenizerError(f"{source}: added token {entry.get('content')!r} sets {flags}; not supported")
        tokens.append((str(require(entry, "content", source)), require(entry, "id", f"{source}: added token", int)))
    return tuple(tokens)


# transformers classes whose __init__ replaces tokenizer.json's BertNormalizer flags with their own arguments.
_OVERRIDING_CLASSES = {"BertTokenizer", "DistilBertTokenizer", "ElectraTokenizer", "MPNetTokenizer"}
_MODEL_TYPE_CLASSES = {
    "bert": "BertTokenizer",
    "distilbert": "DistilBertTokenizer",
    "electra": "ElectraTokenizer",
}


def _read_json(path: Path) -> dict[str, Any]:
    """The file's object, or {} when the optional file is absent."""
    return read_json(path) if path.is_file() else {}


def _apply_tokenizer_config(
    config: TokenizerConfig, tok_config: Mapping[str, Any], model_config: Mapping[str, Any]
) -> TokenizerConfig:
    """Apply what AutoTokenizer's class does to tokenizer.json's settings.

    The pad token always; for BERT-family classes also the lowercase / strip_accents / handle_chinese_chars
    flags (the class defaults when tokenizer_config.json omits them).
    """
    if "pad_token" in tok_config:
        config = replace(config, pad_token=_token_text(tok_config["pad_token"], config.pad_token))
    name = tok_config.get("tokenizer_class") or _MODEL_TYPE_CLASSES.get(str(model_config.get("model_type")), "")
    if str(name).removesuffix("Fast") not in _OVERRIDING_CLASSES:
        return config
    return replace(
        config,
        lowercase=bool(tok_config.get("do_lower_case", True)),
        strip_accents=tok_config.get("strip_accents"),
        handle_chinese_chars=bool(tok_config.get("tokenize_chinese_chars", True)),
    )


def read_vocab_txt(path: Path) -> dict[str, int]:
    """Read vocab.txt as transformers' BertTokenizer does: id = line number, newline removed, last wins."""
    with path.open(encoding="utf-8") as f:
        return {line.rstrip("\n"): i for i, line in enumerate(f)}


class TruncationSide(Choice):
    """Which end of a text truncation keeps: its start (``right``: the end is cut) or its end (``left``)."""

    RIGHT = "right"
    LEFT = "left"


class BatchEncoder:
    """Batching, truncation and padding shared by the tokenizers, as the reference does them.

    A subclass sets ``_prefix_ids`` / ``_suffix_ids`` (the special tokens its post-processor puts around a single
    text) and ``pad_id``, and gives ``_encode`` (a whole text's ids) and ``_find_cut``: positions where a text can
    be cut so that the ids of the two parts joined are the ids of the whole (no normalizer step, added token or
    pre-tokenizer piece reaches across). With them, only as much of a long text is tokenized as its truncation
    needs (``_encode_within``).
    """

    _prefix_ids: tuple[int, ...] = ()
    _suffix_ids: tuple[int, ...] = ()
    # Where no cut exists within this many chunk sizes, the text is cut anyway there and the rest is dropped
    # unread (as text-embeddings-inference caps characters); None: runs without a cut are cheap, read them all.
    _run_cap: int | None = None

    @property
    def pad_id(self) -> int:
        """Id used to pad rows to the longest one."""
        raise NotImplementedError

    def _encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def _find_cut(self, text: str, lo: int, hi: int, last: bool) -> int:
        """A position in [lo, hi) where ``text`` can be cut exactly: the first (or with ``last`` the last), or -1."""
        raise NotImplementedError

    def _forced_cut(self, text: str, pos: int) -> int:
        """Where to cut near ``pos`` when no exact cut is within reach (only with ``_run_cap``)."""
        return pos

    def tokenize_ids(self, text: str) -> list[int]:
        """Token ids of one text, without the special tokens around it and not truncated."""
        if not isinstance(text, str):
            raise TypeError(f"text is {type(text).__name__}; expected str")
        _check_surrogates(text, "text")
        return self._encode(text)

    def encode_within(
        self, text: str, need: int, side: str | TruncationSide = TruncationSide.RIGHT
    ) -> tuple[list[int], bool]:
        """Ids of the start (``right``) or end (``left``) of a checked text, and whether characters were dropped.

        The ids are all of them, or at least ``need`` where the text has more; characters are dropped unread only
        past a run with no cut (see ``_run_cap``), which counts as truncation. Tokenizes growing chunks between
        exact cuts from the kept end, so a 3 MB text costs about what its first (or last) few thousand characters
        cost.
        """
        size = max(_MIN_CHUNK_CHARS, 8 * need)
        if len(text) <= size:
            return self._encode(text), False
        if TruncationSide.parse(side) is TruncationSide.LEFT:
            return self._encode_end(text, need, size)
        return self._encode_start(text, need, size)

    def _encode_start(self, text: str, need: int, size: int) -> tuple[list[int], bool]:
        ids: list[int] = []
        start, n = 0, len(text)
        while start < n and len(ids) < need:
            reach = n if self._run_cap is None else min(n, start + self._run_cap * size)
            end = self._find_cut(text, start + size, reach, False) if start + size < n else n
            if end < 0 and reach < n:
                end = self._forced_cut(text, reach)
                return ids + self._encode(text[start:end]), True
            end = n if end < 0 else end
            ids += self._encode(text[start:end])
            start, size = end, size * 2
        return ids, False

    def _encode_end(self, text: str, need: int, size: int) -> tuple[list[int], bool]:
        chunks: list[list[int]] = []
        count, end = 0, len(text)
        dropped = False
        while end > 0 and count < need:
            reach = 0 if self._run_cap is None else max(0, end - self._run_cap * size)
            start = self._find_cut(text, max(reach, 1), end - size + 1, True) if end - size > 0 else 0
            if start < 0 and reach > 0:
                start, dropped = self._forced_cut(text, reach), True
            start = max(start, 0)
            chunks.append(self._encode(text[start:end]))
            count += len(chunks[-1])
            end, size = start, size * 2
            if dropped:
                break
        return list(chain.from_iterable(reversed(chunks))), dropped

    def encode_batch(
        self, texts: Sequence[str], max_length: int, side: str | TruncationSide = TruncationSide.RIGHT
    ) -> list[list[int]]:
        """Per text: the special tokens around its first (or with ``left`` last) max_length - their count ids."""
        return self.encode_batch_truncated(texts, max_length, side)[0]

    def encode_batch_truncated(
        self, texts: Sequence[str], max_length: int, side: str | TruncationSide = TruncationSide.RIGHT
    ) -> tuple[list[list[int]], list[bool]]:
        """``encode_batch``, and per text whether it had more tokens than fit (so it was truncated).

        Only as much of a long text is tokenized as the cut needs (see ``encode_within``).
        """
        prefix, suffix = self._prefix_ids, self._suffix_ids
        keep = _check_max_length(max_length) - len(prefix) - len(suffix)
        if keep < 0:
            raise TokenizerError(
                f"max_length {max_length} leaves no room for the {len(prefix) + len(suffix)} special tokens"
            )
        side = TruncationSide.parse(side)
        rows, truncated = [], []
        for text in check_texts(texts):
            ids, dropped = self.encode_within(text, keep + 1, side)
            kept = ids[:keep] if side is TruncationSide.RIGHT else ids[max(0, len(ids) - keep) :]
            rows.append([*prefix, *kept, *suffix])
            truncated.append(dropped or len(ids) > keep)
        return rows, truncated

    def pad(self, rows: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
        """(input_ids, attention_mask), int64, (n, longest): rows padded on the right with the pad id."""
        if len(rows) == 1:  # nothing to pad: the single-text call, where every microsecond shows in latency
            input_ids = np.array(rows, dtype=np.int64)
            return input_ids, np.ones_like(input_ids)
        lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        width = int(lengths.max()) if len(rows) else 0
        mask = np.arange(width, dtype=np.int64)[None, :] < lengths[:, None]
        input_ids = np.full((len(rows), width), self.pad_id, dtype=np.int64)
        # Boolean assignment fills in row-major order, which is the order of the concatenated rows.
        input_ids[mask] = np.fromiter(chain.from_iterable(rows), dtype=np.int64, count=int(lengths.sum()))
        return input_ids, mask.astype(np.int64)

    def __call__(self, texts: Sequence[str], max_length: int) -> tuple[np.ndarray, np.ndarray]:
        """Return (input_ids, attention_mask) like the reference with padding=True, truncation=longest_first.

        Raises:
            TypeError: ``texts`` is not a list/tuple of str (the message names the first bad index).
            TokenizerError: a text holds a lone surrogate, or ``max_length`` < 2.

        """
        return self.pad(self.encode_batch(texts, max_length))


class Tokenizer(BatchEncoder):
    """BERT WordPiece tokenizer with the reference's output for every input it accepts.

    Instances are safe to share between threads: the caches only ever hold complete entries.
    """

    def __init__(self, config: TokenizerConfig, vocab: Mapping[str, int], *, do_lower_case: bool = False) -> None:
        self.config = config
        self.do_lower_case = do_lower_case
        self._vocab = dict(vocab)
        self._added = dict(config.added_tokens)
        self._ids = {**self._vocab, **self._added}
        for name in ("unk_token", "cls_token", "sep_token", "pad_token"):
            if getattr(config, name) not in self._ids:
                raise TokenizerError(f"{name} {getattr(config, name)!r} is not in the vocabulary")
        self._prefix_ids, self._suffix_ids = (self.cls_id,), (self.sep_id,)
        self._special_re = self._special_pattern(self._added)
        self._pre_lower = dict(_tables.LOWERCASE) if do_lower_case else None
        self._clean_map = self._clean_table(config)
        self._marks_lower_map = self._mark_lower_table(config)
        self._wordpiece = _WordPiece(
            self._vocab,
            self.unk_id,
            config.continuing_subword_prefix,
            config.max_input_chars_per_word,
        )

    @classmethod
    def from_dir(cls, model_dir: str | Path, *, do_lower_case: bool = False) -> Tokenizer:
        """Load tokenizer.json, or else vocab.txt (+ tokenizer_config.json) from ``model_dir``.

        Settings follow what ``transformers.AutoTokenizer`` builds from the same directory, including its
        override of tokenizer.json's normalizer flags by tokenizer_config.json for BERT-family classes.
        ``do_lower_case`` is sentence_bert_config.json's flag, not the tokenizer's own lowercasing.
        """
        root = Path(model_dir)
        path = root / "tokenizer.json"
        if path.is_file():
            return cls._from_tokenizer_json(root, read_json(path), do_lower_case=do_lower_case)
        tok_config = _read_json(root / "tokenizer_config.json")
        if (root / "vocab.txt").is_file():
            vocab = read_vocab_txt(root / "vocab.txt")
            config = TokenizerConfig.from_tokenizer_config(tok_config, vocab)
            return cls(config, vocab, do_lower_case=do_lower_case)
        raise FileNotFoundError(
            f"no tokenizer in {root}: looked for tokenizer.json, then vocab.txt (with tokenizer_config.json)"
        )

    @classmethod
    def _from_tokenizer_json(cls, root: Path, data: Mapping[str, Any], *, do_lower_case: bool) -> Tokenizer:
        """Build from ``root``'s tokenizer.json, already parsed into ``data``, and its other tokenizer files."""
        path = root / "tokenizer.json"
        config = TokenizerConfig.from_dict(data, source=str(path))
        tok_config = _read_json(root / "tokenizer_config.json")
        config = _apply_tokenizer_config(config, tok_config, _read_json(root / "config.json"))
        vocab = require(require(data, "model", path, Mapping), "vocab", f"{path}: model", Mapping)
        return cls(config, vocab, do_lower_case=do_lower_case)

    @property
    def cls_id(self) -> int:
        """Id of the token put before every text."""
        return self._ids[self.config.cls_token]

    @property
    def sep_id(self) -> int:
        """Id of the token put after every text."""
        return self._ids[self.config.sep_token]

    @property
    def pad_id(self) -> int:
        """Id used to pad rows to the longest one."""
        return self._ids[self.config.pad_token]

    @property
    def unk_id(self) -> int:
        """Id of pieces that WordPiece cannot split."""
        return self._ids[self.config.unk_token]

    @property
    def vocab_size(self) -> int:
        """One more than the largest id (vocabulary and added tokens)."""
        return max(self._ids.values()) + 1

    def tokens_by_id(self) -> dict[int, str]:
        """Each id's token text (vocabulary and added tokens)."""
        return {i: token for token, i in self._ids.items()}

    @property
    def special_ids(self) -> frozenset[int]:
        """Ids of the special tokens ([CLS], [SEP], [PAD], [UNK] and the added tokens)."""
        return frozenset({self.cls_id, self.sep_id, self.pad_id, self.unk_id, *self._added.values()})

    def _find_cut(self, text: str, lo: int, hi: int, last: bool) -> int:
        """The first (or last) cut in [lo, hi), or -1: just before a boundary character (see ``_boundaries``).

        No piece, added token or normalizer step reaches across one, so the ids of the two parts joined equal the
        ids of the whole text.
        """
        if lo >= hi:
            return -1
        first, final = self._boundaries
        found = (final.match if last else first.search)(text, lo, hi)
        return -1 if found is None else found.end() - 1 if last else found.start()

    @functools.cached_property
    def _boundaries(self) -> tuple[re.Pattern[str], re.Pattern[str]]:
        """Patterns finding the first and the last boundary character of a span.

        Boundaries are whitespace, punctuation and (with handle_chinese_chars) CJK ideographs that normalize to
        whitespace or punctuation at both ends, start a new canonical-ordering run, and appear in no added token
        (so no added-token match can span them).
        """
        in_added = set("".join(self._added))
        ws_punct = _RangeSet(sorted([*_tables.WHITESPACE, *_tables.PUNCTUATION]))
        candidates = [*_tables.WHITESPACE, *_tables.PUNCTUATION]
        if self.config.clean_text:
            candidates += _tables.CLEAN_TO_SPACE

        def boundary(char: str) -> bool:
            normalized = self._normalize(char)
            return (
                char not in in_added
                and bool(normalized)
                and ord(normalized[0]) in ws_punct
                and ord(normalized[-1]) in ws_punct
                and unicodedata.combining(unicodedata.normalize("NFD", char)[0]) == 0
            )

        points = sorted({cp for a, b in candidates for cp in range(a, b + 1) if boundary(chr(cp))})
        ranges = _ranges(points)
        if self.config.handle_chinese_chars and not any(ord(c) in _RangeSet(_tables.CJK) for c in in_added):
            ranges += list(_tables.CJK)  # each becomes " c " before anything else looks at it
        char_class = f"[{_char_class(ranges)}]"
        return re.compile(char_class), re.compile(f".*{char_class}", re.DOTALL)

    def _encode(self, text: str) -> list[int]:
        if self._special_re is None:
            return self._encode_segment(text)
        parts = self._special_re.split(text)
        if len(parts) == 1:
            return self._encode_segment(text)
        ids: list[int] = []
        for i, part in enumerate(parts):
            if i % 2:
                ids.append(self._added[part])
            elif part:
                ids.extend(self._encode_segment(part))
        return ids

    def _encode_segment(self, text: str) -> list[int]:
        return list(chain.from_iterable(map(self._wordpiece.__getitem__, _PIECES.findall(self._normalize(text)))))

    def _normalize(self, text: str) -> str:
        if self._pre_lower is not None:
            text = text.translate(self._pre_lower)
        if self._clean_map is not None:
            text = text.translate(self._clean_map)
        if self.config.strips_accents and not text.isascii():
            text = _nfd(text)
        if self._marks_lower_map:
            text = text.translate(self._marks_lower_map)
        return text

    @staticmethod
    def _special_pattern(added: Mapping[str, int]) -> re.Pattern[str] | None:
        """Longest first, so the alternation matches leftmost-longest like the reference's Aho-Corasick."""
        if not added:
            return None
        tokens = sorted(added, key=len, reverse=True)
        return re.compile("(" + "|".join(map(re.escape, tokens)) + ")")

    @staticmethod
    def _clean_table(config: TokenizerConfig) -> _LazyTable | None:
        """clean_text and handle_chinese_chars are both per-character maps, so they compose into one table."""
        if not (config.clean_text or config.handle_chinese_chars):
            return None
        delete = _RangeSet(_tables.CLEAN_DELETE) if config.clean_text else _RangeSet(())
        space = _RangeSet(_tables.CLEAN_TO_SPACE) if config.clean_text else _RangeSet(())
        cjk = _RangeSet(_tables.CJK) if config.handle_chinese_chars else _RangeSet(())

        def compute(cp: int) -> str | None:
            if cp in delete:
                return None
            if cp in space:
                return " "
            return f" {chr(cp)} " if cp in cjk else chr(cp)

        return _LazyTable(compute)

    @staticmethod
    def _mark_lower_table(config: TokenizerConfig) -> dict[int, str | None]:
        """Merge mark dropping and lowercasing: a mark is dropped before lowercase could see it."""
        table: dict[int, str | None] = {}
        if config.lowercase:
            table.update(_tables.LOWERCASE)
        if config.strips_accents:
            for a, b in _tables.STRIP_MARKS:
                table.update(dict.fromkeys(range(a, b + 1)))
        return table


# Model types of tokenizer.json that embedrt reproduces.
_MODEL_TYPES = ("WordPiece", "Unigram")


def load_tokenizer(model_dir: str | Path, *, do_lower_case: bool = False) -> Tokenizer | UnigramTokenizer:
    """The tokenizer of ``model_dir``, picked by tokenizer.json's model type as ``AutoTokenizer`` would load it.

    WordPiece gives a :class:`Tokenizer`, Unigram (SentencePiece, XLM-R) a
    :class:`~embedrt.unigram.UnigramTokenizer`; a directory with vocab.txt and no tokenizer.json is WordPiece.
    ``do_lower_case`` is sentence_bert_config.json's flag.

    Raises:
        TokenizerError: tokenizer.json holds another model type (BPE, WordLevel ...).
        FileNotFoundError: neither tokenizer.json nor vocab.txt is there.

    """
    root = Path(model_dir)
    path = root / "tokenizer.json"
    if not path.is_file():
        return Tokenizer.from_dir(root, do_lower_case=do_lower_case)  # vocab.txt, or its FileNotFoundError
    from embedrt.unigram import UnigramTokenizer, read_tokenizer_json  # here: unigram imports this module

    data = read_tokenizer_json(path)
    model = data.get("model")
    kind = model.get("type") if isinstance(model, Mapping) else None
    if kind is None and isinstance(model, Mapping) and isinstance(model.get("vocab"), list):
        kind = "Unigram"  # files without "type": tokenizers recognizes the model by its fields
    if kind == "WordPiece":
        return Tokenizer._from_tokenizer_json(root, data, do_lower_case=do_lower_case)
    if kind == "Unigram":
        return UnigramTokenizer._from_tokenizer_json(root, data, do_lower_case=do_lower_case)
    raise TokenizerError(f"{path}: model type is {kind!r}; embedrt supports {' and '.join(_MODEL_TYPES)}")


def _check_max_length(max_length: int) -> int:
    if not isinstance(max_length, int) or isinstance(max_length, bool) or max_length < 2:
        raise TokenizerError(f"max_length must be an int >= 2 (room for [CLS] and [SEP]), got {max_length!r}")
    return max_length


def check_texts(texts: Sequence[str]) -> Sequence[str]:
    """Return ``texts`` if it is a list/tuple of valid str, else raise naming the first bad index."""
    # The exact-type test first: an ABC isinstance check costs microseconds on every single-text call.
    if type(texts) not in (list, tuple) and (
        isinstance(texts, (str, bytes, bytearray)) or not isinstance(texts, Sequence)
    ):
        raise TypeError(f"texts must be a list or tuple of str, got {type(texts).__name__}")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{i}] is {type(text).__name__}; expected str")
        _check_surrogates(text, f"texts[{i}]")
    return texts


def _check_surrogates(text: str, name: str) -> None:
    if text.isascii():
        return
    match = _SURROGATE.search(text)
    if match is not None:
        raise TokenizerError(
            f"{name} contains a lone surrogate U+{ord(match.group()):04X} at position {match.start()}; "
            "it is not valid Unicode text and the reference tokenizer cannot encode it either "
            "(decode bytes with errors='replace' or remove it)"
        )
