"""Fuse attention that adds a relative position bias (MPNet) into onnxruntime's contrib ``Attention`` op.

onnxruntime's transformer optimizer fuses BERT's attention, ``Softmax(Add(Div(MatMul(q, k)), mask))``, but not
MPNet's, which adds the shared relative position bias before the mask: ``Softmax(Add(Add(Div(MatMul(q, k)), bias),
mask))``. Its matcher stops at the extra Add, and every layer stays a dozen separate nodes. The contrib ``Attention``
op takes such a bias as its ``attention_bias`` input ([1, heads, length, length], broadcast over the batch), so this
pass matches the MPNet pattern in a graph the optimizer has already processed and builds that node with the
optimizer's own ``FusionAttention.create_attention_node`` (packed Q/K/V weights, its mask processing).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["fuse_relative_bias_attention"]

# Parent paths (op types, input indices) from the QK' MatMul or the context MatMul back to a projection MatMul.
_PROJECTION = (["Transpose", "Reshape", "Add", "MatMul"], [None, 0, 0, None])
_K_TWICE_TRANSPOSED = (["Transpose", "Transpose", "Reshape", "Add", "MatMul"], [1, 0, 0, 0, None])
# From the mask Add back to the graph's attention mask: (1 - mask) * lowest, as transformers writes it.
_MASK_PATHS = (
    (["Mul", "Sub", "Cast", "Unsqueeze", "Unsqueeze"], [0, 1, 0, 0]),
    (["Mul", "Sub", "Unsqueeze", "Unsqueeze"], [0, 1, 0]),
)


@dataclass(frozen=True)
class _Match:
    """One layer's attention nodes: the Q/K/V projections (Transpose, Reshape, Add, MatMul) and the rest."""

    q: list[Any]
    k: list[Any]
    v: list[Any]
    bias: str  # the relative position bias, [1, heads, length, length]
    mask_input: str  # the 2D attention mask the mask term comes from
    output: str  # the context, [batch, length, hidden]: what the Attention node writes
    nodes: list[Any]  # what the Attention node replaces (the projection MatMuls are pruned once unused)


def fuse_relative_bias_attention(model: Any, num_heads: int, hidden_size: int, options: Any) -> int:
    """Fuse every MPNet-style attention of ``model`` (an onnxruntime ``OnnxModel``); return how many were fused.

    ``options`` are the optimizer's ``FusionOptions`` (their attention mask format is used, as the optimizer's own
    attention fusion uses it). Nothing is changed where the pattern is not found exactly.
    """
    from onnxruntime.transformers.fusion_attention import AttentionMask, FusionAttention

    mask = AttentionMask(model)
    mask.set_mask_format(options.attention_mask_format)
    fusion = FusionAttention(model, hidden_size, num_heads, mask)
    fused = 0
    for softmax in [n for n in model.model.graph.node if n.op_type == "Softmax"]:
        match = _match(model, softmax)
        if match is None:
            continue
        node = fusion.create_attention_node(
            mask_index=mask.process_mask(match.mask_input),
            q_matmul=match.q[-1],
            k_matmul=match.k[-1],
            v_matmul=match.v[-1],
            q_add=match.q[-2],
            k_add=match.k[-2],
            v_add=match.v[-2],
            num_heads=num_heads,
            hidden_size=hidden_size,
            first_input=match.q[-1].input[0],
            output=match.output,
            add_qk_str=match.bias,
        )
        if node is None:
            continue
        model.add_node(node)
        model.remove_nodes(match.nodes)
        fused += 1
    if fused:
        model.add_nodes(fusion.nodes_to_add)  # what create_attention_node asked for beyond the Attention nodes
        model.prune_graph()
    return fused


def _match(model: Any, softmax: Any) -> _Match | None:
    """The nodes of one MPNet attention around ``softmax``, or None where the graph differs from the pattern.

    Softmax <- Add(Add(Div(MatMul(q, k'), sqrt(d)), bias), mask term); q, k, v each Transpose <- Reshape <-
    Add(bias) <- MatMul(the same input); the context MatMul(probs, v) -> Transpose -> Reshape.
    """
    add_mask = model.match_parent(softmax, "Add", 0)
    if add_mask is None:
        return None
    for scores_at in (0, 1):
        add_bias = model.match_parent(add_mask, "Add", scores_at)
        div = None if add_bias is None else model.match_parent(add_bias, "Div", 0)
        if div is not None:
            break
    else:
        return None
    mask_path = None
    for types, indices in _MASK_PATHS:
        mask_path = mask_path or model.match_parent_path(add_mask, types, [1 - scores_at, *indices])
    matmul_qk = model.match_parent(div, "MatMul", 0)
    children = model.get_children(softmax)
    if mask_path is None or matmul_qk is None or len(children) != 1 or children[0].op_type != "MatMul":
        return None
    matmul_qkv = children[0]
    q = _projection(model, matmul_qk, 0)
    k = _projection(model, matmul_qk, 1) or model.match_parent_path(matmul_qk, *_K_TWICE_TRANSPOSED)
    v = _projection(model, matmul_qkv, 1)
    transpose = _only_child(model, matmul_qkv, "Transpose")
    reshape = None if transpose is None else _only_child(model, transpose, "Reshape")
    if q is None or k is None or v is None or reshape is None:
        return None
    if not q[-1].input[0] == k[-1].input[0] == v[-1].input[0]:
        return None
    nodes = [softmax, add_mask, add_bias, div, matmul_qk, matmul_qkv, transpose, reshape]
    nodes += [*q[:-1], *k[:-1], *v[:-1]]
    return _Match(q, k, v, add_bias.input[1], mask_path[-1].input[0], reshape.output[0], nodes)


def _projection(model: Any, node: Any, at: int) -> list[Any] | None:
    types, indices = _PROJECTION
    return model.match_parent_path(node, types, [at, *indices[1:]])


def _only_child(model: Any, node: Any, op_type: str) -> Any:
    children = model.get_children(node)
    return children[0] if len(children) == 1 and children[0].op_type == op_type else None
