"""XLM-RoBERTa (``XLMRobertaModel``: multilingual-e5, paraphrase-multilingual-mpnet-base-v2, bge-m3 dense).

The graph's inputs are ids and mask only: ``type_vocab_size`` is 1, and transformers adds the one token type
embedding from a buffer of zeros. Position ids are computed inside the traced model, as transformers computes
them: ``cumsum(input_ids != pad) * (input_ids != pad) + pad`` (pad = ``pad_token_id``, 1), so real tokens start at
position ``pad + 1`` and the usable length is ``max_position_embeddings - pad - 1`` (see embedrt.config). Inputs
are therefore padded with the tokenizer's pad id, and the attention mask comes from the lengths.

Cross-encoders are XLMRobertaForSequenceClassification (bge-reranker-base / -large / -v2-m3): transformers'
RobertaClassificationHead (dense -> tanh -> out_proj on ``<s>``, no BERT pooler) is traced with the encoder, and
pairs take the tokenizer's pair template, ``<s> a </s></s> b </s>`` (token types all 0).
"""

from __future__ import annotations

from embedrt.export.architectures import Architecture

XLM_ROBERTA = Architecture(
    model_type="xlm-roberta",
    classes=frozenset(
        {
            "XLMRobertaModel",
            "XLMRobertaForMaskedLM",
            "XLMRobertaForCausalLM",
            "XLMRobertaForSequenceClassification",
            "XLMRobertaForTokenClassification",
            "XLMRobertaForQuestionAnswering",
            "XLMRobertaForMultipleChoice",
        }
    ),
    inputs=("input_ids", "attention_mask"),
    model_class="XLMRobertaModel",
    classifier_class="XLMRobertaForSequenceClassification",
)
