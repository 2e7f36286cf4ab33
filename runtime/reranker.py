"""The cross-encoder entry point: (query, document) pairs in, scores out, as sentence-transformers' CrossEncoder."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from embedrt.attention_memory import warn_for_attention_memory
from embedrt.bf16 import Bf16Check
from embedrt.config import Activation, checked_length, parse_activation, positive_int
from embedrt.dense import activate
from embedrt.int8_kernel import Int8Check
from embedrt.loading import open_variant
from embedrt.manifest import CrossEncoderInfo, Manifest, ModelKind, Variant
from embedrt.progress import Progress
from embedrt.session import Device
from embedrt.token_view import TokenView
from embedrt.tokenizers import BPETokenizer, Tokenizer, TruncationSide, UnigramTokenizer, check_texts, load_tokenizer
from embedrt.tokenizers.pairs import (
    PairText,
    Text,
    check_pairs,
    encode_pairs,
    encode_pairs_truncated,
    layout_of,
    pad_pairs,
)


@dataclass(frozen=True)
class Scored:
    """What ``Reranker.score`` returns: the logits, and what each pair cost, from one tokenization."""

    logits: np.ndarray  # (n, num_labels) float32, in input order
    tokens: list[int]  # tokens each pair ran with: the template's special tokens included, after truncation
    truncated: list[bool]  # whether the pair had more tokens than max_length


class Reranker(TokenView):
    """A cross-encoder exported by ``embedrt export``, run with onnxruntime.

    Like an Encoder, one Reranker may be shared by many threads.
    """

    def __init__(
        self,
        model_dir: Path,
        info: CrossEncoderInfo,
        tokenizer: Tokenizer | UnigramTokenizer | BPETokenizer,
        session: Any,
        variant: Variant,
        device: Device,
        int8_check: Int8Check | None = None,
        bf16_check: Bf16Check | None = None,
    ) -> None:
        self.model_dir = model_dir
        self.cross_encoder = info
        self.tokenizer = tokenizer
        self.variant = variant
        self.device = device
        self.int8_check = int8_check
        self.bf16_check = bf16_check
        self._session = session
        layout_of(tokenizer)  # a pair template the encoder cannot lay out fails here, at load, naming the file
        self._input_names = {i.name for i in session.get_inputs()}
        self._output_name = session.get_outputs()[0].name

    @classmethod
    def load(
        cls,
        model_dir: str | Path,
        variant: str | Variant | None = None,
        device: str | Device = "cpu",
        threads: int | None = None,
        max_length: int | None = None,
    ) -> Reranker:
        """Load a cross-encoder export: ``variant`` fp32, fp16 or int8 (None: fp16 on CUDA, fp32 on the CPU).

        ``max_length``: tokens per pair instead of the model's own (CrossEncoder's ``max_length``), at most what
        the model's positions can place; lower it to bound the time and memory of long pairs.
        """
        root = Path(model_dir)
        if variant is not None and Variant.parse(variant) is Variant.BF16:
            # bf16's load-time gate compares vectors; scores would need their own gate, not built yet.
            raise ValueError(f"variant 'bf16' runs embedding models (embedrt.Encoder); for {root} use fp32 or int8")
        opened = open_variant(root, ModelKind.CROSS_ENCODER, variant, device, threads, _cross_encoder_info)
        info = opened.configs
        if max_length is not None:
            info = replace(info, max_length=checked_length(max_length, root, "max_length"))
        # predict() runs batches of 32 pairs, with no token budget.
        warn_for_attention_memory(root, info.max_length, 32, 32 * info.max_length)
        return cls.from_session(
            root,
            opened.session,
            opened.variant,
            opened.device,
            info=info,
            int8_check=opened.int8_check,
            bf16_check=opened.bf16_check,
        )

    @classmethod
    def from_session(
        cls,
        model_dir: str | Path,
        session: Any,
        variant: str | Variant,
        device: str | Device = "cpu",
        *,
        info: CrossEncoderInfo,
        int8_check: Int8Check | None = None,
        bf16_check: Bf16Check | None = None,
    ) -> Reranker:
        """A Reranker around a session built by the caller (the export's check); ``load`` is the way to run one."""
        root = Path(model_dir)
        tokenizer = load_tokenizer(root)  # WordPiece, Unigram (XLM-R, CamemBERT) or BPE (RoBERTa), by tokenizer.json
        return cls(root, info, tokenizer, session, Variant.parse(variant), Device.parse(device), int8_check, bf16_check)

    @property
    def num_labels(self) -> int:
        """Scores per pair: 1 for a relevance model."""
        return self.cross_encoder.num_labels

    @property
    def max_length(self) -> int:
        """Most tokens per pair, special tokens included; longer pairs are cut longest first."""
        return self.cross_encoder.max_length

    @property
    def pair_special_tokens(self) -> int:
        """Special tokens around each pair: BERT's ``[CLS] a [SEP] b [SEP]`` 3, XLM-R's ``<s> a </s></s> b </s>`` 4."""
        return layout_of(self.tokenizer).specials

    @property
    def activation(self) -> Activation:
        """What ``predict`` applies to the logits by default (the model's configured activation)."""
        return self.cross_encoder.activation

    def info(self) -> dict[str, Any]:
        """What runs: kind, labels, activation, variant, device, providers, the int8 kernel probe or the bf16 engine."""
        return {
            "kind": ModelKind.CROSS_ENCODER.value,
            "num_labels": self.num_labels,
            "activation": self.activation.value,
            "max_length": self.max_length,
            "variant": self.variant.value,
            "device": self.device.value,
            "providers": list(self._session.get_providers()),
            "int8_kernel": self.int8_check.as_dict() if self.int8_check else None,
            "bf16": self.bf16_check.as_dict() if self.bf16_check else None,
        }

    def query(self, text: str, truncation: str | TruncationSide = "right") -> PairText:
        """A query checked and tokenized once (as far as truncation can need), for many pairs.

        Pass it in the pairs of ``score`` with the same ``truncation``.
        """
        return PairText(self.tokenizer, text, self.max_length, truncation)

    @property
    def _token_limit(self) -> int:
        return self.max_length

    def tokenize(self, pairs: Sequence[Sequence[str]]) -> dict[str, np.ndarray]:
        """input_ids, attention_mask and token_type_ids of the pairs (int64), padded, cut to ``max_length``."""
        rows, starts = encode_pairs(self.tokenizer, check_pairs(pairs), self.max_length)
        return pad_pairs(self.tokenizer.pad_id, rows, starts)

    def logits(
        self, pairs: Sequence[Sequence[str]], batch_size: int = 32, show_progress_bar: bool = False
    ) -> np.ndarray:
        """The raw scores, (n, num_labels) float32, in input order."""
        return self.score(pairs, batch_size, show_progress_bar).logits

    def score(
        self,
        pairs: Sequence[Sequence[Text]],
        batch_size: int = 32,
        show_progress_bar: bool = False,
        truncation: str | TruncationSide = "right",
    ) -> Scored:
        """Logits plus each pair's token count and truncation, from one tokenization: what a server needs.

        A text may be a :class:`~embedrt.tokenizers.pairs.PairText` from ``query`` (made with the same ``truncation``);
        ``truncation`` ``left`` keeps the end of each text that longest_first truncation cuts.
        """
        checked = check_pairs(pairs)
        positive_int("batch_size", batch_size)
        rows, starts, truncated = encode_pairs_truncated(self.tokenizer, checked, self.max_length, truncation)
        out = np.empty((len(rows), self.num_labels), dtype=np.float32)
        order = np.argsort([-len(r) for r in rows], kind="stable")  # similar lengths together: less padding
        bar = Progress("rerank", len(rows), enabled=show_progress_bar)
        for start in range(0, len(rows), batch_size):
            index = order[start : start + batch_size]
            feeds = pad_pairs(self.tokenizer.pad_id, [rows[i] for i in index], [starts[i] for i in index])
            feeds = {k: v for k, v in feeds.items() if k in self._input_names}
            (out[index],) = self._session.run([self._output_name], feeds)
            bar.update(len(index))
        return Scored(out, [len(r) for r in rows], truncated)

    def predict(
        self,
        pairs: Sequence[Sequence[str]] | Sequence[str],
        batch_size: int = 32,
        show_progress_bar: bool = False,
        activation: str | Activation | None = None,
        apply_softmax: bool = False,
    ) -> np.ndarray | np.float32:
        """Score pairs as ``CrossEncoder.predict`` does.

        Args:
            pairs: a list of (text, text) pairs, or one pair (then the result is one score, or one row).
            batch_size: most pairs per onnxruntime call.
            show_progress_bar: print progress on stderr.
            activation: a ``torch.nn`` activation name (Identity for the raw logits, Sigmoid, Tanh, ...);
                None applies the model's own (its configured one; else Sigmoid for one label, Identity for more).
            apply_softmax: with more than one label, a softmax over each row after the activation.

        Returns:
            (n,) float32 for a one-label model, else (n, num_labels).

        """
        single = len(pairs) > 0 and isinstance(pairs[0], str)
        batch = [pairs] if single else pairs
        chosen = self.activation if activation is None else _parse_activation(activation)
        scores = self.logits(batch, batch_size, show_progress_bar)  # type: ignore[arg-type]
        scores = activate(scores, chosen)
        if apply_softmax and self.num_labels > 1:
            shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
            scores = (shifted / shifted.sum(axis=1, keepdims=True)).astype(np.float32)
        if self.num_labels == 1:
            scores = scores[:, 0]
        return scores[0] if single else scores

    def rank(
        self,
        query: str,
        documents: Sequence[str],
        top_k: int | None = None,
        return_documents: bool = False,
        batch_size: int = 32,
        activation: str | Activation | None = None,
    ) -> list[dict[str, Any]]:
        """Documents by score, highest first, as ``CrossEncoder.rank``: ``{"corpus_id", "score"[, "text"]}``.

        Ties keep the documents' order. Only for one-label models, as in sentence-transformers.
        """
        if self.num_labels != 1:
            raise ValueError(f"rank() needs a model with one label; this one has {self.num_labels}: use predict()")
        check_texts([query])
        check_texts(documents)
        if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 0):
            raise ValueError(f"top_k must be None or an integer >= 0, got {top_k!r}")
        scores = np.asarray(self.predict([(query, d) for d in documents], batch_size, activation=activation))
        order = np.argsort(-np.asarray(scores), kind="stable")[:top_k]
        results = []
        for i in order:
            item: dict[str, Any] = {"corpus_id": int(i), "score": float(scores[i])}
            if return_documents:
                item["text"] = documents[i]
            results.append(item)
        return results


def _cross_encoder_info(manifest: Manifest) -> CrossEncoderInfo:
    assert manifest.cross_encoder is not None  # read_manifest checked the kind, and from_dict the pair
    return manifest.cross_encoder


def _parse_activation(value: str | Activation) -> Activation:
    """An Activation from its name (``Sigmoid``) or its torch.nn class path."""
    if isinstance(value, str) and value.startswith("torch."):
        return parse_activation(value, "activation")
    try:
        return Activation(value)
    except ValueError:
        options = ", ".join(a.value for a in Activation)
        raise ValueError(f"unknown activation {value!r}; expected one of {options}") from None
