"""Corpus benchmark of ``embed-corpus``: local vs Ray Data engine, 1 and 2 workers, int8 and fp32.

python -m benchmarks.corpus [--model models/all-MiniLM-L6-v2] [--docs 20000] [--variants int8,fp32]
                            [--configs local:1,local:2,ray:1,ray:2] [--out benchmarks/results/corpus.md]
                            [--row-group-docs 200000 [--baseline-tree DIR]]

Each configuration runs in its own subprocess (a cold process, as a user's command would be) on the same
corpus: STS sentences with one 256-token passage per four documents. Reported: documents/s of the embedding
(engine start excluded), the Ray start, Ray's per-job overhead (a second job of one 32-document block in the
same Ray session: actor start, model load, scheduling), and the peak resident memory of the whole process tree
(raylet, GCS and workers included), sampled every 0.1 s.

``--row-group-docs N`` adds the case of one parquet file of N documents in a single row group (what pandas and
pyarrow write up to 1,048,576 rows), local engine, first variant, 2,048-row blocks: documents/s and the bytes
the job read (``rchar`` of /proc/self/io around ``embed_corpus``: every byte read(2) returned, page cache or
not), beside the input's size and the fixed cost of a one-document job (model, tokenizer, imports).
``--baseline-tree DIR`` runs the same case with the embedrt of another checkout too (e.g. ``git worktree add
/tmp/before <commit>``), for before/after figures. ``--configs ""`` skips the engine matrix.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "stsbenchmark" / "sts-train.csv"

CHILD = r"""
import json, os, sys, time
from pathlib import Path
from embedrt.corpus import embed_corpus
corpus, out, model, variant, engine, workers = sys.argv[1:7]
workers = int(workers)
timings = {}
if engine == "ray":
    import logging, ray
    started = time.perf_counter()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    timings["ray_start_s"] = time.perf_counter() - started
result = embed_corpus(corpus, out, model, variant=variant, engine=engine, workers=workers, threads_per_worker=1)
timings["embed_s"] = result.timings["embed_s"]
timings["rows_out"] = result.rows_out
if engine == "ray":
    small = Path(out + "-small.txt")  # per configuration: a finished job in a shared OUTPUT would not run again
    small.write_text("\n".join(["a short sentence to embed"] * 32) + "\n")
    again = embed_corpus(small, Path(out + "-small"), model, variant=variant, engine=engine, workers=workers)
    timings["job_overhead_s"] = again.timings["embed_s"]
    ray.shutdown()
print("RESULT " + json.dumps(timings))
"""


ROW_GROUP_CHILD = r"""
import json, sys, time
import onnxruntime, pyarrow.parquet  # imported before the measure: their files are not the job's reads
from embedrt.corpus import embed_corpus
import embedrt.corpus.local, embedrt.encoder

def rchar():
    with open("/proc/self/io") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith("rchar:"))

corpus, out, model, variant, workers, block_rows = sys.argv[1:7]
before = rchar()
result = embed_corpus(corpus, out, model, variant=variant, workers=int(workers), block_rows=int(block_rows))
read = rchar() - before
print("RESULT " + json.dumps({"rchar": read, "rows_out": result.rows_out, "embed_s": result.timings["embed_s"]}))
"""
ROW_GROUP_BLOCK_ROWS = 2048


def corpus_texts(docs: int) -> list[str]:
    """STS sentences, every fourth document a passage of about 256 tokens (sentences joined)."""
    with STS.open(encoding="utf-8") as handle:
        rows = [r for r in csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE) if len(r) >= 7]
    sentences = [s for r in rows for s in (r[5], r[6])]
    texts, cursor = [], 0
    for i in range(docs):
        if i % 4 == 3:
            words: list[str] = []
            while len(words) < 190:  # about 1.35 tokens per word in these sentences: ~256 tokens
                words.extend(sentences[cursor % len(sentences)].split())
                cursor += 1
            texts.append(" ".join(words))
        else:
            texts.append(sentences[cursor % len(sentences)])
            cursor += 1
    return texts


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants, in MB."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += proc.memory_info().rss
    return total / 2**20


def run_one(corpus: Path, model: str, variant: str, engine: str, workers: int, work: Path) -> dict:
    """One configuration in a fresh subprocess; its timings and peak process-tree memory."""
    out = work / f"out-{engine}-{workers}-{variant}"
    args = [sys.executable, "-c", CHILD, str(corpus), str(out), model, variant, engine, str(workers)]
    started = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0.0
    while proc.poll() is None:
        peak = max(peak, tree_rss_mb(proc.pid))
        time.sleep(0.1)
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{engine} x{workers} {variant} failed:\n{stderr[-3000:]}")
    result = json.loads(stdout.split("RESULT ", 1)[1])
    result.update(engine=engine, workers=workers, variant=variant, wall_s=wall, peak_rss_mb=peak)
    result["docs_per_s"] = result["rows_out"] / result["embed_s"]
    return result


def run_row_group(corpus: Path, model: str, variant: str, workers: int, out: Path, tree: Path | None) -> dict:
    """One job over ``corpus`` in a fresh process (with the embedrt of checkout ``tree`` when given)."""
    env = dict(os.environ)
    with tempfile.TemporaryDirectory(prefix="embedrt-tree-") as shim:
        if tree is not None:  # ``import embedrt`` finds that checkout's runtime/ first
            Path(shim, "embedrt").symlink_to(tree.resolve() / "runtime")
            env["PYTHONPATH"] = os.pathsep.join([shim, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        args = [sys.executable, "-c", ROW_GROUP_CHILD, str(corpus), str(out), model, variant, str(workers)]
        proc = subprocess.run([*args, str(ROW_GROUP_BLOCK_ROWS)], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"row-group job ({tree or 'this checkout'}) failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.split("RESULT ", 1)[1])


def row_group_case(model: str, variant: str, docs: int, work: Path, baseline: Path | None) -> list[dict]:
    """One file, one row group of ``docs`` documents: documents/s and read volume, this code (and a baseline)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    texts = corpus_texts(docs)
    corpus = work / "one-row-group.parquet"
    pq.write_table(pa.table({"id": list(range(docs)), "text": texts}), corpus, row_group_size=docs)
    assert pq.ParquetFile(corpus).metadata.num_row_groups == 1
    single = work / "one-document.parquet"
    pq.write_table(pa.table({"id": [0], "text": texts[:1]}), single)
    workers = os.cpu_count() or 1
    results = []
    for label, tree in [("this checkout", None), *([("baseline", baseline)] if baseline else [])]:
        tag = "this" if tree is None else "baseline"
        fixed = run_row_group(single, model, variant, workers, work / f"rg-fixed-{tag}", tree)
        job = run_row_group(corpus, model, variant, workers, work / f"rg-out-{tag}", tree)
        results.append(
            {
                "code": label if tree is None else f"{label} ({tree})",
                "docs": docs,
                "variant": variant,
                "workers": workers,
                "input_bytes": corpus.stat().st_size,
                "read_bytes": job["rchar"],
                "fixed_bytes": fixed["rchar"],
                "read_ratio": (job["rchar"] - fixed["rchar"]) / corpus.stat().st_size,
                "docs_per_s": job["rows_out"] / job["embed_s"],
            }
        )
        print(json.dumps(results[-1]), file=sys.stderr)
    return results


def row_group_report(results: list[dict]) -> list[str]:
    """The markdown section of the large row group case."""
    if not results:
        return []
    first = results[0]
    lines = [
        "",
        f"## One row group of {first['docs']:,} documents ({first['variant']}, local engine, {first['workers']} "
        f"workers, {ROW_GROUP_BLOCK_ROWS:,}-row blocks)",
        "",
        "Read: bytes returned by read(2) during `embed_corpus` (/proc/self/io rchar); fixed: the same for a",
        "one-document job (model, tokenizer, imports); ratio: (read - fixed) / input.",
        "",
        "| code | documents/s | input MB | read MB | fixed MB | ratio |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['code']} | {r['docs_per_s']:,.0f} | {r['input_bytes'] / 1e6:,.1f} | {r['read_bytes'] / 1e6:,.1f} "
        f"| {r['fixed_bytes'] / 1e6:,.1f} | {r['read_ratio']:.2f} |"
        for r in results
    ]
    return lines


def report(results: list[dict], docs: int) -> str:
    """The markdown of benchmarks/results/corpus.md."""
    lines = [
        f"# embed-corpus: {docs:,} documents (STS sentences, every fourth a ~256-token passage)",
        "",
        f"Machine: {os.cpu_count()} CPUs; one onnxruntime thread per worker; "
        f"`python -m benchmarks.corpus --docs {docs}`.",
        "documents/s counts the embedding only (Ray start excluded); the job overhead is a second, 32-document job",
        "in the same Ray session (actors started, model loaded, tasks scheduled).",
        "",
        "| engine | workers | variant | documents/s | vs local, same workers/variant | Ray start s | job overhead s "
        "| size where overhead < 5% | wall s | peak RSS of the tree MB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    local = {(r["workers"], r["variant"]): r["docs_per_s"] for r in results if r["engine"] == "local"}
    for r in results:
        base = local.get((r["workers"], r["variant"]))
        ratio = f"{r['docs_per_s'] / base:.0%}" if base and r["engine"] == "ray" else ""
        ray = r["engine"] == "ray"
        # The overhead is fixed per job: it is under 5% of the job once the embedding takes 20x as long.
        size = f"{20 * r['job_overhead_s'] * r['docs_per_s']:,.0f}" if ray else ""
        lines.append(
            f"| {r['engine']} | {r['workers']} | {r['variant']} | {r['docs_per_s']:,.0f} | {ratio} "
            f"| {r.get('ray_start_s', 0):.2f} | {r.get('job_overhead_s', 0):.2f} | {size} | {r['wall_s']:.1f} "
            f"| {r['peak_rss_mb']:,.0f} |"
        )
    lines += [
        "",
        "Target: Ray with 2 workers x 1 thread >= 85% of the local engine's documents/s (2 workers, same variant).",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    """Run the configurations and write the markdown report."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="models/all-MiniLM-L6-v2", help="export directory")
    parser.add_argument("--docs", type=int, default=20000, help="documents in the corpus (default: 20000)")
    parser.add_argument("--variants", default="int8,fp32", help="comma-separated variants")
    parser.add_argument("--configs", default="local:1,local:2,ray:1,ray:2", help="engine:workers, comma-separated")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/corpus.md"), help="markdown report")
    parser.add_argument(
        "--row-group-docs", type=int, default=0, help="documents of the one-row-group case (0: skip; issue: 200000)"
    )
    parser.add_argument("--baseline-tree", type=Path, default=None, help="checkout to compare the row-group case with")
    args = parser.parse_args()
    import pyarrow as pa
    import pyarrow.parquet as pq

    results = []
    with tempfile.TemporaryDirectory(prefix="embedrt-corpus-bench-") as tmp:
        work = Path(tmp)
        texts = corpus_texts(args.docs)
        corpus = work / "corpus.parquet"
        pq.write_table(pa.table({"id": list(range(len(texts))), "text": texts}), corpus)
        for variant in args.variants.split(","):
            for config in filter(None, args.configs.split(",")):
                engine, workers = config.split(":")
                result = run_one(corpus, args.model, variant, engine, int(workers), work)
                print(json.dumps(result), file=sys.stderr)
                results.append(result)
        row_group = []
        if args.row_group_docs:
            variant = args.variants.split(",")[0]
            row_group = row_group_case(args.model, variant, args.row_group_docs, work, args.baseline_tree)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    text = report(results, args.docs) if results else f"# embed-corpus ({os.cpu_count()} CPUs)\n"
    args.out.write_text(text + "\n".join(row_group_report(row_group)) + ("\n" if row_group else ""), encoding="utf-8")
    everything = {"configs": results, "row_group": row_group} if row_group else results
    args.out.with_suffix(".json").write_text(json.dumps(everything, indent=2) + "\n", encoding="utf-8")
    print(args.out.read_text())


if __name__ == "__main__":
    main()
