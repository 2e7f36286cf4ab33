"""The int8 recipe: int8 activations (calibrated or per token), SmoothQuant channel scales, int8 weights.

Measured on all 2,758 sts-test sentences against PyTorch (min / p1 cosine, Spearman vs 82.03):
onnxruntime's dynamic int8 (one activation scale per tensor) 0.964 / 0.974 / 82.03 on the fused graph. Its error
comes from a few activation channels and tokens that are 5-15x larger than the rest (the LayerNorm outputs
reach 28 where the median channel stays at 2), which set the scale for the whole batch. This recipe:

- one activation scale per token (row), computed at run time: 0.983 / 0.987 / 81.81;
- plus SmoothQuant (alpha 0.5): activation channel c is divided by s_c = absmax_x[c]^a / absmax_w[c]^(1-a) and
  weight row c multiplied by it, with absmax_x calibrated on sts-train sentences: 0.991 / 0.994 / 81.94;
- plus GELU outputs (>= -0.17) shifted to >= 0 and quantized unsigned (twice the resolution of a symmetric
  range); the shift comes back as a constant added to the product: 0.993 / 0.997 / 81.97;
- plus one alpha per kind of product (``ALPHAS``), each picked by a greedy search for the highest mean cosine to
  the fp32 graph on 3,833 sts-train sentences: 0.996 / 0.998 / 82.02 (calibrated on the first 2,048
  sentences of sts-train.csv; on 2,048 interleaved pair sentences instead: 0.995 / 0.997 / 81.99);
- then one calibrated step for the whole tensor where a LayerNorm output is read (Q/K/V and the FFN input):
  0.994 / 0.997 / 82.02, and 9% more sentences/s and 8% less single-sentence time (4 fewer kernels a site:
  Abs, ReduceMax and two Muls).
  Results stay independent of the batch. A per-tensor step computed at run time (DynamicQuantizeLinear) was as
  fast and as accurate on sts-test but made a text's vector depend on its batch (cosine down to 0.998 between a
  sentence alone and in a batch); a calibrated step for the attention context too dropped Spearman to 81.89.

Weights are symmetric per output channel (8 bit), the word-embedding table is int8 per row (gathered, then
scaled), and the activation quantization is written with standard ONNX ops and ``MatMulIntegerToFloat``. The
attention core runs as one ``MultiHeadAttention`` per layer (fusion.py).

Measured and not kept: an MSE-optimal clipping search for the weight scales (no change); 7-bit weights
(reduce_range: min 0.975 instead of 0.983 before smoothing); no smoothing of the GELU outputs (Spearman 81.92);
the row scale as ``MatMulIntegerToFloat``'s a_scale (slower); onnxruntime's SkipLayerNormalization
(660 ms against 250 ms for LayerNormalization and the Adds on STS); FastGelu instead of the erf GELU (same
speed); 8-bit MatMulNBits weights with int8 compute (min 0.999, but 594 sentences/s, slower than fp32).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from embedrt.export.fusion import fuse_attention
from embedrt.export.onnx_files import EXTERNAL_DATA_THRESHOLD, check_onnx, save_onnx
from embedrt.export.parity import CHECK_SENTENCES, STS_DIR, StsPairs
from embedrt.int8_kernel import EXPLICIT_WEIGHT_ZERO_POINTS

if TYPE_CHECKING:
    from onnx import ModelProto, NodeProto, TensorProto

# min over x of x * Phi(x) is -0.16997 (at x = -0.7518); shifting by this keeps exact GELU outputs >= 0.
GELU_SHIFT = 0.17
OPSET = 21  # QuantizeLinear's blocked form


class Site(str, Enum):
    """Where an activation is quantized; each kind gets its own SmoothQuant alpha."""

    ATTENTION_INPUT = "attention_input"  # the hidden states that Q, K and V read
    ATTENTION_OUTPUT = "attention_output"  # the attention context, read by the output projection
    FFN_INPUT = "ffn_input"  # read by the expanding feed-forward product
    FFN_OUTPUT = "ffn_output"  # the GELU output, read by the contracting feed-forward product


# Greedy search on sts-train (mean cosine to fp32; alpha 0.5 everywhere gave 0.99923, these 0.99938).
ALPHAS = {Site.ATTENTION_INPUT: 0.8, Site.ATTENTION_OUTPUT: 0.3, Site.FFN_INPUT: 0.6, Site.FFN_OUTPUT: 0.5}
DEFAULT_CALIBRATION = STS_DIR / "sts-train.csv"
CALIBRATION_SIZE = 2048
# Embedding tables at least this tall are the word embeddings; position and type tables stay fp32.
_MIN_TABLE_ROWS = 1000
_TABLE_BLOCK_ROWS = 8192  # rows of the word table quantized at a time (32 MB of XLM-R large's)


class WordTable(str, Enum):
    """How the int8 graph stores the word-embedding table that its first Gather reads."""

    INT8 = "int8"  # int8 rows with one fp32 scale per row: Gather both, Cast, Mul (a quarter of the bytes)
    FP32 = "fp32"  # as exported: one float Gather


# The rule, for every model: the word table is stored int8 with one float32 scale per row. Measured on XLM-R
# large's real 250,002 x 1024 table (benchmarks/large_model.py, benchmarks/results/large-xlmr.md; 2 layers
# measured, 24 computed): the 24-layer int8 file is 564 MB with it and 1,331 MB without (fp32 2,235 MB); min
# cosine to fp32 on sts-test 0.999900 against 0.999917 (the int8 gate is 0.98), Spearman of the pair cosines to
# fp32's 99.999 both ways; 471 against 468 sentences/s, one-sentence p50 1.81 against 1.96 ms (noise).
WORD_TABLE: WordTable = WordTable.INT8
_LAST_AXIS = "int8/last_axis"


def calibration_texts(path: Path | None) -> tuple[list[str], str]:
    """The texts that calibrate the activation ranges, and where they came from.

    ``path`` is an STS benchmark csv or a text file with one text per line; None takes sts-train.csv from
    ../shared when it is there, else the export's check sentences (24 sentences calibrated nearly as well as
    2,048 here: sts-test min cosine 0.990 against 0.993 with the single alpha). At most ``CALIBRATION_SIZE``.
    """
    if path is None:
        if not DEFAULT_CALIBRATION.is_file():
            return list(CHECK_SENTENCES), "the export check sentences"
        path = DEFAULT_CALIBRATION
    if not path.is_file():
        raise FileNotFoundError(f"calibration file {path} not found (an STS csv or one text per line)")
    if path.suffix == ".csv":
        texts = StsPairs.from_file(path).sentences
    else:
        texts = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not texts:
        raise ValueError(f"calibration file {path} holds no texts")
    return texts[:CALIBRATION_SIZE], path.name


@dataclass(frozen=True)
class Calibration:
    """Per-channel max |x| of each MatMul input, over the calibration tokens (padding excluded)."""

    absmax: dict[str, np.ndarray]
    sentences: int
    tokens: int
    source: str


def calibrate(plain: Path, feeds: Iterable[Mapping[str, np.ndarray]], sentences: int, source: str) -> Calibration:
    """Run the plain fp32 graph on ``feeds`` and record each MatMul input's per-channel max |x|.

    ``feeds`` are padded batches (input_ids, attention_mask, token_type_ids) of ``sentences`` calibration texts
    (or text pairs, for a cross-encoder) from ``source``.
    """
    import onnxruntime as ort

    probe = _calibration_graph(plain)
    try:
        session = ort.InferenceSession(str(probe.path), providers=["CPUExecutionProvider"])
    finally:
        probe.path.unlink()
    inputs = probe.inputs
    wanted = {i.name for i in session.get_inputs()}
    absmax = {name: np.zeros(0, np.float32) for name in inputs}
    tokens = 0
    for feed in feeds:
        outputs = session.run(inputs, {k: v for k, v in feed.items() if k in wanted})
        real = feed["attention_mask"].astype(bool)
        tokens += int(real.sum())
        for name, value in zip(inputs, outputs, strict=True):
            # Token-level inputs are (batch, seq, channels); the classifier head's read one vector per row.
            batch_max = np.abs(value[real] if value.ndim == 3 else value).max(axis=0)
            absmax[name] = batch_max if absmax[name].size == 0 else np.maximum(absmax[name], batch_max)
    return Calibration(absmax, sentences, tokens, source)


@dataclass(frozen=True)
class _Probe:
    path: Path  # the plain graph with each MatMul input added as an output
    inputs: list[str]  # those inputs, in graph order


def _calibration_graph(plain: Path) -> _Probe:
    """Write the plain graph, with every weighted MatMul's input as an extra output, beside ``plain``.

    Read without its external data and written beside ``plain``, the copy's tensors still point at plain's data
    file: a model past 2 GiB is never serialized in memory (protobuf's limit) and its weights are not copied.
    """
    import onnx

    model = onnx.load(str(plain), load_external_data=False)
    inputs = _matmul_inputs(model)
    for name in inputs:
        model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    path = plain.with_name(plain.stem + ".calibration.onnx")
    onnx.save(model, str(path))
    return _Probe(path, inputs)


def text_feeds(
    tokenizer: Callable[[Sequence[str], int], tuple[np.ndarray, np.ndarray]],
    texts: Sequence[str],
    max_length: int,
    batch_size: int = 32,
) -> Iterator[dict[str, np.ndarray]]:
    """Padded batches of single texts, as an embedding model reads them."""
    for start in range(0, len(texts), batch_size):
        ids, mask = tokenizer(texts[start : start + batch_size], max_length)
        yield {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}


def write_int8(
    plain: Path,
    out_file: Path,
    calibration: Calibration,
    num_heads: int,
    alphas: Mapping[Site, float] = ALPHAS,
    threshold: int = EXTERNAL_DATA_THRESHOLD,
    word_table: WordTable = WORD_TABLE,
) -> str:
    """Quantize the plain graph with this module's recipe; return the recipe text for manifest.json.

    ``word_table`` is for measuring the other choice (benchmarks/large_model.py): exports take ``WORD_TABLE``.
    """
    import onnx

    model = onnx.load(str(plain))
    fused = fuse_attention(model, num_heads)
    _Rewriter(model, calibration.absmax, alphas, word_table).run()
    save_onnx(model, out_file, threshold)
    check_onnx(out_file)
    return (
        "embedrt int8: int8 activations with one calibrated step for LayerNorm outputs and one step per token "
        "(computed at run time) for the attention context and the GELU output, SmoothQuant ("
        + ", ".join(f"{site.value} alpha {alpha}" for site, alpha in alphas.items())
        + f") calibrated on {calibration.sentences} texts of {calibration.source} ({calibration.tokens} tokens), "
        "GELU outputs shifted and unsigned, "
        f"per-channel symmetric int8 weights with {EXPLICIT_WEIGHT_ZERO_POINTS}, "
        + (
            "int8 word embeddings with per-row scales, "
            if word_table is WordTable.INT8
            else "float32 word embeddings, "
        )
        + "MatMulIntegerToFloat, "
        f"MultiHeadAttention x{fused}"
    )


def quantize_columns(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per column (output channel). An MSE-optimal clipping search changed nothing measurable."""
    scale = (np.maximum(np.abs(w).max(axis=0), 1e-12) / 127.0).astype(np.float32)
    return np.clip(np.rint(w / scale), -127, 127).astype(np.int8), scale


def _matmul_inputs(model: ModelProto) -> list[str]:
    """Activation inputs of the MatMuls whose weights are 2-D initializers, in graph order, each once."""
    graph = model.graph
    weights = {i.name for i in graph.initializer if len(i.dims) == 2}
    names = [n.input[0] for n in graph.node if n.op_type == "MatMul" and n.input[1] in weights]
    return list(dict.fromkeys(names))


class _Rewriter:
    """Replaces MatMuls and the word-embedding Gather of an ONNX graph in place."""

    def __init__(
        self,
        model: ModelProto,
        absmax: dict[str, np.ndarray],
        alphas: Mapping[Site, float],
        word_table: WordTable = WORD_TABLE,
    ) -> None:
        from onnx import numpy_helper

        self.word_table = word_table
        self.model = model
        self.graph = model.graph
        self.absmax = absmax
        self.alphas = alphas
        self.weights = {i.name: numpy_helper.to_array(i) for i in self.graph.initializer}
        self.producers = {out: n for n in self.graph.node for out in n.output}
        self.consumers: dict[str, list[NodeProto]] = {}
        for node in self.graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self.new_initializers: list[TensorProto] = []
        self.quantized: dict[str, _Quantized] = {}
        self.zero_point_128: str | None = None

    def run(self) -> None:
        from onnx import helper

        groups: dict[str, list[NodeProto]] = {}  # the weighted MatMuls that read each activation
        for node in self.graph.node:
            if self._is_weighted_matmul(node):
                groups.setdefault(node.input[0], []).append(node)
        self.smooth = {
            x: self._smoothing(x, [self.weights[n.input[1]] for n in group])
            for x, group in groups.items()
            if x in self.absmax
        }
        # Activations whose 1/s is already in the weights that produce them (no Mul needed).
        self.pre_smoothed = {x for x, s in self.smooth.items() if self._fold_into_value(x, s)}
        self.static = {x for x in self.smooth if self._is_layer_norm(x)}
        self._const(_LAST_AXIS, np.array([-1], np.int64))
        nodes = []
        for node in self.graph.node:
            if self._is_weighted_matmul(node):
                group = groups[node.input[0]]
                if node is group[0]:
                    nodes += self._matmul(group)
            elif node.op_type == "Gather" and self.word_table is WordTable.INT8 and self._is_word_table(node.input[0]):
                nodes += self._gather(node)
            else:
                nodes.append(node)
        del self.graph.node[:]
        self.graph.node.extend(nodes)
        used = {name for node in self.graph.node for name in node.input}
        kept = [i for i in self.graph.initializer if i.name in used]
        del self.graph.initializer[:]
        self.graph.initializer.extend(kept + [i for i in self.new_initializers if i.name in used])
        if not any(o.domain == "com.microsoft" for o in self.model.opset_import):
            self.model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
        # Opset 21 for QuantizeLinear's blocked form; the traced ops mean the same from 17 to 21.
        for opset in self.model.opset_import:
            if opset.domain in ("", "ai.onnx"):
                opset.version = max(opset.version, OPSET)
        self.model.ir_version = max(self.model.ir_version, 10)

    def _fold_into_value(self, x: str, smooth: np.ndarray) -> bool:
        """Divide V's weight columns and bias by ``smooth`` when ``x`` is a MultiHeadAttention output.

        The attention context is a convex mix of V rows, so scaling V's channels scales the context's exactly.
        """
        mha = self.producers.get(x)
        if mha is None or mha.op_type != "MultiHeadAttention" or len(mha.input) < 4:
            return False
        value = self.producers.get(mha.input[2])
        if value is None or not self._is_weighted_matmul(value) or mha.input[3] not in self.weights:
            return False
        width = len(smooth)
        self.weights[value.input[1]] = self.weights[value.input[1]] / smooth
        bias = self.weights[mha.input[3]].copy()
        bias[2 * width :] /= smooth
        mha.input[3] = self._const(mha.input[3] + "/smoothed", bias.astype(np.float32))
        return True

    def _is_weighted_matmul(self, n: NodeProto) -> bool:
        return n.op_type == "MatMul" and n.input[1] in self.weights and self.weights[n.input[1]].ndim == 2

    def _is_word_table(self, name: str) -> bool:
        table = self.weights.get(name)
        return table is not None and table.ndim == 2 and table.shape[0] >= _MIN_TABLE_ROWS

    def _smoothing(self, x: str, weights: list[np.ndarray]) -> np.ndarray:
        """SmoothQuant's s_c = absmax_x[c]^alpha / absmax_w[c]^(1-alpha), over every MatMul that reads ``x``."""
        alpha = self.alphas[self._site(x, weights)]
        w_max = np.maximum(np.abs(np.concatenate(weights, axis=1)).max(axis=1), 1e-5)
        x_max = np.maximum(self.absmax[x], 1e-5)
        return np.clip(x_max**alpha / w_max ** (1 - alpha), 1e-2, 1e2).astype(np.float32)

    def _site(self, x: str, weights: list[np.ndarray]) -> Site:
        if len(weights) > 1:
            return Site.ATTENTION_INPUT
        if self._is_gelu(x):
            return Site.FFN_OUTPUT
        rows, columns = weights[0].shape
        return Site.FFN_INPUT if columns > rows else Site.ATTENTION_OUTPUT

    def _const(self, name: str, value: np.ndarray | np.generic) -> str:
        from onnx import numpy_helper

        self.new_initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def _is_layer_norm(self, name: str) -> bool:
        node = self.producers.get(name)
        return node is not None and node.op_type == "LayerNormalization"

    def _is_gelu(self, name: str, depth: int = 4) -> bool:
        """Whether ``name`` is computed by an Erf-based GELU (x * 0.5 * (1 + erf(x / sqrt 2)))."""
        node = self.producers.get(name)
        if node is None or depth == 0:
            return False
        return node.op_type == "Erf" or any(self._is_gelu(i, depth - 1) for i in node.input)

    def _quantize(self, x: str, width: int) -> tuple[list[NodeProto], _Quantized]:
        """Nodes that quantize activation ``x`` (``width`` channels) per row (token); built once per activation."""
        from onnx import helper

        if x in self.quantized:
            return [], self.quantized[x]
        p = f"int8/{len(self.quantized)}"
        if x in self.static:
            return self._quantize_static(x, p)
        nodes = []
        smooth = self.smooth.get(x)
        source = x
        if smooth is not None and x not in self.pre_smoothed:
            nodes.append(helper.make_node("Mul", [x, self._const(p + "/inv_smooth", 1.0 / smooth)], [p + "/smoothed"]))
            source = p + "/smoothed"
        if self._is_gelu(x):
            shift = np.full(width, GELU_SHIFT, np.float32)
            if smooth is not None:
                shift = shift / smooth
            nodes += [
                helper.make_node("Add", [source, self._const(p + "/shift", shift)], [p + "/shifted"]),
                helper.make_node("ReduceMax", [p + "/shifted", _LAST_AXIS], [p + "/max"], keepdims=1),
            ]
            source, levels, zero_point = p + "/shifted", 255.0, np.uint8(0)
        else:
            nodes += [
                helper.make_node("Abs", [source], [p + "/abs"]),
                helper.make_node("ReduceMax", [p + "/abs", _LAST_AXIS], [p + "/max"], keepdims=1),
            ]
            shift, levels, zero_point = None, 127.0, np.uint8(128)
        # One scale per row through QuantizeLinear's blocked form (opset 21; one block spans the row), which
        # saves a division pass over the activations (+5% sentences/s). Its zero point must have the scale's
        # shape, so one [batch, sequence, 1] tensor of 128 is made and shared. A row of zeros has step 0: whatever
        # byte QuantizeLinear makes of 0/0, the product is multiplied by that step, 0, so the row stays 0.
        per_level = self._const(p + "/per_level", np.float32(1.0 / levels))
        nodes.append(helper.make_node("Mul", [p + "/max", per_level], [p + "/step"]))
        inputs = [source, p + "/step"]
        if zero_point:
            if self.zero_point_128 is None:
                self.zero_point_128 = p + "/zp128"
                nodes += [
                    helper.make_node("Mul", [p + "/step", self._const(p + "/zero", np.float32(0.0))], [p + "/zeros"]),
                    helper.make_node("Add", [p + "/zeros", self._const(p + "/f128", np.float32(128.0))], [p + "/z"]),
                    helper.make_node("Cast", [p + "/z"], [self.zero_point_128], to=2),  # uint8
                ]
            inputs.append(self.zero_point_128)
        nodes.append(helper.make_node("QuantizeLinear", inputs, [p + "/q"], axis=-1, block_size=width))
        self._const(p + "/zp", zero_point)
        self.quantized[x] = _Quantized(p + "/q", p + "/step", p + "/zp", smooth, shift, static=False)
        return nodes, self.quantized[x]

    def _quantize_static(self, x: str, p: str) -> tuple[list[NodeProto], _Quantized]:
        """One calibrated step for the whole tensor, for LayerNorm outputs (``x`` is in ``self.static``).

        LayerNorm normalizes every token, so the largest smoothed value of a token varies only 1.6-3.7x across
        the tokens of sts-train (the attention context and the GELU output vary up to 9x and 15x: they keep a
        step per token). The step, max over channels of absmax/s over 127, and 1/s go into one Mul; values past
        the calibrated range saturate at +-127.
        """
        from onnx import helper

        smooth = self.smooth[x]
        step = np.float32(max(float((self.absmax[x] / smooth).max()), 1e-12) / 127.0)
        nodes = [
            helper.make_node(
                "Mul", [x, self._const(p + "/inv_step", (1.0 / (step * smooth)).astype(np.float32))], [p + "/scaled"]
            ),
            helper.make_node(
                "QuantizeLinear",
                [p + "/scaled", self._const(p + "/one", np.float32(1.0)), self._const(p + "/zp", np.uint8(128))],
                [p + "/q"],
            ),
        ]
        self._const(p + "/step", step)
        self.quantized[x] = _Quantized(p + "/q", p + "/step", p + "/zp", smooth, None, static=True)
        return nodes, self.quantized[x]

    def _matmul(self, group: list[NodeProto]) -> list[NodeProto]:
        """One int8 product for all MatMuls that read the same activation (Q, K and V), split afterwards."""
        from onnx import helper

        n = group[0]
        parts = [self.weights[g.input[1]].astype(np.float32) for g in group]
        nodes, q = self._quantize(n.input[0], parts[0].shape[0])
        w = np.concatenate(parts, axis=1)
        if q.smooth is not None:
            w = w * q.smooth[:, None]
        w_q, w_scale = quantize_columns(w)
        p = n.name or n.output[0]
        out = n.output[0] if len(group) == 1 else p + "/joined"
        correction = None
        if q.shift is not None:
            # (x + shift) W - shift W = x W, with W as quantized so the shift cancels exactly.
            correction = -(q.shift @ (w_q.astype(np.float32) * w_scale)).astype(np.float32)
            if self._absorb_into_bias(out, correction):
                correction = None
        # A static step is the op's scalar a_scale, applied inside the kernel. A row step could be too
        # ([batch, sequence, 1] broadcasts), but that path measured slower than a Mul: 866 ms against
        # 586 + 361 ms for MatMulIntegerToFloat + Mul on STS.
        a_scale = q.scale if q.static else self._const(p + "/one", np.float32(1.0))
        product = out if q.static else p + "/unscaled"
        nodes.append(
            helper.make_node(
                "MatMulIntegerToFloat",
                [
                    q.name,
                    self._const(p + "/w_int8", w_q),
                    a_scale,
                    self._const(p + "/w_scale", w_scale),
                    q.zero_point,
                    # Explicit, and one per product: onnxruntime 1.19-1.29 abort building the exact u8u8 path
                    # (session.x64quantprecision, chosen on AVX2 CPUs by embedrt.int8_kernel) without one, and
                    # its rewrite of a shared one fails ("Attempt to replace the existing tensor"); measured
                    # under emulated Haswell. A zero changes nothing else: same vectors and speed here.
                    self._const(p + "/w_zp", np.int8(0)),
                ],
                [product],
                domain="com.microsoft",
            )
        )
        if not q.static:
            nodes.append(helper.make_node("Mul", [product, q.scale], [out if correction is None else p + "/shifted"]))
        if correction is not None:
            nodes.append(helper.make_node("Add", [p + "/shifted", self._const(p + "/shift_out", correction)], [out]))
        if len(group) > 1:
            sizes = np.array([part.shape[1] for part in parts], np.int64)
            outputs = [g.output[0] for g in group]
            nodes.append(helper.make_node("Split", [out, self._const(p + "/sizes", sizes)], outputs, axis=-1))
        return nodes

    def _absorb_into_bias(self, out: str, constant: np.ndarray) -> bool:
        """Add ``constant`` to the bias that ``out`` flows into, when ``out`` feeds only that bias Add."""
        users = self.consumers.get(out, [])
        if len(users) != 1 or users[0].op_type != "Add":
            return False
        add = users[0]
        biases = [i for i in add.input if i in self.weights and self.weights[i].shape == constant.shape]
        if len(biases) != 1 or len(self.consumers[biases[0]]) != 1:
            return False
        add.input[list(add.input).index(biases[0])] = self._const(out + "/bias", self.weights[biases[0]] + constant)
        return True

    def _gather(self, n: NodeProto) -> list[NodeProto]:
        from onnx import TensorProto, helper

        table = self.weights[n.input[0]]
        scale = np.empty((len(table), 1), np.float32)
        table_q = np.empty(table.shape, np.int8)
        # Block by block: on XLM-R's 250,002 x 1024 table (1 GB in fp32), the whole-table temporaries (abs,
        # divide, round, clip) would hold 4 GB more at once, beside the model that is being rewritten.
        for start in range(0, len(table), _TABLE_BLOCK_ROWS):
            block = slice(start, start + _TABLE_BLOCK_ROWS)
            rows = table[block].astype(np.float32, copy=False)
            scale[block] = np.maximum(np.abs(rows).max(axis=1, keepdims=True), 1e-12) / 127.0
            table_q[block] = np.clip(np.rint(rows / scale[block]), -127, 127)
        p, ids = n.name or n.output[0], n.input[1]
        return [
            helper.make_node("Gather", [self._const(p + "/int8", table_q), ids], [p + "/rows"]),
            helper.make_node("Gather", [self._const(p + "/row_scale", scale), ids], [p + "/scales"]),
            helper.make_node("Cast", [p + "/rows"], [p + "/rows_f"], to=TensorProto.FLOAT),
            helper.make_node("Mul", [p + "/rows_f", p + "/scales"], [n.output[0]]),
        ]


@dataclass(frozen=True)
class _Quantized:
    name: str
    scale: str
    zero_point: str
    smooth: np.ndarray | None
    shift: np.ndarray | None
    static: bool  # one calibrated step (a constant) instead of one per row
