"""Banded attention for ModernBERT's local layers: only the scores inside the sliding window are computed.

ModernBERT's local layers attend to the keys with ``|i - j| <= local_attention // 2``. With eager (or SDPA)
attention, transformers builds a full L x L sliding-window mask and computes all L x L scores for these layers,
so at 2,048 tokens a local layer costs as much as a global one. Here the queries are cut into chunks of at most
``local_attention // 2`` positions, and each chunk reads only the keys its band can reach (at most 3 chunks'
worth, and never more than the sequence): a layer computes L x min(L, about 3/2 local_attention) scores instead
of L x L, with the same band, padding mask, scaling and softmax dtype as transformers' eager attention.

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
    """Where each chunk of queries reads its keys, and the additive mask there (see :func:`band_mask`).

    Built once per forward pass and shared by the local layers: ``n`` chunks of ``c`` queries, ``K`` key slots.
    """

    additive: torch.Tensor  # [batch, 1, n, c, K]: 0 where query a of chunk k may see key slot b, else finfo.min
    has_key: torch.Tensor  # [batch, 1, length, 1]: whether a query has any key to see in its band
    queries: torch.Tensor  # [n * c]: the position of each query slot (the last position past the end)
    keys: torch.Tensor  # [n * K]: the position of each key slot (the last position past the end)


def _minimum(a: Any, b: Any) -> Any:  # a 0-d tensor, used as a size (torch's stubs want ints there)
    # Python's min() on sizes traced as tensors would bake the trace's lengths into the graph.
    return torch.minimum(torch.as_tensor(a), torch.as_tensor(b))


def band_mask(key_mask: torch.Tensor, window: int, dtype: torch.dtype) -> BandMask:
    """The band's mask: query i sees key j where ``|i - j| <= window`` and ``key_mask[j] == 1``.

    ``key_mask`` is [batch, length], 1 (or True) for the keys to attend to, as transformers' 2D attention mask.
    The L queries are cut into n = ceil(L / window) chunks of c = ceil(L / n) <= window positions (the last one
    padded). Chunk k needs the keys from k*c - window to k*c + c - 1 + window: it reads K = min(c + 2 window,
    n c) key slots, from a start clamped into the sequence. So L x min(L, c + 2 window) scores are computed,
    never more than the L x L of full attention (up to the padding of the last chunk) and, at 2,048 tokens and
    a window of 64, 192 per query instead of 2,048.
    """
    if window < 1:
        raise ValueError(f"window must be at least 1 position, got {window}")
    batch, length = key_mask.shape
    n = (length + window - 1) // window  # sizes are traced from the shape under torch.onnx.export
    c = (length + n - 1) // n
    slots = _minimum(c + 2 * window, n * c)
    last = torch.as_tensor(length) - 1
    chunk = torch.arange(n)
    start = torch.minimum((chunk * c - window).clamp(min=0), n * c - slots)
    key_pos = start.unsqueeze(1) + torch.arange(slots).unsqueeze(0)  # [n, K]
    query_pos = (chunk * c).unsqueeze(1) + torch.arange(c).unsqueeze(0)  # [n, c]
    keys = torch.minimum(key_pos, last).reshape(-1)
    valid = (key_mask == 1).index_select(1, keys).reshape(batch, n, 1, slots) & (key_pos <= last).unsqueeze(1)
    band = (query_pos.unsqueeze(2) - key_pos.unsqueeze(1)).abs() <= window  # [n, c, K]
    allowed = valid & band  # [batch, n, c, K]
    additive = torch.zeros((), dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min).unsqueeze(1)
    has_key = allowed.any(dim=-1).reshape(batch, 1, -1, 1)[:, :, :length]
    return BandMask(additive, has_key, torch.minimum(query_pos, last).reshape(-1), keys)


def banded_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: BandMask, scale: float
) -> torch.Tensor:
    """Attention of each position to the keys ``mask`` lets it see (see :func:`band_mask`), in the band only.

    ``query``, ``key``, ``value``: [batch, heads, length, head_dim]; returns the same shape. Scores are
    ``(query @ key^T) * scale`` plus the additive mask (0 or ``finfo.min``), softmaxed in float32 and cast back,
    as transformers' eager attention computes them. A query that sees no key gets what transformers' row of L
    ``finfo.min`` scores gives: uniform weights over all L positions, the mean of V.
    """
    batch, heads, length, head_dim = query.shape
    _, _, n, c, slots = mask.additive.shape
    chunked = query.index_select(2, mask.queries).reshape(batch, heads, n, c, head_dim)
    keys = key.index_select(2, mask.keys).reshape(batch, heads, n, slots, head_dim)
    values = value.index_select(2, mask.keys).reshape(batch, heads, n, slots, head_dim)
    scores = torch.matmul(chunked, keys.transpose(-1, -2)) * scale + mask.additive
    weights = nn.functional.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    out = torch.matmul(weights, values).reshape(batch, heads, n * c, head_dim)[:, :, :length]
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
    layers: Any = base.layers
    local = [layer.attn for layer in layers if layer.attn.local_attention != (-1, -1)]
    if getattr(base, _PATCHED, False):
        return len(local)
    for attn in local:
        attn.forward = types.MethodType(_banded_forward, attn)
    base._update_attention_mask = types.MethodType(_update_attention_mask, base)  # type: ignore[method-assign]
    setattr(base, _PATCHED, True)
    return len(local)
