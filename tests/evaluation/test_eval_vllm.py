"""The vLLM backend of ``generate`` on the tiny random Gemma 3: one engine start-up (~1-2 min on CPU)
serves the base model and a LoRA adapter. Marked ``vllm`` (and ``slow``): it starts a real engine."""

from __future__ import annotations

import pytest

from crossling import generation
from crossling.generation import generate

pytestmark = [pytest.mark.vllm, pytest.mark.slow]


def test_vllm_backend_base_and_lora_share_one_engine(tiny_model_dir, tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    lora = get_peft_model(base, LoraConfig(r=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    lora.save_pretrained(tmp_path / "adapter")
    prompts = [[{"role": "user", "content": "Hallo!"}], [{"role": "user", "content": "你好"}]]
    kw = dict(max_new_tokens=5, backend="vllm", cache_dir="off", progress=False)
    try:
        plain = generate(str(tiny_model_dir), prompts, n=2, **kw)
        engine = generation._VLLM["engine"]
        adapted = generate(str(tiny_model_dir), prompts, adapter=str(tmp_path / "adapter"), **kw)
        sampled = generate(str(tiny_model_dir), prompts[:1], n=3, temperature=1.0, **kw)
        # More prompt tokens than one step takes: vLLM's chunked prefill split a seeded prompt and
        # the CPU engine died ("CPU Generator does not use offset"); whole prefills keep it alive.
        many = [[{"role": "user", "content": f"{i} " + "Guten Morgen, wie geht es dir heute? " * 12}]
                for i in range(24)]  # fmt: skip
        batch = generate(str(tiny_model_dir), many, n=4, temperature=1.0, seed=5, **kw)
        again = generate(str(tiny_model_dir), many[:2], n=4, temperature=1.0, seed=5, **kw)
        assert generation._VLLM["engine"] is engine  # no second start-up for the adapter
    finally:
        generation.release()
    assert len(plain) == 2 and all(len(o) == 2 and o[0] == o[1] for o in plain)
    assert len(adapted) == 2 and all(isinstance(o[0], str) for o in adapted)
    assert len(sampled[0]) == 3
    assert len(batch) == 24 and all(len(o) == 4 for o in batch)
    assert again == batch[:2]  # per-request seeds: the same samples in a smaller batch
