"""Safe concurrent runs: the OUTPUT lock, its stale rules, temporary names of a run, OUTPUT inside INPUT."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from corpus_helpers import finish, kill_when, mixed_texts, read_output, start_job, write_parquet

from embedrt.corpus import OutputLocked, embed_corpus
from embedrt.corpus.lock import OutputLock
from embedrt.corpus.storage import resolve, write_whole


def lock_file(out: Path, **fields) -> None:
    """A lock as another run leaves it (the fields of OUTPUT/_lock)."""
    now = time.time()
    holder = {"run_id": "other-run", "host": socket.gethostname(), "pid": os.getpid(), "pid_start": None}
    holder.update(started=now - 5, heartbeat=now - 5)
    holder.update(fields)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".tmp-test-{holder['run_id']}"
    tmp.write_text(json.dumps(holder))
    os.replace(tmp, out / "_lock")  # whole, as a heartbeat writes it: a reader never sees half of it


def test_second_run_is_refused_at_once_and_the_first_finishes(tmp_path: Path, tiny_export: Path) -> None:
    n, block_rows = 12000, 500
    src = write_parquet(tmp_path / "in.parquet", [f"id{i}" for i in range(n)], mixed_texts(n, seed=30))
    out = tmp_path / "out"
    proc = start_job(input=src, output=out, model_dir=tiny_export, block_rows=block_rows, workers=1)
    try:
        deadline = time.monotonic() + 120
        while not list(out.glob("part-*.parquet")):
            assert proc.poll() is None, proc.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "no part in time"
            time.sleep(0.005)
        with pytest.raises(OutputLocked, match=rf"locked by run \w+ \(pid {proc.pid} on host {socket.gethostname()}"):
            embed_corpus(src, out, tiny_export, block_rows=block_rows)
        assert len(list(out.glob("part-*.parquet"))) < n // block_rows, "the second run must come mid-job"
        result = finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # The refused run removed nothing of the first one's (its temporary files included): it finished whole.
    assert result["rows_out"] == n
    assert read_output(out)[0] == [f"id{i}" for i in range(n)]
    assert not (out / "_lock").exists() and not list(out.glob(".tmp-*"))


def test_lock_of_a_killed_run_is_taken_over(tmp_path: Path, tiny_export: Path) -> None:
    n, block_rows = 12000, 500
    src = write_parquet(tmp_path / "in.parquet", list(range(n)), mixed_texts(n, seed=31))
    out = tmp_path / "out"
    proc = start_job(input=src, output=out, model_dir=tiny_export, block_rows=block_rows, workers=1)
    kill_when(proc, lambda: bool(list(out.glob("part-*.parquet"))))
    left = json.loads((out / "_lock").read_text())
    assert (left["pid"], left["host"]) == (proc.pid, socket.gethostname())
    result = embed_corpus(src, out, tiny_export, block_rows=block_rows)
    assert f"process {proc.pid} is gone" in result.manifest["lock_taken_over"]
    assert result.rows_out == n and not (out / "_lock").exists()


def test_lock_of_another_host_holds_until_its_heartbeat_is_old(tmp_path: Path, tiny_export: Path) -> None:
    src = write_parquet(tmp_path / "in.parquet", [1, 2, 3], ["a", "b", "c"])
    out = tmp_path / "out"
    lock_file(out, host="elsewhere.invalid", pid=1)
    held = r"pid 1 on host elsewhere\.invalid, started .*, last heartbeat \d+ s ago\).*_lock"
    with pytest.raises(OutputLocked, match=held):
        embed_corpus(src, out, tiny_export)
    assert json.loads((out / "_lock").read_text())["host"] == "elsewhere.invalid"  # left alone
    lock_file(out, host="elsewhere.invalid", pid=1, heartbeat=time.time() - 3600)
    result = embed_corpus(src, out, tiny_export)
    assert "elsewhere.invalid" in result.manifest["lock_taken_over"]
    assert "no heartbeat for 3600 s" in result.manifest["lock_taken_over"]


def test_live_process_of_this_host_holds_and_a_reused_pid_does_not(tmp_path: Path, tiny_export: Path) -> None:
    src = write_parquet(tmp_path / "in.parquet", [1, 2, 3], ["a", "b", "c"])
    out = tmp_path / "out"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock_file(out, pid=sleeper.pid)
        with pytest.raises(OutputLocked, match=rf"pid {sleeper.pid} on host"):
            embed_corpus(src, out, tiny_export)
        # The same pid, but the lock says its process started at another time: the pid was reused.
        with open(f"/proc/{sleeper.pid}/stat") as handle:
            start = int(handle.read().rsplit(")", 1)[1].split()[19])
        lock_file(out, pid=sleeper.pid, pid_start=start + 1)
        result = embed_corpus(src, out, tiny_export)
        assert f"pid {sleeper.pid} now belongs to another process" in result.manifest["lock_taken_over"]
    finally:
        sleeper.kill()
        sleeper.wait()


def test_heartbeat_and_release(tmp_path: Path) -> None:
    out = resolve(tmp_path)
    lock = OutputLock(out, "run-a", heartbeat_s=0.02)
    lock.acquire()
    try:
        first = json.loads((tmp_path / "_lock").read_text())
        deadline = time.monotonic() + 30
        while json.loads((tmp_path / "_lock").read_text())["heartbeat"] == first["heartbeat"]:
            assert time.monotonic() < deadline, "no heartbeat"
            time.sleep(0.01)
        with pytest.raises(OutputLocked, match="locked by run run-a"):
            OutputLock(out, "run-b").acquire()
        lock.check()  # still ours
    finally:
        lock.release()
    assert not (tmp_path / "_lock").exists()
    with OutputLock(out, "run-b"):
        assert json.loads((tmp_path / "_lock").read_text())["run_id"] == "run-b"


def test_lost_lock_is_reported(tmp_path: Path) -> None:
    lock = OutputLock(resolve(tmp_path), "run-a", heartbeat_s=0.02)
    lock.acquire()
    try:
        lock_file(tmp_path, run_id="intruder")
        deadline = time.monotonic() + 30
        while True:
            try:
                lock.check()
            except OutputLocked as exc:
                assert "now held by run intruder" in str(exc)
                break
            assert time.monotonic() < deadline, "the heartbeat never saw the other holder"
            time.sleep(0.01)
    finally:
        lock.release()
    assert json.loads((tmp_path / "_lock").read_text())["run_id"] == "intruder"  # not ours to delete


def test_temporary_names_belong_to_the_run(tmp_path: Path, tiny_export: Path) -> None:
    seen = []

    def write(target) -> None:
        seen.append(Path(target.path).name)
        Path(target.path).write_text("whole")

    write_whole(resolve(tmp_path / "final.txt"), write, "run42")
    assert seen == [".tmp-run42-final.txt"] and (tmp_path / "final.txt").read_text() == "whole"
    # A temporary file that a killed run left is removed by the next run (which holds the lock).
    src = write_parquet(tmp_path / "in.parquet", [1, 2], ["a", "b"])
    out = tmp_path / "out"
    embed_corpus(src, out, tiny_export)
    (out / ".tmp-deadrun-part-00000-000000000000.parquet").write_bytes(b"half a part")
    (out / "part-00000-000000000000.parquet").unlink()
    embed_corpus(src, out, tiny_export)
    assert not list(out.glob(".tmp-*"))


def test_output_inside_input_directory(tmp_path: Path, tiny_export: Path) -> None:
    """The issue's case: the re-run used to take the job's own parts as input."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    write_parquet(corpus / "docs.parquet", list(range(300)), mixed_texts(300, seed=32))
    out = corpus / "embeddings"
    embed_corpus(corpus, out, tiny_export, block_rows=100)
    assert embed_corpus(corpus, out, tiny_export, block_rows=100).already_complete
    (out / "part-00000-000000000100.parquet").unlink()
    result = embed_corpus(corpus, out, tiny_export, block_rows=100)
    assert result.parts_written == 1 and result.manifest["input_files"] == 1
    assert read_output(out)[0] == list(range(300))
    with pytest.raises(ValueError, match="lies inside OUTPUT"):
        embed_corpus(corpus / "docs.parquet", corpus, tiny_export)
    with pytest.raises(ValueError, match="lies inside OUTPUT"):
        embed_corpus(corpus, corpus, tiny_export)
