"""The emulated CPU matrix: embedrt's fp32 and int8 vectors on CPUs this machine is not, against sentence-transformers.

``make cpu-matrix`` runs ``python scripts/cpu_matrix.py run``. Everything it needs goes under a git-ignored
cache (``.cache/cpu-matrix``), and nothing is installed on the machine:

- QEMU 10 user-mode binaries from Debian trixie: ``apt-get download qemu-user`` with a private apt
  configuration (trixie beside the machine's own mirror), unpacked with ``dpkg-deb -x``. Bookworm's QEMU 7.2
  segfaults importing onnxruntime >= 1.28 for aarch64.
- an arm64 Debian bookworm Python 3.11, its .deb packages unpacked into a root used with ``qemu-aarch64 -L``;
- ``embedrt[cpu]`` for each architecture and onnxruntime version: a wheel of the working tree plus PyPI's
  wheels, ``pip install --platform ... --only-binary=:all: --target DIR`` (so "wheels only" is checked too).

Each run embeds the texts in a fresh emulated process (``worker``), and the driver compares the vectors with
sentence-transformers' fp32 vectors computed natively. Emulated time says nothing about real speed and is not
reported as performance.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CACHE = REPO / ".cache" / "cpu-matrix"
STS_TEST = REPO.parent / "shared" / "data" / "stsbenchmark" / "sts-test.csv"
RESULTS = REPO / "benchmarks" / "results"
ARM_SUITE = "bookworm"  # the Python 3.11 of the machine's own Debian release
QEMU_SUITE = "trixie"  # QEMU 10
ARM_PACKAGES = [
    *("libc6", "libgcc-s1", "libstdc++6", "zlib1g", "libexpat1", "libssl3", "libffi8", "libbz2-1.0", "liblzma5"),
    *("libsqlite3-0", "libuuid1", "libcrypt1", "python3.11-minimal", "libpython3.11-minimal", "libpython3.11-stdlib"),
]
PLATFORMS = {
    "aarch64": ["manylinux_2_28_aarch64", "manylinux_2_27_aarch64", "manylinux_2_17_aarch64", "manylinux2014_aarch64"],
    "x86_64": ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"],
}
# Gates (README, CPUs section): int8 min cosine and mean within this of native int8; fp32 min cosine; bf16's.
INT8_MIN_COSINE, INT8_MEAN_DELTA, FP32_MIN_COSINE, BF16_MIN_COSINE = 0.99, 0.0005, 0.99999, 0.9999
# bf16 (embedrt.bf16): onnxruntime's ARM64 bf16 GEMM on Neoverse V1 (BF16); Neoverse N1 has none and must refuse.
BF16_CPUS = {"neoverse-v1": True, "neoverse-n1": False}
MINILM = "all-MiniLM-L6-v2"
# Other families' graphs (random weights, built by benchmarks/families.py): int8 on the CPUs whose int8 paths
# differ (Haswell's u8u8, ARMv8.0, ARM dot product), plus native fp32 and int8 for the gates.
FAMILY_CPUS = ("haswell", "cortex-a72", "neoverse-n1")
FAMILIES = ("xlmr-small", "mpnet-small", "modernbert-small")
FLOOR = (1, 19)  # pyproject's onnxruntime floor: older versions can't load the exported files (shown, not gated)
EXCLUDED = ("1.21.0",)  # excluded by embedrt[cpu] (SIGILL on ARMv8.0): installed beside the wheel, without its extra


@dataclass(frozen=True)
class Cpu:
    """An emulated CPU: QEMU's name for it and what real machines it stands for."""

    name: str
    arch: str
    qemu_cpu: str
    stands_for: str
    # fp32 on the first N texts only, where QEMU emulates it very slowly (None: all texts).
    fp32_texts: int | None = None


CPUS = {
    cpu.name: cpu
    for cpu in (
        # Haswell without TSX: QEMU's TCG cannot run TSX and warns on every start with plain "Haswell". Its fp32
        # kernels use FMA, which QEMU runs in soft-float: about 40x slower than int8 (72 s for four sentences).
        Cpu("haswell", "x86_64", "Haswell-noTSX", "AVX2 without VNNI: Intel Haswell to Comet Lake, AMD Zen 1-3", 12),
        Cpu("cortex-a72", "aarch64", "cortex-a72", "Raspberry Pi 4: ARMv8.0, no dot product"),
        Cpu("neoverse-n1", "aarch64", "neoverse-n1", "AWS Graviton 2, Ampere Altra: dot product"),
        # SVE is slow to emulate: int8 took 396 s where neoverse-n1 took 41 s, and fp32 ran past 10 minutes.
        Cpu("neoverse-v1", "aarch64", "neoverse-v1", "AWS Graviton 3: dot product, i8mm, SVE", 24),
    )
}


# ---------------------------------------------------------------- preparing (idempotent, under the cache)


def _run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, **kwargs)


def _debian_mirror() -> str:
    """The machine's own Debian mirror URI (deb822 or one-line sources), so apt fetches where it may."""
    for path in [Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list")]:
        if not path.is_file():
            continue
        for line in path.read_text().splitlines():
            words = line.split()
            if words[:1] == ["URIs:"] and "security" not in words[1]:
                return words[1]
            if words[:1] == ["deb"] and "security" not in line:
                return next(w for w in words[1:] if "://" in w)
    return "http://deb.debian.org/debian"


def _apt(cache: Path, *args: str, cwd: Path | None = None) -> None:
    """apt-get with a private configuration: the machine's own sources and state are not touched."""
    root = cache / "apt"
    for sub in ("lists/partial", "cache/archives/partial"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "status").touch()
    mirror, keys = _debian_mirror(), "/usr/share/keyrings/debian-archive-keyring.gpg"
    (root / "sources.list").write_text(
        f"deb [arch=amd64 signed-by={keys}] {mirror} {QEMU_SUITE} main\n"
        f"deb [arch=arm64 signed-by={keys}] {mirror} {ARM_SUITE} main\n"
    )
    options = {
        "Dir::Etc::sourcelist": root / "sources.list",
        "Dir::Etc::sourceparts": "-",
        "Dir::State::Lists": root / "lists",
        "Dir::Cache": root / "cache",
        "Dir::State::status": root / "status",
        "APT::Architectures::": "arm64",
        "Debug::NoLocking": "1",
        "APT::Sandbox::User": "root",  # downloads land in our cache, which apt's _apt user may not write
    }
    flags = [f"-o{key}={value}" for key, value in options.items()]
    _run(["apt-get", "-q", *flags, *args], stdout=subprocess.DEVNULL, cwd=cwd)


def _apt_lists(cache: Path) -> None:
    if not any((cache / "apt" / "lists").glob("*Packages*")):
        _apt(cache, "update")


def _unpack_debs(cache: Path, names: list[str], root: Path) -> None:
    debs = cache / "debs" / root.name
    debs.mkdir(parents=True, exist_ok=True)
    _apt_lists(cache)
    _apt(cache, "download", *names, cwd=debs)  # apt-get download writes into the working directory
    for deb in sorted(debs.glob("*.deb")):
        _run(["dpkg-deb", "-x", str(deb), str(root)])


def prepare_qemu(cache: Path) -> Path:
    """QEMU 10 user-mode binaries (static) from Debian trixie; returns their bin directory."""
    root = cache / "qemu"
    if not (root / ".ready").is_file():
        _unpack_debs(cache, [f"qemu-user/{QEMU_SUITE}"], root)
        (root / ".ready").touch()
    return root / "usr" / "bin"


def prepare_arm_root(cache: Path) -> Path:
    """An arm64 Debian Python 3.11 unpacked into a root for ``qemu-aarch64 -L``."""
    root = cache / "arm64-root"
    if not (root / ".ready").is_file():
        _unpack_debs(cache, [f"{name}:arm64" for name in ARM_PACKAGES], root)
        (root / ".ready").touch()
    return root


def build_wheel(cache: Path) -> Path:
    """A wheel of the working tree (rebuilt every time: the code under test is the working tree's)."""
    out = cache / "wheel"
    for old in out.glob("embedrt-*.whl"):
        old.unlink()
    _run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(REPO)],
        stdout=subprocess.DEVNULL,
    )
    return next(out.glob("embedrt-*.whl"))


def prepare_site(cache: Path, arch: str, onnxruntime: str, wheel: Path) -> Path:
    """``embedrt[cpu]`` with onnxruntime==``onnxruntime`` for ``arch``, from wheels only, in a --target dir."""
    site = cache / f"site-{arch}-ort{onnxruntime}"
    stamp = site / ".ready"
    if stamp.is_file() and stamp.read_text() == wheel.name:
        _run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--upgrade", "--target", str(site),
              str(wheel)], stdout=subprocess.DEVNULL)  # fmt: skip
        return site
    platforms = [flag for tag in PLATFORMS[arch] for flag in ("--platform", tag)]
    pip = [sys.executable, "-m", "pip", "install", "-q", "--upgrade", "--target", str(site), *platforms]
    pip += ["--python-version", "3.11", "--implementation", "cp", "--abi", "cp311", "--only-binary=:all:"]
    # onnxruntime before 1.19 is built against numpy 1.x, and is below embedrt[cpu]'s floor; 1.21.0 is excluded by
    # it: the wheel then goes in without its extra, to show what those versions do with the files (or at import).
    from embedrt.int8_kernel import version_tuple

    if version_tuple(onnxruntime) < FLOOR or onnxruntime in EXCLUDED:
        numpy = "numpy<2" if version_tuple(onnxruntime) < FLOOR else "numpy"
        _run([*pip, f"onnxruntime=={onnxruntime}", numpy], stdout=subprocess.DEVNULL)
        _run([*pip, "--no-deps", str(wheel)], stdout=subprocess.DEVNULL)
    else:
        _run([*pip, f"{wheel}[cpu]", f"onnxruntime=={onnxruntime}"], stdout=subprocess.DEVNULL)
    stamp.write_text(wheel.name)
    return site


@dataclass(frozen=True)
class Toolchain:
    """What the emulated runs need, prepared under the cache."""

    qemu_bin: Path
    arm_root: Path | None
    sites: dict[tuple[str, str], Path]  # (arch, onnxruntime version) -> --target dir

    def command(self, cpu: Cpu | None, onnxruntime: str | None, args: list[str]) -> tuple[list[str], dict[str, str]]:
        """argv and environment for ``python cpu_matrix.py <args>`` on ``cpu`` (None: natively)."""
        env = dict(os.environ, PYTHONHASHSEED="0")
        script = [str(Path(__file__).resolve()), *args]
        if cpu is None:
            return [sys.executable, *script], env
        site = self.sites.get((cpu.arch, onnxruntime or ""))
        if site is not None:  # -S: only the target dir, not the venv's site-packages
            env["PYTHONPATH"] = str(site)
        if cpu.arch == "x86_64":
            python = [sys.executable, "-S"] if site is not None else [sys.executable]
            return [str(self.qemu_bin / "qemu-x86_64"), "-cpu", cpu.qemu_cpu, *python, *script], env
        assert self.arm_root is not None and site is not None
        qemu = [str(self.qemu_bin / "qemu-aarch64"), "-cpu", cpu.qemu_cpu, "-L", str(self.arm_root)]
        return [*qemu, str(self.arm_root / "usr/bin/python3.11"), "-S", *script], env


def prepare(cache: Path, arm_versions: list[str], x86_versions: list[str]) -> Toolchain:
    """QEMU, and where asked an arm64 Python and the --target dirs of each (arch, onnxruntime version)."""
    cache.mkdir(parents=True, exist_ok=True)
    qemu_bin = prepare_qemu(cache)
    arm_root = prepare_arm_root(cache) if arm_versions else None
    wheel = build_wheel(cache) if arm_versions or x86_versions else None
    sites = {}
    for arch, versions in (("aarch64", arm_versions), ("x86_64", x86_versions)):
        for version in versions:
            assert wheel is not None
            sites[(arch, version)] = prepare_site(cache, arch, version, wheel)
    return Toolchain(qemu_bin, arm_root, sites)


# ---------------------------------------------------------------- the worker (runs emulated; numpy + onnxruntime)


def worker(model: str, variant: str, texts_file: str, out: str, path: str) -> dict[str, Any]:
    """Embed the texts with ``variant``; ``path`` auto (what Encoder.load picks) or default (no fix, int8)."""
    import numpy as np
    import onnxruntime

    from embedrt import Encoder
    from embedrt.int8_kernel import X64_QUANT_PRECISION, probe_is_exact
    from embedrt.manifest import MANIFEST_NAME, Manifest, Variant, checked_path
    from embedrt.session import Device, create_session

    texts = json.loads(Path(texts_file).read_text(encoding="utf-8"))
    report: dict[str, Any] = {"machine": platform.machine(), "onnxruntime": onnxruntime.__version__}
    report["probe"] = {"default": probe_is_exact({}), "u8u8": probe_is_exact({X64_QUANT_PRECISION: "1"})}
    started = time.perf_counter()
    try:
        if path == "default":  # the session as embedrt built it before the probe: u8 x s8 whatever the CPU
            root = Path(model)
            file = checked_path(root, Manifest.from_file(root / MANIFEST_NAME).info(Variant.parse(variant), root))
            encoder = Encoder.from_session(root, create_session(file, Device.CPU, 1), variant)
        else:
            encoder = Encoder.load(model, variant=variant, threads=1)
        vectors = encoder.encode(texts, batch_size=16)
    except Exception as exc:  # reported in the table: a refused int8 or bf16 is a result, not a crash
        report["error"] = f"{type(exc).__name__}: {exc}"
        return report
    np.save(out, vectors)
    report["int8_kernel"] = encoder.info()["int8_kernel"]
    report["bf16"] = encoder.info()["bf16"]
    report["seconds"] = round(time.perf_counter() - started, 1)
    return report


def run_worker(tools: Toolchain, cpu: Cpu | None, onnxruntime: str | None, args: list[str]) -> dict[str, Any]:
    """Run ``worker`` on ``cpu`` and return its JSON report (or how the process died)."""
    cmd, env = tools.command(cpu, onnxruntime, ["worker", *args])
    result = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        tail = result.stderr.strip().splitlines()[-3:]
        return {"error": f"exit {result.returncode}: {' | '.join(tail)}"}
    return json.loads(result.stdout.strip().splitlines()[-1])


def import_check(tools: Toolchain, cpu: Cpu, onnxruntime: str) -> str:
    """Does ``import embedrt`` with onnxruntime==version start on ``cpu``? ("ok" or how it died)."""
    cmd, env = tools.command(cpu, onnxruntime, ["import-check"])
    result = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if result.returncode == 0:
        return "ok"
    signal = -result.returncode if result.returncode < 0 else None
    return f"killed by signal {signal}" if signal else f"exit {result.returncode}"


# ---------------------------------------------------------------- the driver


@dataclass(frozen=True)
class Job:
    """One row of the matrix."""

    cpu: str  # a key of CPUS, or "native"
    variant: str
    path: str = "auto"
    onnxruntime: str = ""  # "" = the venv's own (x86) or the newest (aarch64)
    model: str = MINILM  # MINILM, or a key of benchmarks.families.SHAPES (--families)


def matrix_texts(sentences: int, passages: int) -> list[str]:
    """The first ``sentences`` sentences of sts-test, plus passages of 20 sentences (truncated at 256 tokens)."""
    import csv

    with STS_TEST.open(encoding="utf-8", newline="") as handle:
        rows = [r for r in csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE) if len(r) >= 7]
    pool = [r[5] for r in rows] + [r[6] for r in rows]
    long = [" ".join(pool[1000 + i * 20 : 1020 + i * 20]) for i in range(passages)]
    return pool[:sentences] + long


def _export(cache: Path, name: str = MINILM) -> Path:
    """The fp32 + int8 export of MiniLM, or of a random-weight family shape of benchmarks/families.py."""
    model = cache / name
    if not (model / "manifest.json").is_file():
        from embedrt.export import export

        source = None
        if name != MINILM:
            sys.path.insert(0, str(REPO))
            from benchmarks.families import build

            source = build(name, cache / "families")
        export(source, model, variants=("fp32", "int8"))
    return model


def _reference(model: Path, texts: list[str]) -> Any:
    """sentence-transformers' fp32 vectors of the export's source, computed natively."""
    import numpy as np
    from sentence_transformers import SentenceTransformer

    source = json.loads((model / "manifest.json").read_text())["source"]["path"]
    return np.asarray(SentenceTransformer(source, device="cpu").encode(texts, batch_size=16))


def _cosines(a: Any, b: Any) -> Any:
    import numpy as np

    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


def run_matrix(args: argparse.Namespace) -> int:
    """Prepare, run every job (two at a time: one per core), write the table; 1 when a gate fails."""

    cache = Path(args.cache)
    arm_versions = sorted({args.onnxruntime, *args.extra_onnxruntime, *args.import_check})
    tools = prepare(cache, arm_versions, sorted({*args.extra_onnxruntime, *args.below_floor}))
    models = {MINILM: Path(args.model) if args.model else _export(cache)}
    models |= {name: _export(cache, name) for name in args.families}
    texts = matrix_texts(args.sentences, args.passages)
    work = cache / "runs"
    work.mkdir(parents=True, exist_ok=True)
    texts_file = work / "texts.json"
    texts_file.write_text(json.dumps(texts), encoding="utf-8")
    previous = _previous_rows(args.reuse)
    references = {name: _reference(path, texts) for name, path in models.items()}

    jobs = [Job("native", "fp32"), Job("native", "int8")]
    for name in args.cpus:
        jobs += [Job(name, "fp32"), Job(name, "int8")]
        if CPUS[name].arch == "x86_64":
            jobs.append(Job(name, "int8", path="default"))
    for version in args.extra_onnxruntime:  # one CPU per kind: the x86 one that needs the fix, the plainest ARM
        jobs += [Job(name, "int8", onnxruntime=version) for name in ("haswell", "cortex-a72") if name in args.cpus]
    jobs += [Job("haswell", "int8", onnxruntime=version) for version in args.below_floor]
    jobs += [Job(name, "bf16") for name in ("native", *BF16_CPUS) if name == "native" or name in args.cpus]
    for family in args.families:
        jobs += [Job("native", "fp32", model=family), Job("native", "int8", model=family)]
        jobs += [Job(name, "int8", model=family) for name in FAMILY_CPUS if name in args.cpus]

    def one(job: Job) -> tuple[Job, dict[str, Any]]:
        cpu = None if job.cpu == "native" else CPUS[job.cpu]
        version = job.onnxruntime or (args.onnxruntime if cpu is not None and cpu.arch == "aarch64" else "")
        out = work / f"{job.model}-{job.cpu}-{job.variant}-{job.path}-{version or 'venv'}.npy"
        reused = previous.get((job.model, job.cpu, job.variant, job.path, version or _venv_onnxruntime()))
        label = f"{job.model:<16} {job.cpu:<12} {job.variant:<5} {job.path:<8} ort {version or 'venv'}"
        if reused is not None and Path(reused["vectors"]).is_file():
            print(f"  {label}: reused", flush=True)
            return job, {k: v for k, v in reused.items() if k in REPORT_KEYS}
        source = texts_file
        if cpu is not None and cpu.fp32_texts and job.variant in ("fp32", "bf16"):
            source = work / f"texts-first-{cpu.fp32_texts}.json"
            source.write_text(json.dumps(texts[: cpu.fp32_texts]), encoding="utf-8")
        model = models[job.model]
        report = run_worker(tools, cpu, version or None, [str(model), job.variant, str(source), str(out), job.path])
        report["vectors"] = str(out) if "error" not in report else None
        took = report.get("error") or f"{report.get('seconds')} s emulated"
        print(f"  {label}: {took[:200]}", flush=True)
        return job, report

    print(f"{len(jobs)} runs of {len(texts)} texts ({args.passages} passages), two at a time", flush=True)
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(one, jobs))
    imports = {v: import_check(tools, CPUS["cortex-a72"], v) for v in args.import_check} if args.import_check else {}
    rows, ok = _rows(results, references)
    table = _markdown(rows, imports, args, len(texts))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "cpus.md").write_text(table, encoding="utf-8")
    (RESULTS / "cpus.json").write_text(json.dumps({"rows": rows, "imports": imports}, indent=2) + "\n")
    print(table)
    return 0 if ok else 1


REPORT_KEYS = ("machine", "onnxruntime", "probe", "error", "int8_kernel", "bf16", "seconds", "vectors")


def _previous_rows(reuse: bool) -> dict[tuple[str, str, str, str, str], dict[str, Any]]:
    """--reuse: the good rows of the last cpus.json by (model, cpu, variant, path asked, onnxruntime), whose runs
    are not repeated (their vectors are still in the cache)."""
    path = RESULTS / "cpus.json"
    if not reuse or not path.is_file():
        return {}
    rows = json.loads(path.read_text())["rows"]
    return {
        (r.get("model", MINILM), r["cpu"], r["variant"], r["path_asked"], r["onnxruntime"]): r
        for r in rows
        if r.get("vectors") and not r.get("error") and r.get("onnxruntime")
    }


def _rows(results: list[tuple[Job, dict[str, Any]]], references: dict[str, Any]) -> tuple[list[dict[str, Any]], bool]:
    import numpy as np

    from embedrt.int8_kernel import version_tuple

    native = {
        (job.model, job.variant): np.load(r["vectors"]) for job, r in results if job.cpu == "native" and r["vectors"]
    }
    rows, ok = [], True
    for job, report in results:
        row: dict[str, Any] = {"model": job.model, "cpu": job.cpu, "variant": job.variant, "path_asked": job.path}
        row.update(report)
        reference = references[job.model]
        if report.get("vectors"):
            got = np.load(report["vectors"])
            n = len(got)  # fewer texts for fp32 on x86
            cos = _cosines(got, reference[:n])
            row.update(texts=n, min_cosine=float(cos.min()), mean_cosine=float(cos.mean()))
            row["max_abs_vs_native"] = float(np.abs(got - native[job.model, job.variant][:n]).max())
            if job.variant == "bf16":
                row["gate"] = bool(cos.min() >= BF16_MIN_COSINE) and BF16_CPUS.get(job.cpu, True)
            elif job.variant == "int8":
                native_int8_mean = float(_cosines(native[job.model, "int8"], reference).mean())
                row["gate"] = bool(
                    cos.min() >= INT8_MIN_COSINE and abs(cos.mean() - native_int8_mean) <= INT8_MEAN_DELTA
                )
            else:
                row["gate"] = bool(cos.min() >= FP32_MIN_COSINE)
        else:
            # A refused int8 is right where the probe found no exact path, a refused bf16 where the CPU has no
            # bf16 (then onnxruntime's probe product must have come back float32); anything else is a failure.
            error = str(report.get("error"))
            refused = "NoBf16Kernel" in error and "onnxruntime: fp32" in error and not BF16_CPUS.get(job.cpu, True)
            row["gate"] = "UnsafeInt8Kernel" in error or refused
        below_floor = bool(job.onnxruntime) and version_tuple(job.onnxruntime) < FLOOR
        if job.path == "default":
            row["gate"] = "shown, not gated"  # the unfixed kernel, shown for what the probe prevents
        elif below_floor:
            row["gate"] = "below the floor, not gated"
        elif row["gate"] is not True:
            ok = False
        rows.append(row)
    return rows, ok


def _markdown(rows: list[dict[str, Any]], imports: dict[str, str], args: argparse.Namespace, n: int) -> str:
    lines = [
        "# embedrt on emulated CPUs",
        "",
        f"`make cpu-matrix` (`python scripts/cpu_matrix.py run`): the first {args.sentences} sentences of "
        f"sts-test plus {args.passages} passages of 20 sentences ({n} texts), each variant in a fresh process "
        "under QEMU 10 user mode, against sentence-transformers' fp32 vectors computed natively on "
        f"{platform.machine()}. Gates: int8 min cosine >= {INT8_MIN_COSINE} and mean within {INT8_MEAN_DELTA} "
        f"of native int8; fp32 min cosine >= {FP32_MIN_COSINE}; bf16 (the fp32 file in bf16, path = the engine the "
        f"probe chose) min cosine >= {BF16_MIN_COSINE}, refused where the CPU has no bf16 "
        f"({', '.join(c for c, has in BF16_CPUS.items() if not has)}). Emulated time is not performance. Besides "
        f"{MINILM}, random-weight models of other families' graphs (benchmarks/families.py: "
        f"{', '.join(args.families) or 'none'}) run int8 on {', '.join(FAMILY_CPUS)}.",
        "",
        "| model | CPU | stands for | onnxruntime | variant | texts | probe: default / u8u8 exact | path | min cos "
        "| mean cos | max abs vs native | gate |",
        "|---|---|---|---|---|---:|---|---|---:|---:|---:|---|",
    ]
    for r in rows:
        cpu = CPUS.get(r["cpu"])
        probe = r.get("probe") or {}
        kernel = r.get("int8_kernel") or {}
        path = "u8s8, forced (no fix)" if r["path_asked"] == "default" else kernel.get("path", "-")
        if r["variant"] == "bf16":
            path = (r.get("bf16") or {}).get("backend", "-")
        figures = (
            f"{r['min_cosine']:.6f} | {r['mean_cosine']:.6f} | {r['max_abs_vs_native']:.2e}"
            if "min_cosine" in r
            else f"{_short(r.get('error', ''))} | | "
        )
        gate = {True: "pass", False: "FAIL"}.get(r["gate"], r["gate"])
        lines.append(
            f"| {r.get('model', MINILM)} | {cpu.qemu_cpu if cpu else 'native (this machine)'} "
            f"| {cpu.stands_for if cpu else 'AVX-512 VNNI, AMX'} "
            f"| {r.get('onnxruntime', '-')} | {r['variant']} | {r.get('texts', '-')} "
            f"| {probe.get('default', '-')} / {probe.get('u8u8', '-')} "
            f"| {path if r['variant'] != 'fp32' else '-'} | {figures} | {gate} |"
        )
    if imports:
        lines += ["", "`import embedrt` on cortex-a72 by onnxruntime version:", ""]
        lines += [f"- {version}: {status}" for version, status in imports.items()]
    return "\n".join(lines) + "\n"


def _short(error: str) -> str:
    """The gist of an error for a table cell: the exception and the end of its message."""
    error = " ".join(error.split()).replace("|", "/")
    return error if len(error) <= 160 else error[:60] + " ... " + error[-95:]


def _venv_onnxruntime() -> str:
    """The onnxruntime of the Python running this script: the aarch64 runs use the same version."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("onnxruntime")
    except PackageNotFoundError:
        return "1.32.0"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="prepare, run the matrix, write benchmarks/results/cpus.md")
    run.add_argument("--cache", default=str(DEFAULT_CACHE), help="where QEMU, the arm64 root and wheels go")
    run.add_argument("--model", help="an export with fp32 and int8 (default: export all-MiniLM-L6-v2 into the cache)")
    run.add_argument("--cpus", nargs="+", default=list(CPUS), choices=list(CPUS))
    run.add_argument(
        "--families",
        nargs="*",
        default=list(FAMILIES),
        choices=list(FAMILIES),
        help="random-weight shapes of other families (benchmarks/families.py) also run on " + ", ".join(FAMILY_CPUS),
    )
    run.add_argument("--sentences", type=int, default=200)
    run.add_argument("--passages", type=int, default=2, help="passages of 20 sentences (truncated at 256 tokens)")
    run.add_argument("--reuse", action="store_true", help="keep the good runs of the last cpus.json; run the rest")
    run.add_argument("--onnxruntime", default=_venv_onnxruntime(), help="onnxruntime for the aarch64 runs")
    run.add_argument(
        "--extra-onnxruntime", nargs="*", default=["1.19.2"], help="int8 also with these (Haswell, cortex-a72)"
    )
    run.add_argument("--below-floor", nargs="*", default=["1.17.3", "1.18.1"], help="int8 on Haswell, not gated")
    run.add_argument("--import-check", nargs="*", default=["1.21.0", "1.21.1"], help="versions to import on cortex-a72")
    prep = sub.add_parser("prepare", help="only prepare QEMU, the arm64 root and the aarch64 site")
    prep.add_argument("--cache", default=str(DEFAULT_CACHE))
    prep.add_argument("--onnxruntime", default=_venv_onnxruntime())
    work = sub.add_parser("worker", help="(internal) embed texts in this process and print a JSON report")
    work.add_argument("model")
    work.add_argument("variant")
    work.add_argument("texts")
    work.add_argument("out")
    work.add_argument("path", choices=["auto", "default"])
    sub.add_parser("import-check", help="(internal) import embedrt and onnxruntime")
    args = parser.parse_args(argv)
    if args.command == "worker":
        print(json.dumps(worker(args.model, args.variant, args.texts, args.out, args.path)))
        return 0
    if args.command == "import-check":
        import onnxruntime  # noqa: F401

        import embedrt  # noqa: F401

        return 0
    if args.command == "prepare":
        print(prepare(Path(args.cache), [args.onnxruntime], []))
        return 0
    return run_matrix(args)


if __name__ == "__main__":
    sys.exit(main())
