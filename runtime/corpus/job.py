"""One ``embed-corpus`` job in its OUTPUT: the state a resume checks, what a run still has to embed, the model check.

Layout of OUTPUT:

- ``_lock``: held while a run works there (see ``lock``).
- ``_job.json``: the job's configuration and, for each input file, its size, mtime_ns and (parquet) row count
  and row-group layout, written before any part; a re-run must match it, or pass ``--overwrite``.
- ``part-<file>-<start>.parquet``: the embeddings of one input block, written whole or not at all (see
  ``storage.write_whole``); readers of the directory skip names that start with ``.`` or ``_``.
- ``_SUCCESS``: the manifest JSON, written last; it lists every part with its rows and size. It is deleted
  before a run changes anything, so that it exists only while the parts it lists are the job's complete set.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from embedrt.corpus.identity import ModelIdentity
from embedrt.corpus.lock import BREAK_PREFIX, LOCK_NAME
from embedrt.corpus.sources import InputFile, Plan
from embedrt.corpus.spec import JobSpec
from embedrt.corpus.storage import TMP_PREFIX, Location, delete, file_info, import_pyarrow, list_dir, read_bytes
from embedrt.corpus.storage import write_bytes as _write_bytes
from embedrt.manifest import Variant

STATE_NAME = "_job.json"
SUCCESS_NAME = "_SUCCESS"
# 3: the model's whole pipeline (``identity``) is part of the job.
STATE_FORMAT = 3
_OVERWRITE_HINT = "pass --overwrite to re-embed what changed, or choose another OUTPUT"


@dataclass(frozen=True)
class JobState:
    """The contents of ``_job.json``: what a re-run into the same OUTPUT must match."""

    input: str
    files: tuple[InputFile, ...]
    text_column: str
    id_column: str
    keep_columns: tuple[str, ...]
    block_rows: int
    model_dir: str
    model: ModelIdentity

    @classmethod
    def read(cls, location: Location) -> JobState:
        """Read ``_job.json`` (errors name the file)."""
        data = read_json(location)
        if data.get("format") != STATE_FORMAT:
            raise ValueError(
                f"{location}: job state format {data.get('format')!r}, this embed-corpus writes {STATE_FORMAT}; "
                f"{_OVERWRITE_HINT}"
            )
        try:
            return cls(
                input=str(data["input"]),
                files=tuple(InputFile.from_dict(f) for f in data["files"]),
                text_column=str(data["text_column"]),
                id_column=str(data["id_column"]),
                keep_columns=tuple(str(c) for c in data["keep_columns"]),
                block_rows=int(data["block_rows"]),
                model_dir=str(data["model_dir"]),
                model=ModelIdentity.from_dict(data["model"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{location} is not a valid job state ({exc!r}); {_OVERWRITE_HINT}") from None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, with the format number."""
        return {
            "format": STATE_FORMAT,
            "input": self.input,
            "files": [{"uri": f.uri, **f.fingerprint()} for f in self.files],
            "text_column": self.text_column,
            "id_column": self.id_column,
            "keep_columns": list(self.keep_columns),
            "block_rows": self.block_rows,
            "model_dir": self.model_dir,
            "model": self.model.to_dict(),
        }

    def changes_since(self, previous: JobState) -> Changes:
        """How this run differs from the job that wrote OUTPUT."""
        changes = Changes()
        old, new = previous.model, self.model
        if (old.model_sha256, old.variant) != (new.model_sha256, new.variant):
            changes.model = (
                f"it holds embeddings of model {previous.model_dir} variant {old.variant} "
                f"(sha256 {old.model_sha256[:12]}...); this run asks for {self.model_dir} variant {new.variant} "
                f"(sha256 {new.model_sha256[:12]}...). Vectors of two models must not be mixed"
            )
        elif old != new:
            changes.model = (
                f"it holds embeddings of model {previous.model_dir} variant {old.variant}; {self.model_dir} has the "
                f"same ONNX file in another pipeline ({'; '.join(new.differences(old))}). Vectors of two pipelines "
                "must not be mixed"
            )
        before = {"files": [f.uri for f in previous.files]}
        now = {"files": [f.uri for f in self.files]}
        for name in ("input", "text_column", "id_column", "keep_columns", "block_rows"):
            before[name], now[name] = getattr(previous, name), getattr(self, name)
        changes.options = [
            f"{name} {before[name]!r}, this run has {now[name]!r}" for name in now if before[name] != now[name]
        ]
        if not changes.options:
            for index, (old, new) in enumerate(zip(previous.files, self.files, strict=True)):
                if old.fingerprint() != new.fingerprint():
                    changes.files[index] = f"{new.uri} changed since OUTPUT was written ({_difference(old, new)})"
        return changes


@dataclass
class Changes:
    """What differs between a run and the job in its OUTPUT."""

    model: str | None = None
    options: list[str] = field(default_factory=list)
    files: dict[int, str] = field(default_factory=dict)  # file index -> what changed

    @property
    def whole_job(self) -> bool:
        """Whether every part is stale (another model or other options), not only those of changed files."""
        return bool(self.model or self.options)

    def message(self, output: Location) -> str:
        """Why a run is refused without --overwrite."""
        if self.model:
            return f"OUTPUT {output}: {self.model}; {_OVERWRITE_HINT}"
        if self.options:
            return (
                f"OUTPUT {output} was started with {'; '.join(self.options)}: a job resumes only with the same "
                f"input and options; {_OVERWRITE_HINT}"
            )
        listed = "; ".join(self.files[i] for i in sorted(self.files)[:3])
        more = f" (and {len(self.files) - 3} more files)" if len(self.files) > 3 else ""
        return f"OUTPUT {output}: {listed}{more}: its vectors would be stale; {_OVERWRITE_HINT}"


def _difference(old: InputFile, new: InputFile) -> str:
    fields = (("size", old.size, new.size), ("mtime_ns", old.mtime_ns, new.mtime_ns), ("rows", old.rows, new.rows))
    said = [f"{name} {before} -> {now}" for name, before, now in fields if before != now]
    if old.row_groups != new.row_groups:
        groups_before, groups_now = len(old.row_groups or ()), len(new.row_groups or ())
        said.append(f"row groups {groups_before} -> {groups_now}" if groups_before != groups_now else "row group sizes")
    return ", ".join(said)


@dataclass(frozen=True)
class Prepared:
    """What a run has to do in OUTPUT."""

    todo: tuple[str, ...]  # names of the parts to write
    finished: bool  # nothing to do and _SUCCESS present
    replaced: int  # parts deleted as stale or not of this job (--overwrite)


def write_json(location: Location, data: dict[str, Any], run_id: str) -> None:
    """Write JSON whole (see ``storage.write_whole``)."""
    _write_bytes(location, (json.dumps(data, indent=2, default=str) + "\n").encode(), run_id)


def read_json(location: Location) -> dict[str, Any]:
    """A JSON object file (errors name it)."""
    try:
        data = json.loads(read_bytes(location))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{location} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{location}: expected a JSON object, got {type(data).__name__}")
    return data


def is_job_file(name: str) -> bool:
    """Whether an OUTPUT entry belongs to embed-corpus (lock, temporary file, state, manifest, part)."""
    return (
        name in (LOCK_NAME, STATE_NAME, SUCCESS_NAME)
        or name.startswith((BREAK_PREFIX, TMP_PREFIX))
        or (name.startswith("part-") and name.endswith(".parquet"))
    )


def check_output(output: Location) -> None:
    """Refuse an OUTPUT that is a file, or a non-empty directory that no embed-corpus job wrote."""
    pafs = import_pyarrow().fs
    info = file_info(output)
    if info.type == pafs.FileType.File:
        raise ValueError(f"OUTPUT {output} exists and is not a directory")
    names = {_name(i.path) for i in list_dir(output)}
    if names and STATE_NAME not in names and not all(n.startswith((LOCK_NAME, TMP_PREFIX)) for n in names):
        raise ValueError(
            f"OUTPUT {output} is not empty and has no {STATE_NAME}: it is not an embed-corpus output; "
            "choose an empty or new directory"
        )


def prepare_output(output: Location, state: JobState, plan: Plan, overwrite: bool, run_id: str) -> Prepared:
    """Check OUTPUT against this run (under the lock) and make it ready; returns what is left to embed.

    ``_SUCCESS`` is deleted before anything else when there is work to do; parts of a job that differs are
    deleted with ``overwrite`` and refused without it; temporary files of earlier runs are removed.
    """
    names = {_name(i.path) for i in list_dir(output)}
    stale: set[str] = set()
    parts = {n for n in names if n.startswith("part-") and n.endswith(".parquet")}
    if STATE_NAME in names:
        try:
            changes = state.changes_since(JobState.read(output.child(STATE_NAME)))
        except ValueError:
            if not overwrite:
                raise
            changes = Changes(options=["a job state this run cannot read"])
        if changes.model or changes.options or changes.files:
            if not overwrite:
                raise ValueError(changes.message(output))
            changed = {f"part-{index:05d}-" for index in changes.files}
            stale = parts if changes.whole_job else {n for n in parts if n.startswith(tuple(changed))}
    planned = {block.name for block in plan.blocks}
    strays = parts - planned - stale
    if strays and not overwrite:
        raise ValueError(f"OUTPUT {output} holds parts this job does not write: {', '.join(sorted(strays)[:5])}")
    stale |= strays
    todo = tuple(name for name in (block.name for block in plan.blocks) if name not in parts or name in stale)
    if (todo or stale) and SUCCESS_NAME in names:
        delete(output.child(SUCCESS_NAME))  # first: from here on the directory is not a finished job
    for name in sorted(stale):
        delete(output.child(name))
    for name in names:
        if name.startswith(TMP_PREFIX) and not name.startswith(f"{TMP_PREFIX}{run_id}-"):
            delete(output.child(name))  # left by a killed run: this run holds the lock, so that run is over
    if todo or stale or STATE_NAME not in names:
        write_json(output.child(STATE_NAME), state.to_dict(), run_id)
    return Prepared(todo, not todo and not stale and SUCCESS_NAME in names, len(stale))


def model_identity(model_dir: Path, variant: Variant) -> ModelIdentity:
    """The identity of the variant's model and pipeline (``identity.ModelIdentity``).

    The ONNX file's sha256 is the one its export manifest lists: every worker checks the file against the
    manifest when it loads it (``embedrt.loading``), so this is the hash of the model that embeds, without the
    driver reading the model file once more. The other files the Encoder reads are hashed here.
    """
    return ModelIdentity.of(model_dir, variant)


def verify_model(spec: JobSpec) -> None:
    """Refuse to embed when this worker's model or pipeline is not the driver's.

    Raises:
        ValueError: the model directory here lists another sha256, holds another pipeline (pooling, Normalize,
            Dense, max_seq_length, prompts, tokenizer) or is missing, naming host, path and what differs.

    """
    where = f"{socket.gethostname()}:{os.getpid()}"
    try:
        found = model_identity(Path(spec.model_dir), Variant.parse(spec.variant))
        expected = ModelIdentity.from_dict(spec.model_identity)
    except (FileNotFoundError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"worker {where}: cannot read the model of this job: {exc}") from None
    if found.model_sha256 != spec.model_sha256:
        raise ValueError(
            f"worker {where}: the model at {spec.model_dir} (variant {spec.variant}) has sha256 "
            f"{found.model_sha256[:12]}..., but this job embeds with sha256 {spec.model_sha256[:12]}... (the "
            "driver's): every worker must read the same model; fix the model directory on this host"
        )
    if found != expected:
        raise ValueError(
            f"worker {where}: the model at {spec.model_dir} (variant {spec.variant}) has the driver's ONNX file in "
            f"another pipeline ({'; '.join(found.differences(expected))}): every worker must read the same model; "
            "fix the model directory on this host"
        )


def _name(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]
