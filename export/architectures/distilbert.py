"""DistilBERT (``DistilBertModel``: msmarco-distilbert-*-v5, multi-qa-distilbert-*, distiluse-base-multilingual-*).

A 6-layer BERT without token type embeddings and without a pooler: the graph's inputs are ids and mask only.
Positions are absolute, ``0 .. length - 1`` (transformers slices its ``position_ids`` buffer; nothing depends on
the pad id), so the usable length is ``max_position_embeddings``. With ``sinusoidal_pos_embds: true`` the table is
still a weight of the checkpoint (transformers fills it at initialization and saves it), which the traced graph
gathers like a learned one: nothing to reproduce.

config.json uses DistilBERT's own names (``dim``, ``n_heads``, ``n_layers``, ``hidden_dim``); transformers maps
``hidden_size`` and ``num_attention_heads`` to them only on a config object, so the sizes are read by their own
keys here.

The attention is fused by embedrt (``embedrt.export.fusion``), not by onnxruntime's transformer optimizer:
onnxruntime 1.32's DistilBERT pattern (Softmax <- Where <- MatMul <- Div) matches, then asks the mask path's first
node (the Expand) for a negative scalar constant, which a DistilBERT graph never has, and gives up. Its other
fusions (BiasGelu; SkipLayerNormalization and EmbedLayerNormalization for fp16) run as for BERT.

Cross-encoders (DistilBertForSequenceClassification: pre_classifier -> ReLU -> classifier on the first token) are
not exported yet.
"""

from __future__ import annotations

from embedrt.export.architectures import Architecture

DISTILBERT = Architecture(
    model_type="distilbert",
    # transformers' own classes over a DistilBertModel: a checkpoint saved from any of them holds the same encoder.
    classes=frozenset(
        {
            "DistilBertModel",
            "DistilBertForMaskedLM",
            "DistilBertForSequenceClassification",
            "DistilBertForTokenClassification",
            "DistilBertForQuestionAnswering",
            "DistilBertForMultipleChoice",
        }
    ),
    inputs=("input_ids", "attention_mask"),
    model_class="DistilBertModel",
    classifier_class=None,
    heads_key="n_heads",
    hidden_key="dim",
    has_pooler=False,
    embedrt_attention=True,
)
