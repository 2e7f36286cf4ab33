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

Lone surrogates raise :class:`~embedrt.tokenizers.base.TokenizerError`, as in the WordPiece tokenizer.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from itertools import chain
from pathlib import Path
from typing import Any

from embedrt.config import require
from embedrt.tokenizers import graphemes as _gr
from embedrt.tokenizers.added_vocabulary import AddedToken, AddedVocabulary
from embedrt.tokenizers.base import TokenizerError, cache_add
from embedrt.tokenizers.charsets import WHITE_SPACE
from embedrt.tokenizers.files import read_tokenizer_json
from embedrt.tokenizers.json_model import TokenizerJsonModel
from embedrt.tokenizers.normalizers.alignments import Origins
from embedrt.tokenizers.normalizers.sequence import build_normalizer
from embedrt.tokenizers.normalizers.simple import LOWER, LOWERCASE
from embedrt.tokenizers.pre_tokenizers.metaspace import Metaspace
from embedrt.tokenizers.processors import Template
from embedrt.tokenizers.transformers_view import UNIGRAM_CLASSES, TransformersView

__all__ = ["UnigramTokenizer"]

# Pieces (Metaspace words) and grapheme clusters longer than this are never cached: real words are shorter, and
# a text with no space would otherwise be kept whole.
_CACHED_PIECE_CHARS = 100
# Characters past which a run without a cut is cut anyway: 16 chunks (65k characters at 512 tokens, a Viterbi of
# about 65 ms over a space-free run), see _run_cap.
_RUN_CAP = 16
_JOINING = frozenset((_gr.EXTEND, _gr.ZWJ, _gr.SPACING_MARK))  # grapheme categories that join what precedes
_K_UNK_PENALTY = 10.0  # tokenizers' kUnkPenalty: unknown characters score min_score - 10


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


# ---------------------------------------------------------------- the tokenizer


class UnigramTokenizer(TokenizerJsonModel):
    """SentencePiece Unigram tokenizer (XLM-R style tokenizer.json) with the reference's output.

    Same public interface as :class:`~embedrt.tokenizers.wordpiece.Tokenizer`. Instances are safe to share between
    threads: the caches only ever hold complete entries.
    """

    # A space-free run (CJK text, words joined by newlines) is one Metaspace piece, and the Viterbi over it costs
    # Python time per character: past _RUN_CAP chunks without a cut, the rest is dropped unread.
    _run_cap = _RUN_CAP

    def __init__(
        self,
        data: Mapping[str, Any],
        *,
        source: str = "tokenizer.json",
        view: TransformersView | None = None,
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
        self._normalizer = build_normalizer(data.get("normalizer"), source)
        self._metaspace = Metaspace.from_spec(data.get("pre_tokenizer"), source)
        self._model = _Unigram(model, source)
        self._template = Template.from_spec(data.get("post_processor"), source)
        self._added = AddedVocabulary()
        where = f"{source}: added_tokens"
        file_tokens = [
            AddedToken.from_spec(t, f"{where}[{i}]") for i, t in enumerate(require(data, "added_tokens", source, list))
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
        self._pre_lower = LOWER if do_lower_case else None
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
        view = TransformersView.read(root, data, UNIGRAM_CLASSES)
        return cls(data, source=str(root / "tokenizer.json"), view=view, do_lower_case=do_lower_case)

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
        return bool(normalized) and normalized[-1] not in WHITE_SPACE

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
                raw, origins = LOWERCASE.track(raw, origins)
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
