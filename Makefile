# Two entry points: `make demo` and `make test`. Both create/update .venv on their own.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
MODEL_DIR := models/all-MiniLM-L6-v2
# The client libraries of tests/test_serve_clients.py, pinned in their own venv (they conflict with the project's).
CLIENTS := .venv-clients
CLIENTS_STAMP := $(CLIENTS)/.installed
CLIENTS_REQUIREMENTS := tests/clients/requirements.txt

.PHONY: install demo test test-fast lint format bench compare serve-bench corpus-bench cpu-matrix image image-check clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first, pinned: an unpinned torch would pull a multi-GB CUDA build.
	$(BIN)/python -m pip install -q -c constraints.txt torch
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[cpu,export,serve,corpus,ray,test,dev,bench,openvino]'
	touch $(STAMP)

# regex at Unicode 16.0 (the grapheme tables' version) beside the venv, for test_unigram's table freshness check,
# so that the test itself makes no network call.
REGEX_U16 := .cache/regex-2024.11.6
$(REGEX_U16)/.installed: $(STAMP)
	$(BIN)/python -m pip install -q --disable-pip-version-check --target $(REGEX_U16) regex==2024.11.6
	touch $@

$(CLIENTS_STAMP): $(CLIENTS_REQUIREMENTS)
	test -x $(CLIENTS)/bin/python || $(PYTHON) -m venv $(CLIENTS)
	$(CLIENTS)/bin/python -m pip install -q --no-deps -r $(CLIENTS_REQUIREMENTS)
	$(CLIENTS)/bin/python -m pip check
	touch $(CLIENTS_STAMP)

install: $(STAMP) $(REGEX_U16)/.installed $(CLIENTS_STAMP)

demo: $(STAMP)
	$(BIN)/embedrt export --out $(MODEL_DIR) --variants fp32,fp16,int8
	$(BIN)/embedrt encode $(MODEL_DIR) "The weather is lovely today." "It's so sunny outside!" "He drove to the stadium."

test: install
	$(BIN)/python -m pytest

test-fast: install
	$(BIN)/python -m pytest -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check runtime export tests benchmarks scripts
	$(BIN)/ruff format --check runtime export tests benchmarks scripts
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format runtime export tests benchmarks scripts
	$(BIN)/ruff check --fix runtime export tests benchmarks scripts

bench: $(STAMP)
	$(BIN)/python -m pytest benchmarks --benchmark-only

compare: $(STAMP)
	$(BIN)/python -m benchmarks.compare

# infinity-emb runs from its own venv (INFINITY_PYTHON); see benchmarks/serve.py for how to make it.
INFINITY_PYTHON ?= /work/venvs/infinity/bin/python
serve-bench: $(STAMP)
	$(BIN)/python -m benchmarks.serve --infinity-python $(INFINITY_PYTHON)

corpus-bench: $(STAMP)
	$(BIN)/python -m benchmarks.corpus --model $(MODEL_DIR) --docs 20000 --variants int8,fp32 --configs local:1,local:2,ray:1,ray:2

# fp32 and int8 under QEMU (Haswell, cortex-a72, neoverse-n1, neoverse-v1) -> benchmarks/results/cpus.md.
# Prepares QEMU, an arm64 Python and aarch64 wheels under .cache/cpu-matrix (git-ignored); about 30 minutes.
cpu-matrix: $(STAMP)
	$(BIN)/python scripts/cpu_matrix.py run

# The container image (Dockerfile) with podman on a debootstrap-made base; needs root, podman, runc, debootstrap
# (apt-get install podman runc debootstrap). Not part of `make test`: minutes, and root.
image: $(STAMP)
	$(BIN)/python scripts/image.py build

# Runs the image and checks from the host: health, vectors = Encoder.encode, API key, env vars, SIGTERM, non-root.
image-check: $(STAMP)
	$(BIN)/python scripts/image.py check

clean:
	rm -rf $(VENV) $(CLIENTS) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
