"""Texts from files, one per line, with errors that name the file and the line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def read_lines(path: Path) -> Iterator[tuple[int, str]]:
    r"""(line number from 1, line without its end) for every line of a UTF-8 file.

    Lines end at ``\n`` only (``\r\n`` too): a text holding U+2028 or a form feed stays one line, unlike
    ``str.splitlines``. A UTF-8 byte order mark at the start is dropped.
    """
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ValueError(
                    f"{path}:{number}: not valid UTF-8 ({exc.reason} at byte {exc.start} of the line)"
                ) from None
            if number == 1:
                line = line.removeprefix("\ufeff")
            yield number, line.removesuffix("\n").removesuffix("\r")


def read_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed value) for every line of a JSON Lines file; a blank line is an error."""
    for number, line in read_lines(path):
        if not line.strip():
            raise ValueError(f"{path}:{number}: blank line; every line of a .jsonl file holds one JSON value")
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{number}: not valid JSON ({exc.msg} at column {exc.colno})") from None
