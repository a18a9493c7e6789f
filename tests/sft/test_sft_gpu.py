"""QLoRA on a CUDA GPU (skipped without one): what CPU CI cannot check.

On CPU the same code trains with float32 compute (fast there); on a GPU it must load the frozen base
as real 4-bit bitsandbytes weights on the device and compute in bf16, and the LoRA step must run there.
"""

from __future__ import annotations

import pytest
import torch

from sft.modeling import load_model_for_training

pytestmark = pytest.mark.gpu


def test_qlora_on_cuda_has_4bit_base_bf16_compute_and_trains(tiny_model_dir):
    import bitsandbytes as bnb

    model, tokenizer = load_model_for_training(str(tiny_model_dir), quantization="nf4")
    linear4 = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert linear4, "no bitsandbytes 4-bit layers: the base was not quantized"
    assert all(m.weight.device.type == "cuda" and m.weight.quant_type == "nf4" for m in linear4)
    expected = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    assert {m.compute_dtype for m in linear4} == {expected}
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n and p.device.type == "cuda" for n, p in trainable.items())
    assert all(p.dtype == torch.float32 for p in trainable.values())  # bf16 would drop small updates

    batch = tokenizer(["Translate into German: good morning. Guten Morgen."] * 4, return_tensors="pt")
    batch = {k: v.to("cuda") for k, v in batch.items()}
    opt = torch.optim.AdamW(trainable.values(), lr=3e-2)
    model.train()
    losses = []
    for _ in range(8):
        loss = model(**batch, labels=batch["input_ids"]).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(float(loss))
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0], losses
