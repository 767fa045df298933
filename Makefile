# `make test` and `make demo` each work on a fresh machine: they create .venv, install the
# project with what it needs, then run.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch first, explicitly, so that pip takes the build on this machine's disk instead of
# resolving a multi-GB download for a range.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
EXTRAS ?= dev
STAMP := $(VENV)/.installed-$(EXTRAS)

.PHONY: install test lint demo clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q $(TORCH_SPEC)
	$(BIN)/python -m pip install -q -e '.[$(EXTRAS)]'
	touch $(STAMP)

install: $(STAMP)

lint: install
	$(BIN)/ruff check lcvg_env training agents tests benchmarks
	$(BIN)/mypy lcvg_env

test: lint
	$(BIN)/pytest -q

# e.g. make demo DEMO_ARGS="--policy agents/assets/reach_ppo.zip --episodes 64"
DEMO_ARGS ?=

demo: install
	$(BIN)/python -m agents.demo $(DEMO_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
