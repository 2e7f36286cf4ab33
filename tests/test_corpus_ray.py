"""embed-corpus on Ray Data: one local Ray (2 CPUs) for the session, a pool of 2 actors."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from corpus_helpers import min_cosine, mixed_texts, read_output, worker_spec, write_jsonl, write_parquet

from embedrt import Encoder
from embedrt.corpus import embed_corpus
from embedrt.corpus.parts import PART_METADATA_KEY


@pytest.fixture(scope="module")
def tiny_encoder(tiny_export: Path) -> Encoder:
    return Encoder.load(tiny_export, variant="fp32", threads=1)


def writers(out: Path) -> list[str]:
    """The host:pid that wrote each part."""
    return [json.loads(pq.read_metadata(p).metadata[PART_METADATA_KEY])["writer"] for p in sorted(out.glob("part-*"))]


def test_ray_two_actors_match_encoder_string_ids(
    tmp_path: Path, tiny_export: Path, tiny_encoder: Encoder, ray_cluster
) -> None:
    n = 6000
    texts = mixed_texts(n, seed=4)
    ids = [f"doc-{i}" for i in range(n)]
    # One row group, read by one reader task: Ray must still spread its blocks over both actors. The tiny model
    # embeds a block in ~20 ms, so the job must last long enough for the second actor to start (~0.2 s).
    src = write_parquet(tmp_path / "in.parquet", ids, texts)
    result = embed_corpus(src, tmp_path / "out", tiny_export, engine="ray", workers=2, block_rows=250)
    got_ids, vectors = read_output(tmp_path / "out")
    assert got_ids == ids
    assert min_cosine(vectors, tiny_encoder.encode(texts)) >= 0.99999
    assert result.manifest["engine"] == "ray" and result.manifest["rows_out"] == n
    assert len(set(writers(tmp_path / "out"))) == 2  # both actors worked
    assert str(os.getpid()) not in {w.split(":")[1] for w in writers(tmp_path / "out")}  # not the driver


def test_ray_jsonl_int_ids_and_txt(tmp_path: Path, tiny_export: Path, tiny_encoder: Encoder, ray_cluster) -> None:
    texts = mixed_texts(600, seed=5)
    write_jsonl(tmp_path / "in.jsonl", [{"id": 3 * i + 1, "text": t} for i, t in enumerate(texts)])
    embed_corpus(tmp_path / "in.jsonl", tmp_path / "j", tiny_export, engine="ray", workers=2, block_rows=100)
    ids, vectors = read_output(tmp_path / "j")
    assert ids == [3 * i + 1 for i in range(600)]
    assert min_cosine(vectors, tiny_encoder.encode(texts)) >= 0.99999
    (tmp_path / "in.txt").write_text("\n".join(texts[:250]) + "\n")
    embed_corpus(tmp_path / "in.txt", tmp_path / "t", tiny_export, engine="ray", workers=2, block_rows=100)
    ids, vectors = read_output(tmp_path / "t")
    assert ids == list(range(250))
    assert min_cosine(vectors, tiny_encoder.encode(texts[:250])) >= 0.99999


def test_ray_bad_rows_fail_or_skip(tmp_path: Path, tiny_export: Path, ray_cluster) -> None:
    records = [{"id": f"r{i}", "text": f"text number {i}"} for i in range(300)]
    records[123] = {"id": "r123", "text": None}
    records[250] = {"id": "r250", "text": "x\udfffy"}
    src = write_jsonl(tmp_path / "in.jsonl", records)
    with pytest.raises(TypeError, match=r"row 123 \(id 'r123'\): 'text' is null"):
        embed_corpus(src, tmp_path / "fail", tiny_export, engine="ray", workers=2, block_rows=50)
    assert not (tmp_path / "fail" / "_SUCCESS").exists()
    result = embed_corpus(
        src, tmp_path / "skip", tiny_export, engine="ray", workers=2, block_rows=50, on_bad_row="skip"
    )
    ids, _ = read_output(tmp_path / "skip")
    assert ids == [f"r{i}" for i in range(300) if i not in (123, 250)]
    assert [s["id"] for s in result.manifest["skipped"]] == ["r123", "r250"]
    assert "lone surrogate U+DFFF" in result.manifest["skipped"][1]["reason"]


def test_ray_empty_input(tmp_path: Path, tiny_export: Path, ray_cluster) -> None:
    (tmp_path / "in.txt").write_bytes(b"")
    result = embed_corpus(tmp_path / "in.txt", tmp_path / "out", tiny_export, engine="ray", workers=2)
    table = pq.read_table(tmp_path / "out")
    assert table.num_rows == 0 and result.manifest["rows_in"] == 0
    assert table.schema.field("embedding").type == pa.list_(pa.float32(), 32)


def _actor_pids() -> list[int]:
    import psutil

    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if "EmbedBlocks" in cmdline and proc.pid != os.getpid():
            found.append(proc.pid)
    return found


def test_ray_actor_killed_mid_job_loses_nothing(
    tmp_path: Path, tiny_export: Path, tiny_encoder: Encoder, ray_cluster
) -> None:
    n, block_rows = 16000, 250
    texts = mixed_texts(n, seed=6)
    src = write_parquet(tmp_path / "in.parquet", list(range(n)), texts)
    out = tmp_path / "out"
    killed: dict[str, Any] = {}
    stop = threading.Event()

    def killer() -> None:
        while not stop.is_set():
            pids = _actor_pids()
            if pids and list(out.glob("part-*.parquet")):
                killed["parts_before"] = len(list(out.glob("part-*.parquet")))
                killed["alive"] = pids
                os.kill(pids[0], signal.SIGKILL)
                killed["pid"] = pids[0]
                return
            time.sleep(0.01)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        result = embed_corpus(src, out, tiny_export, engine="ray", workers=2, block_rows=block_rows)
    finally:
        stop.set()
        thread.join()
    assert "pid" in killed, "no actor was killed"
    assert killed["parts_before"] < n // block_rows, "the kill must land mid-job"
    ids, vectors = read_output(out)
    assert ids == list(range(n))
    assert min_cosine(vectors, tiny_encoder.encode(texts)) >= 0.99999
    assert result.manifest["rows_out"] == n
    # A restarted actor (a process that did not exist at the kill) wrote some of the parts.
    assert {int(w.split(":")[1]) for w in writers(out)} - set(killed["alive"])


def test_ray_driver_sigkilled_mid_job_resumes_to_the_rows_of_an_uninterrupted_run(
    tmp_path: Path, tiny_export: Path, tiny_encoder: Encoder, ray_cluster
) -> None:
    """The driver (which started its own local Ray) killed once a part exists; a re-run on Ray finishes the job."""
    from test_corpus import kill_after_first_part

    n, block_rows = 12000, 500
    src = write_parquet(tmp_path / "in.parquet", [f"id{i}" for i in range(n)], mixed_texts(n, seed=5))
    out = tmp_path / "out"
    done_at_kill = kill_after_first_part([str(src), str(out), str(tiny_export), str(block_rows), "ray"], out)
    assert 1 <= done_at_kill < n // block_rows, "the kill must land mid-job"
    assert not (out / "_SUCCESS").exists()
    result = embed_corpus(src, out, tiny_export, block_rows=block_rows, workers=2, engine="ray")
    assert result.manifest["parts_reused_last_run"] >= done_at_kill
    ids, vectors = read_output(out)
    assert ids == [f"id{i}" for i in range(n)]
    assert min_cosine(vectors, tiny_encoder.encode(mixed_texts(n, seed=5))) >= 0.99999
    assert not list(out.glob(".tmp-*"))


def test_ray_keep_columns_and_skipped_rows(tmp_path: Path, tiny_export: Path, ray_cluster) -> None:
    n = 400
    table = pa.table(
        {
            "id": [f"k{i}" for i in range(n)],
            "text": [None if i in (10, 333) else t for i, t in enumerate(mixed_texts(n, seed=7))],
            "year": pa.array(range(n), pa.int16()),
            "tags": [["a", str(i)] for i in range(n)],
        }
    )
    pq.write_table(table, tmp_path / "in.parquet")  # one row group, cut into 4 blocks by one reader task
    result = embed_corpus(
        tmp_path / "in.parquet",
        tmp_path / "out",
        tiny_export,
        engine="ray",
        workers=2,
        block_rows=100,
        keep_columns=["year", "tags"],
        on_bad_row="skip",
    )
    got = pq.read_table(tmp_path / "out")
    keep = pa.array([i not in (10, 333) for i in range(n)])
    assert got.select(["id", "year", "tags"]).equals(table.filter(keep).select(["id", "year", "tags"]))
    assert [(s["id"], s["row"]) for s in result.manifest["skipped"]] == [("k10", 10), ("k333", 333)]
    assert result.manifest["duplicate_ids"]["count"] == 0


def test_ray_worker_with_another_model_refuses(tmp_path: Path, tiny_export: Path, ray_cluster) -> None:
    """The driver's sha256 reaches the actors; one whose model directory lists another refuses every block."""
    from embedrt.corpus.ray_engine import run_ray
    from embedrt.corpus.sources import plan_input
    from embedrt.corpus.storage import resolve

    src = write_parquet(tmp_path / "in.parquet", list(range(20)), mixed_texts(20))
    plan = plan_input(resolve(src), "text", "id", 10)
    spec = worker_spec(tiny_export, model_sha256="f" * 64)
    out = resolve(tmp_path / "out")
    os.makedirs(out.path)
    with pytest.raises(ValueError, match=r"worker .*: the model at .* has sha256 [0-9a-f]{12}.*ffffffffffff"):
        run_ray(plan.units, spec, out.fs, out, 2, 1, None, lambda result: None)
    assert not list((tmp_path / "out").iterdir())


def test_ray_device_cuda_needs_a_gpu_per_worker(tmp_path: Path, tiny_export: Path, ray_cluster) -> None:
    src = write_parquet(tmp_path / "in.parquet", [1, 2], ["a", "b"])
    with pytest.raises(ValueError, match="the Ray cluster has 0 GPUs: too few for 2 workers with --device cuda"):
        embed_corpus(src, tmp_path / "out", tiny_export, engine="ray", workers=2, device="cuda")
    assert not list((tmp_path / "out").glob("part-*"))
