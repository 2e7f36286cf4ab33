"""CamemBERT (``CamembertModel``): XLM-RoBERTa's graph under another model_type (see ``xlm_roberta``).

Same embeddings and position-id rule (``cumsum(input_ids != pad) * (input_ids != pad) + pad``, pad = 1, usable
length ``max_position_embeddings - 2``), ``type_vocab_size`` 1, inputs ids and mask only; cross-encoders are
CamembertForSequenceClassification. Its tokenizer is SentencePiece Unigram with ``<s> A </s>`` templates, which
the Unigram tokenizer reads as it reads XLM-R's.
"""

from __future__ import annotations

from embedrt.export.architectures import Architecture

CAMEMBERT = Architecture(
    model_type="camembert",
    classes=frozenset(
        {
            "CamembertModel",
            "CamembertForMaskedLM",
            "CamembertForCausalLM",
            "CamembertForSequenceClassification",
            "CamembertForTokenClassification",
            "CamembertForQuestionAnswering",
            "CamembertForMultipleChoice",
        }
    ),
    inputs=("input_ids", "attention_mask"),
    model_class="CamembertModel",
    classifier_class="CamembertForSequenceClassification",
)
