"""BERT (``BertModel``): absolute positions, token type ids as a graph input (all zeros for single texts)."""

from __future__ import annotations

from embedrt.export.architectures import Architecture

BERT = Architecture(
    model_type="bert",
    # transformers' own classes over a BertModel: a checkpoint saved from any of them holds the same encoder.
    classes=frozenset(
        {
            "BertModel",
            "BertForMaskedLM",
            "BertForPreTraining",
            "BertLMHeadModel",
            "BertForNextSentencePrediction",
            "BertForSequenceClassification",
            "BertForTokenClassification",
            "BertForQuestionAnswering",
            "BertForMultipleChoice",
        }
    ),
    inputs=("input_ids", "attention_mask", "token_type_ids"),
    model_class="BertModel",
    classifier_class="BertForSequenceClassification",
)
