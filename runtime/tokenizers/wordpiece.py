r"""A BERT WordPiece tokenizer that reproduces the Hugging Face fast tokenizer, in pure Python + numpy.

The reference is ``transformers.AutoTokenizer`` (Rust ``tokenizers``) called the way sentence-transformers
calls it: ``tokenizer(texts, padding=True, truncation="longest_first", max_length=max_seq_length)``.
Its character classes are not Python's ``unicodedata`` ones, so they are frozen from the reference library
into ``embedrt.tokenizers.tables.unicode`` by ``scripts/gen_tokenizer_tables.py``.

Pipeline for one text (the reference's order):

1. Added tokens with ``normalized: false`` (``[CLS]``, ``[SEP]``, ``[MASK]`` ...) are split out of the raw
   text, leftmost-longest, honouring ``lstrip`` / ``rstrip`` (MPNet's ``<mask>``); each remaining segment is
   normalized on its own.
2. ``do_lower_case`` (sentence_bert_config.json) prepends a per-character lowercase, as sentence-transformers
   >= 5 does by adding a ``Lowercase`` normalizer (older versions called ``str.lower()`` on the whole text).
3. BertNormalizer: clean_text + handle_chinese_chars (one ``str.translate``), strip_accents (NFD, drop
   marks), lowercase (one ``str.translate``, merged with the mark dropping).
4. Added tokens with ``normalized: true`` (as transformers converts a vocab.txt: MPNet's ``<s>``, ``<mask>``
   ...) are split out of each normalized segment, matched in their normalized form.
5. BertPreTokenizer: one compiled regex (punctuation alone, runs of anything but whitespace/punctuation).
6. WordPiece, cached per piece.
7. The post-processor's template puts its special tokens around the ids after truncation: ``[CLS] A [SEP]`` for
   BERT, ``<s> A </s>`` for MPNet (``RobertaProcessing`` or ``TemplateProcessing``), read from tokenizer.json.

Texts are not ``str.strip()``-ed: sentence-transformers >= 5 passes them unchanged, and with clean_text on
stripping could not change the result anyway.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from itertools import chain
from pathlib import Path
from typing import Any

from embedrt.config import read_json, require
from embedrt.tokenizers.added_vocabulary import AddedToken, AddedVocabulary
from embedrt.tokenizers.base import BatchEncoder, TokenizerError, cache_add
from embedrt.tokenizers.charsets import RangeSet, char_class, ranges
from embedrt.tokenizers.files import read_json_or_empty, read_vocab_txt
from embedrt.tokenizers.normalizers.bert import BertNormalizer
from embedrt.tokenizers.pre_tokenizers.bert import PIECES
from embedrt.tokenizers.processors import Template
from embedrt.tokenizers.tables import unicode as _tables

__all__ = ["Tokenizer", "TokenizerConfig"]


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


@dataclass(frozen=True)
class TokenizerConfig:
    """The settings of a BERT WordPiece tokenizer, as read from tokenizer.json or tokenizer_config.json.

    ``strip_accents=None`` follows ``lowercase`` (the reference's rule). ``added_tokens`` are the added tokens in
    the order the reference adds them (their ids come from the vocabulary, else the next free ids, as tokenizers
    assigns them). ``template`` is tokenizer.json's post-processor; without it (a vocab.txt directory) the
    template is ``cls_token A sep_token``.
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
    added_tokens: tuple[AddedToken, ...] = ()
    template: Template | None = None

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
        padding = data.get("padding") or {}
        return cls(
            lowercase=bool(norm.get("lowercase", True)),
            strip_accents=norm.get("strip_accents"),
            handle_chinese_chars=bool(norm.get("handle_chinese_chars", True)),
            clean_text=bool(norm.get("clean_text", True)),
            unk_token=str(model.get("unk_token", "[UNK]")),
            pad_token=str(padding.get("pad_token", "[PAD]")),
            max_input_chars_per_word=int(model.get("max_input_chars_per_word", 100)),
            continuing_subword_prefix=str(model.get("continuing_subword_prefix", "##")),
            added_tokens=_added_tokens(data.get("added_tokens") or [], source),
            template=Template.from_spec(data.get("post_processor"), source),
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
        return cls(
            lowercase=bool(data.get("do_lower_case", True)),
            strip_accents=data.get("strip_accents"),
            handle_chinese_chars=bool(data.get("tokenize_chinese_chars", True)),
            clean_text=True,
            unk_token=names["unk_token"],
            cls_token=names["cls_token"],
            sep_token=names["sep_token"],
            pad_token=names["pad_token"],
            added_tokens=tuple(AddedToken(t, normalized=False, special=True) for t in dict.fromkeys(specials) if t),
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


def _added_tokens(entries: Iterable[Mapping[str, Any]], source: str) -> tuple[AddedToken, ...]:
    tokens = []
    for i, entry in enumerate(entries):
        token = AddedToken.from_spec(entry, f"{source}: added_tokens[{i}]")
        if token.single_word:
            raise TokenizerError(f"{source}: added token {token.content!r} sets single_word; not supported")
        tokens.append(token)
    return tuple(tokens)


# transformers classes whose __init__ replaces tokenizer.json's BertNormalizer flags with their own arguments.
_OVERRIDING_CLASSES = {"BertTokenizer", "DistilBertTokenizer", "ElectraTokenizer", "MPNetTokenizer"}
_MODEL_TYPE_CLASSES = {
    "bert": "BertTokenizer",
    "distilbert": "DistilBertTokenizer",
    "electra": "ElectraTokenizer",
    "mpnet": "MPNetTokenizer",
}
# Pad tokens of those classes' __init__ that differ from tokenizer.json's default, used when tokenizer_config.json
# names none: MPNet pads with <pad> (id 1), which its position ids count on.
_CLASS_PAD = {"MPNetTokenizer": "<pad>"}
# Classes whose vocab.txt transformers converts unlike BERT's (MPNet: <s> A </s>, added tokens matched after
# normalization, <mask> with lstrip): read from tokenizer.json only, which the export writes from that conversion.
_TOKENIZER_JSON_ONLY = frozenset({"MPNetTokenizer"})


def _apply_tokenizer_config(
    config: TokenizerConfig, tok_config: Mapping[str, Any], model_config: Mapping[str, Any]
) -> TokenizerConfig:
    """Apply what AutoTokenizer's class does to tokenizer.json's settings.

    The pad token always; for BERT-family classes also the lowercase / strip_accents / handle_chinese_chars
    flags (the class defaults when tokenizer_config.json omits them). The added tokens of tokenizer_config.json's
    ``added_tokens_decoder`` are added again after tokenizer.json's, as ``PreTrainedTokenizerFast.__init__`` does,
    so their flags win (MPNet's ``<mask>`` with ``lstrip``).
    """
    name = str(tok_config.get("tokenizer_class") or _MODEL_TYPE_CLASSES.get(str(model_config.get("model_type")), ""))
    name = name.removesuffix("Fast")
    pad = tok_config.get("pad_token", _CLASS_PAD.get(name))
    if pad is not None:
        config = replace(config, pad_token=_token_text(pad, config.pad_token))
    decoder = tok_config.get("added_tokens_decoder")
    if isinstance(decoder, Mapping) and decoder:
        where = "tokenizer_config.json: added_tokens_decoder"
        ordered = sorted(decoder.items(), key=lambda item: int(item[0]))
        extra = _added_tokens([entry for _, entry in ordered], where)
        readded = tuple(t for t in extra if t not in config.added_tokens)
        config = replace(config, added_tokens=(*config.added_tokens, *readded))
    if name not in _OVERRIDING_CLASSES:
        return config
    return replace(
        config,
        lowercase=bool(tok_config.get("do_lower_case", True)),
        strip_accents=tok_config.get("strip_accents"),
        handle_chinese_chars=bool(tok_config.get("tokenize_chinese_chars", True)),
    )


@dataclass(frozen=True)
class _VocabModel:
    """What :class:`AddedVocabulary` asks of the model: its size (``pieces``) and its ids."""

    pieces: list[str]
    ids: dict[str, int]


class Tokenizer(BatchEncoder):
    """BERT WordPiece tokenizer with the reference's output for every input it accepts.

    Instances are safe to share between threads: the caches only ever hold complete entries.
    """

    def __init__(self, config: TokenizerConfig, vocab: Mapping[str, int], *, do_lower_case: bool = False) -> None:
        self.config = config
        self.do_lower_case = do_lower_case
        self._vocab = dict(vocab)
        flags = {
            "clean_text": config.clean_text,
            "handle_chinese_chars": config.handle_chinese_chars,
            "strip_accents": config.strips_accents,
            "lowercase": config.lowercase,
        }
        self._normalize = BertNormalizer(**flags, pre_lowercase=do_lower_case)
        self._added = AddedVocabulary()
        # Normalized added tokens are matched in the form the file's own normalizer gives them: the Lowercase that
        # sentence-transformers prepends for do_lower_case does not re-normalize them.
        self._added.add(config.added_tokens, _VocabModel(list(self._vocab), self._vocab), BertNormalizer(**flags))
        self._ids = {**self._vocab, **self._added.ids}
        names = ("unk_token", "pad_token") if config.template else ("unk_token", "cls_token", "sep_token", "pad_token")
        for name in names:
            if getattr(config, name) not in self._ids:
                raise TokenizerError(f"{name} {getattr(config, name)!r} is not in the vocabulary")
        if config.template is None:
            cls_ids, sep_ids = (self._ids[config.cls_token],), (self._ids[config.sep_token],)
            self._template = Template.bert(cls_ids, sep_ids)
        else:
            self._template = config.template
        self._prefix_ids, self._suffix_ids = self._template.around_single()
        if not self._prefix_ids or not self._suffix_ids:
            raise TokenizerError("the post_processor puts no special token before and after a text")
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
        tok_config = read_json_or_empty(root / "tokenizer_config.json")
        if (root / "vocab.txt").is_file():
            name = str(tok_config.get("tokenizer_class") or "").removesuffix("Fast")
            model_type = read_json_or_empty(root / "config.json").get("model_type")
            if name in _TOKENIZER_JSON_ONLY or _MODEL_TYPE_CLASSES.get(str(model_type)) in _TOKENIZER_JSON_ONLY:
                raise TokenizerError(
                    f"{root}: an MPNet vocab.txt without tokenizer.json; embedrt reads MPNet tokenizers from "
                    "tokenizer.json only (embedrt export writes it)"
                )
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
        tok_config = read_json_or_empty(root / "tokenizer_config.json")
        config = _apply_tokenizer_config(config, tok_config, read_json_or_empty(root / "config.json"))
        vocab = require(require(data, "model", path, Mapping), "vocab", f"{path}: model", Mapping)
        return cls(config, vocab, do_lower_case=do_lower_case)

    @property
    def cls_id(self) -> int:
        """Id of the (first) token put before every text: ``[CLS]``, MPNet's ``<s>``."""
        return self._prefix_ids[0]

    @property
    def sep_id(self) -> int:
        """Id of the (first) token put after every text: ``[SEP]``, MPNet's ``</s>``."""
        return self._suffix_ids[0]

    @property
    def pair_template(self) -> tuple[str | tuple[int, ...], ...]:
        """The post-processor's template for a pair of texts ("A", "B" and special ids), for pair encoding."""
        return self._template.pair

    @property
    def pad_id(self) -> int:
        """Id used to pad rows to the longest one."""
        return self._ids[self.config.pad_token]

    @property
    def template(self) -> Template:
        """The post-processor's templates (BERT's ``[CLS] A [SEP]``, MPNet's ``<s> A </s>``), for pairs too."""
        return self._template

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
        """Ids of the special tokens (the template's, [PAD], [UNK] and the added tokens)."""
        ids = {*self._prefix_ids, *self._suffix_ids, self.pad_id, self.unk_id, *self._added.ids.values()}
        return frozenset(ids)

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
        whitespace or punctuation at both ends, start a new canonical-ordering run, and appear in no added token,
        raw or normalized, before or after normalization (so no added-token match can span them). The whitespace
        an ``lstrip`` / ``rstrip`` token takes in is whitespace the pre-tokenizer drops anyway: same ids either side.
        """
        in_added = set("".join([*self._added.ids, *self._added.patterns]))
        ws_punct = RangeSet(sorted([*_tables.WHITESPACE, *_tables.PUNCTUATION]))
        candidates = [*_tables.WHITESPACE, *_tables.PUNCTUATION]
        if self.config.clean_text:
            candidates += _tables.CLEAN_TO_SPACE

        def boundary(char: str) -> bool:
            normalized = self._normalize(char)
            return (
                char not in in_added
                and not in_added.intersection(normalized)
                and bool(normalized)
                and ord(normalized[0]) in ws_punct
                and ord(normalized[-1]) in ws_punct
                and unicodedata.combining(unicodedata.normalize("NFD", char)[0]) == 0
            )

        points = sorted({cp for a, b in candidates for cp in range(a, b + 1) if boundary(chr(cp))})
        spans = ranges(points)
        if self.config.handle_chinese_chars and not any(ord(c) in RangeSet(_tables.CJK) for c in in_added):
            spans += list(_tables.CJK)  # each becomes " c " before anything else looks at it
        pattern = f"[{char_class(spans)}]"
        return re.compile(pattern), re.compile(f".*{pattern}", re.DOTALL)

    def _encode(self, text: str) -> list[int]:
        splits = self._added.split_raw(text)
        if splits is None:
            return self._encode_segment(text)
        ids: list[int] = []
        for token_id, start, stop in splits:
            if token_id is not None:
                ids.append(token_id)
            elif stop > start:
                ids += self._encode_segment(text[start:stop])
        return ids

    def _encode_segment(self, raw: str) -> list[int]:
        """One raw segment between non-normalized added tokens: normalize, split normalized tokens, WordPiece."""
        normalized = self._normalize(raw)
        splits = self._added.split_normalized(normalized)
        if splits is None:
            return self._pieces(normalized)
        ids: list[int] = []
        for token_id, start, stop in splits:
            if token_id is not None:
                ids.append(token_id)
            elif stop > start:
                ids += self._pieces(normalized[start:stop])
        return ids

    def _pieces(self, normalized: str) -> list[int]:
        return list(chain.from_iterable(map(self._wordpiece.__getitem__, PIECES.findall(normalized))))
