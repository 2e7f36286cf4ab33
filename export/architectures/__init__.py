"""One module per transformer family the exporter converts, as text-embeddings-inference keeps one file per model.

Each module holds what differs between families: transformers' own classes of the family (the lookalike
allow-list), the graph's input names, the classes traced for an embedding model and a cross-encoder, and what
onnxruntime's transformer optimizer needs. The exporter itself has no per-family branches.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embedrt.config import require


@dataclass(frozen=True)
class Architecture:
    """What the exporter needs to know about one transformer family (one config.json ``model_type``)."""

    model_type: str
    classes: frozenset[str]  # transformers' own classes over this encoder: config.json 'architectures' allow-list
    inputs: tuple[str, ...]  # the graph's input names, in order: exactly what the runtime feeds
    model_class: str  # the transformers class traced for an embedding model (token embeddings out)
    classifier_class: str | None  # the one traced for a cross-encoder (logits out); None: not supported yet
    optimizer_model_type: str = "bert"  # onnxruntime.transformers.optimizer's model_type for its fusions
    # config.json's keys for the attention heads and the hidden width, which the graph optimizer needs: DistilBERT
    # saves its own names (n_heads, dim), which transformers maps to these only once a config object is built.
    heads_key: str = "num_attention_heads"
    hidden_key: str = "hidden_size"
    has_pooler: bool = True  # model_class takes add_pooling_layer (DistilBertModel has no pooler to leave out)
    # Fuse the attention into MultiHeadAttention with embedrt's pass (fusion.py) before onnxruntime's optimizer
    # runs, for a family whose traced attention that optimizer leaves unfused.
    embedrt_attention: bool = False
    # Attention adds a relative position bias that the optimizer's attention fusion does not match (MPNet): fuse it
    # with embedrt.export.relative_bias_attention in the fp16 file for CUDA (the CPU's fp32 file ran faster without).
    relative_bias_attention: bool = False

    def load(self, model_dir: Path, classifier: bool, **kwargs: Any) -> Any:
        """The transformers model in ``model_dir``, in eval mode (the pooler left out of an embedding model)."""
        import transformers

        if not classifier:
            cls = getattr(transformers, self.model_class)
            pooler = {"add_pooling_layer": False} if self.has_pooler else {}
            return cls.from_pretrained(str(model_dir), **pooler, **kwargs).eval()
        if self.classifier_class is None:
            raise ValueError(f"{model_dir}: cross-encoders of model_type {self.model_type!r} are not supported yet")
        return getattr(transformers, self.classifier_class).from_pretrained(str(model_dir), **kwargs).eval()

    def config_overrides(self, model_dir: Path) -> dict[str, Any]:
        """config.json keys that every load of the model in ``model_dir`` must pass (the reference's too); none here.

        A family whose config.json may be written in a spelling the installed transformers does not read
        (ModernBERT's transformers 5.x keys) translates it here, so the traced model and the reference agree.
        """
        return {}

    def sizes(self, hf_config: dict[str, Any], config_path: Path) -> dict[str, int]:
        """The attention heads and hidden width in config.json, as the graph optimizer's arguments."""
        return {
            "num_heads": require(hf_config, self.heads_key, config_path, int),
            "hidden_size": require(hf_config, self.hidden_key, config_path, int),
        }


def families() -> dict[str, Architecture]:
    """Every supported family, by config.json ``model_type``."""
    from embedrt.export.architectures.bert import BERT
    from embedrt.export.architectures.camembert import CAMEMBERT
    from embedrt.export.architectures.distilbert import DISTILBERT
    from embedrt.export.architectures.modernbert import MODERNBERT
    from embedrt.export.architectures.mpnet import MPNET
    from embedrt.export.architectures.roberta import ROBERTA
    from embedrt.export.architectures.xlm_roberta import XLM_ROBERTA

    return {a.model_type: a for a in (BERT, XLM_ROBERTA, ROBERTA, CAMEMBERT, DISTILBERT, MPNET, MODERNBERT)}
