"""``embedrt embed-corpus``: registered by ``embedrt.cli``; importing this module loads neither pyarrow nor Ray."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

_DESCRIPTION = """\
Embed every document of INPUT into OUTPUT, a directory of parquet parts (the id column, any --keep-columns and
`embedding`, a fixed-size list of float32) and a _SUCCESS manifest written last, which lists the parts.
Re-running the same command after a crash embeds only the parts that are missing; a finished job is not redone;
an input file that changed since, or another model pipeline, variant or option (--on-bad-row too) into the
same OUTPUT, is refused (or
re-embedded with --overwrite). One run at a time writes into an OUTPUT (OUTPUT/_lock)."""

_EPILOG = """\
examples:
  embedrt embed-corpus docs.parquet out/ --model models/all-MiniLM-L6-v2 --variant int8
  embedrt embed-corpus corpus/ out/ --model /shared/models/minilm --engine ray --address ray://head:10001 --workers 8

INPUT is a parquet file or directory of them, a .jsonl file (one object per line with the text and id fields)
or a .txt file (one document per line; the id is the 0-based line number). INPUT and OUTPUT may be local paths
or URIs that pyarrow.fs opens: s3://bucket/prefix (credentials, region and AWS_ENDPOINT_URL from the standard
AWS environment), gs://, hdfs://. With --engine ray on a cluster, the model directory must be at the same path
on every worker, and local INPUT and OUTPUT on storage that every worker can read (and write, for OUTPUT).
Needs pyarrow (pip install 'embedrt[corpus]'); --engine ray needs Ray Data (pip install 'embedrt[ray]')."""


def add_parser(subparsers: Any) -> None:
    """Register the ``embed-corpus`` subcommand on ``subparsers`` (from ``add_subparsers``)."""
    from embedrt.corpus.api import DEFAULT_BLOCK_ROWS

    parser = subparsers.add_parser(
        "embed-corpus",
        help="embed a large corpus into parquet files, resumable, locally or on Ray",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "input",
        metavar="INPUT",
        help="a .parquet file or directory of them, a .jsonl or a .txt file: a path or a URI (s3://...)",
    )
    parser.add_argument("output", metavar="OUTPUT", help="output directory or URI (created; resumed when it exists)")
    parser.add_argument("--model", required=True, metavar="DIR", help="directory written by `embedrt export`")
    parser.add_argument("--variant", default="fp32", help="fp32, fp16, int8 or bf16 (default: fp32)")
    parser.add_argument("--engine", default="local", help="local (this process, default) or ray (Ray Data)")
    parser.add_argument(
        "--address",
        default=None,
        help="Ray cluster to connect to (default: RAY_ADDRESS, else a local Ray started for this job)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="local: batches embedded at once on threads; ray: actors, one model each (default: CPU count)",
    )
    parser.add_argument("--threads-per-worker", type=int, default=1, help="onnxruntime threads per worker (default: 1)")
    parser.add_argument("--text-column", default="text", help="text column or JSON field (default: text)")
    parser.add_argument("--id-column", default="id", help="id column or JSON field (default: id)")
    parser.add_argument(
        "--keep-columns",
        default="",
        metavar="A,B",
        help="input columns (JSON fields) copied into the parts beside the id, to join vectors to their metadata",
    )
    parser.add_argument("--batch-size", type=int, default=32, help="texts per model call (default: 32)")
    parser.add_argument(
        "--on-bad-row",
        default="fail",
        help="fail (default: stop, naming the row or line, the id and the reason) or skip (leave the row out, "
        "listed in _SUCCESS with its row and line); bad rows: missing or null text, a non-string, a lone "
        "surrogate, a null id, a malformed .jsonl line",
    )
    parser.add_argument(
        "--on-duplicate-id",
        default="fail",
        help="fail (default: no _SUCCESS, the error names the first repeated ids) or keep (reported in _SUCCESS)",
    )
    parser.add_argument(
        "--block-rows",
        type=int,
        default=DEFAULT_BLOCK_ROWS,
        help=f"rows per output part and unit of work (default: {DEFAULT_BLOCK_ROWS}; keep it when resuming)",
    )
    parser.add_argument(
        "--device",
        default="cpu",
        help="cpu (default) or cuda (onnxruntime-gpu; with --engine ray, one GPU per worker)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="re-embed what no longer matches OUTPUT's job (changed input files; everything for another model or "
        "options) instead of refusing",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress line")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run ``embed-corpus`` from parsed arguments; prints a summary and returns the exit code."""
    from embedrt.corpus.api import embed_corpus

    result = embed_corpus(
        args.input,
        args.output,
        args.model,
        variant=args.variant,
        engine=args.engine,
        address=args.address,
        workers=args.workers,
        threads_per_worker=args.threads_per_worker,
        text_column=args.text_column,
        id_column=args.id_column,
        keep_columns=args.keep_columns,
        batch_size=args.batch_size,
        on_bad_row=args.on_bad_row,
        on_duplicate_id=args.on_duplicate_id,
        block_rows=args.block_rows,
        device=args.device,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    manifest = result.manifest
    if result.already_complete:
        print(f"{result.output} is already complete ({manifest['rows_out']} rows); nothing to do", file=sys.stderr)
        return 0
    reused = len(manifest["parts"]) - result.parts_written
    print(
        f"{result.output}: {manifest['rows_out']} of {manifest['rows_in']} rows embedded, "
        f"{manifest['rows_skipped']} skipped; {result.parts_written} parts written, {reused} already complete; "
        f"{result.timings['elapsed_s']:.1f} s",
        file=sys.stderr,
    )
    if manifest["rows_skipped"]:
        print(json.dumps(manifest["skipped"][:10], default=str), file=sys.stderr)
    if manifest["duplicate_ids"]["count"]:
        print(f"{manifest['duplicate_ids']['count']} ids appear more than once (kept): see _SUCCESS", file=sys.stderr)
    return 0
