"""MPNet's attention, fused by embedrt (contrib Attention with the relative position bias) or left as onnxruntime's
optimizer leaves it: the fp32 graph of all-mpnet-base-v2's shape both ways, timed in one run.

python -m benchmarks.mpnet_attention [--work DIR] [--rounds 5] [--threads 2]

The model is benchmarks/families.py's ``mpnet-base`` (random weights, 12 x 768). Both graphs run the same
512 sts-test sentences at batch 32 (sorted by length, as the Encoder batches them) and 50 single sentences, in
alternating rounds in this process; the best round of each is reported, with the largest difference between the
two graphs' outputs.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.families import BATCH, LATENCY_CALLS, REPO, SHAPES, _texts, build


def graphs(source: Path, out: Path) -> dict[str, Path]:
    """The plain trace of ``source``'s transformer, then fp32 written with and without embedrt's fusion."""
    from embedrt.export.architectures.mpnet import MPNET
    from embedrt.export.onnx_files import export_plain, write_fp32

    shape = SHAPES["mpnet-base"]
    plain = out / "plain.onnx"
    export_plain(source / "0_Transformer" if (source / "0_Transformer").is_dir() else source, plain, False,
                 architecture=MPNET)  # fmt: skip
    files = {}
    for name, fused in (("fused", True), ("unfused", False)):
        files[name] = out / name / "model.onnx"
        files[name].parent.mkdir()
        recipe = write_fp32(plain, files[name], shape.heads, shape.hidden, relative_bias_attention=fused)
        print(f"{name}: {recipe}")
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=REPO / ".cache" / "bench-families")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    import onnxruntime

    from embedrt.tokenizers import load_tokenizer

    source = build("mpnet-base", args.work)
    exported = args.work / "mpnet-base" / "embedrt"  # its tokenizer.json (the export converts MPNet's vocab.txt)
    tokenizer = load_tokenizer(exported)
    sentences = sorted(_texts()[0], key=len)
    batches = [tokenizer(sentences[i : i + BATCH], 384) for i in range(0, len(sentences), BATCH)]
    singles = [tokenizer([text], 384) for text in _texts()[0][:LATENCY_CALLS]]
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = args.threads
    with tempfile.TemporaryDirectory() as tmp:
        files = graphs(source, Path(tmp))
        sessions = {n: onnxruntime.InferenceSession(str(f), options, providers=["CPUExecutionProvider"])
                    for n, f in files.items()}  # fmt: skip

        def run(name: str, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
            return sessions[name].run(None, {"input_ids": ids, "attention_mask": mask})[0]

        diff = max(float(np.abs(run("fused", *b) - run("unfused", *b)).max()) for b in batches[:4])
        best = {n: [float("inf"), float("inf")] for n in sessions}
        for _ in range(args.rounds):
            for name in sessions:
                start = time.perf_counter()
                for batch in batches:
                    run(name, *batch)
                best[name][0] = min(best[name][0], time.perf_counter() - start)
                latencies = []
                for single in singles:
                    start = time.perf_counter()
                    run(name, *single)
                    latencies.append(time.perf_counter() - start)
                best[name][1] = min(best[name][1], float(np.median(latencies)))
    for name, (total, p50) in best.items():
        print(f"{name}: {len(sentences) / total:.1f} sentences/s, p50 {1000 * p50:.2f} ms")
    ratio = best["unfused"][0] / best["fused"][0]
    print(f"fused / unfused throughput: {ratio:.3f}x; max abs difference between the graphs {diff:.2e}")


if __name__ == "__main__":
    main()
