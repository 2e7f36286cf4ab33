"""The runtime loads and encodes with numpy + onnxruntime only (checked in a clean subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys

# Top-level modules a script holds after importing what it names and, with a model dir, encoding with it.
SCRIPT = """
import json, sys
before = set(sys.modules)
for name in sys.argv[2].split(","):
    __import__(name)
if sys.argv[1]:
    from embedrt import Encoder
    enc = Encoder.load(sys.argv[1], variant="int8")
    assert enc.encode(["hello world", "a second text"]).shape == (2, 32)
    enc.similarity(enc.encode(["x"]), enc.encode(["y"]))
print(json.dumps(sorted({m.split(".")[0] for m in set(sys.modules) - before})))
"""


def _new_top_level_modules(model_dir: str, *imports: str) -> set[str]:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, model_dir, ",".join(imports)], capture_output=True, text=True, check=True
    )
    return set(json.loads(result.stdout))


def test_runtime_adds_only_stdlib_numpy_onnxruntime_and_itself(tiny_export):
    # What numpy and onnxruntime import on their own (their own dependencies) is theirs, not the runtime's.
    theirs = _new_top_level_modules("", "numpy", "onnxruntime")
    allowed = set(sys.stdlib_module_names) | {"numpy", "onnxruntime", "embedrt"} | theirs
    added = _new_top_level_modules(str(tiny_export), "embedrt")
    assert "embedrt" in added and "onnxruntime" in added
    assert added <= allowed, sorted(added - allowed)


def test_import_without_onnxruntime_says_which_extra(tiny_export):
    script = (
        "import sys; sys.modules['onnxruntime'] = None\n"
        "import embedrt\n"
        "try:\n    embedrt.Encoder.load(sys.argv[1])\n"
        "except ImportError as exc:\n    print(exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(tiny_export)], capture_output=True, text=True, check=True
    )
    assert "pip install 'embedrt[cpu]'" in result.stdout
