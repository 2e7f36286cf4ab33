"""One module per transformer family the exporter converts, as text-embeddings-inference keeps one file per model.

Each module holds what differs between families: transformers' own classes of the family (the lookalike
allow-list), the graph's input names, the classes traced for an embedding model and a cross-encoder, and what
onnxruntime's transformer optimizer needs. The exporter itself has no per-family branches.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Architecture:
    """What the exporter needs to know about one transformer family (one config.json ``model_type``)."""

    model_type: str
    classes: frozenset[str]  # transformers' own classes over this encoder: config.json 'architectures' allow-list
    inputs: tuple[str, ...]  # the graph's input names, in order: exactly what the runtime feeds
    model_class: str  # the transformers class traced for an embedding model (token embeddings out)
    classifier_class: str | None  # the one traced for a cross-encoder (logits out); None: not supported yet
    optimizer_model_type: str = "bert"  # onnxruntime.transformers.optimizer's model_type for its fusions

    def load(self, model_dir: Path, classifier: bool, **kwargs: Any) -> Any:
        """The transformers model in ``model_dir``, in eval mode (the pooler left out of an embedding model)."""
        import transformers

        if not classifier:
            cls = getattr(transformers, self.model_class)
            return cls.from_pretrained(str(model_dir), add_pooling_layer=False, **kwargs).eval()
        if self.classifier_class is None:
            raise ValueError(f"{model_dir}: cross-encoders of model_type {self.model_type!r} are not supported yet")
        return getattr(transformers, self.classifier_class).from_pretrained(str(model_dir), **kwargs).eval()


def families() -> dict[str, Architecture]:
    """Every supported family, by config.json ``model_type``."""
    from embedrt.export.architectures.bert import BERT
    from embedrt.export.architectures.camembert import CAMEMBERT
    from embedrt.export.architectures.roberta import ROBERTA
    from embedrt.export.architectures.xlm_roberta import XLM_ROBERTA

    return {a.model_type: a for a in (BERT, XLM_ROBERTA, ROBERTA, CAMEMBERT)}
