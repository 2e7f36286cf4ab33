"""Write the ONNX variants: the plain torch export, the BERT-fused fp32 graph, and fp16 (int8 is in int8.py)."""

from __future__ import annotations

import logging
import tempfile
import warnings
from pathlib import Path
from typing import Any

from embedrt.export.architectures import Architecture
from embedrt.export.architectures.bert import BERT
from embedrt.session import import_onnxruntime

OUTPUT_NAME = "last_hidden_state"
LOGITS = "logits"
OPSET = 17
# protobuf cannot hold a message of 2 GiB or more: past this many bytes of weights, a variant's tensors go to
# "<file>.data" beside it (ONNX external data), and the manifest lists and hashes that file too.
EXTERNAL_DATA_THRESHOLD = 2_000_000_000


def weight_bytes(model: Any) -> int:
    """Bytes of a ModelProto's initializers, counted without serializing the model."""
    return sum(len(t.raw_data) or t.ByteSize() for t in model.graph.initializer)


def data_file(onnx_file: Path) -> Path:
    """Where a variant's external data goes: one file beside it, named after it."""
    return onnx_file.with_name(onnx_file.name + ".data")


def save_onnx(model: Any, out_file: Path, threshold: int = EXTERNAL_DATA_THRESHOLD) -> None:
    """Write a ModelProto, with its tensors in ``data_file(out_file)`` when they pass ``threshold`` bytes.

    Past the threshold only the graph is serialized in memory: onnx moves each tensor's bytes to the data file
    first. Written as external data, the tensors of ``model`` then point at that file.
    """
    import onnx

    data_file(out_file).unlink(missing_ok=True)  # onnx appends to an existing data file
    if weight_bytes(model) <= threshold:
        onnx.save(model, str(out_file))
        return
    location = data_file(out_file).name
    onnx.save_model(model, str(out_file), save_as_external_data=True, all_tensors_to_one_file=True, location=location)


def check_onnx(path: Path) -> None:
    """Run onnx's checker on a written file.

    Given a path, the checker reads the external data itself; a ModelProto past 2 GiB could not be handed to it,
    since it serializes a ModelProto in memory first.
    """
    import onnx

    onnx.checker.check_model(str(path))


def export_plain(
    model_dir: Path,
    out_file: Path,
    allow_pickle: bool,
    output: str = OUTPUT_NAME,
    architecture: Architecture = BERT,
    threshold: int = EXTERNAL_DATA_THRESHOLD,
) -> None:
    """Trace the transformer (eager attention, which the fusion patterns expect) into ONNX.

    ``output`` is ``last_hidden_state`` (the encoder's token embeddings) or ``logits`` (a cross-encoder's scores,
    pooler and classifier included). The graph's inputs are ``architecture.inputs``. Past ``threshold`` bytes of
    weights, the tensors go to ``data_file(out_file)``, as for every variant: the calibration of int8 and
    onnxruntime's optimizer then read the graph from the file and the weights from beside it, and nothing
    serializes the whole model in memory (protobuf stops at 2 GiB; XLM-R large is 2.2 GB in fp32).
    """
    import onnx

    with tempfile.TemporaryDirectory(dir=out_file.parent) as tmp:
        # torch writes one file per tensor beside its graph past 2 GiB (and none below): saved again here, the
        # layout follows the threshold and is one data file, as the runtime and the manifest expect.
        traced = Path(tmp) / out_file.name
        _trace(model_dir, traced, allow_pickle, output, architecture)
        save_onnx(onnx.load(str(traced)), out_file, threshold)


def _trace(model_dir: Path, out_file: Path, allow_pickle: bool, output: str, architecture: Architecture) -> None:
    """torch.onnx.export of the transformer; its weights are freed when this returns, before the graph is read."""
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # the unused pooler weights are expected: sentence-transformers skips them
    # With allow_pickle, safetensors still come first; pytorch_model.bin is read only when they are absent.
    kwargs = {"use_safetensors": None if allow_pickle else True, "attn_implementation": "eager"}
    model = architecture.load(model_dir, classifier=output == LOGITS, **kwargs)
    names = architecture.inputs

    class Output(torch.nn.Module):
        def __init__(self, encoder: torch.nn.Module) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            out = self.encoder(**dict(zip(names, inputs, strict=True)))
            return getattr(out, output)

    # Ids of 2 and 3 (not the pad id of either family), a mask of ones, token types of zeros.
    dummy = torch.full((2, 8), 2, dtype=torch.long)
    dummy[:, 1::2] = 3
    args = {"input_ids": dummy, "attention_mask": torch.ones_like(dummy), "token_type_ids": torch.zeros_like(dummy)}
    axes = {name: {0: "batch", 1: "sequence"} for name in names}
    axes[output] = {0: "batch"} if output == LOGITS else {0: "batch", 1: "sequence"}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Output(model),
            tuple(args[name] for name in names),
            str(out_file),
            input_names=list(names),
            output_names=[output],
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )


def write_fp32(
    plain: Path,
    out_file: Path,
    num_heads: int,
    hidden_size: int,
    threshold: int = EXTERNAL_DATA_THRESHOLD,
    model_type: str = BERT.optimizer_model_type,
    attention_first: bool = False,
    relative_bias_attention: bool = False,
) -> str:
    """Write the graph for the CPU: Attention and BiasGelu fused by onnxruntime's transformer optimizer.

    ``attention_first``: fuse the attention with embedrt's MultiHeadAttention pass first (``Architecture``'s
    ``embedrt_attention``), for a family whose attention pattern the optimizer does not fuse.
    ``relative_bias_attention`` also fuses attention with a relative position bias (MPNet), which the optimizer
    leaves unfused (see embedrt.export.relative_bias_attention); pass False to write the graph without it.

    The SkipLayerNormalization and EmbedLayerNormalization fusions are left out: onnxruntime's CPU kernels for
    them were slower than the LayerNormalization and Adds they replace (STS sentences at batch 32, 2 threads:
    792 sentences/s without both, 714 with both, 719 and 731 with one of them).
    """
    options = _fusion_options(model_type)
    options.enable_skip_layer_norm = False
    options.enable_embed_layer_norm = False
    return _fuse(plain, out_file, num_heads, hidden_size, options, threshold, model_type, attention_first,
                 relative_bias_attention)  # fmt: skip


def write_fp16(
    plain: Path,
    out_file: Path,
    num_heads: int,
    hidden_size: int,
    threshold: int = EXTERNAL_DATA_THRESHOLD,
    model_type: str = BERT.optimizer_model_type,
    attention_first: bool = False,
    relative_bias_attention: bool = False,
) -> str:
    """Write the graph for CUDA: every BERT fusion, then fp16 weights and activations, float32 inputs and outputs.

    ``attention_first`` and ``relative_bias_attention`` as in :func:`write_fp32`.
    """
    import onnx
    from onnxruntime.transformers.onnx_model import OnnxModel

    fused = out_file.with_suffix(".fused.onnx")
    options = _fusion_options(model_type)
    recipe = _fuse(plain, fused, num_heads, hidden_size, options, threshold, model_type, attention_first,
                   relative_bias_attention)  # fmt: skip
    model = OnnxModel(onnx.load(str(fused)))
    fused.unlink()
    data_file(fused).unlink(missing_ok=True)
    model.convert_float_to_float16(keep_io_types=True)
    model.save_model_to_file(str(out_file), use_external_data_format=weight_bytes(model.model) > threshold)
    return recipe + "; converted to fp16 (float32 inputs/outputs)"


def _fusion_options(model_type: str = BERT.optimizer_model_type) -> Any:
    """Every fusion of onnxruntime's transformer optimizer for ``model_type`` (the fp16/CUDA set)."""
    import_onnxruntime()  # the optimizer ships with onnxruntime; without it, say which extra installs it
    from onnxruntime.transformers.fusion_options import FusionOptions

    return FusionOptions(model_type)


def _fuse(
    plain: Path,
    out_file: Path,
    num_heads: int,
    hidden_size: int,
    options: Any,
    threshold: int,
    model_type: str,
    attention_first: bool = False,
    relative_bias_attention: bool = False,
) -> str:
    """Run onnxruntime's transformer optimizer with ``options``; return the recipe (the fusions made).

    With ``attention_first``, embedrt's MultiHeadAttention fusion runs on the plain graph before it; with
    ``relative_bias_attention``, attention with a relative position bias is fused after it (MPNet).
    """
    # The optimizer's symbolic shape inference logs "Unable to determine if sequence <= ..., treat as equal" for
    # each gather of ModernBERT's banded attention (key windows clamped by a min it cannot compare): dozens of lines
    # that only feed the fusions' shape guesses. Every written file's parity is checked afterwards.
    for name in ("symbolic_shape_infer", "onnxruntime.tools.symbolic_shape_infer"):  # the optimizer imports it bare
        logging.getLogger(name).setLevel(logging.ERROR)
    from onnxruntime.transformers import optimizer

    source, first = plain, ""
    if attention_first:
        import onnx

        from embedrt.export.fusion import fuse_attention

        graph = onnx.load(str(plain))
        first = f"embedrt MultiHeadAttention x{fuse_attention(graph, num_heads)}; "
        source = out_file.with_name(out_file.name + ".attention.onnx")
        source.parent.mkdir(parents=True, exist_ok=True)
        save_onnx(graph, source, threshold)
    try:
        model = optimizer.optimize_model(
            str(source),
            model_type=model_type,
            num_heads=num_heads,
            hidden_size=hidden_size,
            opt_level=1,
            optimization_options=options,
        )
    finally:
        if source != plain:
            source.unlink()
            data_file(source).unlink(missing_ok=True)
    stats = model.get_fused_operator_statistics()
    if relative_bias_attention:
        from embedrt.export.relative_bias_attention import fuse_relative_bias_attention

        fused = fuse_relative_bias_attention(model, num_heads, hidden_size, options)
        stats["Attention (relative position bias, embedrt)"] = fused
    model.save_model_to_file(str(out_file), use_external_data_format=weight_bytes(model.model) > threshold)
    return f"{first}onnxruntime transformers optimizer ({model_type}): " + _fusions(stats)


def _fusions(stats: dict[str, int]) -> str:
    return ", ".join(f"{op} x{n}" for op, n in stats.items() if n)
