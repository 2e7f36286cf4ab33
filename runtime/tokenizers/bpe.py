r"""A byte-level BPE tokenizer (RoBERTa, GPT-2, ModernBERT style) that reproduces the Hugging Face fast tokenizer.

The reference is ``transformers.AutoTokenizer`` (Rust ``tokenizers`` 0.22) on a tokenizer.json whose model is
``BPE``, called the way sentence-transformers calls it. Pipeline for one text (the reference's order):

1. Added tokens with ``normalized: false`` (``<s>``, ``<mask>``, ``[MASK]`` ...) are split out of the raw text,
   leftmost-longest, honouring ``lstrip`` / ``rstrip`` / ``single_word``.
2. Each remaining segment goes through the file's normalizer (none in RoBERTa's files; ``NFC`` in some; the
   steps of ``normalizers/`` otherwise), then added tokens with ``normalized: true`` are split out of it.
3. ``ByteLevel`` (``pre_tokenizers/byte_level.py``): GPT-2's regex splits the segment into words, and each word's
   UTF-8 bytes become GPT-2's printable characters.
4. BPE on each word: its characters' ids, then the merge of lowest rank among adjacent pairs (the leftmost on a
   tie), again and again; ``ignore_merges`` takes a word found whole in the vocabulary as is. Cached per piece
   (before the byte mapping, which a cache hit skips).
5. The post-processor (RobertaProcessing ``<s> A </s>``, TemplateProcessing ``[CLS] A [SEP]``, or ByteLevel /
   none: nothing) around the ids after truncation.

Lone surrogates raise :class:`~embedrt.tokenizers.base.TokenizerError`, as in the other tokenizers.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from itertools import chain
from pathlib import Path
from typing import Any

from embedrt.config import require
from embedrt.tokenizers.added_vocabulary import AddedToken, AddedVocabulary
from embedrt.tokenizers.base import TokenizerError, cache_add
from embedrt.tokenizers.files import read_tokenizer_json
from embedrt.tokenizers.json_model import TokenizerJsonModel
from embedrt.tokenizers.normalizers.sequence import build_normalizer
from embedrt.tokenizers.pre_tokenizers.byte_level import ByteLevel
from embedrt.tokenizers.processors import Template
from embedrt.tokenizers.transformers_view import BPE_CLASSES, TransformersView

__all__ = ["BPETokenizer"]

# Pieces longer than this are never cached: real words are shorter, and a long run of letters would otherwise be
# kept whole.
_CACHED_WORD_CHARS = 100
# Past this many symbols a word is merged with a heap (n log n) rather than by rescanning its pairs (n squared).
_SCAN_SYMBOLS = 48
# Characters past which a run without a cut is cut anyway: 16 chunks (65k characters at 512 tokens).
_RUN_CAP = 16


# ---------------------------------------------------------------- the BPE model


def _merge_pairs(spec: Mapping[str, Any], where: str) -> list[tuple[str, str]]:
    """The merges, given as "a b" strings (the older files) or [a, b] lists (tokenizers >= 0.20)."""
    pairs = []
    for i, entry in enumerate(require(spec, "merges", where, list)):
        if isinstance(entry, str):
            parts = entry.split(" ")
            if len(parts) != 2:
                raise TokenizerError(f"{where}: merges[{i}] is {entry!r}, not two tokens separated by one space")
            pairs.append((parts[0], parts[1]))
        elif isinstance(entry, list) and len(entry) == 2 and all(isinstance(p, str) for p in entry):
            pairs.append((entry[0], entry[1]))
        else:
            raise TokenizerError(f"{where}: merges[{i}] is {entry!r}, neither 'a b' nor [a, b]")
    return pairs


class _BPE:
    """BPE ids of a byte-level word, as tokenizers' ``BPE::tokenize``."""

    def __init__(self, spec: Mapping[str, Any], source: str) -> None:
        where = f"{source}: model"
        vocab = require(spec, "vocab", where, Mapping)
        self.ids: dict[str, int] = {}
        for token, i in vocab.items():
            if not isinstance(i, int) or isinstance(i, bool) or i < 0:
                raise TokenizerError(f"{where}: vocab[{token!r}] is {i!r}, not an id")
            self.ids[token] = i
        self.pieces: list[str] = [""] * len(self.ids)
        for token, i in self.ids.items():
            if i < len(self.pieces):
                self.pieces[i] = token
        dropout = spec.get("dropout")
        if dropout not in (None, 0, 0.0):
            raise TokenizerError(f"{where}: dropout {dropout!r}; embedrt reproduces BPE without dropout only (null)")
        self.prefix: str | None = spec.get("continuing_subword_prefix") or None
        self.suffix: str | None = spec.get("end_of_word_suffix") or None
        self.byte_fallback = bool(spec.get("byte_fallback", False))
        self.fuse_unk = bool(spec.get("fuse_unk", False))
        self.ignore_merges = bool(spec.get("ignore_merges", False))
        unk = spec.get("unk_token")
        self.unk_token: str | None = None if unk is None else str(unk)
        skip = len(self.prefix.encode("utf-8")) if self.prefix else 0
        # (left id, right id) -> (rank, merged id); a merge listed twice keeps its last rank, as the reference's map.
        self.merges: dict[tuple[int, int], tuple[int, int]] = {}
        for rank, (a, b) in enumerate(_merge_pairs(spec, where)):
            # The merged token drops the right part's continuing_subword_prefix: its first bytes, as the reference
            # slices them.
            merged = a + b.encode("utf-8")[skip:].decode("utf-8", errors="replace")
            missing = [t for t in (a, b, merged) if t not in self.ids]
            if missing:
                raise TokenizerError(f"{where}: merges[{rank}] ({a!r}, {b!r}): {missing[0]!r} is not in the vocabulary")
            self.merges[(self.ids[a], self.ids[b])] = (rank, self.ids[merged])
        self._bytes = [self.ids.get(f"<0x{b:02X}>") for b in range(256)]
        self._source = source
        self._plain = self.prefix is None and self.suffix is None  # a character's id is ids[char]

    def word_ids(self, word: str) -> tuple[int, ...]:
        """The ids of one byte-level word."""
        found = self.ids.get(word) if self.ignore_merges else None
        return (found,) if found is not None else tuple(self._merge(self._symbols(word)))

    def _unk_id(self) -> int:
        assert self.unk_token is not None
        found = self.ids.get(self.unk_token)
        if found is None:
            raise TokenizerError(f"{self._source}: model: unk_token {self.unk_token!r} is not in the vocabulary")
        return found

    def _symbols(self, word: str) -> list[int]:
        """``merge_word`` before merging: each character's id (with prefix / suffix), byte pieces or unknown."""
        ids = self.ids
        if self._plain:
            plain = [ids.get(c) for c in word]
            if None not in plain:
                return plain  # type: ignore[return-value]
        symbols: list[int] = []
        unk: int | None = None  # a pending unknown token, added once the next known character comes
        last = len(word) - 1
        for i, char in enumerate(word):
            s = char
            if i and self.prefix is not None:
                s = self.prefix + s
            if i == last and self.suffix is not None:
                s = s + self.suffix
            found = ids.get(s)
            if found is not None:
                if unk is not None:
                    symbols.append(unk)
                    unk = None
                symbols.append(found)
                continue
            if self.byte_fallback:
                byte_ids = [self._bytes[b] for b in s.encode("utf-8")]
                if None not in byte_ids:
                    # The reference adds them without adding a pending unknown token first (it comes after them).
                    symbols += byte_ids  # type: ignore[arg-type]
                    continue
            if self.unk_token is not None:
                if unk is not None and not self.fuse_unk:
                    symbols.append(unk)
                unk = self._unk_id()
            # Without an unk_token the reference drops the character.
        if unk is not None:
            symbols.append(unk)
        return symbols

    def _merge(self, symbols: list[int]) -> list[int]:
        """Apply merges: the pair of lowest rank first, the leftmost of equal ranks (``Word::merge_all``)."""
        merges = self.merges
        if len(symbols) > _SCAN_SYMBOLS:
            return self._merge_heap(symbols)
        while len(symbols) > 1:
            best, best_rank, new = -1, -1, 0
            for i in range(len(symbols) - 1):
                found = merges.get((symbols[i], symbols[i + 1]))
                if found is not None and (best < 0 or found[0] < best_rank):
                    best, (best_rank, new) = i, found
            if best < 0:
                break
            symbols[best : best + 2] = [new]
        return symbols

    def _merge_heap(self, symbols: list[int]) -> list[int]:
        """``_merge`` for long words: a heap of (rank, position) over a linked list, as the reference does it."""
        merges = self.merges
        n = len(symbols)
        nxt = [*range(1, n), -1]
        prev = [*range(-1, n - 1)]
        alive = [True] * n
        heap = []
        for i in range(n - 1):
            found = merges.get((symbols[i], symbols[i + 1]))
            if found is not None:
                heap.append((found[0], i, found[1]))
        heapq.heapify(heap)
        while heap:
            _, pos, new = heapq.heappop(heap)
            right = nxt[pos]
            if not alive[pos] or right < 0:
                continue
            found = merges.get((symbols[pos], symbols[right]))
            if found is None or found[1] != new:
                continue  # an entry from before one of the two symbols changed
            symbols[pos] = new
            alive[right] = False
            nxt[pos] = nxt[right]
            if nxt[pos] >= 0:
                prev[nxt[pos]] = pos
            if prev[pos] >= 0:
                found = merges.get((symbols[prev[pos]], new))
                if found is not None:
                    heapq.heappush(heap, (found[0], prev[pos], found[1]))
            if nxt[pos] >= 0:
                found = merges.get((new, symbols[nxt[pos]]))
                if found is not None:
                    heapq.heappush(heap, (found[0], pos, found[1]))
        return [s for s, keep in zip(symbols, alive, strict=True) if keep]


class _PieceCache(dict[str, "tuple[int, ...]"]):
    """Ids per pre-tokenized piece (before the byte mapping, which a hit skips); the dict is the cache."""

    def __init__(self, byte_level: ByteLevel, model: _BPE) -> None:
        super().__init__()
        self._byte_level = byte_level
        self._model = model
        self._chars = 0  # characters of the cached pieces

    def __missing__(self, piece: str) -> tuple[int, ...]:
        ids = self._model.word_ids(self._byte_level.word(piece))
        if len(piece) <= _CACHED_WORD_CHARS:
            self._chars = cache_add(self, piece, ids, self._chars)
        return ids


# ---------------------------------------------------------------- the tokenizer


def _template(spec: Any, source: str) -> Template:
    """The post-processor's templates; ByteLevel's (or none) adds nothing, the second text of a pair has type 1."""
    kind = spec.get("type") if isinstance(spec, Mapping) else spec
    if kind in (None, "ByteLevel"):
        return Template(("A",), ("A", "B"), (0, 1))
    return Template.from_spec(spec, source)


class BPETokenizer(TokenizerJsonModel):
    """Byte-level BPE tokenizer (RoBERTa / GPT-2 / ModernBERT style tokenizer.json) with the reference's output.

    Same public interface as :class:`~embedrt.tokenizers.unigram.UnigramTokenizer`. Instances are safe to share
    between threads: the caches only ever hold complete entries.
    """

    _run_cap = _RUN_CAP

    def __init__(
        self,
        data: Mapping[str, Any],
        *,
        source: str = "tokenizer.json",
        view: TransformersView | None = None,
        do_lower_case: bool = False,
    ) -> None:
        """Build from a parsed tokenizer.json (``data``).

        ``view`` is what ``from_dir`` resolves from tokenizer_config.json and special_tokens_map.json (without
        it: tokenizer.json's added tokens, its padding token and its pre-tokenizer's add_prefix_space);
        ``do_lower_case`` (sentence_bert_config.json's flag) is refused: no BPE model sets it.
        """
        model = data.get("model")
        kind = model.get("type") if isinstance(model, Mapping) else model
        if kind != "BPE":
            raise TokenizerError(f"{source}: model is {kind!r}; embedrt's BPETokenizer supports only BPE")
        if do_lower_case:
            raise TokenizerError(
                f"{source}: sentence_bert_config.json sets do_lower_case; embedrt's BPE tokenizer does not reproduce it"
            )
        assert isinstance(model, Mapping)
        self.source = source
        self._normalizer = build_normalizer(data.get("normalizer"), source, nfc=True)
        self._byte_level = ByteLevel.from_spec(
            data.get("pre_tokenizer"), source, None if view is None else view.add_prefix_space
        )
        self._model = _BPE(model, source)
        self._pieces = _PieceCache(self._byte_level, self._model)
        self._template = _template(data.get("post_processor"), source)
        self._added = AddedVocabulary()
        where = f"{source}: added_tokens"
        file_tokens = [
            AddedToken.from_spec(t, f"{where}[{i}]") for i, t in enumerate(require(data, "added_tokens", source, list))
        ]
        self._added.add(file_tokens, self._model, self._normalizer)
        if view is not None:
            self._added.add(view.tokens_to_add(set(self._added.ids)), self._model, self._normalizer)
        self._prefix_ids, self._suffix_ids = self._template.around_single()
        if view is None:
            padding = data.get("padding")
            self._pad_id = self._resolve_pad(padding.get("pad_token") if isinstance(padding, Mapping) else None, None)
        else:
            self._pad_id = self._resolve_pad(view.pad, view.unk)
        # _find_cut may cut long texts before a space only where that provably gives the same ids.
        tokens = self._added.tokens.values()
        self._cuttable = (
            not self._normalizer.steps
            and self._byte_level.split
            # A run of two or more spaces (ModernBERT's added tokens) never matches at a lone space.
            and not any(" " in p and (p.strip(" ") or len(p) < 2) for p in self._added.patterns)
            and not any(t.lstrip and t.content[:1].isascii() and t.content[:1].isalnum() for t in tokens)
            and not any(t.rstrip and t.content[-1:].isascii() and t.content[-1:].isalnum() for t in tokens)
        )

    # ------------------------------------------------------------ loading

    @classmethod
    def from_dir(cls, model_dir: str | Path, *, do_lower_case: bool = False) -> BPETokenizer:
        """Load tokenizer.json (+ tokenizer_config.json, special_tokens_map.json) from ``model_dir``.

        Special tokens, the pad token, the added tokens and add_prefix_space follow what
        ``transformers.AutoTokenizer`` builds from the same directory.
        """
        root = Path(model_dir)
        path = root / "tokenizer.json"
        if not path.is_file():
            raise FileNotFoundError(
                f"no tokenizer.json in {root} (the export converts a BPE tokenizer's vocab.json + merges.txt "
                "to tokenizer.json)"
            )
        return cls._from_tokenizer_json(root, read_tokenizer_json(path), do_lower_case=do_lower_case)

    @classmethod
    def _from_tokenizer_json(cls, root: Path, data: Mapping[str, Any], *, do_lower_case: bool) -> BPETokenizer:
        view = TransformersView.read(root, data, BPE_CLASSES)
        return cls(data, source=str(root / "tokenizer.json"), view=view, do_lower_case=do_lower_case)

    # ------------------------------------------------------------ public interface

    @property
    def cls_id(self) -> int:
        """Id of the (first) token put before every text: ``<s>`` or ``[CLS]`` (-1 if the template puts none)."""
        return self._prefix_ids[0] if self._prefix_ids else -1

    @property
    def sep_id(self) -> int:
        """Id of the (first) token put after every text: ``</s>`` or ``[SEP]`` (-1 if the template puts none)."""
        return self._suffix_ids[0] if self._suffix_ids else -1

    @property
    def unk_id(self) -> int:
        """Id of the model's unk_token (-1 if it has none: unknown characters are dropped, as in the reference)."""
        unk = self._model.unk_token
        found = None if unk is None else self._model.ids.get(unk)
        return -1 if found is None else found

    @property
    def vocab_size(self) -> int:
        """One more than the largest id (model tokens and added tokens)."""
        return max(max(self._model.ids.values(), default=-1), *self._added.tokens, -1) + 1

    def tokens_by_id(self) -> dict[int, str]:
        """Each id's token text (model tokens in their byte-level form, then added tokens over them)."""
        tokens = {i: t for t, i in self._model.ids.items()}
        tokens.update({i: t.content for i, t in self._added.tokens.items()})
        return tokens

    # ------------------------------------------------------------ encoding

    def _find_cut(self, text: str, lo: int, hi: int, last: bool) -> int:
        """The first (or last) cut in [lo, hi), or -1: just before a space between two ASCII letters or digits.

        GPT-2's regex always starts a word at such a space (the word before ends at the letter or digit), no added
        token reaches across it (none holds a space other than in a run of spaces, and none that strips whitespace
        starts or ends with a letter or digit), and without a normalizer nothing else does: the ids of the parts
        joined are the ids of the whole. With add_prefix_space the right part starts with its space, so no space is
        added to it.
        """
        if not self._cuttable or lo >= hi:
            return -1
        pos = hi if last else lo
        while True:
            pos = text.rfind(" ", lo, pos) if last else text.find(" ", pos, hi)
            if pos < 0 or (
                0 < pos < len(text) - 1
                and text[pos - 1].isascii()
                and text[pos - 1].isalnum()
                and text[pos + 1].isascii()
                and text[pos + 1].isalnum()
            ):
                return pos
            pos += 0 if last else 1

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
        """One raw segment between non-normalized added tokens: normalize, split normalized tokens, words."""
        normalized = self._normalizer(raw)
        splits = self._added.split_normalized(normalized)
        if splits is None:
            return self._encode_words(normalized) if normalized else []
        ids: list[int] = []
        for token_id, start, stop in splits:
            if token_id is not None:
                ids.append(token_id)
            elif stop > start:
                ids += self._encode_words(normalized[start:stop])
        return ids

    def _encode_words(self, segment: str) -> list[int]:
        return list(chain.from_iterable(map(self._pieces.__getitem__, self._byte_level.pieces(segment))))
