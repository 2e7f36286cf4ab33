"""The export's steps on graphs past protobuf's 2 GiB, which the tests (tiny models, a tiny threshold) cannot reach.

python -m benchmarks.past_2gib [--work DIR] [--steps trace,build,serialize,int8,fp32,fp16,run]

XLM-R large is 2.24 GB in fp32; its largest tensor, the word table, 1.02 GB. Here two 250,002 x 1,100 float
tables (1.1 GB each, 2.2 GB together) are Gathered by the ids and added, then a MatMul: the graph is built
without holding it in memory (the tensors are written straight to the data file). Each step runs in its own
process, so that its peak memory is its own:

- trace: ``torch.onnx.export`` of a module of that size, as ``export_plain`` calls it, then the re-save that
  puts the weights in one ``.data`` file (torch writes one file per tensor past 2 GiB);
- serialize: the failure the export avoids: such a ModelProto cannot be serialized in memory;
- int8: ``calibrate`` (its session from a file) and ``write_int8`` (onnx's checker on the written file);
- fp32 / fp16: onnxruntime's transformer optimizer (``write_fp32``), and ``write_fp16`` (not run by default:
  it fuses the graph again and converts it in memory, more than this 24 GB machine had free beside other jobs);
- run: each written file against the built graph (min cosine per token).
Results: benchmarks/results/past-2gib.md. Needs about 9 GB of free memory (the optimizer's peak).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
ROWS, WIDTH, OUT = 250_002, 1100, 64
STEPS = ("trace", "build", "serialize", "int8", "fp32", "run")


def _feeds() -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(1)
    return [
        {"input_ids": rng.integers(0, ROWS, (8, 16)), "attention_mask": np.ones((8, 16), np.int64)} for _ in range(4)
    ]


def trace(work: Path) -> str:
    """torch.onnx.export (TorchScript) of a 2.2 GB module, then the re-save of export_plain."""
    import onnx
    import torch

    from embedrt.export.onnx_files import data_file, save_onnx

    class Tables(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = torch.nn.Embedding(ROWS, WIDTH)
            self.b = torch.nn.Embedding(ROWS, WIDTH)
            self.w = torch.nn.Linear(WIDTH, OUT)

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return self.w(self.a(ids) + self.b(ids))

    out = work / "traced" / "plain.onnx"
    out.parent.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        traced = Path(tmp) / "plain.onnx"
        module = Tables()
        with torch.no_grad():
            torch.onnx.export(
                module,
                (torch.ones(2, 8, dtype=torch.long),),
                str(traced),
                input_names=["input_ids"],
                output_names=["last_hidden_state"],
                dynamic_axes={"input_ids": {0: "batch", 1: "sequence"}},
                opset_version=17,
                dynamo=False,
            )
        del module
        files = len(os.listdir(tmp))
        save_onnx(onnx.load(str(traced)), out)
    data = data_file(out).stat().st_size
    return f"torch wrote {files} files; re-saved as {out.name} ({out.stat().st_size} bytes) + {data:,} bytes of .data"


def build(work: Path) -> str:
    """The plain graph, its tensors written block by block to plain.onnx.data (never whole in memory)."""
    import onnx
    from onnx import TensorProto, helper

    plain = work / "plain.onnx"
    rng = np.random.default_rng(0)
    tensors, offset = [], 0
    with open(str(plain) + ".data", "wb") as data:
        for name, shape in (("table_a", (ROWS, WIDTH)), ("table_b", (ROWS, WIDTH)), ("w", (WIDTH, OUT))):
            length = 0
            for start in range(0, shape[0], 10_000):
                block = rng.standard_normal((min(10_000, shape[0] - start), shape[1]), dtype=np.float32)
                data.write(block.tobytes())
                length += block.nbytes
            tensor = TensorProto(name=name, dims=list(shape), data_type=TensorProto.FLOAT)
            for key, value in (("location", plain.name + ".data"), ("offset", str(offset)), ("length", str(length))):
                entry = tensor.external_data.add()
                entry.key, entry.value = key, value
            tensor.data_location = TensorProto.EXTERNAL
            tensors.append(tensor)
            offset += length
    nodes = [
        helper.make_node("Gather", ["table_a", "input_ids"], ["a"]),
        helper.make_node("Gather", ["table_b", "input_ids"], ["b"]),
        helper.make_node("Add", ["a", "b"], ["x"]),
        helper.make_node("MatMul", ["x", "w"], ["last_hidden_state"]),
    ]
    inputs = [
        helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
        helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "sequence"]),
    ]
    outputs = [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", "sequence", OUT])]
    graph = helper.make_graph(nodes, "past_2gib", inputs, outputs, tensors)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(plain))
    return f"plain.onnx {plain.stat().st_size} bytes + {offset:,} bytes of .data"


def serialize(work: Path) -> str:
    """What calibrate() and onnx's checker did before: serialize the whole ModelProto in memory."""
    import onnx

    model = onnx.load(str(work / "plain.onnx"))
    try:
        model.SerializeToString()
    except Exception as exc:  # protobuf's error type differs between its implementations
        return f"in-memory serialization fails: {type(exc).__name__}: {exc}"
    return "in-memory serialization worked (unexpected past 2 GiB)"


def int8(work: Path) -> str:
    """calibrate() from the file, write_int8() and its check of the written file."""
    from embedrt.export.int8 import calibrate, write_int8

    plain = work / "plain.onnx"
    calibration = calibrate(plain, _feeds(), 32, "random ids")
    out = work / "model.int8.onnx"
    write_int8(plain, out, calibration, num_heads=1)
    size = out.stat().st_size
    return f"calibrated {list(calibration.absmax)}; {out.name} {size:,} bytes (below the threshold: one file)"


def fp32(work: Path) -> str:
    from embedrt.export.onnx_files import write_fp32

    out = work / "fp32" / "model.fp32.onnx"
    write_fp32(work / "plain.onnx", out, num_heads=1, hidden_size=WIDTH)
    return ", ".join(f"{p.name} {p.stat().st_size:,} bytes" for p in sorted(out.parent.iterdir()))


def fp16(work: Path) -> str:
    from embedrt.export.onnx_files import write_fp16

    out = work / "fp16" / "model.fp16.onnx"
    write_fp16(work / "plain.onnx", out, num_heads=1, hidden_size=WIDTH)
    return ", ".join(f"{p.name} {p.stat().st_size:,} bytes" for p in sorted(out.parent.iterdir()))


def run(work: Path) -> str:
    """Each written file on the same ids as the built graph: min cosine per token."""
    import onnxruntime as ort

    feed = _feeds()[0]

    def outputs(path: Path) -> np.ndarray:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(None, {i.name: feed[i.name] for i in session.get_inputs()})[0]

    reference = outputs(work / "plain.onnx")
    found = []
    for name in ("model.int8.onnx", "fp32/model.fp32.onnx", "fp16/model.fp16.onnx"):
        if (work / name).is_file():
            got = outputs(work / name).astype(np.float64)
            cos = (got * reference).sum(-1) / np.linalg.norm(got, axis=-1) / np.linalg.norm(reference, axis=-1)
            found.append(f"{name}: min cosine {cos.min():.6f}")
    return "; ".join(found)


def main(argv: list[str] | None = None) -> None:
    """Run each step in its own process; write benchmarks/results/past-2gib.md."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "embedrt-past-2gib")
    parser.add_argument("--steps", default=",".join(STEPS))
    parser.add_argument("--step", help=argparse.SUPPRESS)  # one step, in this process
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    if args.step:
        start = time.perf_counter()
        line = globals()[args.step](args.work)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
        print(f"| {args.step} | {line} | {peak:.1f} GB | {time.perf_counter() - start:.0f} s |")
        return
    rows = []
    for step in args.steps.split(","):
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.past_2gib", "--work", str(args.work), "--step", step],
            cwd=REPO,
            capture_output=True,
            text=True,
        )
        row = next((x for x in done.stdout.splitlines() if x.startswith("|")), None)
        rows.append(row or f"| {step} | failed: {done.stderr.strip().splitlines()[-1:]} | | |")
        print(rows[-1], flush=True)
    text = "\n".join(
        [
            "# The export's steps past 2 GiB",
            "",
            f"`python -m benchmarks.past_2gib --steps {args.steps}`: a 2.2 GB graph (two 250,002 x 1,100 float "
            "tables; XLM-R large is 2.24 GB), each step in its own process. Peak memory is the step's process's.",
            "",
            "| step | result | peak memory | time |",
            "|---|---|---|---|",
            *rows,
        ]
    )
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "past-2gib.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
