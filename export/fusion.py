"""Fuse the traced eager BERT attention into onnxruntime's ``MultiHeadAttention`` (the int8 graph's attention core).

The traced attention is ~30 nodes per layer (reshapes, transposes, scaling, mask, softmax, two products). One
``MultiHeadAttention`` node with the Q/K/V biases and a key padding mask computes the same thing; onnxruntime's
transformer optimizer cannot do this for the int8 graph because its patterns expect float MatMuls.

MPNet adds a relative position bias to the scaled scores before the mask (``Add(Add(Div(QK'), bias), mask)``); it
goes to the node's ``attention_bias`` input ([1, heads, length, length], broadcast over the batch).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from onnx import GraphProto, ModelProto, NodeProto

MASK_INPUT = "attention_mask"
_MASK_INT32 = "mha/attention_mask_int32"


@dataclass(frozen=True)
class _Match:
    q: str  # Q, K and V before their bias
    k: str
    v: str
    bias: np.ndarray  # [3 * hidden]: the Q, K and V biases
    context: str  # the (batch, sequence, hidden) context the output projection reads
    position_bias: str | None = None  # MPNet's relative position bias, added to the scaled scores


def fuse_attention(model: ModelProto, num_heads: int) -> int:
    """Replace each traced attention block by ``MultiHeadAttention``; return how many were fused.

    A block that does not match the traced pattern exactly (including the 1/sqrt(head size) scaling) is left
    as it is, so the graph stays correct either way.
    """
    from onnx import helper, numpy_helper

    graph = model.graph
    if MASK_INPUT not in {i.name for i in graph.input}:
        return 0
    index = _Index.of(graph)
    matches = [m for s in graph.node if s.op_type == "Softmax" for m in [_match(index, s, num_heads)] if m]
    if not matches:
        return 0
    produced_by_mha = {m.context for m in matches}
    nodes = [helper.make_node("Cast", [MASK_INPUT], [_MASK_INT32], to=6)]  # int32, as the op wants
    nodes += [n for n in graph.node if not set(n.output) & produced_by_mha]
    for i, m in enumerate(matches):
        bias = f"mha/{i}/qkv_bias"
        graph.initializer.append(numpy_helper.from_array(m.bias.astype(np.float32), bias))
        position_bias = [] if m.position_bias is None else [m.position_bias]  # input 5: attention_bias
        nodes.append(
            helper.make_node(
                "MultiHeadAttention",
                [m.q, m.k, m.v, bias, _MASK_INT32, *position_bias],
                [m.context],
                name=f"mha/{i}",
                domain="com.microsoft",
                num_heads=num_heads,
            )
        )
    del graph.node[:]
    graph.node.extend(_topological(nodes, graph))
    _prune(graph)
    _use_contrib_domain(model)
    return len(matches)


def _use_contrib_domain(model: ModelProto) -> None:
    from onnx import helper

    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))


@dataclass(frozen=True)
class _Index:
    """Lookups over a graph, built once per fusion pass."""

    producers: dict[str, NodeProto]
    consumers: dict[str, list[NodeProto]]
    small: dict[str, np.ndarray]  # biases and scalars: 0-D/1-D initializers, their Identity copies, Constants

    @classmethod
    def of(cls, graph: GraphProto) -> _Index:
        from onnx import numpy_helper

        consumers: dict[str, list[NodeProto]] = {}
        for n in graph.node:
            for i in n.input:
                consumers.setdefault(i, []).append(n)
        small = {i.name: numpy_helper.to_array(i) for i in graph.initializer if len(i.dims) <= 1}
        # torch stores equal parameters once (a fresh model's zero biases) and names the copies with Identity nodes.
        small.update(
            {n.output[0]: small[n.input[0]] for n in graph.node if n.op_type == "Identity" and n.input[0] in small}
        )
        small.update(
            {
                n.output[0]: numpy_helper.to_array(n.attribute[0].t)
                for n in graph.node
                if n.op_type == "Constant" and n.attribute[0].name == "value"
            }
        )
        return cls({o: n for n in graph.node for o in n.output}, consumers, small)


def _match(index: _Index, softmax: NodeProto, num_heads: int) -> _Match | None:
    """The Q/K/V/context tensors around one traced attention softmax, or None when the pattern differs."""
    producers, consumers, weights = index.producers, index.consumers, index.small

    def op(name: str, op_type: str) -> NodeProto | None:
        node = producers.get(name)
        return node if node is not None and node.op_type == op_type else None

    def only_consumer(name: str, op_type: str) -> NodeProto | None:
        """The one consumer of this type (Shape nodes that read the tensor for a reshape may sit beside it)."""
        users = [u for u in consumers.get(name, []) if u.op_type != "Shape"]
        return users[0] if len(users) == 1 and users[0].op_type == op_type else None

    def projection(name: str, perm: tuple[int, ...]) -> tuple[str, np.ndarray] | None:
        """Transpose(perm) <- Reshape <- Add(bias initializer, x): (x, bias)."""
        transpose = op(name, "Transpose")
        if transpose is None or tuple(transpose.attribute[0].ints) != perm:
            return None
        reshape = op(transpose.input[0], "Reshape")
        add = op(reshape.input[0], "Add") if reshape else None
        if add is None:
            return None
        bias = [i for i in add.input if i in weights]
        rest = [i for i in add.input if i not in weights]
        return (rest[0], weights[bias[0]]) if len(bias) == 1 and len(rest) == 1 else None

    # BERT scales the product and adds the extended mask: softmax(Q K^T / sqrt(d) + mask); MPNet adds its relative
    # position bias before the mask: Add(Add(Div(scores), position bias), mask). DistilBERT scales Q first and fills
    # the padding keys: softmax(where(mask == 0, min, (Q / sqrt(d)) K^T)). Same values either way.
    scores = div = None
    position_bias: str | None = None
    q_scaled = ""
    if mask_add := op(softmax.input[0], "Add"):
        div = next((d for i in mask_add.input if (d := op(i, "Div"))), None)
        if div is None:  # MPNet
            bias_add = next((a for i in mask_add.input if (a := op(i, "Add")) and op(a.input[0], "Div")), None)
            div = op(bias_add.input[0], "Div") if bias_add else None
            position_bias = bias_add.input[1] if bias_add else None
        scores = op(div.input[0], "MatMul") if div else None
        q_scaled = scores.input[0] if scores else ""
    elif (fill := op(softmax.input[0], "Where")) and _fills_padding_keys(index, fill):
        scores = op(fill.input[2], "MatMul")
        div = op(scores.input[0], "Div") if scores else None
        q_scaled = div.input[0] if div else ""
    context = only_consumer(softmax.output[0], "MatMul")
    if scores is None or div is None or context is None or context.input[0] != softmax.output[0]:
        return None
    q, k = projection(q_scaled, (0, 2, 1, 3)), projection(scores.input[1], (0, 2, 3, 1))
    v = projection(context.input[1], (0, 2, 1, 3))
    back = only_consumer(context.output[0], "Transpose")
    merged = only_consumer(back.output[0], "Reshape") if back else None
    if q is None or k is None or v is None or merged is None:
        return None
    head_size = len(q[1]) // num_heads
    divisor = weights.get(div.input[1])
    if divisor is None or divisor.size != 1 or not math.isclose(float(divisor), math.sqrt(head_size), rel_tol=1e-5):
        return None
    return _Match(q[0], k[0], v[0], np.concatenate([q[1], k[1], v[1]]), merged.output[0], position_bias)


def _fills_padding_keys(index: _Index, where: NodeProto) -> bool:
    """Whether ``where`` is DistilBERT's mask: ``Where(attention_mask == 0 (reshaped, expanded), very negative, x)``.

    The fill must be at most -1e4: MultiHeadAttention adds -10000 to the scores of padding keys instead of
    filling them with the lowest float, and either way their softmax weight underflows to 0 in float32.
    """
    fill = index.small.get(where.input[1])
    if fill is None or fill.size != 1 or float(fill) > -1e4:
        return False
    name = where.input[0]
    while (node := index.producers.get(name)) is not None and node.op_type in ("Cast", "Expand", "Reshape"):
        name = node.input[0]
    if node is None or node.op_type != "Equal" or node.input[0] != MASK_INPUT:
        return False
    zero = index.small.get(node.input[1])
    return zero is not None and zero.size == 1 and float(zero) == 0


def _prune(graph: GraphProto) -> None:
    """Drop nodes and initializers that no graph output depends on."""
    needed = {o.name for o in graph.output}
    kept = []
    for node in reversed(graph.node):
        if set(node.output) & needed:
            kept.append(node)
            needed.update(node.input)
    del graph.node[:]
    graph.node.extend(reversed(kept))
    initializers = [i for i in graph.initializer if i.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(initializers)


def _topological(nodes: list[NodeProto], graph: GraphProto) -> list[NodeProto]:
    """Order ``nodes`` so each comes after the producers of its inputs (the new nodes were appended last)."""
    available = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending, ordered = list(nodes), []
    while pending:
        ready = [n for n in pending if all(i in available for i in n.input)]
        if not ready:
            raise ValueError(f"graph has a cycle or a missing input near node {pending[0].name!r}")
        for n in ready:
            available.update(n.output)
        ordered += ready
        done = {id(n) for n in ready}
        pending = [n for n in pending if id(n) not in done]
    return ordered
