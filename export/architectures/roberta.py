"""RoBERTa (``RobertaModel``): XLM-RoBERTa's graph under another model_type (see ``xlm_roberta``).

Same embeddings and position-id rule (``cumsum(input_ids != pad) * (input_ids != pad) + pad``, pad = 1, usable
length ``max_position_embeddings - 2``), ``type_vocab_size`` 1, inputs ids and mask only; cross-encoders are
RobertaForSequenceClassification (RobertaClassificationHead on ``<s>``). Most RoBERTa checkpoints (roberta-base,
all-distilroberta-v1) tokenize with byte-level BPE (``embedrt.tokenizers.bpe``), some with a Unigram
tokenizer.json; a directory with only vocab.json + merges.txt gets the fast tokenizer's conversion as
tokenizer.json at export.
"""

from __future__ import annotations

from embedrt.export.architectures import Architecture

ROBERTA = Architecture(
    model_type="roberta",
    classes=frozenset(
        {
            "RobertaModel",
            "RobertaForMaskedLM",
            "RobertaForCausalLM",
            "RobertaForSequenceClassification",
            "RobertaForTokenClassification",
            "RobertaForQuestionAnswering",
            "RobertaForMultipleChoice",
        }
    ),
    inputs=("input_ids", "attention_mask"),
    model_class="RobertaModel",
    classifier_class="RobertaForSequenceClassification",
)
