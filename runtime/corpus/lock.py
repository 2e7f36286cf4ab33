"""One run at a time per OUTPUT: a lock file created exclusively, holding who runs, refreshed while it runs.

``OUTPUT/_lock`` is JSON: run id, host, pid (and the process's start time, so a reused pid is not mistaken for
the holder), the holder's PID namespace and boot id, when the run started and its last heartbeat, rewritten every
``HEARTBEAT_S``. A second run is refused at once with the holder's description. A lock is stale, and taken over,
when

- its host, PID namespace and boot id are this process's and its process is gone (a killed run: the next run on
  the same machine goes ahead), or
- otherwise, it has had no heartbeat for ``STALE_AFTER_S`` (a machine that died). A same hostname alone does not
  say that the holder's pid can be probed: containers with the host's network (Kubernetes ``hostNetwork``,
  ``docker --network host``) share the hostname but each has its own PID namespace, where a run is often pid 1;
  and after a reboot every pid is new. A lock without those ids (written by an older embedrt) follows this rule.

The heartbeat retries a failed read or write (NFS ESTALE, an S3 503, a timeout) on its next beat; ``check``
reports the lock as lost once no heartbeat has been written for ``LOSS_AFTER_S`` (failing, or stuck in a call
that does not return), well before another host may take the lock over (``STALE_AFTER_S``).

On the local filesystem (NFS included) the lock is created by ``link(2)`` of a complete temporary file, which
fails when the name exists: exactly one of two runs gets it. Object stores have no create-if-absent through
``pyarrow.fs``: there the lock is written only when absent and read back, which leaves a window of a few
milliseconds in which two runs started together could both pass (the parts they write are identical files
written whole, so such a race costs work, not correctness).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass

from embedrt.corpus.storage import TMP_PREFIX, Location, delete, file_info, import_pyarrow, read_bytes, write_bytes

LOCK_NAME = "_lock"
BREAK_PREFIX = "_lock.break-"
HEARTBEAT_S = 30.0
# Another host's run is presumed dead after this long without a heartbeat: 20 missed beats, far beyond any
# clock skew or pause of a live driver.
STALE_AFTER_S = 600.0
# A run whose heartbeat has failed this long stops trusting its lock (``check``): half the time after which
# another host may take it over, so the run learns it before anyone else can act on it.
LOSS_AFTER_S = STALE_AFTER_S / 2
_PID_NS = "/proc/self/ns/pid"
_BOOT_ID = "/proc/sys/kernel/random/boot_id"
# A takeover (read, delete, create) takes milliseconds; a marker older than this was left by a run that died
# in the middle of one.
BREAK_TIMEOUT_S = 60.0


class OutputLocked(RuntimeError):
    """Another run holds OUTPUT's lock."""


@dataclass(frozen=True)
class Holder:
    """The content of a lock file."""

    run_id: str
    host: str
    pid: int
    pid_start: int | None  # the process's start time in clock ticks after boot (Linux), against pid reuse
    started: float  # Unix time
    heartbeat: float  # Unix time of the last refresh
    pid_ns: str | None = None  # "pid:[<inode>]" of the holder's PID namespace; None without procfs or in old locks
    boot_id: str | None = None  # the kernel's boot id: pids of another boot are not this boot's

    @classmethod
    def current(cls, run_id: str) -> Holder:
        """A holder for this process."""
        now = time.time()
        pid = os.getpid()
        return cls(run_id, socket.gethostname(), pid, process_start(pid), now, now, pid_namespace(), boot_id())

    @classmethod
    def from_bytes(cls, data: bytes) -> Holder:
        """Parse a lock file (ValueError when it is not one)."""
        try:
            raw = json.loads(data)
            return cls(
                str(raw["run_id"]),
                str(raw["host"]),
                int(raw["pid"]),
                None if raw.get("pid_start") is None else int(raw["pid_start"]),
                float(raw["started"]),
                float(raw["heartbeat"]),
                None if raw.get("pid_ns") is None else str(raw["pid_ns"]),
                None if raw.get("boot_id") is None else str(raw["boot_id"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"not an embed-corpus lock: {exc}") from None

    def to_bytes(self) -> bytes:
        """The lock file's content."""
        return json.dumps(asdict(self)).encode()

    def describe(self, now: float) -> str:
        """Who holds the lock, for messages."""
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started))
        return (
            f"run {self.run_id} (pid {self.pid} on host {self.host}, started {started}, "
            f"last heartbeat {max(0.0, now - self.heartbeat):.0f} s ago)"
        )

    def pid_visible(self) -> bool:
        """Whether this process sees the holder's pid: same host, same PID namespace and same boot, all known."""
        here = (socket.gethostname(), pid_namespace(), boot_id())
        return None not in here and (self.host, self.pid_ns, self.boot_id) == here

    def stale_reason(self, now: float, stale_after_s: float) -> str | None:
        """Why this holder is presumed dead, or None while it may be alive."""
        if self.pid_visible():
            if not pid_alive(self.pid):
                return f"its process {self.pid} is gone"
            start = process_start(self.pid)
            if self.pid_start is not None and start is not None and start != self.pid_start:
                return f"pid {self.pid} now belongs to another process"
            return None
        if now - self.heartbeat > stale_after_s:
            return f"no heartbeat for {now - self.heartbeat:.0f} s"
        return None


def pid_namespace() -> str | None:
    """The PID namespace of this process, as ``/proc/self/ns/pid`` names it ("pid:[4026531836]"); None without it."""
    try:
        return os.readlink(_PID_NS)
    except OSError:
        return None


def boot_id() -> str | None:
    """The kernel's random boot id (new at every boot); None without procfs."""
    try:
        with open(_BOOT_ID, encoding="ascii") as handle:
            return handle.read().strip() or None
    except OSError:
        return None


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    return True


def process_start(pid: int) -> int | None:
    """The start time of a process in clock ticks after boot (field 22 of /proc/<pid>/stat); None without procfs."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: the fields after it follow the last ")".
    return int(stat.rsplit(b")", 1)[1].split()[19])


def create_exclusive(location: Location, data: bytes, run_id: str) -> bool:
    """Create a file with ``data`` unless the name exists; whether this call created it (see the module docstring)."""
    if location.is_local:
        tmp = location.path.rsplit("/", 1)[0] + f"/{TMP_PREFIX}{run_id}-{uuid.uuid4().hex}"
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, location.path)  # atomic, and fails when the name exists, on NFS too
            return True
        except FileExistsError:
            return False
        except OSError:  # a filesystem without hard links
            return _create_excl(location.path, data)
        finally:
            os.unlink(tmp)
    if file_info(location).type != import_pyarrow().fs.FileType.NotFound:
        return False
    write_bytes(location, data, run_id)
    return read_bytes(location) == data


def _create_excl(path: str, data: bytes) -> bool:
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    return True


class OutputLock:
    """``with OutputLock(output, run_id):`` the run holds OUTPUT (``OUTPUT/_lock``) until the block ends."""

    def __init__(
        self,
        output: Location,
        run_id: str,
        heartbeat_s: float = HEARTBEAT_S,
        stale_after_s: float = STALE_AFTER_S,
        loss_after_s: float = LOSS_AFTER_S,
    ) -> None:
        """Describe the lock; nothing is taken before ``acquire``."""
        self.output = output
        self.location = output.child(LOCK_NAME)
        self.holder = Holder.current(run_id)
        self.heartbeat_s = heartbeat_s
        self.stale_after_s = stale_after_s
        self.loss_after_s = loss_after_s
        self.taken_over: str | None = None  # the description of a stale holder this run replaced
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lost: str | None = None
        self._last_beat = time.monotonic()  # when the lock file last held this run's fresh heartbeat
        self._failure: str | None = None  # the last heartbeat error, until a heartbeat succeeds again

    def acquire(self) -> None:
        """Take the lock, or raise OutputLocked naming its holder; a stale lock is taken over."""
        for _ in range(3):  # a lock that vanishes or is taken over between our steps: look again
            if create_exclusive(self.location, self.holder.to_bytes(), self.holder.run_id):
                self._last_beat = time.monotonic()
                self._thread = threading.Thread(target=self._beat, name="embedrt-corpus-lock", daemon=True)
                self._thread.start()
                return
            current = self.read()
            if current is None:
                continue
            now = time.time()
            reason = current.stale_reason(now, self.stale_after_s)
            if reason is None:
                raise OutputLocked(self._locked_message(current, now))
            if self._break(current):
                self.taken_over = f"{current.describe(now)}: {reason}"
        current = self.read()
        raise OutputLocked(
            self._locked_message(current, time.time())
            if current
            else f"OUTPUT {self.output}: could not take {self.location}: other runs keep taking it"
        )

    def read(self) -> Holder | None:
        """The current holder, None when there is no lock; an unreadable lock counts as held by no one known."""
        try:
            data = read_bytes(self.location)
        except FileNotFoundError:
            return None
        try:
            return Holder.from_bytes(data)
        except ValueError:
            # Half-written by a run that was killed while creating it on a filesystem without link(2), or not
            # ours at all: refuse rather than guess.
            raise OutputLocked(
                f"OUTPUT {self.output}: {self.location} is not a readable embed-corpus lock; if no run is writing "
                "there, delete it"
            ) from None

    def check(self) -> None:
        """Raise if the lock was taken from this run, or its heartbeat has failed for ``loss_after_s``."""
        if self._lost:
            raise OutputLocked(self._lost)
        silent = time.monotonic() - self._last_beat
        if self._thread is not None and silent > self.loss_after_s:
            # A failing store, or a beat stuck in a read that never returns (a hung NFS mount): either way no
            # heartbeat reached the lock for that long.
            why = self._failure or "the heartbeat has not completed since"
            raise OutputLocked(
                f"OUTPUT {self.output}: this run's lock has had no heartbeat for {silent:.0f} s ({why}); "
                f"another run may take it over after {self.stale_after_s:.0f} s, so this run's output is not trusted; "
                "run the job again once the store is reachable"
            )

    def release(self) -> None:
        """Stop the heartbeat and delete the lock if it is still this run's."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with contextlib.suppress(OutputLocked):
            current = self.read()
            if current is not None and current.run_id == self.holder.run_id:
                delete(self.location)

    def __enter__(self) -> OutputLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _break(self, stale: Holder) -> bool:
        """Delete a stale lock; whether this run did. A marker file makes sure only one run deletes it."""
        marker = self.output.child(BREAK_PREFIX + stale.run_id)
        if not create_exclusive(marker, self.holder.run_id.encode(), self.holder.run_id):
            info = file_info(marker)
            if info.mtime_ns is not None and time.time() - info.mtime_ns / 1e9 > BREAK_TIMEOUT_S:
                delete(marker)  # left by a run that died while taking over
            return False
        try:
            current = self.read()
            # Still the stale holder: another run that took over first would have its own, live, run id.
            if current is not None and current.run_id == stale.run_id:
                delete(self.location)
                return True
            return False
        finally:
            delete(marker)

    def _beat(self) -> None:
        """Refresh the heartbeat until released; a failed read or write is retried at the next beat."""
        while not self._stop.wait(self.heartbeat_s):
            try:
                current = self.read()
            except OutputLocked as exc:
                self._lost = str(exc)
                return
            except OSError as exc:  # NFS ESTALE, an S3 503, a timeout: transient until check() says otherwise
                self._failure = f"reading {self.location}: {type(exc).__name__}: {exc}"
                continue
            if current is None or current.run_id != self.holder.run_id:
                now = time.time()
                by = current.describe(now) if current else "no one (the lock file was deleted)"
                self._lost = f"OUTPUT {self.output}: this run's lock is now held by {by}; its output is not trusted"
                return
            self.holder = Holder(**{**asdict(self.holder), "heartbeat": time.time()})
            try:
                write_bytes(self.location, self.holder.to_bytes(), self.holder.run_id)
            except OSError as exc:
                self._failure = f"writing {self.location}: {type(exc).__name__}: {exc}"
                continue
            self._last_beat, self._failure = time.monotonic(), None

    def _locked_message(self, holder: Holder, now: float) -> str:
        return (
            f"OUTPUT {self.output} is locked by {holder.describe(now)}: another embed-corpus is writing there. "
            f"Wait for it to end. A lock is taken over by the next run once its process is gone (same host, PID "
            f"namespace and boot) or after {self.stale_after_s:.0f} s without a heartbeat (otherwise); if you know "
            f"that run is dead, delete {self.location}"
        )
