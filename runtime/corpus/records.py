"""Lines of a .jsonl input: one JSON object each; the arrow types of its id and kept fields, and their values.

A field's type is that of its first value in the file: ``string``, ``int64``, ``double`` or ``bool``; a field
whose first value is an object or an array is kept as its JSON text (``json``, stored as a string column).
"""

from __future__ import annotations

import json
from typing import Any

#: Stands for a .jsonl record that has no text field (reported as a bad row, unlike a null text).
MISSING = object()

ID_TYPES = ("int64", "string")
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1  # JSON integers are unbounded; an int64 column is not
JSON_TEXT = "json"  # a kept field stored as the JSON text of each value
_ARROW_TYPES = {"string": "string", "int64": "int64", "double": "float64", "bool": "bool", JSON_TEXT: "string"}


class RecordError(ValueError):
    """A line that cannot be used: not JSON, not an object, no usable id, a value of the wrong type."""


def parse_record(line: bytes, source: str, line_number: int) -> dict[str, Any]:
    """The JSON object on one line; RecordError (naming ``source:line``) when it is not one."""
    try:
        record = json.loads(line)
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, and an integer past Python's 4300 digits
        raise RecordError(f"{source}:{line_number} is not valid JSON: {exc}") from None
    if not isinstance(record, dict):
        raise RecordError(f"{source}:{line_number} is {type(record).__name__}; expected a JSON object")
    return record


def value_type(value: Any) -> str | None:
    """The column type a JSON value stands for; None for null."""
    if value is None:
        return None
    if isinstance(value, bool):  # before int: bool is an int in Python
        return "bool"
    if isinstance(value, int):
        return "int64"
    if isinstance(value, float):
        return "double"
    if isinstance(value, str):
        return "string"
    return JSON_TEXT


def id_type(record: dict[str, Any], id_column: str, source: str, line_number: int) -> str:
    """int64 or string: the type of the record's id; RecordError for a missing, null or other id."""
    if id_column not in record:
        raise RecordError(f"{source}:{line_number} has no id field {id_column!r}; choose it with --id-column")
    kind = value_type(record[id_column])
    if kind not in ID_TYPES:
        value = record[id_column]
        raise RecordError(
            f"{source}:{line_number}: id {value!r} is {type(value).__name__}; expected an integer or a string"
        )
    if kind == "int64":
        _check_int64(record[id_column], f"id {id_column!r}", source, line_number)
    return str(kind)


def _check_int64(value: int, what: str, source: str, line_number: int) -> None:
    """RecordError unless ``value`` fits an int64 column."""
    if not INT64_MIN <= value <= INT64_MAX:
        raise RecordError(
            f"{source}:{line_number}: {what} {value} is outside the int64 range [{INT64_MIN}, {INT64_MAX}]; "
            "write such values as JSON strings"
        )


def kept_value(record: dict[str, Any], field: str, kind: str, source: str, line_number: int) -> Any:
    """The value of a kept field, as its column of type ``kind`` stores it (None when absent or null)."""
    value = record.get(field)
    if value is None:
        return None
    if kind == JSON_TEXT:
        return json.dumps(value, ensure_ascii=False)
    found = value_type(value)
    if found == kind:
        if kind == "int64":
            _check_int64(value, f"field {field!r}", source, line_number)
        return value
    if kind == "double" and found == "int64":
        try:
            return float(value)
        except OverflowError:
            raise RecordError(f"{source}:{line_number}: field {field!r}: {value} is too large for a double") from None
    raise RecordError(
        f"{source}:{line_number}: field {field!r} is {found}, but its first value in the file is {kind}; "
        "a kept field must have one type"
    )


def arrow_type(kind: str) -> Any:
    """The pyarrow DataType of a type name of this module."""
    import pyarrow as pa

    return pa.type_for_alias(_ARROW_TYPES[kind])
