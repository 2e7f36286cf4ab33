"""XLM-RoBERTa (``XLMRobertaModel``: multilingual-e5, paraphrase-multilingual-mpnet-base-v2, bge-m3 dense).

The graph's inputs are ids and mask only: ``type_vocab_size`` is 1, and transformers adds the one token type
embedding from a buffer of zeros. Position ids are computed inside the traced model, as transformers computes
them: ``cumsum(input_ids != pad) * (input_ids != pad) + pad`` (pad = ``pad_token_id``, 1), so real tokens start at
position ``pad + 1`` and the usable length is ``max_position_embeddings - pad - 1`` (see embedrt.config). Inputs
are therefore padded with the tokenizer's pad id, and the attention mask comes from the lengths.

Cross-encoders (XLMRobertaForSequenceClassification, bge-reranker-*) are not exported yet: their classification
head differs from BERT's (dense -> tanh -> out_proj on ``<s>``, no pooler) and the runtime's XLM-R pair
template is still to come.
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
    classifier_class=None,
)
