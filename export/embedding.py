"""Exporting a sentence embedding model: its files, the sentence-transformers reference, the parity check."""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from embedrt.config import ModelConfig, ModuleKind, read_json, usable_positions
from embedrt.dense import WEIGHTS_NAME as DENSE_WEIGHTS
from embedrt.export.architectures import Architecture, families
from embedrt.export.architectures.bert import BERT
from embedrt.export.int8 import calibration_texts, text_feeds
from embedrt.export.layout import (
    ROOT_FILES,
    TRANSFORMER_FILES,
    copy_files,
    ensure_tokenizer_json,
    write_dense_weights,
)
from embedrt.export.parity import CHECK_SENTENCES, TOLERANCE, compare
from embedrt.int8_kernel import Int8Check
from embedrt.manifest import CrossEncoderInfo, FileDigest, ModelKind, Variant
from embedrt.session import Device

OUTPUT_NAME = "last_hidden_state"


@dataclass(frozen=True)
class EmbeddingModel:
    """A sentence-transformers embedding model: Transformer -> Pooling [-> Dense ...] [-> Normalize]."""

    source: Path
    config: ModelConfig
    cross_encoder: CrossEncoderInfo | None = None
    output_name: str = OUTPUT_NAME
    graph_head: str = "the transformer"

    @classmethod
    def read(cls, source: Path) -> EmbeddingModel:
        """Read and validate the model's configuration files."""
        return cls(source, ModelConfig.from_dir(source))

    @property
    def kind(self) -> ModelKind:
        """What the manifest records: an embedding model."""
        return ModelKind("embedding")

    @property
    def transformer_dir(self) -> Path:
        """Where the Transformer's config.json, weights and tokenizer are."""
        return self.source / self.config.transformer_dir

    def copy_files(self, out_dir: Path, allow_pickle: bool) -> dict[str, FileDigest]:
        """Copy the pipeline's config and tokenizer files, in the source's layout, and the Dense modules' weights.

        Returns the digests of the weight files written, which the manifest lists.
        """
        out_dir.mkdir(parents=True, exist_ok=True)
        copy_files(self.source, out_dir, ROOT_FILES)
        copy_files(self.transformer_dir, out_dir / self.config.transformer_dir, TRANSFORMER_FILES)
        ensure_tokenizer_json(self.transformer_dir, out_dir / self.config.transformer_dir)
        files = {}
        for entry in self.config.modules.modules:
            if entry.path and entry.kind is not ModuleKind.TRANSFORMER:
                target = out_dir / entry.path
                target.mkdir(parents=True, exist_ok=True)
                for item in (self.source / entry.path).glob("*.json"):
                    shutil.copy2(item, target / item.name)
            if entry.kind is ModuleKind.DENSE:
                name = f"{entry.path}/{DENSE_WEIGHTS}" if entry.path else DENSE_WEIGHTS
                write_dense_weights(self.source / entry.path, out_dir / name, allow_pickle)
                files[name] = FileDigest.of(out_dir / name)
        return files

    def sentence_transformer(self) -> Any:
        """The model as sentence-transformers loads it (CPU), with the family's config overrides (ModernBERT's)."""
        from sentence_transformers import SentenceTransformer

        overrides = self.architecture.config_overrides(self.transformer_dir)
        return SentenceTransformer(str(self.source), device="cpu", config_kwargs=overrides or None)

    def reference(self) -> np.ndarray:
        """sentence-transformers' embeddings of the check sentences (PyTorch, CPU)."""
        model = self.sentence_transformer()
        if model.max_seq_length > self.config.max_seq_length == self._usable_positions():
            # sentence-transformers caps at max_position_embeddings: past the usable positions (XLM-R's last two),
            # PyTorch fails with an index error, and embedrt truncates there instead.
            model.max_seq_length = self.config.max_seq_length
        if model.max_seq_length != self.config.max_seq_length:
            raise ValueError(
                f"{self.source}: sentence-transformers uses max_seq_length {model.max_seq_length}, "
                f"embedrt resolved {self.config.max_seq_length}; please report this model's config files"
            )
        return np.asarray(model.encode(list(CHECK_SENTENCES), convert_to_numpy=True), dtype=np.float32)

    @property
    def architecture(self) -> Architecture:
        """The transformer's family (BERT when config.json names none the exporter knows: refused before this)."""
        hf_config = read_json(self.transformer_dir / "config.json")
        return families().get(str(hf_config.get("model_type")), BERT)

    def _usable_positions(self) -> int | None:
        return usable_positions(read_json(self.transformer_dir / "config.json"))

    def calibration(self, path: Path | None) -> tuple[Sequence[Any], str]:
        """The texts that calibrate int8, and where they came from."""
        return calibration_texts(path)

    def feeds(self, out_dir: Path, texts: Sequence[Any]) -> Iterable[dict[str, np.ndarray]]:
        """Padded batches of the calibration texts, tokenized by the export's own tokenizer."""
        from embedrt.tokenizers import load_tokenizer

        config = self.config
        tokenizer = load_tokenizer(out_dir / config.transformer_dir, do_lower_case=config.transformer.do_lower_case)
        return text_feeds(tokenizer, texts, config.max_seq_length)

    def measure(
        self, out_dir: Path, session: Any, variant: Variant, int8: Int8Check | None, reference: np.ndarray
    ) -> tuple[dict[str, float | int | str], str | None]:
        """Parity figures of a candidate session against the reference, and why it fails (None if it passes)."""
        from embedrt import Encoder

        encoder = Encoder.from_session(out_dir, session, variant, Device.CPU, int8_check=int8)
        figures = compare(reference, encoder.encode(list(CHECK_SENTENCES)))
        problem = None
        if not figures.within(variant):
            min_cos, max_abs = TOLERANCE[variant]
            problem = (
                f"min cosine {figures.min_cosine:.6f} (need >= {min_cos}), max abs difference "
                f"{figures.max_abs_diff:.2e} (need <= {max_abs}) over {figures.n} sentences"
            )
        return {**figures.as_dict(), "sentences": "export check set"}, problem

    @staticmethod
    def summary(figures: dict[str, Any]) -> str:
        """One line of figures for the progress output."""
        return (
            f"min cosine {figures['min_cosine']:.6f}, mean {figures['mean_cosine']:.6f}, "
            f"max abs diff {figures['max_abs_diff']:.2e} vs PyTorch ({figures['n']} sentences)"
        )
