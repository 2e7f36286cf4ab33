"""Ids that appear on more than one row of a job's output, found from the parts' id columns.

The check runs on the finished parts' id columns (read with their footers, at the end of a run), so it costs
nothing on the input side and a resumed job checks every row, including those of parts an earlier run wrote.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from embedrt.corpus.storage import import_pyarrow

FIRST_LISTED = 5  # duplicates named in messages and the manifest


@dataclass(frozen=True)
class Duplicates:
    """How many ids repeat, and the first ones (in input order) with their count and the parts that hold them."""

    count: int  # distinct ids that appear more than once
    first: tuple[dict[str, Any], ...]  # {"id", "rows", "parts"}

    def to_dict(self) -> dict[str, Any]:
        """The manifest's ``duplicate_ids``."""
        return {"count": self.count, "first": list(self.first)}

    def describe(self) -> str:
        """The first duplicates, for messages."""
        shown = "; ".join(f"{d['id']!r} on {d['rows']} rows (in {', '.join(d['parts'][:3])})" for d in self.first)
        more = f" and {self.count - len(self.first)} more" if self.count > len(self.first) else ""
        return f"{self.count} ids appear more than once: {shown}{more}"


def find_duplicates(part_names: Sequence[str], columns: Sequence[Any]) -> Duplicates:
    """The repeated ids among the parts' id ``columns`` (pyarrow Arrays, in input order, one per part)."""
    pa = import_pyarrow()
    pc = pa.compute
    owners = list(part_names)
    if not columns:
        return Duplicates(0, ())
    ids = pa.chunked_array(columns).combine_chunks()
    counts = pc.value_counts(ids)
    repeated = counts.filter(pc.greater(counts.field("counts"), 1))
    if len(repeated) == 0:
        return Duplicates(0, ())
    starts = np.cumsum([0] + [len(column) for column in columns[:-1]])  # each part's first row in ``ids``
    repeated_rows = pc.indices_nonzero(pc.is_in(ids, value_set=repeated.field("values")))
    # unique keeps the order of first appearance: the first repeated ids in input order.
    first_values = pc.unique(ids.take(repeated_rows))[:FIRST_LISTED]
    listed = []
    for value in first_values:
        rows = np.asarray(pc.indices_nonzero(pc.equal(ids, value)))
        chunks = np.unique(np.searchsorted(starts, rows, side="right") - 1)  # ascending: input order
        parts = [owners[int(chunk)] for chunk in chunks]
        listed.append({"id": value.as_py(), "rows": len(rows), "parts": parts})
    return Duplicates(len(repeated), tuple(listed))
