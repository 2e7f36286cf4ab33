"""What every worker of a job needs to know (``JobSpec``), and the job's closed choices."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from embedrt.config import Choice

TEXT_FIELD = "__embedrt_text__"  # the texts' column of a block shipped to a Ray worker, beside id and kept columns


class OnBadRow(Choice):
    """What to do with a row that cannot be embedded (a bad text, no usable id, a malformed .jsonl line)."""

    FAIL = "fail"
    SKIP = "skip"


class OnDuplicateId(Choice):
    """What to do when an id appears on more than one row."""

    FAIL = "fail"
    KEEP = "keep"


class WorkerDevice(Choice):
    """Where the workers run the model. No ``auto``: every worker of a job must run the same device."""

    CPU = "cpu"
    CUDA = "cuda"


@dataclass(frozen=True)
class JobSpec:
    """Plain values, so that the spec travels to Ray workers as a dict."""

    model_dir: str
    variant: str
    model_sha256: str  # the driver's: a worker whose model differs refuses to embed
    device: str
    text_column: str
    id_column: str
    keep_columns: tuple[str, ...]
    id_type: str
    keep_types: tuple[str, ...]  # parquet: arrow type names, checked in the plan; .jsonl: records' type names
    dimension: int
    batch_size: int
    on_bad_row: str
    run_id: str  # scopes temporary names to this run
    model_identity: dict[str, Any]  # the driver's ``ModelIdentity``: a worker whose pipeline differs refuses

    @property
    def columns(self) -> list[str]:
        """The input columns a reader takes: id, text and kept columns, each once."""
        return list(dict.fromkeys([self.id_column, self.text_column, *self.keep_columns]))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobSpec:
        """Inverse of ``to_dict`` (lists back to tuples)."""
        return cls(
            **{
                **data,
                "keep_columns": tuple(data["keep_columns"]),
                "keep_types": tuple(data["keep_types"]),
                "model_identity": dict(data["model_identity"]),
            }
        )
