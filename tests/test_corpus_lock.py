"""Safe concurrent runs: the OUTPUT lock, its stale rules, temporary names of a run, OUTPUT inside INPUT."""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from corpus_helpers import finish, kill_when, mixed_texts, read_output, start_job, write_parquet

from embedrt.corpus import OutputLocked, embed_corpus
from embedrt.corpus import lock as lock_module
from embedrt.corpus.lock import Holder, OutputLock
from embedrt.corpus.storage import resolve, write_whole

BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def lock_file(out: Path, **fields) -> None:
    """A lock as another run leaves it (the fields of OUTPUT/_lock)."""
    now = time.time()
    holder = {"run_id": "other-run", "host": socket.gethostname(), "pid": os.getpid(), "pid_start": None}
    holder.update(pid_ns=os.readlink("/proc/self/ns/pid"), boot_id=BOOT_ID.read_text().strip())  # this process's
    holder.update(started=now - 5, heartbeat=now - 5)
    holder.update(fields)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".tmp-test-{holder['run_id']}"
    tmp.write_text(json.dumps(holder))
    os.replace(tmp, out / "_lock")  # whole, as a heartbeat writes it: a reader never sees half of it


def check_failure(lock: OutputLock, what: str) -> str:
    """The message of the OutputLocked that ``lock.check()`` raises once the heartbeat thread has found ``what``."""
    deadline = time.monotonic() + 30
    while True:
        try:
            lock.check()
        except OutputLocked as exc:
            return str(exc)
        assert time.monotonic() < deadline, f"check() never reported {what}"
        time.sleep(0.01)


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
        assert "now held by run intruder" in check_failure(lock, "the other holder")
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


# --- who may probe the holder's pid: same host, PID namespace and boot --------------------------------------


def test_the_lock_records_the_pid_namespace_and_boot_id(tmp_path: Path) -> None:
    with OutputLock(resolve(tmp_path), "run-a"):
        held = json.loads((tmp_path / "_lock").read_text())
    assert held["pid_ns"] == os.readlink("/proc/self/ns/pid")
    assert held["boot_id"] == BOOT_ID.read_text().strip()


def _holder(**fields) -> Holder:
    now = time.time()
    base = Holder.current("other-run")
    return Holder(**{**base.__dict__, "pid": 1, "pid_start": 1, "started": now - 5, "heartbeat": now - 5, **fields})


@pytest.mark.parametrize(
    "other",
    [{"pid_ns": "pid:[1]"}, {"boot_id": "00000000-0000-0000-0000-000000000000"}, {"pid_ns": None, "boot_id": None}],
    ids=["another-pid-namespace", "another-boot", "ids-not-recorded"],
)
def test_a_holder_whose_pid_cannot_be_probed_follows_the_heartbeat_rule(other) -> None:
    """Same hostname, pid 1 "now another process" here: only the heartbeat may say it is dead."""
    now = time.time()
    holder = _holder(**other)
    assert not holder.pid_visible()
    assert holder.stale_reason(now, stale_after_s=600) is None
    old = _holder(**other, heartbeat=now - 3600)
    assert old.stale_reason(now, stale_after_s=600) == "no heartbeat for 3600 s"


def test_a_holder_of_this_namespace_and_boot_is_probed() -> None:
    holder = _holder()
    assert holder.pid_visible()
    assert holder.stale_reason(time.time(), stale_after_s=600) == "pid 1 now belongs to another process"


def _unshare_refusal() -> str | None:
    """Why this machine cannot run a process in a new PID namespace (None: it can)."""
    if shutil.which("unshare") is None:
        return "no unshare command (util-linux) on this machine"
    probe = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", "true"], capture_output=True, text=True, timeout=60
    )
    if probe.returncode != 0:
        return f"unshare --pid --fork --mount-proc is not permitted here: {probe.stderr.strip()}"
    return None


def test_a_holder_in_another_pid_namespace_keeps_the_lock(tmp_path: Path) -> None:
    """The issue's case: a holder under unshare --pid (pid 1 there), a second run on the host at once."""
    refusal = _unshare_refusal()
    if refusal is not None:
        pytest.skip(refusal)
    script = textwrap.dedent(
        """
        import os, sys
        from embedrt.corpus.lock import OutputLock
        from embedrt.corpus.storage import resolve

        lock = OutputLock(resolve(sys.argv[1]), "ns-holder", heartbeat_s=0.05)
        lock.acquire()
        print("held", os.getpid(), flush=True)
        sys.stdin.read()  # until the test closes stdin
        lock.check()
        lock.release()
        print("released", flush=True)
        """
    )
    holder = subprocess.Popen(
        ["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c", script, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().split() == ["held", "1"], holder.stderr.read()
        locked = json.loads((tmp_path / "_lock").read_text())
        assert locked["pid"] == 1 and locked["host"] == socket.gethostname()
        assert locked["pid_ns"] != os.readlink("/proc/self/ns/pid")
        with pytest.raises(OutputLocked, match=r"locked by run ns-holder \(pid 1 on host"):
            OutputLock(resolve(tmp_path), "host-run").acquire()
        out, err = holder.communicate("", timeout=60)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    assert holder.returncode == 0, err
    assert out.strip() == "released"  # its check() found the lock still its own
    assert not (tmp_path / "_lock").exists()


# --- a heartbeat that fails for a while ---------------------------------------------------------------------


def _failing_in_heartbeat(monkeypatch, name: str, failures: dict[str, int]) -> None:
    """Make ``lock_module.<name>`` raise ESTALE while ``failures["left"]`` > 0, on the heartbeat thread only."""
    real = getattr(lock_module, name)

    def flaky(*args, **kwargs):
        if threading.current_thread().name == "embedrt-corpus-lock" and failures["left"] != 0:
            failures["left"] -= 1
            raise OSError(errno.ESTALE, "Stale file handle")
        return real(*args, **kwargs)

    monkeypatch.setattr(lock_module, name, flaky)


def _heartbeat(path: Path) -> float:
    return json.loads((path / "_lock").read_text())["heartbeat"]


@pytest.mark.parametrize("step", ["read_bytes", "write_bytes"])
def test_the_heartbeat_survives_transient_errors(tmp_path: Path, monkeypatch, step: str) -> None:
    failures = {"left": 3}
    _failing_in_heartbeat(monkeypatch, step, failures)
    lock = OutputLock(resolve(tmp_path), "run-a", heartbeat_s=0.02, loss_after_s=3600)
    lock.acquire()
    try:
        deadline = time.monotonic() + 30
        while failures["left"]:
            assert time.monotonic() < deadline, "the heartbeat stopped trying"
            time.sleep(0.01)
        after_failures = _heartbeat(tmp_path)
        while _heartbeat(tmp_path) == after_failures:
            assert time.monotonic() < deadline, "no heartbeat after the errors"
            time.sleep(0.01)
        lock.check()
    finally:
        lock.release()
    assert not (tmp_path / "_lock").exists()


def test_check_reports_a_heartbeat_that_fails_too_long(tmp_path: Path, monkeypatch) -> None:
    failures = {"left": -1}  # fails until told otherwise
    _failing_in_heartbeat(monkeypatch, "read_bytes", failures)
    lock = OutputLock(resolve(tmp_path), "run-a", heartbeat_s=0.02, loss_after_s=0.2)
    lock.acquire()
    try:
        message = check_failure(lock, "the failing heartbeat")
        assert "no heartbeat for" in message and "Stale file handle" in message
        deadline = time.monotonic() + 30
        failures["left"] = 0  # the store is back: the next beat refreshes the lock and check() passes again
        while True:
            try:
                lock.check()
                break
            except OutputLocked:
                assert time.monotonic() < deadline, "the heartbeat did not recover"
                time.sleep(0.01)
    finally:
        lock.release()


def test_check_reports_a_heartbeat_stuck_in_a_call(tmp_path: Path, monkeypatch) -> None:
    """A read that never returns (a hung NFS mount) raises nothing: check() goes by the last heartbeat written."""
    released = threading.Event()
    real = lock_module.read_bytes

    def hanging(*args, **kwargs):
        if threading.current_thread().name == "embedrt-corpus-lock":
            released.wait(60)
        return real(*args, **kwargs)

    monkeypatch.setattr(lock_module, "read_bytes", hanging)
    lock = OutputLock(resolve(tmp_path), "run-a", heartbeat_s=0.02, loss_after_s=0.2)
    lock.acquire()
    try:
        assert "the heartbeat has not completed since" in check_failure(lock, "the stuck heartbeat")
    finally:
        released.set()
        lock.release()
