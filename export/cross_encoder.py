"""Exporting a cross-encoder (a Bert, XLM-R, RoBERTa, CamemBERT or ModernBert ForSequenceClassification reranker).

Finding one in either layout, the CrossEncoder reference, calibration on text pairs, the score parity check.

Two layouts hold a cross-encoder:
- sentence-transformers >= 5: modules.json with one Transformer whose sentence_bert_config.json says
  ``"transformer_task": "sequence-classification"``; the activation is config_sentence_transformers.json's
  ``activation_fn``;
- the plain Hugging Face layout of the hub's cross-encoder/ms-marco-* and BAAI/bge-reranker-* models: no
  modules.json, config.json's architecture ``*ForSequenceClassification``, the activation in
  ``sbert_ce_default_activation_function`` (or, as sentence-transformers 4 saved it,
  ``sentence_transformers.activation_fn``); bge-reranker's config names none, so one label gets Sigmoid.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from embedrt.config import (
    Activation,
    TransformerConfig,
    parse_activation,
    read_json,
    transformer_config_path,
    usable_positions,
)
from embedrt.export.architectures import families
from embedrt.export.int8 import CALIBRATION_SIZE, DEFAULT_CALIBRATION
from embedrt.export.layout import TRANSFORMER_FILES, copy_files
from embedrt.export.onnx_files import LOGITS
from embedrt.export.parity import CHECK_SENTENCES, StsPairs, compare_scores
from embedrt.int8_kernel import Int8Check
from embedrt.manifest import CrossEncoderInfo, FileDigest, ModelKind, Variant
from embedrt.session import Device

# Query/document pairs from the check sentences: short and long, empty, and pairs past the length limit.
CHECK_PAIRS: tuple[tuple[str, str], ...] = (
    *zip(CHECK_SENTENCES, CHECK_SENTENCES[5:] + CHECK_SENTENCES[:5], strict=True),
    (CHECK_SENTENCES[17], CHECK_SENTENCES[18]),
    (CHECK_SENTENCES[19], CHECK_SENTENCES[19] * 3),
    (CHECK_SENTENCES[19] * 4, "short document"),
)
# Max abs difference of the logits from CrossEncoder's, per variant; int8's is measured in benchmarks/rerank.py.
SCORE_TOLERANCE = {Variant.FP32: 1e-4, Variant.FP16: 2e-2, Variant.INT8: 0.25}
_SEQUENCE_CLASSIFICATION = "sequence-classification"


@dataclass(frozen=True)
class CrossEncoderModel:
    """A cross-encoder in ``source``; ``transformer_dir`` holds its config.json, weights and tokenizer."""

    source: Path
    transformer_dir: Path
    cross_encoder: CrossEncoderInfo
    output_name: str = LOGITS
    graph_head: str = "the BertForSequenceClassification (pooler and classifier included)"  # see _model

    @property
    def kind(self) -> ModelKind:
        """What the manifest records: a cross-encoder."""
        return ModelKind("cross-encoder")

    def copy_files(self, out_dir: Path, allow_pickle: bool) -> dict[str, FileDigest]:
        """Copy the tokenizer and config files into the export's root; a cross-encoder has no other weights."""
        copy_files(self.transformer_dir, out_dir, TRANSFORMER_FILES)
        return {}

    def reference(self) -> np.ndarray:
        """CrossEncoder's logits (n, num_labels) on the check pairs, after checking it reads the model as we do."""
        import torch
        from sentence_transformers import CrossEncoder

        hf_config = read_json(self.transformer_dir / "config.json")
        family = families().get(str(hf_config.get("model_type")))
        overrides = family.config_overrides(self.transformer_dir) if family is not None else {}
        model = CrossEncoder(str(self.source), device="cpu", config_kwargs=overrides or None)
        info = self.cross_encoder
        if model.max_length > info.max_length == usable_positions(read_json(self.transformer_dir / "config.json")):
            # As for embedding models: without a configured limit CrossEncoder caps at max_position_embeddings,
            # where XLM-R's last two positions fail in PyTorch; embedrt truncates at the usable positions.
            model.max_length = info.max_length
        found = (model.num_labels, type(model.activation_fn).__name__, model.max_length)
        if found != (info.num_labels, info.activation.value, info.max_length):
            raise ValueError(
                f"{self.source}: sentence-transformers reads num_labels, activation, max_length {found}, embedrt "
                f"{(info.num_labels, info.activation.value, info.max_length)}; please report this model's files"
            )
        logits = model.predict(list(CHECK_PAIRS), activation_fn=torch.nn.Identity(), convert_to_numpy=True)
        return np.asarray(logits, dtype=np.float32).reshape(len(CHECK_PAIRS), info.num_labels)

    def calibration(self, path: Path | None) -> tuple[Sequence[Any], str]:
        """The text pairs that calibrate int8, and where they came from."""
        return calibration_pairs(path)

    def feeds(self, out_dir: Path, pairs: Sequence[Any]) -> Iterator[dict[str, np.ndarray]]:
        """Padded batches of the calibration pairs, tokenized as the Reranker does."""
        from embedrt.tokenizers import load_tokenizer
        from embedrt.tokenizers.pairs import encode_pairs, pad_pairs

        tokenizer = load_tokenizer(out_dir)
        for start in range(0, len(pairs), 32):
            rows, starts = encode_pairs(tokenizer, pairs[start : start + 32], self.cross_encoder.max_length)
            yield pad_pairs(tokenizer.pad_id, rows, starts)

    def measure(
        self, out_dir: Path, session: Any, variant: Variant, int8: Int8Check | None, reference: np.ndarray
    ) -> tuple[dict[str, float | int | str], str | None]:
        """Score figures of a candidate session against CrossEncoder's logits, and why it fails (None: passes)."""
        from embedrt.reranker import Reranker

        reranker = Reranker.from_session(
            out_dir, session, variant, Device.CPU, info=self.cross_encoder, int8_check=int8
        )
        figures = compare_scores(reference, reranker.logits(list(CHECK_PAIRS)))
        limit = SCORE_TOLERANCE[variant]
        problem = None
        if figures.max_abs_diff > limit:
            problem = f"max abs logit difference {figures.max_abs_diff:.2e} (need <= {limit}) over {figures.n} pairs"
        return {**figures.as_dict(), "pairs": "export check pairs"}, problem

    @staticmethod
    def summary(figures: dict[str, Any]) -> str:
        """One line of figures for the progress output."""
        return (
            f"max abs logit diff {figures['max_abs_diff']:.2e}, Spearman {figures['spearman']:.4f} "
            f"vs CrossEncoder ({figures['n']} pairs)"
        )


def read_cross_encoder(source: Path) -> CrossEncoderModel | None:
    """The cross-encoder in ``source``, or None when it holds something else (an embedding model)."""
    modules_path = source / "modules.json"
    if modules_path.is_file():
        modules = read_json(modules_path, list)
        if len(modules) != 1 or not str(modules[0].get("type", "")).endswith("Transformer"):
            return None
        transformer_dir = source / str(modules[0].get("path", ""))
        st_path = source / "config_sentence_transformers.json"
        st = read_json(st_path) if st_path.is_file() else {}
        sbert_path = transformer_config_path(transformer_dir)
        task = (read_json(sbert_path) if sbert_path else {}).get("transformer_task")
        if task != _SEQUENCE_CLASSIFICATION and st.get("model_type") != "CrossEncoder":
            return None
        return _model(source, transformer_dir, st.get("activation_fn"), st_path)
    config_path = source / "config.json"
    if not config_path.is_file():
        return None
    config = read_json(config_path)
    if not any(str(a).endswith("ForSequenceClassification") for a in config.get("architectures") or []):
        return None
    legacy = (config.get("sentence_transformers") or {}).get("activation_fn")
    return _model(source, source, legacy or config.get("sbert_ce_default_activation_function"), config_path)


def _model(source: Path, transformer_dir: Path, activation: object, activation_file: Path) -> CrossEncoderModel:
    config = read_json(transformer_dir / "config.json")
    labels = config.get("id2label")
    num_labels = len(labels) if isinstance(labels, dict) and labels else int(config.get("num_labels", 2))
    # CrossEncoder's rule: the configured activation, else Sigmoid for one label and Identity for more.
    default = Activation.SIGMOID if num_labels == 1 else Activation.IDENTITY
    info = CrossEncoderInfo(
        num_labels=num_labels,
        activation=parse_activation(activation, activation_file, default),
        max_length=TransformerConfig.from_dir(transformer_dir).max_seq_length,
    )
    family = families().get(str(config.get("model_type")))
    if family is None or family.classifier_class is None:  # refused later, naming the file, by check_transformer
        return CrossEncoderModel(source, transformer_dir, info)
    head = f"the {family.classifier_class} (its classification head included)"
    return CrossEncoderModel(source, transformer_dir, info, graph_head=head)


def calibration_pairs(path: Path | None) -> tuple[list[tuple[str, str]], str]:
    """Text pairs that calibrate int8: an STS csv's sentence pairs, or consecutive lines of a text file.

    None takes ../shared's sts-train.csv when present, else the check pairs; at most ``CALIBRATION_SIZE``.
    """
    if path is None:
        if not DEFAULT_CALIBRATION.is_file():
            return list(CHECK_PAIRS), "the export check pairs"
        path = DEFAULT_CALIBRATION
    if not path.is_file():
        raise FileNotFoundError(f"calibration file {path} not found (an STS csv or one text per line)")
    if path.suffix == ".csv":
        sts = StsPairs.from_file(path)
        pairs = list(zip(sts.first, sts.second, strict=True))
    else:
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        pairs = list(zip(lines[::2], lines[1::2], strict=False))
    if not pairs:
        raise ValueError(f"calibration file {path} holds no text pairs")
    return pairs[:CALIBRATION_SIZE], path.name
