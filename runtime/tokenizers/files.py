"""Reading a model's tokenizer files: tokenizer.json, vocab.txt and the optional JSON files beside them.

tokenizer.json's floats are read as the reference's JSON parser reads them (serde_json without ``float_roundtrip``):
Unigram scores parsed by Python's own ``float`` would break Viterbi ties differently.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from embedrt.config import read_json

__all__ = ["read_json_or_empty", "read_tokenizer_json", "read_vocab_txt"]

_POW10 = [float(f"1e{i}") for i in range(309)]
_U64_MAX = 2**64 - 1
_I32_MAX = 2**31 - 1
_NUMBER = re.compile(r"(-?)(\d+)(?:\.(\d+))?(?:[eE]([+-]?)(\d+))?")


def _serde_f64(text: str) -> float:
    """A JSON float as serde_json 1.0 parses it without its ``float_roundtrip`` feature (tokenizers' build).

    The digits go into a u64 significand (later digits, once it would overflow, only move the exponent or are
    dropped), which is converted to f64 and then multiplied or divided once by an f64 power of ten.
    """
    match = _NUMBER.fullmatch(text)
    if match is None:
        raise ValueError(f"not a JSON number: {text!r}")
    sign, integer, fraction, exp_sign, exp_digits = match.groups()
    significand, exponent, overflowed = 0, 0, False
    for digit in map(int, integer):
        if overflowed or significand * 10 + digit > _U64_MAX:
            overflowed = True  # parse_long_integer: the digit is dropped, the exponent grows
            exponent += 1
        else:
            significand = significand * 10 + digit
    for digit in map(int, fraction or ""):
        if significand * 10 + digit > _U64_MAX:
            break  # parse_decimal_overflow: the remaining fraction digits are ignored
        significand = significand * 10 + digit
        exponent -= 1
    if exp_digits is not None:
        exp = int(exp_digits)
        if exp > _I32_MAX:  # parse_exponent_overflow
            if significand and exp_sign != "-":
                raise ValueError(f"number out of range: {text!r}")
            return -0.0 if sign else 0.0
        exponent = max(-(2**31), min(_I32_MAX, exponent - exp if exp_sign == "-" else exponent + exp))
    value = float(significand)
    while True:
        if abs(exponent) < len(_POW10):
            value = value * _POW10[exponent] if exponent >= 0 else value / _POW10[-exponent]
            if value == float("inf"):
                raise ValueError(f"number out of range: {text!r}")
            break
        if value == 0.0:
            break
        if exponent >= 0:
            raise ValueError(f"number out of range: {text!r}")
        value /= 1e308
        exponent += 308
    return -value if sign else value


def read_tokenizer_json(path: Path) -> dict[str, Any]:
    """Read tokenizer.json with floats parsed as the reference parses them; errors name the file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"), parse_float=_serde_f64)
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path} is not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    except (json.JSONDecodeError, ValueError) as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object")
    return data


def read_json_or_empty(path: Path) -> dict[str, Any]:
    """The file's object, or {} when the optional file is absent."""
    return read_json(path) if path.is_file() else {}


def read_vocab_txt(path: Path) -> dict[str, int]:
    """Read vocab.txt as transformers' BertTokenizer does: id = line number, newline removed, last wins."""
    with path.open(encoding="utf-8") as f:
        return {line.rstrip("\n"): i for i, line in enumerate(f)}
