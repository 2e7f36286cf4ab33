"""Write the comparison as markdown, JSON and a PNG chart."""

from __future__ import annotations

import json
from pathlib import Path

COLUMNS = (
    ("sts_sentences_per_s", "STS sentences/s", "{:.0f}"),
    ("passages_per_s", "passages/s", "{:.1f}"),
    ("latency_p50_ms", "p50 ms", "{:.2f}"),
    ("latency_p99_ms", "p99 ms", "{:.2f}"),
    ("cold_start_s", "cold start s", "{:.2f}"),
    ("peak_rss_mb", "peak RSS MB", "{:.0f}"),
)


def markdown(report: dict) -> str:
    """The comparison table with throughput ratios against sentence-transformers (torch)."""
    systems = report["systems"]
    torch_rate = systems.get("st-torch", {}).get("sts_sentences_per_s")
    torch_p50 = systems.get("st-torch", {}).get("latency_p50_ms")
    m = report["machine"]
    lines = [
        "# embedrt vs the alternatives (CPU)",
        "",
        f"Machine: {m['cpu']}, {m['logical_cpus']} logical CPUs, AVX-512 VNNI: {m['avx512_vnni']}; "
        f"Python {m['python']}, onnxruntime {m['onnxruntime']}, torch {m['torch']}, "
        f"sentence-transformers {m['sentence_transformers']}.",
        f"{report['threads']} threads for every system; each system in its own process, interleaved over "
        f"{report['rounds']} rounds; medians. Workloads: the {report['sts_tokens']:,} tokens of sts-test.csv "
        "(2,758 sentences) at batch 32; 128 passages truncated at 256 tokens; single sentences (300 calls).",
        "",
        "| system | " + " | ".join(title for _, title, _ in COLUMNS) + " | STS x st-torch | p50 x st-torch |",
        "|---|" + "---:|" * (len(COLUMNS) + 2),
    ]
    for name, row in systems.items():
        if "error" in row:
            lines.append(f"| {name} | not run: {row['error']} |" + " |" * (len(COLUMNS) + 1))
            continue
        cells = [fmt.format(row[key]) for key, _, fmt in COLUMNS]
        ratio = f"{row['sts_sentences_per_s'] / torch_rate:.2f}" if torch_rate else "-"
        latency = f"{row['latency_p50_ms'] / torch_p50:.3f}" if torch_p50 else "-"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {ratio} | {latency} |")
    roof = [f"{name} reaches {100 * share:.0f}%" for name, share in report.get("fraction_of_roof", {}).items()]
    lines += [
        "",
        f"fp32 GEMM roof: numpy sgemm at the encoder's shapes ran at {report['gemm_gflops']:.0f} GFLOP/s, so the "
        f"corpus' matrix products ({report['sts_tokens']:,} tokens x {21.2:.1f} MFLOP) take at least "
        f"{report['fp32_roof_seconds']:.2f} s; " + (" and ".join(roof) or "no embedrt fp32 row") + " of that roof "
        "end to end.",
        "",
        "The -workers rows are the bulk configuration, `Encoder.load(..., threads=1, workers=N)`: a one-thread "
        "session with N batches at once; the other embedrt rows run one batch at a time on N threads.",
    ]
    if "passages_per_s" in systems.get("fastembed", {}):
        lines += [
            "",
            "fastembed truncates at the 128 tokens of the model's tokenizer.json, not at max_seq_length 256, so its "
            "passages carry half the tokens of the others'.",
        ]
    fp32, int8 = systems.get("embedrt-fp32", {}), systems.get("embedrt-int8", {})
    if "sts_sentences_per_s" in fp32 and "sts_sentences_per_s" in int8:
        sts = int8["sts_sentences_per_s"] / fp32["sts_sentences_per_s"]
        passages = int8["passages_per_s"] / fp32["passages_per_s"]
        lines += [
            "",
            f"embedrt int8 / embedrt fp32 in this run: {sts:.2f}x STS sentences/s, {passages:.2f}x passages/s.",
        ]
    return "\n".join(lines) + "\n"


def chart(report: dict, path: Path) -> None:
    """Bar charts of STS throughput and single-sentence latency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = {k: v for k, v in report["systems"].items() if "error" not in v}
    names = list(rows)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    axes[0].barh(names, [rows[n]["sts_sentences_per_s"] for n in names], color="tab:blue")
    axes[0].set_xlabel("STS test sentences/s (batch 32), higher is better")
    axes[1].barh(names, [rows[n]["latency_p50_ms"] for n in names], color="tab:orange")
    axes[1].set_xlabel("single-sentence p50 latency (ms), lower is better")
    for ax in axes:
        ax.invert_yaxis()
    m = report["machine"]
    fig.suptitle(f"{m['cpu']}, {report['threads']} threads", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(report: dict, out_dir: Path) -> None:
    """compare.md, compare.json and compare.png in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "compare.json").write_text(json.dumps(report, indent=2) + "\n")
    (out_dir / "compare.md").write_text(markdown(report))
    chart(report, out_dir / "compare.png")
