"""Where an export's time goes, by kind of operation, at a given text length (onnxruntime's own profiler).

python -m benchmarks.op_profile [--model-dir models/all-MiniLM-L6-v2] [--variants fp32,int8] [--lengths 16,256,512]
    [--threads 2] [--runs 20] [--out benchmarks/results/op-profile.md]

Each variant runs its onnxruntime session (built as ``Encoder.load`` builds it, the int8 kernel probe included)
on batches shaped as ``Encoder.encode`` sends them: texts of exactly ``length`` tokens, as many per call as
``max_batch_tokens`` (512) lets through, 32 at most. Node times are summed by operator type and grouped into the
kinds the int8 recipe cares about: matrix products, attention, GELU, LayerNorm, the run-time quantization of
activations, and the rest. Shares are what to compare: the profiler itself adds a little to every node.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.compare import machine, sts_sentences

KINDS = {
    "MatMulIntegerToFloat": "int8 GEMM",
    "MatMul": "fp32 GEMM",
    "Gemm": "fp32 GEMM",
    "FusedMatMul": "fp32 GEMM",
    "Attention": "attention",
    "MultiHeadAttention": "attention",
    "BiasGelu": "GELU",
    "Gelu": "GELU",
    "FastGelu": "GELU",
    "LayerNormalization": "LayerNorm",
    "SkipLayerNormalization": "LayerNorm",
    # The per-token steps of the attention context and the GELU output: max |x| of each row, the step, the codes.
    "QuantizeLinear": "activation quantization",
    "DynamicQuantizeLinear": "activation quantization",
    "ReduceMax": "activation quantization",
    "Abs": "activation quantization",
    "Div": "activation quantization",
    "Mul": "activation quantization",
    "Split": "activation quantization",
    "Add": "residual and bias adds",
}
DEFAULT_LENGTHS = (16, 256, 512)


def kind_of(op_type: str) -> str:
    """The group an operator type is reported under."""
    return KINDS.get(op_type, "other")


def node_times(events: list[dict[str, Any]]) -> Counter[str]:
    """Microseconds per operator type from onnxruntime's profile events (kernel time of each node)."""
    times: Counter[str] = Counter()
    for event in events:
        if event.get("cat") == "Node" and str(event.get("name", "")).endswith("_kernel_time"):
            times[event["args"]["op_name"]] += int(event["dur"])
    return times


def by_kind(times: Counter[str]) -> dict[str, float]:
    """Share of the total per kind, largest first."""
    total = sum(times.values()) or 1
    kinds: Counter[str] = Counter()
    for op_type, micros in times.items():
        kinds[kind_of(op_type)] += micros
    return {kind: micros / total for kind, micros in kinds.most_common()}


def texts_of_length(encoder: Any, length: int, count: int) -> list[str]:
    """``count`` texts of sts-test words that tokenize to at least ``length`` tokens (truncated to it)."""
    words = " ".join(sts_sentences()).split()
    texts, start = [], 0
    for _ in range(count):
        n = max(1, length - 2)
        while len(encoder.tokenizer([" ".join(words[start : start + n])], 10**6)[0][0]) < length and n < len(words):
            n += 8
        texts.append(" ".join(words[start : start + n]))
        start = (start + n) % max(1, len(words) - 4 * n)
    return texts


def profile(model_dir: Path, variant: str, length: int, threads: int, runs: int) -> dict[str, Any]:
    """Per-call milliseconds and shares by kind for ``variant`` on texts of ``length`` tokens."""
    import onnxruntime as ort

    from embedrt import Encoder
    from embedrt.session import session_options

    encoder = Encoder.load(model_dir, variant=variant, threads=threads)
    batch = max(1, min(32, encoder.max_batch_tokens // length))
    # The tokenizer at ``length`` itself: lengths past the model's max_seq_length (MiniLM: 256, positions 512) too.
    ids, mask = encoder.tokenizer(texts_of_length(encoder, length, batch), length)
    feeds = {"input_ids": ids, "attention_mask": mask}
    names = {i.name for i in encoder._session.get_inputs()}
    feeds = {k: v for k, v in feeds.items() if k in names}
    if "token_type_ids" in names:
        feeds["token_type_ids"] = np.zeros_like(feeds["input_ids"])
    config = encoder.int8_check.session_config if encoder.int8_check else {}
    options = session_options(threads, config)
    options.enable_profiling = True
    with tempfile.TemporaryDirectory() as tmp:
        options.profile_file_prefix = os.path.join(tmp, "profile")
        path = model_dir / f"model.{variant}.onnx"
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        for _ in range(runs):
            session.run(None, feeds)
        events = json.loads(Path(session.end_profiling()).read_text())
    times = node_times(events)
    return {
        "batch": batch,
        "tokens": int(feeds["input_ids"].shape[1]),
        "ms_per_call": sum(times.values()) / runs / 1000,
        "kinds": by_kind(times),
        "op_types": {op: micros / runs / 1000 for op, micros in times.most_common()},
    }


def markdown(results: dict[str, dict[str, dict[str, Any]]], info: dict[str, Any]) -> str:
    """One table per length: each kind's share and milliseconds per call, per variant."""
    lines = [
        "# Where the time goes, by kind of operation (onnxruntime profiler)",
        "",
        f"`python -m benchmarks.op_profile`: {info['model']}, {info['threads']} threads, {info['runs']} profiled "
        f"calls per case on {info['machine']['cpu']}. Batches as Encoder.encode sends them (max_batch_tokens 512).",
    ]
    for length in sorted({int(k) for v in results.values() for k in v}):
        cases = {variant: rows[str(length)] for variant, rows in results.items() if str(length) in rows}
        kinds = list(dict.fromkeys(k for case in cases.values() for k in case["kinds"]))
        head = " | ".join(f"{v} (batch {c['batch']}, {c['ms_per_call']:.1f} ms/call)" for v, c in cases.items())
        tokens = next(iter(cases.values()))["tokens"]
        lines += ["", f"## {tokens} tokens", "", f"| kind | {head} |", "|---|" + "---:|" * len(cases)]
        for kind in kinds:
            cells = [
                f"{100 * c['kinds'].get(kind, 0):.1f}% ({c['kinds'].get(kind, 0) * c['ms_per_call']:.2f} ms)"
                for c in cases.values()
            ]
            lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=Path("models/all-MiniLM-L6-v2"))
    parser.add_argument("--variants", default="fp32,int8")
    parser.add_argument("--lengths", default=",".join(map(str, DEFAULT_LENGTHS)))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/op-profile.md"))
    args = parser.parse_args(argv)
    lengths = [int(x) for x in args.lengths.split(",")]
    results = {
        variant: {str(n): profile(args.model_dir, variant, n, args.threads, args.runs) for n in lengths}
        for variant in args.variants.split(",")
    }
    info = {"model": args.model_dir.name, "threads": args.threads, "runs": args.runs, "machine": machine()}
    text = markdown(results, info)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    args.out.with_suffix(".json").write_text(json.dumps({**info, "results": results}, indent=2) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
