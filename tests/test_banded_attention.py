"""Banded local attention (embedrt.export.banded_attention) against transformers' own ModernBERT, in torch and
exported to ONNX: the patched model's outputs match the unpatched model's on every row, padded rows included."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from transformers import ModernBertConfig, ModernBertForSequenceClassification, ModernBertModel  # noqa: E402

from embedrt.export.banded_attention import patch_local_attention  # noqa: E402

TOLERANCE = 1e-5
VOCAB = 100


def tiny_config(local_attention: int, global_every: int, **overrides) -> ModernBertConfig:
    """A 4-layer, 64-wide ModernBERT; dropout is off in eval mode anyway."""
    kwargs = {
        "vocab_size": VOCAB,
        "hidden_size": 64,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "intermediate_size": 96,
        "local_attention": local_attention,
        "global_attn_every_n_layers": global_every,
        "max_position_embeddings": 4096,
        "reference_compile": False,
        "attn_implementation": "eager",
        "pad_token_id": 0,
        **overrides,
    }
    return ModernBertConfig(**kwargs)


def pair(config: ModernBertConfig, cls: type = ModernBertModel, seed: int = 0):
    """The same random-weight model twice: as transformers runs it, and patched."""
    torch.manual_seed(seed)
    reference = cls(config).eval()
    patched = copy.deepcopy(reference)
    patch_local_attention(patched)
    return reference, patched


def mixed_batch(length: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows: no padding, half padding, three pads, one real token, and all padding (a row of zeros)."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, VOCAB, (5, length), generator=generator)
    mask = torch.ones(5, length, dtype=torch.long)
    mask[1, max(1, length // 2) :] = 0
    mask[2, max(1, length - 3) :] = 0
    mask[3, 1:] = 0
    mask[4, :] = 0
    ids[mask == 0] = 0
    return ids, mask


@pytest.mark.parametrize(("local_attention", "global_every"), [(8, 2), (16, 3)])
def test_patched_model_matches_transformers_every_row_lengths_1_to_100(local_attention, global_every):
    reference, patched = pair(tiny_config(local_attention, global_every))
    assert patch_local_attention(patched) == sum(1 for i in range(4) if i % global_every)  # and patching is idempotent
    worst = 0.0
    for length in range(1, 101):
        ids, mask = mixed_batch(length, seed=length)
        with torch.no_grad():
            expected = reference(input_ids=ids, attention_mask=mask).last_hidden_state
            got = patched(input_ids=ids, attention_mask=mask).last_hidden_state
        assert torch.isfinite(got).all(), f"length {length}"
        worst = max(worst, float((expected - got).abs().max()))
    assert worst <= TOLERANCE


def test_patched_sequence_classifier_matches_transformers():
    config = tiny_config(8, 3, num_labels=2, classifier_pooling="mean")
    reference, patched = pair(config, ModernBertForSequenceClassification)
    for length in (5, 37, 90):
        ids, mask = mixed_batch(length, seed=length)
        ids, mask = ids[:4], mask[:4]  # mean pooling of an all-padding row divides by zero in transformers too
        with torch.no_grad():
            expected = reference(input_ids=ids, attention_mask=mask).logits
            got = patched(input_ids=ids, attention_mask=mask).logits
        assert float((expected - got).abs().max()) <= TOLERANCE


def test_the_band_is_inclusive_and_local_layers_see_nothing_past_it():
    """A change at position p moves local-only outputs at |i - p| <= window and nowhere else."""
    window = 4
    config = tiny_config(2 * window, 100, num_hidden_layers=2)  # layer 0 global (identity input), layer 1 local
    _, patched = pair(config)
    # Layer 0 attends globally: feed the local layer directly, through its own norm and attention.
    attn = patched.layers[1].attn
    hidden = torch.randn(1, 30, 64)
    moved = hidden.clone()
    moved[0, 15] += 1.0
    from embedrt.export.banded_attention import band_mask

    mask = band_mask(torch.ones(1, 30, dtype=torch.long), window, torch.float32)
    position_ids = torch.arange(30).unsqueeze(0)
    with torch.no_grad():
        a = attn(hidden, sliding_window_mask=mask, position_ids=position_ids)[0]
        b = attn(moved, sliding_window_mask=mask, position_ids=position_ids)[0]
    changed = ((a - b).abs().amax(dim=-1) > 0)[0].nonzero().flatten().tolist()
    assert changed == list(range(15 - window, 15 + window + 1))


def test_sdpa_model_patched_matches_transformers_eager():
    """Loaded with SDPA, the global layers keep SDPA and the local ones go banded; eager is the reference."""
    reference, _ = pair(tiny_config(8, 2))
    torch.manual_seed(0)
    sdpa = ModernBertModel(tiny_config(8, 2, attn_implementation="sdpa")).eval()
    sdpa.load_state_dict(reference.state_dict())
    patch_local_attention(sdpa)
    for length in (3, 40, 77):
        ids, mask = mixed_batch(length, seed=length)
        ids, mask = ids[:4], mask[:4]  # SDPA's fully masked rows differ from eager's in transformers itself
        with torch.no_grad():
            expected = reference(input_ids=ids, attention_mask=mask).last_hidden_state
            got = sdpa(input_ids=ids, attention_mask=mask).last_hidden_state
        assert float((expected - got).abs().max()) <= TOLERANCE


def test_patch_refuses_what_it_cannot_do():
    with pytest.raises(TypeError, match="ModernBertModel"):
        patch_local_attention(torch.nn.Linear(2, 2))
    flash = ModernBertModel(tiny_config(8, 2)).eval()
    flash.config._attn_implementation = "flash_attention_2"
    with pytest.raises(ValueError, match="flash_attention_2"):
        patch_local_attention(flash)
    _, patched = pair(tiny_config(8, 2))
    ids, mask = mixed_batch(10, seed=1)
    with pytest.raises(ValueError, match="output_attentions"):
        patched(input_ids=ids, attention_mask=mask, output_attentions=True)


class _Output(torch.nn.Module):
    def __init__(self, encoder: torch.nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def trace(model: torch.nn.Module, out_file: Path) -> Path:
    """torch.onnx.export as embedrt's _trace does it: dynamo off, a 2 x 8 dummy, dynamic batch and sequence."""
    dummy = torch.full((2, 8), 2, dtype=torch.long)
    dummy[:, 1::2] = 3
    names = ["input_ids", "attention_mask", "last_hidden_state"]
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _Output(model),
            (dummy, torch.ones_like(dummy)),
            str(out_file),
            input_names=names[:2],
            output_names=names[2:],
            dynamic_axes={name: {0: "batch", 1: "sequence"} for name in names},
            opset_version=17,
            dynamo=False,
        )
    return out_file


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory):
    """The reference model (local_attention 16: window and chunk c = 8), its trace, and the patched trace."""
    reference, patched = pair(tiny_config(16, 3))
    out = tmp_path_factory.mktemp("banded")
    return reference, trace(reference, out / "full.onnx"), trace(patched, out / "banded.onnx")


def run_onnx(path: Path, ids: torch.Tensor, mask: torch.Tensor, level: str = "ORT_ENABLE_ALL") -> np.ndarray:
    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})[0]


C = 8
LENGTHS = (1, C - 1, C, C + 1, 3 * C + 5, 100, 2048)  # the trace saw 8 only


@pytest.mark.parametrize("length", LENGTHS)
def test_exported_banded_graph_matches_torch_at_lengths_it_was_not_traced_at(exported, length):
    reference, _, banded = exported
    ids, mask = mixed_batch(length, seed=length)
    with torch.no_grad():
        expected = reference(input_ids=ids, attention_mask=mask).last_hidden_state.numpy()
    for level in ("ORT_DISABLE_ALL", "ORT_ENABLE_ALL"):
        got = run_onnx(banded, ids, mask, level)
        assert np.isfinite(got).all()
        assert float(np.abs(expected - got).max()) <= TOLERANCE, level


def _local_attention_inputs(path: Path, local_layers: list[int]) -> list[str]:
    """Every tensor read by a node of a local layer's attention (the projections' inputs aside)."""
    model = onnx.load(str(path))
    names = []
    for node in model.graph.node:
        if any(f"/layers.{i}/attn/" in node.name for i in local_layers) and "/W" not in node.name:
            names += [name for name in node.input if name]
    initializers = {t.name for t in model.graph.initializer}
    return sorted(set(names) - initializers)


def _square_inputs(path: Path, local_layers: list[int], length: int, tmp: Path) -> list[str]:
    """The local layers' attention inputs that are length x length somewhere in their shape, at ``length``."""
    names = _local_attention_inputs(path, local_layers)
    model = onnx.load(str(path))
    model.graph.output.extend(onnx.helper.make_empty_tensor_value_info(n) for n in names)
    probe = tmp / f"probe-{path.name}"
    onnx.save(model, str(probe))
    ids, mask = mixed_batch(length, seed=3)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(probe), options, providers=["CPUExecutionProvider"])
    values = session.run(names, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
    return [n for n, v in zip(names, values, strict=True) if list(np.shape(v)).count(length) >= 2]


def test_no_length_by_length_tensor_feeds_the_local_layers(exported, tmp_path):
    """At 37 tokens (prime, no multiple of c), the unpatched local layers read 37 x 37 masks and scores; the
    banded ones read nothing 37 x 37."""
    _, full, banded = exported
    local = [1, 2]  # 4 layers, a global one every 3: layers 0 and 3 are global
    assert _square_inputs(full, local, 37, tmp_path), "the probe must find the L x L mask in the unpatched graph"
    assert _square_inputs(banded, local, 37, tmp_path) == []


def test_fp32_optimizer_pass_keeps_the_banded_graph_exact(exported, tmp_path):
    """onnxruntime's transformer optimizer (model_type bert), as embedrt's write_fp32 runs it."""
    from embedrt.export.onnx_files import write_fp32

    reference, _, banded = exported
    fused = tmp_path / "fp32" / "model.onnx"
    fused.parent.mkdir()
    write_fp32(banded, fused, num_heads=4, hidden_size=64)
    for length in (1, 29, 300):
        ids, mask = mixed_batch(length, seed=length)
        with torch.no_grad():
            expected = reference(input_ids=ids, attention_mask=mask).last_hidden_state.numpy()
        got = run_onnx(fused, ids, mask)
        assert np.isfinite(got).all()
        assert float(np.abs(expected - got).max()) <= TOLERANCE


def test_int8_quantization_of_the_banded_graph(exported, tmp_path):
    """embedrt's int8 recipe (calibrate + write_int8) on the banded trace: every weight MatMul quantized, no
    NaN/inf on any row, the real rows' vectors within int8's error of torch's fp32."""
    from embedrt.export.int8 import calibrate, write_int8

    reference, _, banded = exported
    feeds = []
    for length in (20, 50, 90):
        ids, mask = mixed_batch(length, seed=length)
        feeds.append({"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
    int8 = tmp_path / "model.int8.onnx"
    write_int8(banded, int8, calibrate(banded, feeds, 15, "random ids"), num_heads=4)
    ops = [node.op_type for node in onnx.load(str(int8)).graph.node]
    assert ops.count("MatMulIntegerToFloat") == 4 * 4  # Wqkv, Wo and the MLP's two, in each of the 4 layers
    for length in (1, 29, 300):
        ids, mask = mixed_batch(length, seed=length)
        with torch.no_grad():
            expected = reference(input_ids=ids, attention_mask=mask).last_hidden_state.numpy()
        got = run_onnx(int8, ids, mask)
        assert np.isfinite(got).all()
        real = mask.numpy().astype(bool)
        a, b = expected[real], got[real]
        cosine = (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)
        assert cosine.min() >= 0.999


def test_exported_patched_sequence_classifier_matches_torch(tmp_path):
    """A cross-encoder's trace (logits out), patched through its .model, at lengths the trace did not see."""
    config = tiny_config(8, 3, num_labels=1, classifier_pooling="cls")
    reference, patched = pair(config, ModernBertForSequenceClassification)

    class Logits(torch.nn.Module):
        def __init__(self, model: torch.nn.Module) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return self.model(input_ids=input_ids, attention_mask=attention_mask).logits

    dummy = torch.full((2, 8), 2, dtype=torch.long)
    names = ["input_ids", "attention_mask", "logits"]
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Logits(patched),
            (dummy, torch.ones_like(dummy)),
            str(tmp_path / "cross.onnx"),
            input_names=names[:2],
            output_names=names[2:],
            dynamic_axes={"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"}},
            opset_version=17,
            dynamo=False,
        )
    session = ort.InferenceSession(str(tmp_path / "cross.onnx"), providers=["CPUExecutionProvider"])
    for length in (1, 13, 150):
        ids, mask = mixed_batch(length, seed=length)
        with torch.no_grad():
            expected = reference(input_ids=ids, attention_mask=mask).logits.numpy()
        got = session.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})[0]
        assert np.isfinite(got).all()
        assert float(np.abs(expected - got).max()) <= TOLERANCE
