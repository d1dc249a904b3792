# calikd: `make demo` (the main job) and `make test` (the test suite) do all set-up on a fresh machine.
VENV ?= .venv
PYTHON ?= python3
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.calikd-installed
DEMO_EPOCHS ?= 15
DEMO_OUT ?= runs/demo/resnet20-fashion-mnist
DEMO_DB ?= runs/calikd.db

.PHONY: demo demo-teacher test test-slow gpu-check lint format bench data clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[all]"
	touch $(STAMP)

data: $(STAMP)
	PY=$(PY) bash scripts/get-fashion-mnist.sh

demo: $(STAMP) data
	$(PY) -m calikd reproduce kim2025 --preset quick --db $(DEMO_DB)

demo-teacher: $(STAMP) data
	$(PY) -m calikd train-teacher --dataset fashion-mnist --model resnet20 --epochs $(DEMO_EPOCHS) \
		--out $(DEMO_OUT) --overwrite

test: $(STAMP) data
	$(PY) -m ruff check src tests benchmarks scripts/gpu-check
	$(PY) -m ruff format --check src tests benchmarks scripts/gpu-check
	$(PY) -m pytest -q

test-slow: $(STAMP) data
	$(PY) -m pytest -q -m slow

gpu-check: $(STAMP) data
	$(PY) scripts/gpu-check --device cuda

lint: $(STAMP)
	$(PY) -m ruff check src tests benchmarks scripts/gpu-check
	$(PY) -m ruff format --check src tests benchmarks scripts/gpu-check

format: $(STAMP)
	$(PY) -m ruff format src tests benchmarks scripts/gpu-check
	$(PY) -m ruff check --fix src tests benchmarks scripts/gpu-check

bench: $(STAMP) data
	$(PY) benchmarks/teacher_training.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache
