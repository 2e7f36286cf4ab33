"""The runtime loads and encodes with numpy + onnxruntime only (checked in a clean subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("torch", "transformers", "tokenizers", "optimum", "sentence_transformers")

SCRIPT = """
import json, sys
from embedrt import Encoder
enc = Encoder.load(sys.argv[1], variant="int8")
emb = enc.encode(["hello world", "a second text"])
print(json.dumps({"shape": list(emb.shape), "heavy": [m for m in %r if m in sys.modules]}))
"""


def test_runtime_imports_no_heavy_packages(tiny_export):
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT % (HEAVY,), str(tiny_export)],
        capture_output=True,
        text=True,
        check=True,
    )
    report = json.loads(result.stdout)
    assert report == {"shape": [2, 32], "heavy": []}


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
