"""Shared fixtures: tiny random models built locally (no network), the prepared default model, and
capability markers (declared once in pyproject.toml: slow, vllm, gpu, browser)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from crossling.vllm import vllm_available

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never download
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(config, items):
    import torch

    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    skip_vllm = pytest.mark.skip(reason="vLLM is not installed")
    has_vllm = vllm_available()
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)
        if "vllm" in item.keywords and not has_vllm:
            item.add_marker(skip_vllm)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A 2-layer random Gemma 3 checkpoint with a tiny multilingual BPE tokenizer + chat template."""
    from crossling.testing import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-gemma3"))


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="session")
def default_model_dir() -> Path:
    """The real embedded default model, converted once per machine (~100 s the first time)."""
    from crossling import models

    return models.prepare(progress=False)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO
