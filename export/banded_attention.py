"""Banded attention for ModernBERT's local layers: only the scores inside the sliding window are computed.

ModernBERT's local layers attend to the keys with ``|i - j| <= local_attention // 2``. With eager (or SDPA)
attention, transformers builds a full L x L sliding-window mask and computes all L x L scores for these layers,
so at 2,048 tokens a local layer costs as much as a global one. Here the queries are cut into chunks of
``c = local_attention // 2`` positions: chunk k needs only the keys of chunks k - 1, k and k + 1 (3c keys), so a
layer computes L x 3c scores instead of L x L, with the same band, padding mask, scaling and softmax dtype as
transformers' eager attention.

A query whose window holds no valid key (a padding position far from the text) gets, in transformers, the
softmax of a row where every one of the L scores is ``finfo.min``: uniform weights over the whole sequence, the
mean of V. That row is reproduced here (the mean of V over all L positions), so padded rows match too.

:func:`patch_local_attention` makes a loaded ModernBERT model use this for its local layers; the global layers
keep transformers' path. Traceable by ``torch.onnx.export(dynamo=False)`` with dynamic batch and sequence axes.
"""

from __future__ import annotations

import types
from typing import Any, NamedTuple

import torch
from torch import nn

__all__ = ["BandMask", "band_mask", "banded_attention", "patch_local_attention"]

# Set on a patched ModernBertModel, so that patching twice is a no-op.
_PATCHED = "_embedrt_banded_local_attention"


class BandMask(NamedTuple):
    """The additive mask of the band, built once per forward pass and shared by the local layers."""

    additive: torch.Tensor  # [batch, 1, chunks, c, 3c]: 0 where query a of chunk k may see key slot b, else min
    has_key: torch.Tensor  # [batch, 1, length, 1]: whether a query has any key to see in its band
    window: int  # keys up to this far from the query are seen (local_attention // 2); also the chunk size c


def band_mask(key_mask: torch.Tensor, window: int, dtype: torch.dtype) -> BandMask:
    """The band's mask: query i sees key j where ``|i - j| <= window`` and ``key_mask[j] == 1``.

    ``key_mask`` is [batch, length], 1 (or True) for the keys to attend to, as transformers' 2D attention mask.
    Queries are cut into chunks of c = ``window`` positions; the window of chunk k is the keys of chunks k - 1,
    k and k + 1 (3c slots), positions before 0 and past the end never seen.
    """
    if window < 1:
        raise ValueError(f"window must be at least 1 position, got {window}")
    c = window
    batch, length = key_mask.shape
    chunks = (length + c - 1) // c  # traced from the shape under torch.onnx.export: no length is baked in
    # Padding by constants and slicing to the multiple of c keeps the pad amounts out of the graph.
    valid = nn.functional.pad((key_mask == 1).to(torch.uint8), (c, 2 * c - 1))[:, : (chunks + 2) * c]
    valid = valid.reshape(batch, chunks + 2, c)
    valid = torch.cat((valid[:, :-2], valid[:, 1:-1], valid[:, 2:]), dim=2)  # [batch, chunks, 3c]
    # Query a of a chunk sits at key slot a + c of its window: the band is |b - (a + c)| <= window, the same for
    # every chunk, so it is a constant [c, 3c] table.
    rows = torch.arange(c).unsqueeze(1) + c
    cols = torch.arange(3 * c).unsqueeze(0)
    band = (cols - rows).abs() <= window
    allowed = band.unsqueeze(0).unsqueeze(0) & valid.unsqueeze(2).bool()  # [batch, chunks, c, 3c]
    additive = torch.zeros((), dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min).unsqueeze(1)
    has_key = allowed.any(dim=-1).reshape(batch, 1, chunks * c, 1)[:, :, :length]
    return BandMask(additive, has_key, window)


def banded_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: BandMask, scale: float
) -> torch.Tensor:
    """Attention of each position to the keys ``mask`` lets it see (see :func:`band_mask`), in the band only.

    ``query``, ``key``, ``value``: [batch, heads, length, head_dim]; returns the same shape. Scores are
    ``(query @ key^T) * scale`` plus the additive mask (0 or ``finfo.min``), softmaxed in float32 and cast back,
    as transformers' eager attention computes them. A query that sees no key gets what transformers' row of L
    ``finfo.min`` scores gives: uniform weights over all L positions, the mean of V.
    """
    c = mask.window
    batch, heads, length, head_dim = query.shape
    chunks = (length + c - 1) // c
    padded = chunks * c

    def chunk_queries(x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.pad(x, (0, 0, 0, c - 1))[:, :, :padded]
        return x.reshape(batch, heads, chunks, c, head_dim)

    def key_windows(x: torch.Tensor) -> torch.Tensor:
        # One chunk of padding before the first key, enough after the last: chunk k's window is chunks k..k+2.
        x = nn.functional.pad(x, (0, 0, c, 2 * c - 1))[:, :, : padded + 2 * c]
        x = x.reshape(batch, heads, chunks + 2, c, head_dim)
        return torch.cat((x[:, :, :-2], x[:, :, 1:-1], x[:, :, 2:]), dim=3)  # [batch, heads, chunks, 3c, dim]

    scores = torch.matmul(chunk_queries(query), key_windows(key).transpose(-1, -2)) * scale
    weights = nn.functional.softmax(scores + mask.additive, dim=-1, dtype=torch.float32).to(query.dtype)
    out = torch.matmul(weights, key_windows(value)).reshape(batch, heads, padded, head_dim)[:, :, :length]
    # The mean of V as a MatMul by 1/L weights: onnxruntime's ReduceMean over a middle axis is slower.
    uniform = torch.ones_like(mask.has_key[:1], dtype=value.dtype).transpose(-1, -2) / length  # [1, 1, 1, L]
    return torch.where(mask.has_key, out, torch.matmul(uniform, value))


def _banded_forward(
    self: Any, hidden_states: torch.Tensor, output_attentions: bool | None = False, **kwargs: Any
) -> tuple[torch.Tensor, ...]:
    """ModernBertAttention.forward for a local layer, with the banded attention in place of the L x L one.

    ``kwargs["sliding_window_mask"]`` is a :class:`BandMask` here (patch_local_attention makes the model pass
    it), not transformers' L x L sliding-window mask.
    """
    from transformers.models.modernbert.modeling_modernbert import apply_rotary_pos_emb

    if self.training and self.attention_dropout > 0:
        raise ValueError("banded local attention is for inference: it applies no attention dropout (call .eval())")
    if output_attentions:
        raise ValueError(
            "banded local attention has no L x L attention weights to output: pass output_attentions=False"
        )
    bs = hidden_states.shape[0]
    qkv = self.Wqkv(hidden_states).view(bs, -1, 3, self.num_heads, self.head_dim)
    cos, sin = self.rotary_emb(qkv, position_ids=kwargs.get("position_ids"))
    query, key, value = qkv.transpose(3, 1).unbind(dim=2)  # [batch, heads, length, head_dim], as eager does
    query, key = apply_rotary_pos_emb(query, key, cos, sin)
    out = banded_attention(query, key, value, kwargs["sliding_window_mask"], self.head_dim**-0.5)
    out = out.transpose(1, 2).contiguous().view(bs, -1, self.all_head_size)
    return (self.out_drop(self.Wo(out)),)


def _update_attention_mask(
    self: Any, attention_mask: torch.Tensor, output_attentions: bool
) -> tuple[torch.Tensor, BandMask]:
    """ModernBertModel._update_attention_mask without the L x L sliding-window mask.

    The global layers get transformers' 4D mask as before; the local layers get a :class:`BandMask` (built once
    here for all of them) in the ``sliding_window_mask`` slot.
    """
    from transformers.modeling_attn_mask_utils import _prepare_4d_attention_mask

    band = band_mask(attention_mask, self.config.local_attention // 2, self.dtype)
    return _prepare_4d_attention_mask(attention_mask, self.dtype), band


def patch_local_attention(model: nn.Module) -> int:
    """Make a loaded ModernBERT model compute its local layers' attention in the band only; return how many.

    ``model`` is a ``ModernBertModel`` or a model holding one as ``.model`` (``ModernBertForSequenceClassification``
    and the other heads), loaded with ``attn_implementation="eager"`` or ``"sdpa"``. It is patched in place: each
    local layer's attention forward becomes the banded one, and the model stops building the L x L
    sliding-window mask (its local layers were its only reader). The global layers are not touched. Patching an
    already patched model changes nothing. For inference: attention dropout is not applied, and
    ``output_attentions`` is refused.
    """
    from transformers.models.modernbert.modeling_modernbert import ModernBertModel

    base = model if isinstance(model, ModernBertModel) else getattr(model, "model", None)
    if not isinstance(base, ModernBertModel):
        raise TypeError(f"expected a ModernBertModel or a model with one as .model, got {type(model).__name__}")
    implementation = base.config._attn_implementation
    if implementation not in ("eager", "sdpa"):
        raise ValueError(
            f"banded local attention replaces the eager/sdpa path, not {implementation!r}: "
            'load the model with attn_implementation="eager"'
        )
    local = [layer.attn for layer in base.layers if layer.attn.local_attention != (-1, -1)]
    if getattr(base, _PATCHED, False):
        return len(local)
    for attn in local:
        attn.forward = types.MethodType(_banded_forward, attn)
    base._update_attention_mask = types.MethodType(_update_attention_mask, base)
    setattr(base, _PATCHED, True)
    return len(local)
