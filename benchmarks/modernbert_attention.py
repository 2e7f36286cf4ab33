"""ModernBERT's local layers with full L x L attention (transformers' eager path) or banded (embedrt.export.
banded_attention): the ONNX graph of gte-modernbert-base's shape both ways, timed in one process, and where the
time goes.

python -m benchmarks.modernbert_attention [--layers 22] [--lengths 128,512,2048] [--batches 1,4] [--rounds 5]
    [--threads 2] [--profile] [--skip 2048x4] [--out benchmarks/results/modernbert-attention.md]

The model is a random-weight ModernBertModel of gte-modernbert-base's config (22 layers, hidden 768, 12 heads,
intermediate 1152, local_attention 128, a global layer every 3, vocabulary 50,368, 8,192 positions; eager
attention, reference_compile off); the cost of a forward pass depends on the shape, not the weights. It is
traced twice with torch.onnx.export (dynamo=False, opset 17, dynamic batch and sequence): as transformers runs it
(``full``) and with ``patch_local_attention`` (``banded``). Both graphs run in onnxruntime (CPU, ``--threads``
intra-op threads, default graph optimizations) on random ids with a mask of ones, alternating graph by graph in
each round; the median round of each is reported, with the largest difference between the two graphs' outputs.

``--profile`` also runs each graph once per shape with onnxruntime's profiler and splits the node time into:
weight MatMuls (Wqkv, Wo and the MLP), the attention of the global layers and of the local layers (every node of
``layers.N/attn`` but the two projections: Q.K^T, the mask add, softmax, .V, rotary, the reshapes), the mask
building outside the layers, and the rest (embeddings, norms, activations).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import tempfile
import time
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
# gte-modernbert-base's config.json sizes.
SHAPE = {
    "vocab_size": 50368,
    "hidden_size": 768,
    "num_attention_heads": 12,
    "intermediate_size": 1152,
    "local_attention": 128,
    "global_attn_every_n_layers": 3,
    "max_position_embeddings": 8192,
}
GRAPHS = ("full", "banded")
PARTS = ("weight MatMul", "global attention", "local attention", "mask building", "other")
_LAYER = re.compile(r"layers\.(\d+)/")
# Node types of transformers' mask building (_update_attention_mask, outside the layers). onnxruntime renames
# the nodes it fuses (Gelu, some Transposes), so a nameless node of another type is counted as "other".
_MASK_OPS = {"Where", "Expand", "Sub", "Cast", "LessOrEqual", "Abs", "Range", "Not", "Equal", "ConstantOfShape"}


def build(layers: int, seed: int = 0):
    """A random-weight ModernBertModel of gte-modernbert-base's shape with ``layers`` layers, eager attention."""
    import torch
    from transformers import ModernBertConfig, ModernBertModel

    torch.manual_seed(seed)
    config = ModernBertConfig(num_hidden_layers=layers, reference_compile=False, attn_implementation="eager", **SHAPE)
    return ModernBertModel(config).eval()


def export(model, out_file: Path) -> None:
    """torch.onnx.export of ``model``'s last_hidden_state, as embedrt's ``_trace`` exports (dummy of 2 x 8)."""
    import torch

    class Output(torch.nn.Module):
        def __init__(self, encoder: torch.nn.Module) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    dummy = torch.full((2, 8), 2, dtype=torch.long)
    dummy[:, 1::2] = 3
    names = ["input_ids", "attention_mask", "last_hidden_state"]
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Output(model),
            (dummy, torch.ones_like(dummy)),
            str(out_file),
            input_names=names[:2],
            output_names=names[2:],
            dynamic_axes={name: {0: "batch", 1: "sequence"} for name in names},
            opset_version=17,
            dynamo=False,
        )


def graphs(layers: int, out: Path) -> dict[str, Path]:
    """The full and the banded trace of one random-weight model."""
    from embedrt.export.banded_attention import patch_local_attention

    model = build(layers)
    files = {name: out / f"{name}.onnx" for name in GRAPHS}
    export(model, files["full"])
    patch_local_attention(model)
    export(model, files["banded"])
    return files


def part(node: str, op: str, global_every: int) -> str:
    """Which of PARTS a profiled node (its name, as torch.onnx.export names it, and op type) belongs to."""
    layer = _LAYER.search(node)
    if layer is None:
        return "mask building" if op in _MASK_OPS and "/embeddings/" not in node else "other"
    if op in ("MatMul", "Gemm", "FusedMatMul", "MatMulInteger") and (
        "/Wqkv/" in node or "/Wo/" in node or "/Wi/" in node
    ):
        return "weight MatMul"
    if "/attn/" in node and "/Wqkv/" not in node and "/Wo/" not in node:
        return "global attention" if int(layer.group(1)) % global_every == 0 else "local attention"
    return "other"


def profile(file: Path, feeds: dict[str, np.ndarray], threads: int, runs: int = 2) -> dict[str, float]:
    """Node time (ms, per run, the last ``runs - 1`` runs) of one graph on ``feeds``, split into PARTS."""
    import onnxruntime

    with tempfile.TemporaryDirectory() as tmp:
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "profile")
        session = onnxruntime.InferenceSession(str(file), options, providers=["CPUExecutionProvider"])
        for _ in range(runs):
            session.run(None, feeds)
        events = json.loads(Path(session.end_profiling()).read_text())
    runs_seen: dict[str, int] = defaultdict(int)
    totals = dict.fromkeys(PARTS, 0.0)
    for event in events:
        if event.get("cat") != "Node" or not event["name"].endswith("_kernel_time"):
            continue
        node = event["name"].removesuffix("_kernel_time")
        runs_seen[node] += 1
        if runs_seen[node] == 1:  # the first run warms up
            continue
        totals[part(node, event["args"].get("op_name", ""), SHAPE["global_attn_every_n_layers"])] += event["dur"]
    return {name: us / 1000 / (runs - 1) for name, us in totals.items()}


def feeds_for(batch: int, length: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(length * 10 + batch)
    ids = rng.integers(5, SHAPE["vocab_size"], size=(batch, length), dtype=np.int64)
    return {"input_ids": ids, "attention_mask": np.ones_like(ids)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=22)
    parser.add_argument("--lengths", default="128,512,2048")
    parser.add_argument("--batches", default="1,4")
    parser.add_argument("--skip", default="", help="comma-separated LENGTHxBATCH shapes not to run, e.g. 2048x4")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--note", default="", help="a line for the results header (e.g. the machine's state)")
    parser.add_argument("--out", type=Path, default=RESULTS / "modernbert-attention.md")
    args = parser.parse_args()
    import onnxruntime

    skip = set(filter(None, args.skip.split(",")))
    shapes = [
        (int(n), int(b)) for n in args.lengths.split(",") for b in args.batches.split(",") if f"{n}x{b}" not in skip
    ]
    rows, profiles = [], []
    with tempfile.TemporaryDirectory() as tmp:
        files = graphs(args.layers, Path(tmp))
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = args.threads
        sessions = {n: onnxruntime.InferenceSession(str(f), options, providers=["CPUExecutionProvider"])
                    for n, f in files.items()}  # fmt: skip
        for length, batch in shapes:
            feeds = feeds_for(batch, length)
            outputs = {name: session.run(None, feeds)[0] for name, session in sessions.items()}  # and a warm-up
            diff = float(np.abs(outputs["full"] - outputs["banded"]).max())
            times: dict[str, list[float]] = {name: [] for name in sessions}
            for _ in range(args.rounds):
                for name, session in sessions.items():
                    start = time.perf_counter()
                    session.run(None, feeds)
                    times[name].append(time.perf_counter() - start)
            full, banded = (1000 * statistics.median(times[name]) for name in GRAPHS)
            rows.append((length, batch, full, banded, full / banded, diff))
            print(f"L={length} batch={batch}: full {full:.1f} ms, banded {banded:.1f} ms, "
                  f"speed-up {full / banded:.2f}x, max abs diff {diff:.1e}", flush=True)  # fmt: skip
            if args.profile:
                for name in GRAPHS:
                    split = profile(files[name], feeds, args.threads)
                    profiles.append((length, batch, name, split))
                    print(f"  {name}: " + ", ".join(f"{k} {v:.1f} ms" for k, v in split.items()), flush=True)
    write(args, rows, profiles)


def write(args: argparse.Namespace, rows: list[tuple], profiles: list[tuple]) -> None:
    """The results table (and the profile's split) as markdown to ``args.out``, and printed."""
    import onnxruntime
    import torch

    lines = [
        "# ModernBERT local layers: full L x L attention vs banded",
        "",
        f"`python -m benchmarks.modernbert_attention --layers {args.layers} --lengths {args.lengths} "
        f"--batches {args.batches} --rounds {args.rounds} --threads {args.threads}"
        + (f" --skip {args.skip}" if args.skip else "")
        + (" --profile" if args.profile else "")
        + "`",
        "",
        f"Random-weight ModernBertModel of gte-modernbert-base's shape, {args.layers} layers "
        f"({sum(1 for i in range(args.layers) if i % SHAPE['global_attn_every_n_layers'] == 0)} global); "
        f"onnxruntime {onnxruntime.__version__} CPU, {args.threads} threads, torch {torch.__version__}; "
        f"median of {args.rounds} interleaved rounds, mask of ones.",
    ]
    if args.note:
        lines += ["", args.note]
    lines += [
        "",
        "| tokens | batch | full ms | banded ms | speed-up | max abs diff |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [f"| {n} | {b} | {f:.1f} | {d:.1f} | {r:.2f}x | {x:.1e} |" for n, b, f, d, r, x in rows]
    if profiles:
        lines += ["", "Where the time goes (onnxruntime profiler, ms of node time per run, share of the total):", ""]
        lines += ["| tokens | batch | graph | " + " | ".join(PARTS) + " |", "|---:|---:|---|" + "---:|" * len(PARTS)]
        for n, b, name, split in profiles:
            total = sum(split.values())
            cells = " | ".join(f"{split[p]:.1f} ({100 * split[p] / total:.0f}%)" for p in PARTS)
            lines.append(f"| {n} | {b} | {name} | {cells} |")
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
