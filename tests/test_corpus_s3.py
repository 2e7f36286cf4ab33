"""embed-corpus on object storage: a real S3 server (moto in server mode) on 127.0.0.1, input and output on it.

The server starts once for the session on a free port of 127.0.0.1 and stops at the end; each test gets its own
bucket and the standard AWS environment (AWS_ENDPOINT_URL pointing at the server), which is all embed-corpus
reads. Nothing here talks to any other address: credentials are set, and EC2 metadata lookups are disabled.
"""

from __future__ import annotations

import io
import json
import logging
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from corpus_helpers import kill_when, min_cosine, mixed_texts, start_job, write_jsonl, write_parquet

from embedrt import Encoder
from embedrt.corpus import OutputLocked, embed_corpus, output_parts
from embedrt.corpus.lock import boot_id, pid_namespace

moto_server = pytest.importorskip("moto.server", reason="needs moto[server] (the test extra)")


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request otherwise
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_env(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {
        "AWS_ENDPOINT_URL": s3_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    for key in ("AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def bucket(s3_env: dict[str, str]) -> tuple[pafs.S3FileSystem, str]:
    """A new bucket, and a filesystem for the test's own reads and writes (built apart from embed-corpus)."""
    fs = pafs.S3FileSystem(
        endpoint_override=s3_env["AWS_ENDPOINT_URL"],
        access_key="testing",
        secret_key="testing",
        region="us-east-1",
        allow_bucket_creation=True,
    )
    name = f"corpus-{uuid.uuid4().hex[:10]}"
    fs.create_dir(name)
    return fs, name


@pytest.fixture(scope="module")
def tiny_encoder(tiny_export: Path) -> Encoder:
    return Encoder.load(tiny_export, variant="fp32", threads=1)


def upload(fs: pafs.S3FileSystem, local: Path, key: str) -> None:
    with fs.open_output_stream(key) as handle:
        handle.write(local.read_bytes())


def keys(fs: pafs.S3FileSystem, prefix: str) -> list[str]:
    return sorted(
        i.path[len(prefix) + 1 :]
        for i in fs.get_file_info(pafs.FileSelector(prefix, recursive=True, allow_not_found=True))
    )


def read_parts(fs: pafs.S3FileSystem, uris: list[str]) -> tuple[list, np.ndarray]:
    tables = [pq.read_table(uri.removeprefix("s3://"), filesystem=fs) for uri in uris]
    ids = [i for t in tables for i in t.column(0).to_pylist()]
    vectors = np.concatenate([np.stack(t.column("embedding").to_numpy(zero_copy_only=False)) for t in tables])
    return ids, vectors


def test_s3_input_and_output(tmp_path: Path, tiny_export: Path, tiny_encoder: Encoder, bucket) -> None:
    fs, name = bucket
    texts = mixed_texts(700, seed=50)
    write_parquet(tmp_path / "a.parquet", list(range(400)), texts[:400], row_group_size=128)
    write_parquet(tmp_path / "b.parquet", list(range(400, 700)), texts[400:])
    upload(fs, tmp_path / "a.parquet", f"{name}/in/a.parquet")
    upload(fs, tmp_path / "b.parquet", f"{name}/in/b.parquet")
    result = embed_corpus(f"s3://{name}/in", f"s3://{name}/out", tiny_export, block_rows=128, workers=2)
    assert result.output == f"s3://{name}/out" and result.rows_out == 700
    parts = output_parts(f"s3://{name}/out")
    assert parts == [f"s3://{name}/out/{p['name']}" for p in result.manifest["parts"]]
    ids, vectors = read_parts(fs, parts)
    assert ids == list(range(700))
    assert min_cosine(vectors, tiny_encoder.encode(texts)) >= 0.99999
    # Written once under their final names: no temporary object, nothing but the job's files.
    listed = keys(fs, f"{name}/out")
    assert listed == sorted(["_SUCCESS", "_job.json", *(p.rsplit("/", 1)[1] for p in parts)])
    state = json.loads(fs.open_input_stream(f"{name}/out/_job.json").read())
    assert [f["uri"] for f in state["files"]] == [f"s3://{name}/in/a.parquet", f"s3://{name}/in/b.parquet"]
    assert [f["size"] for f in state["files"]] == [fs.get_file_info(f"{name}/in/{n}.parquet").size for n in "ab"]
    assert embed_corpus(f"s3://{name}/in", f"s3://{name}/out", tiny_export, block_rows=128).already_complete
    # An input object replaced with other content is refused, naming its URI.
    write_parquet(tmp_path / "b2.parquet", list(range(400, 700)), texts[400:][::-1])
    upload(fs, tmp_path / "b2.parquet", f"{name}/in/b.parquet")
    with pytest.raises(ValueError, match=rf"s3://{name}/in/b\.parquet changed since OUTPUT was written"):
        embed_corpus(f"s3://{name}/in", f"s3://{name}/out", tiny_export, block_rows=128)


def test_s3_jsonl_and_missing_success(tmp_path: Path, tiny_export: Path, bucket) -> None:
    fs, name = bucket
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": f"j{i}", "text": t} for i, t in enumerate(mixed_texts(90))])
    upload(fs, src, f"{name}/docs.jsonl")
    with pytest.raises(FileNotFoundError, match="has no _SUCCESS"):
        output_parts(f"s3://{name}/nothing")
    result = embed_corpus(f"s3://{name}/docs.jsonl", f"s3://{name}/emb", tiny_export, block_rows=40)
    assert read_parts(fs, output_parts(f"s3://{name}/emb"))[0] == [f"j{i}" for i in range(90)]
    assert len(result.manifest["parts"]) == 3


def test_s3_sigkill_and_resume(tmp_path: Path, tiny_export: Path, bucket, s3_env) -> None:
    fs, name = bucket
    n, block_rows = 12000, 500
    texts = mixed_texts(n, seed=51)
    src = write_parquet(tmp_path / "in.parquet", [f"id{i}" for i in range(n)], texts)
    upload(fs, src, f"{name}/in.parquet")
    source, output = f"s3://{name}/in.parquet", f"s3://{name}/out"

    def part_keys() -> list[str]:
        return [k for k in keys(fs, f"{name}/out") if k.startswith("part-")]

    proc = start_job(
        env={**os.environ, **s3_env},
        input=source,
        output=output,
        model_dir=tiny_export,
        block_rows=block_rows,
        workers=1,
    )
    kill_when(proc, lambda: bool(part_keys()))
    at_kill = part_keys()
    assert 1 <= len(at_kill) < n // block_rows, "the kill must land mid-job"
    assert "_SUCCESS" not in keys(fs, f"{name}/out") and "_lock" in keys(fs, f"{name}/out")
    for key in at_kill:  # every part that exists is complete: a PUT appears whole or not at all
        table = pq.read_table(f"{name}/out/{key}", filesystem=fs)
        start = int(key.removesuffix(".parquet").rsplit("-", 1)[1])
        assert table.column("id").to_pylist() == [f"id{i}" for i in range(start, start + block_rows)]
    result = embed_corpus(source, output, tiny_export, block_rows=block_rows, workers=1)
    assert result.manifest["parts_reused_last_run"] >= len(at_kill)
    assert f"process {proc.pid} is gone" in result.manifest["lock_taken_over"]
    embed_corpus(src, tmp_path / "clean", tiny_export, block_rows=block_rows, workers=1)
    ids, vectors = read_parts(fs, output_parts(output))
    clean = pq.read_table(tmp_path / "clean")
    assert ids == clean.column("id").to_pylist() == [f"id{i}" for i in range(n)]
    np.testing.assert_array_equal(vectors, np.stack(clean.column("embedding").to_numpy(zero_copy_only=False)))
    assert "_lock" not in keys(fs, f"{name}/out")


def test_s3_lock_refuses_a_live_holder(tmp_path: Path, tiny_export: Path, bucket) -> None:
    fs, name = bucket
    src = write_parquet(tmp_path / "in.parquet", [1, 2], ["a", "b"])
    upload(fs, src, f"{name}/in.parquet")
    holder = {"run_id": "r0", "host": socket.gethostname(), "pid": os.getpid(), "pid_start": None}
    holder.update(started=0.0, heartbeat=0.0, pid_ns=pid_namespace(), boot_id=boot_id())  # this process's
    with fs.open_output_stream(f"{name}/out/_lock") as handle:
        handle.write(json.dumps(holder).encode())
    with pytest.raises(OutputLocked, match=rf"locked by run r0 \(pid {os.getpid()} on host"):
        embed_corpus(f"s3://{name}/in.parquet", f"s3://{name}/out", tiny_export)
    fs.delete_file(f"{name}/out/_lock")
    assert embed_corpus(f"s3://{name}/in.parquet", f"s3://{name}/out", tiny_export).rows_out == 2


def test_s3_ray_engine(tmp_path: Path, tiny_export: Path, tiny_encoder: Encoder, bucket, ray_cluster) -> None:
    """Ray actors read the input and write the parts on S3 themselves, with the driver's filesystem."""
    fs, name = bucket
    texts = mixed_texts(1000, seed=52)
    src = write_parquet(tmp_path / "in.parquet", [f"r{i}" for i in range(1000)], texts)
    upload(fs, src, f"{name}/in.parquet")
    result = embed_corpus(
        f"s3://{name}/in.parquet", f"s3://{name}/out", tiny_export, engine="ray", workers=2, block_rows=125
    )
    ids, vectors = read_parts(fs, output_parts(f"s3://{name}/out"))
    assert ids == [f"r{i}" for i in range(1000)] and result.manifest["engine"] == "ray"
    assert min_cosine(vectors, tiny_encoder.encode(texts)) >= 0.99999
    writers = set()
    for part in output_parts(f"s3://{name}/out"):
        meta = pq.read_metadata(io.BytesIO(fs.open_input_file(part.removeprefix("s3://")).read()))
        writers.add(json.loads(meta.metadata[b"embedrt.block"])["writer"])
    assert str(os.getpid()) not in {w.split(":")[1] for w in writers}  # the actors wrote, not the driver
