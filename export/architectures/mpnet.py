"""MPNet (``MPNetModel``: all-mpnet-base-v2, multi-qa-mpnet-base-dot-v1 / -cos-v1, paraphrase-mpnet-base-v2).

As XLM-R: inputs are ids and mask only (MPNet has no token type embeddings), and position ids are computed inside
the traced model as transformers computes them, ``cumsum(ids != 1) * (ids != 1) + 1``: ``MPNetEmbeddings`` hard-codes
``padding_idx`` 1 whatever config.json's ``pad_token_id`` says, so the usable length is
``max_position_embeddings - 2`` (514 -> 512, see embedrt.config).

What is MPNet's own: a relative position bias, computed once by ``MPNetEncoder.compute_position_bias`` and added
to the attention scores of every layer. Its bucket for a relative distance comes from a float32 ``log``, and the
bucket boundaries (distances 16, 32 and 64, with 32 buckets) land exactly on integers, so one ulp of difference
in onnxruntime's ``Log`` kernel would move a distance into the neighbouring bucket. The bucket of every distance
the model can see is therefore computed once at export, by transformers' own ``relative_position_bucket`` in torch
float32, into a constant table (:func:`bucket_table`); the graph only indexes it with integers.
"""

from __future__ import annotations

import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embedrt.export.architectures import Architecture

# MPNetEncoder.forward calls compute_position_bias(hidden_states) with its default num_buckets (32), whatever
# config.relative_attention_num_buckets says (that sets only the size of the bias embedding).
_BUCKET_ARG = "num_buckets"
BUCKETS_BUFFER = "relative_bucket_by_distance"


def bucket_table(max_length: int, num_buckets: int) -> Any:
    """The bucket of each relative distance ``d = key - query`` of texts up to ``max_length`` tokens (int64).

    Index ``d + max_length - 1``, for ``d`` in ``[-(max_length - 1), max_length - 1]``; computed by transformers' own
    ``MPNetEncoder.relative_position_bucket`` in torch float32, as the model computes them.
    """
    import torch
    from transformers.models.mpnet.modeling_mpnet import MPNetEncoder

    distance = torch.arange(-(max_length - 1), max_length, dtype=torch.long)
    return MPNetEncoder.relative_position_bucket(distance, num_buckets=num_buckets).to(torch.long)


def _tabled_position_bias(self: Any, x: Any, position_ids: Any = None, num_buckets: int = 32) -> Any:
    """``compute_position_bias`` with the buckets read from the table: integer ops only in the graph.

    The bias is [1, heads, length, length]; the attention scores it is added to broadcast it over the batch, as
    transformers' expanded copy gives the same sums.
    """
    import torch

    if position_ids is not None:
        raise ValueError("position_ids are computed inside the exported graph, not passed in")
    table = getattr(self, BUCKETS_BUFFER)
    length = x.size(1)
    positions = torch.arange(length, dtype=torch.long, device=x.device)
    index = positions[None, :] - positions[:, None] + (table.size(0) + 1) // 2 - 1
    values = self.relative_attention_bias(table[index])  # [length, length, heads]
    return values.permute([2, 0, 1]).unsqueeze(0)


def use_bucket_table(model: Any) -> Any:
    """Make ``model`` (an MPNetModel or a model holding one) read its position buckets from a constant table.

    The table covers every distance up to ``max_position_embeddings`` tokens (a text can hold at most two fewer).
    """
    import inspect

    encoder = model.encoder if hasattr(model, "encoder") else model.mpnet.encoder
    default = inspect.signature(type(encoder).compute_position_bias).parameters[_BUCKET_ARG].default
    table = bucket_table(int(model.config.max_position_embeddings), int(default))
    encoder.register_buffer(BUCKETS_BUFFER, table, persistent=False)
    encoder.compute_position_bias = types.MethodType(_tabled_position_bias, encoder)
    return model


@dataclass(frozen=True)
class MPNetArchitecture(Architecture):
    """MPNet: the loaded model reads its relative position buckets from the export-time table."""

    def load(self, model_dir: Path, classifier: bool, **kwargs: Any) -> Any:
        """The transformers model in ``model_dir``, in eval mode, with the bucket table installed."""
        return use_bucket_table(super().load(model_dir, classifier, **kwargs))


MPNET = MPNetArchitecture(
    model_type="mpnet",
    classes=frozenset(
        {
            "MPNetModel",
            "MPNetForMaskedLM",
            "MPNetForSequenceClassification",
            "MPNetForMultipleChoice",
            "MPNetForTokenClassification",
            "MPNetForQuestionAnswering",
        }
    ),
    inputs=("input_ids", "attention_mask"),
    model_class="MPNetModel",
    # MPNetForSequenceClassification's head (dense -> tanh -> out_proj on <s>) and MPNet's pair template are not
    # exported yet.
    classifier_class=None,
    relative_bias_attention=True,
)
