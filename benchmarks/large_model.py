"""XLM-R large (multilingual-e5-large, bge-m3, arctic-embed-l-v2): file sizes, accuracy and speed of each variant,
and of int8 with and without the word-embedding Gather quantized.

python -m benchmarks.large_model [--work DIR] [--layers 2] [--rounds 5] [--quick]

The models are random-weight XLMRobertaModels built here offline, of XLM-R large's real shape (250,002 x 1024
word embeddings, 16 heads, 4096 intermediate, 514 positions) but ``--layers`` layers (2: the 24 would not fit in
a few minutes on a laptop), with a Unigram tokenizer trained here (benchmarks/xlmr_tokenizer.py): the tokenizer
reaches only its first 8,000 ids, and the model's vocabulary is what sizes the Gather. Each is saved by
sentence-transformers (mean pooling, Normalize) and exported by ``embedrt.export`` (fp32, fp16, int8); the int8
file with a float32 word table is written beside it from the same calibration.

- Sizes: of every variant's files (graph plus external data) at ``--layers`` and at one layer less; the size of
  the 24-layer large shape is the first plus (24 - layers) times the difference (one layer's weights).
- Accuracy, on all sts-test sentences: each variant against fp32 (min / p1 / mean cosine, max abs difference)
  and the Spearman (x100) of the sts-test pair cosines against fp32's; fp32 against sentence-transformers.
- Speed: sts-test sentences, batches of 32, and single sentences (p50), in interleaved rounds in this process.
  Timing is noisy on a shared machine: compare the ratios of one run.
Results: benchmarks/results/large-xlmr.md and large-xlmr.json. Nothing is written into the repository but them;
the models stay in --work (never committed).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.compare import machine
from benchmarks.xlmr_tokenizer import sts_sentences, train_xlmr_tokenizer, training_lines
from embedrt.export.parity import STS_DIR, StsPairs, _spearman, compare, row_cosines

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
FULL_LAYERS = 24  # XLM-R large


@dataclass(frozen=True)
class Shape:
    """An XLM-R configuration; the defaults are XLM-R large's, but for the number of layers."""

    layers: int
    vocab: int = 250_002
    hidden: int = 1024
    heads: int = 16
    intermediate: int = 4096
    positions: int = 514


# ---------------------------------------------------------------- the models


def tokenizer_dir(work: Path) -> Path:
    """An XLM-R Unigram tokenizer trained on sts-train and generated multilingual text (8,000 pieces)."""
    out = work / "spm" / "tokenizer"
    if (out / "tokenizer.json").is_file():
        return out
    lines = training_lines(sts_sentences("train")[:4000], 2000, seed=5)
    return train_xlmr_tokenizer(work / "spm", lines, vocab_size=8000)


def build(work: Path, shape: Shape) -> Path:
    """A random-weight XLMRobertaModel of ``shape`` -> mean Pooling -> Normalize, saved by sentence-transformers."""
    source = work / f"xlmr-{shape.layers}L-{shape.hidden}" / "st"
    if (source / "modules.json").is_file():
        return source
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Normalize, Pooling, Transformer
    from transformers import AutoTokenizer, XLMRobertaConfig, XLMRobertaModel

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir(work)), model_max_length=shape.positions - 2)
    torch.manual_seed(0)
    config = XLMRobertaConfig(
        vocab_size=shape.vocab,
        pad_token_id=1,
        hidden_size=shape.hidden,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        intermediate_size=shape.intermediate,
        max_position_embeddings=shape.positions,
        type_vocab_size=1,
    )
    model = XLMRobertaModel(config)
    with torch.no_grad():
        # The random init draws every weight at std 0.02 and zeroes the pad rows. Word and position embeddings at
        # std 0.5 each make the word table carry half of what the first LayerNorm reads, as in a trained model:
        # at 0.02 beside distinct positions, the table's rounding error would hardly reach the vectors.
        for table in (model.embeddings.word_embeddings.weight, model.embeddings.position_embeddings.weight):
            table.normal_(0, 0.5)
            table[1] = 0.0
    hf = source.parent / "hf"
    model.save_pretrained(hf, safe_serialization=True)
    tokenizer.save_pretrained(str(hf))
    del model
    modules = [Transformer(str(hf)), Pooling(shape.hidden, "mean"), Normalize()]
    SentenceTransformer(modules=modules, device="cpu").save(str(source))
    shutil.rmtree(hf)
    return source


def export_all(source: Path, out: Path) -> dict[str, Path]:
    """Export fp32, fp16 and int8 (int8 word table, the rule) and write int8 with a float32 word table beside it.

    Returns each variant's ONNX file; the float32-table int8 file is outside the export (not in its manifest).
    """
    from embedrt.export import export
    from embedrt.export.embedding import EmbeddingModel
    from embedrt.export.int8 import WordTable, calibrate, calibration_texts, write_int8
    from embedrt.export.layout import check_transformer
    from embedrt.export.onnx_files import export_plain

    if not (out / "manifest.json").is_file():
        export(source, out, variants="fp32,fp16,int8", progress=True)
    alt = out.parent / "int8-fp32-table" / "model.int8.onnx"
    if not alt.is_file():
        alt.parent.mkdir(parents=True, exist_ok=True)
        model = EmbeddingModel.read(source)
        architecture, sizes = check_transformer(model.transformer_dir, allow_pickle=False)
        texts, origin = calibration_texts(None)  # what export() calibrated on
        with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
            plain = Path(tmp) / "plain.onnx"
            export_plain(model.transformer_dir, plain, False, architecture=architecture)
            ranges = calibrate(plain, model.feeds(out, texts), len(texts), origin)
            write_int8(plain, alt, ranges, sizes["num_heads"], word_table=WordTable.FP32)
    return {
        "fp32": out / "model.fp32.onnx",
        "fp16": out / "model.fp16.onnx",
        "int8": out / "model.int8.onnx",
        "int8-fp32-table": alt,
    }


def file_bytes(onnx_file: Path) -> int:
    """Bytes of an ONNX file plus its external data file, if any."""
    data = onnx_file.with_name(onnx_file.name + ".data")
    return onnx_file.stat().st_size + (data.stat().st_size if data.is_file() else 0)


# ---------------------------------------------------------------- accuracy and speed


def encoders(export_dir: Path, files: dict[str, Path], names: Sequence[str]) -> dict[str, Any]:
    """An Encoder per variant name; int8-fp32-table through a session on its file, with the export's tokenizer."""
    from embedrt import Encoder
    from embedrt.int8_kernel import check_int8_kernel
    from embedrt.manifest import Variant
    from embedrt.session import Device, create_session

    out = {}
    for name in names:
        if name == "int8-fp32-table":
            check = check_int8_kernel()
            session = create_session(files[name], Device.CPU, None, check.session_config)
            out[name] = Encoder.from_session(export_dir, session, Variant.INT8, Device.CPU, int8_check=check)
        else:
            out[name] = Encoder.load(export_dir, variant=name)
    return out


def fp16_runs_here(path: Path) -> bool:
    import onnxruntime

    try:
        onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:
        if type(exc).__name__ != "NotImplemented":
            raise
        return False
    return True


def accuracy(source: Path, export_dir: Path, files: dict[str, Path], names: Sequence[str]) -> dict[str, dict]:
    """Each variant against fp32 on all sts-test sentences; fp32 against sentence-transformers."""
    from sentence_transformers import SentenceTransformer

    sts = StsPairs.from_file(STS_DIR / "sts-test.csv")
    texts = sts.sentences
    n = len(sts.first)
    reference = np.asarray(SentenceTransformer(str(source), device="cpu").encode(texts, batch_size=32))
    gc.collect()
    results: dict[str, dict] = {}
    base = None
    for name in names:
        encoder = encoders(export_dir, files, [name])[name]
        got = np.asarray(encoder.encode(texts))
        del encoder
        gc.collect()
        if base is None:
            base = got
            figures = compare(reference, got).as_dict()
            results[name] = {"vs_sentence_transformers": figures}
        pair = row_cosines(got[:n], got[n:])
        results.setdefault(name, {})
        results[name]["vs_fp32"] = compare(base, got).as_dict()
        results[name]["spearman_vs_fp32"] = round(100.0 * _spearman(pair, row_cosines(base[:n], base[n:])), 3)
        results[name]["spearman_vs_gold"] = round(sts.spearman(got), 3)
        print(f"accuracy {name}: {results[name]}", file=sys.stderr, flush=True)
    return results


def speed(export_dir: Path, files: dict[str, Path], names: Sequence[str], rounds: int, sentences: int) -> dict:
    """Sentences/s at batch 32 and p50 of single sentences, variants interleaved in each round."""
    texts = StsPairs.from_file(STS_DIR / "sts-test.csv").sentences[:sentences]
    singles = texts[:40]
    running = encoders(export_dir, files, names)
    for encoder in running.values():  # warm up: first-run allocations and kernel choices
        encoder.encode(texts[:64])
    batch: dict[str, list[float]] = {name: [] for name in names}
    single: dict[str, list[float]] = {name: [] for name in names}

    def seconds(call: Callable[[], object]) -> float:
        start = time.perf_counter()
        call()
        return time.perf_counter() - start

    for r in range(rounds):
        order = list(names) if r % 2 == 0 else list(reversed(names))
        for name in order:
            encoder = running[name]
            batch[name].append(len(texts) / seconds(lambda e=encoder: e.encode(texts, batch_size=32)))
            single[name] += [seconds(lambda e=encoder, t=t: e.encode([t])) for t in singles]
        print(f"speed round {r + 1}/{rounds}", file=sys.stderr, flush=True)
    first = names[0]
    report = {}
    for name in names:
        per_s = statistics.median(batch[name])
        p50 = statistics.median(single[name]) * 1000
        report[name] = {
            "sentences_per_s": round(per_s, 1),
            "p50_single_ms": round(p50, 2),
            "throughput_vs_fp32": round(per_s / statistics.median(batch[first]), 3),
            "p50_vs_fp32": round(p50 / (statistics.median(single[first]) * 1000), 3),
        }
    return report


# ---------------------------------------------------------------- report


def sizes(work: Path, shape: Shape) -> dict[str, dict[str, int]]:
    """Measured sizes at ``shape.layers`` and one layer less, and the 24-layer size computed from them."""
    measured: dict[str, dict[str, int]] = {}
    for layers in (shape.layers - 1, shape.layers):
        smaller = Shape(layers, shape.vocab, shape.hidden, shape.heads, shape.intermediate, shape.positions)
        files = export_all(build(work, smaller), work / f"xlmr-{layers}L-{shape.hidden}" / "export")
        measured[f"{layers}L"] = {name: file_bytes(path) for name, path in files.items()}
    low, high = measured[f"{shape.layers - 1}L"], measured[f"{shape.layers}L"]
    per_layer = {name: high[name] - low[name] for name in high}
    measured["per_layer"] = per_layer
    full = {name: high[name] + (FULL_LAYERS - shape.layers) * per_layer[name] for name in high}
    measured[f"{FULL_LAYERS}L_computed"] = full
    return measured


def mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


def markdown(report: dict) -> str:
    shape, sz, acc, spd = report["shape"], report["sizes"], report["accuracy"], report["speed"]
    layers = shape["layers"]
    names = list(sz[f"{layers}L"])
    lines = [
        "# XLM-R large: sizes, accuracy and speed of each variant; int8 with and without the word table quantized",
        "",
        f"`python -m benchmarks.large_model --layers {layers} --rounds {report['rounds']}` on "
        f"{report['machine']['cpu']}"
        f" ({report['machine'].get('cores', '?')} cores, shared with other jobs while it ran: read the ratios, not "
        "the absolute times). Random-weight XLMRobertaModel of XLM-R large's shape, "
        f"{shape['vocab']:,} x {shape['hidden']} word embeddings, {shape['heads']} heads, {shape['intermediate']} "
        f"intermediate, {layers} layers; tokenizer trained here (8,000 pieces). "
        "`int8` is the export's int8 (word table int8, one fp32 scale per row: the rule); "
        "`int8-fp32-table` the same recipe and calibration with the word table left float32.",
        "",
        "## File sizes (graph + external data)",
        "",
        f"| variant | {layers - 1} layer(s) | {layers} layers | one layer | {FULL_LAYERS} layers (computed) |",
        "|---|---|---|---|---|",
    ]
    for name in names:
        lines.append(
            f"| {name} | {mb(sz[f'{layers - 1}L'][name])} | {mb(sz[f'{layers}L'][name])} | "
            f"{mb(sz['per_layer'][name])} | **{mb(sz[f'{FULL_LAYERS}L_computed'][name])}** |"
        )
    lines += [
        "",
        f"## Accuracy on all {acc['fp32']['vs_fp32']['n']:,} sts-test sentences ({layers} layers)",
        "",
        "| variant | min cosine vs fp32 | p1 | mean | max abs | Spearman x100 of pair cosines vs fp32 | "
        "Spearman vs gold (random weights: scale only) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, figures in acc.items():
        f = figures["vs_fp32"]
        lines.append(
            f"| {name} | {f['min_cosine']:.6f} | {f['p1_cosine']:.6f} | {f['mean_cosine']:.6f} | "
            f"{f['max_abs_diff']:.2e} | {figures['spearman_vs_fp32']:.3f} | {figures['spearman_vs_gold']:.2f} |"
        )
    st = acc["fp32"]["vs_sentence_transformers"]
    lines += [
        "",
        f"fp32 against sentence-transformers (PyTorch): min cosine {st['min_cosine']:.7f}, max abs "
        f"{st['max_abs_diff']:.1e}.",
    ]
    if report.get("fp16_note"):
        lines += ["", report["fp16_note"]]
    lines += [
        "",
        f"## Speed ({layers} layers, interleaved rounds, one run)",
        "",
        "| variant | sentences/s (batch 32) | vs fp32 | p50 one sentence | vs fp32 |",
        "|---|---|---|---|---|",
    ]
    for name, s in spd.items():
        lines.append(
            f"| {name} | {s['sentences_per_s']:.1f} | {s['throughput_vs_fp32']:.2f}x | {s['p50_single_ms']:.2f} ms | "
            f"{s['p50_vs_fp32']:.2f}x |"
        )
    lines += ["", *decision(report)]
    return "\n".join(lines) + "\n"


def decision(report: dict) -> list[str]:
    """The word-table rule (``embedrt.export.int8.WORD_TABLE``) and the figures it rests on."""
    sz, acc, spd = report["sizes"], report["accuracy"], report["speed"]
    full = sz[f"{FULL_LAYERS}L_computed"]
    with_table, without = acc["int8"], acc["int8-fp32-table"]
    table_share = 1 - full["int8"] / full["int8-fp32-table"]
    return [
        "## Decision: int8 quantizes the word-embedding Gather (`WORD_TABLE = WordTable.INT8`)",
        "",
        f"- Size: at {FULL_LAYERS} layers the int8 file is {mb(full['int8'])} with the int8 table and "
        f"{mb(full['int8-fp32-table'])} with a float32 one: the int8 table makes the file {table_share:.0%} "
        f"smaller, and without it int8 would save only {1 - full['int8-fp32-table'] / full['fp32']:.0%} over fp32 "
        f"({mb(full['fp32'])}) instead of {1 - full['int8'] / full['fp32']:.0%}.",
        f"- Accuracy: min cosine to fp32 {with_table['vs_fp32']['min_cosine']:.6f} against "
        f"{without['vs_fp32']['min_cosine']:.6f}, mean {with_table['vs_fp32']['mean_cosine']:.6f} against "
        f"{without['vs_fp32']['mean_cosine']:.6f}, Spearman of the pair cosines to fp32's "
        f"{with_table['spearman_vs_fp32']:.3f} against {without['spearman_vs_fp32']:.3f}: the per-row int8 table "
        "adds less error than the int8 activations already make, far inside the int8 gate (min cosine 0.98). The "
        "word and position embeddings are drawn at std 0.5 here, so the table carries half of the first "
        "LayerNorm's input; a trained model's int8 activation error is larger (MiniLM: min cosine 0.994), so the "
        "table's share of it is smaller still.",
        f"- Speed: {spd['int8']['sentences_per_s']:.1f} against {spd['int8-fp32-table']['sentences_per_s']:.1f} "
        f"sentences/s, p50 {spd['int8']['p50_single_ms']:.2f} against {spd['int8-fp32-table']['p50_single_ms']:.2f}"
        " ms for one sentence: the same within this machine's noise (the extra Gather of the row scales, the "
        "Cast and the Mul touch only the batch's rows).",
        "",
        "So the rule is one for every model: the word table is stored int8 with one float32 scale per row.",
        "",
        "Caveats: random weights (the tokenizer reaches its first 8,000 rows; per-row scales make each row's "
        "error independent of the others), 2 layers measured and 24 computed; the checkpoints themselves are "
        "not run here.",
    ]


def main(argv: list[str] | None = None) -> None:
    """Build, export, measure; write benchmarks/results/large-xlmr.{md,json}."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "embedrt-large")
    parser.add_argument("--layers", type=int, default=2, help="layers of the measured model (>= 2)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sentences", type=int, default=512, help="sts-test sentences per speed round")
    parser.add_argument("--quick", action="store_true", help="a small shape, to check that the script runs")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--render", action="store_true", help="only rewrite the .md from the .json of a run")
    args = parser.parse_args(argv)
    if args.render:
        report = json.loads((args.results / "large-xlmr.json").read_text())
        (args.results / "large-xlmr.md").write_text(markdown(report))
        return
    if args.layers < 2:
        parser.error("--layers must be >= 2 (the size of one layer is the difference with one layer less)")
    shape = Shape(args.layers)
    if args.quick:
        shape = Shape(args.layers, vocab=20_000, hidden=64, heads=4, intermediate=256, positions=130)
    args.work.mkdir(parents=True, exist_ok=True)
    measured = sizes(args.work, shape)
    source = build(args.work, shape)
    export_dir = args.work / f"xlmr-{shape.layers}L-{shape.hidden}" / "export"
    files = export_all(source, export_dir)
    names = ["fp32", "int8", "int8-fp32-table"]
    report: dict[str, Any] = {
        "machine": {**machine(), "cores": str(len(os.sched_getaffinity(0)))},
        "shape": shape.__dict__,
        "rounds": args.rounds,
        "sizes": measured,
    }
    accuracy_names = [*names, "fp16"] if fp16_runs_here(files["fp16"]) else names
    if "fp16" not in accuracy_names:
        report["fp16_note"] = "fp16 is not measured here: this onnxruntime's CPU provider lacks its kernels."
    report["accuracy"] = accuracy(source, export_dir, files, accuracy_names)
    gc.collect()
    report["speed"] = speed(export_dir, files, names, args.rounds, args.sentences)
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "large-xlmr.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.results / "large-xlmr.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
