"""QLoRA backward on CPU is correct: gradients through the 4-bit layers equal an fp32 reference.

The model is loaded exactly as sft/align train it (``load_model_for_training``, nf4 + double quant,
fp32 compute, LoRA on every linear layer). The reference is the same PEFT model with every frozen
4-bit base layer replaced by an ``nn.Linear`` holding its dequantized weight, so the only difference
left is how bitsandbytes runs the 4-bit matmul forward and backward. Compared: logits, the loss, every
LoRA gradient and the gradient reaching the input embeddings (the path a gradient takes *through*
a frozen 4-bit layer), for a batch of several tokens and a batch of one token, in training mode and
after an eval-mode, no-grad forward (what DPO/KTO's reference log-probs do before training).

Why the last case: on CPUs with AVX512-BF16, bitsandbytes repacks a Linear4bit's weights for its
``gemv_4bit`` inference kernel the first time the layer runs in eval mode without grad, and that
kernel has no autograd formula ("an autograd kernel was not registered ... may lead to silently
incorrect behavior"): later training steps would lose the gradient through every base layer.
``load_model_for_training`` turns that repacking off for training models; the test checks it.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

bnb = pytest.importorskip("bitsandbytes")

from sft.modeling import load_model_for_training  # noqa: E402


def _dequantized_reference(model) -> nn.Module:
    ref = copy.deepcopy(model)
    swapped = 0
    for _name, module in list(ref.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, bnb.nn.Linear4bit):
                weight = bnb.functional.dequantize_4bit(child.weight.data, child.weight.quant_state)
                linear = nn.Linear(child.in_features, child.out_features, bias=child.bias is not None)
                linear.weight = nn.Parameter(weight.float().reshape(child.out_features, child.in_features))
                linear.weight.requires_grad_(False)
                if child.bias is not None:
                    linear.bias = nn.Parameter(child.bias.detach().float(), requires_grad=False)
                setattr(module, child_name, linear)
                swapped += 1
    assert swapped > 0, "no 4-bit layer found: the model was not loaded in nf4"
    return ref


def _forward_backward(model, ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """Gradients of a fixed random projection of the logits: defined for one token too (the LM loss
    of a one-token sequence has no target), and it weighs every position and vocabulary entry."""
    model.zero_grad(set_to_none=True)
    embeds = model.get_input_embeddings()(ids).detach().requires_grad_(True)
    logits = model(inputs_embeds=embeds).logits
    weights = torch.randn(logits.shape, generator=torch.Generator().manual_seed(1))
    loss = (logits * weights).sum() / ids.numel()
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    return {"logits": logits.detach(), "loss": loss.detach(), "embeds": embeds.grad, **grads}


@pytest.fixture(scope="module")
def qlora_pair(tiny_model_dir):
    model, _ = load_model_for_training(
        str(tiny_model_dir), quantization="nf4", lora_r=8, lora_alpha=16, lora_dropout=0.0, device="cpu"
    )
    torch.manual_seed(0)
    for name, p in model.named_parameters():  # B starts at zero: make the LoRA path carry signal
        if "lora_B" in name:
            nn.init.normal_(p, std=0.02)
    return model, _dequantized_reference(model)


def test_training_models_never_use_the_autograd_less_cpu_kernel(qlora_pair):
    model, _ = qlora_pair
    layers = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert layers and all(m.support_avx512bf16_for_cpu is False for m in layers)


@pytest.mark.parametrize("seq_len", [1, 7], ids=["one-token", "seven-tokens"])
@pytest.mark.parametrize("after_eval", [False, True], ids=["train", "after-eval-forward"])
def test_qlora_gradients_match_a_dequantized_fp32_reference(qlora_pair, seq_len, after_eval):
    model, ref = qlora_pair
    ids = torch.randint(3, model.config.vocab_size, (2, seq_len))
    if after_eval:
        model.eval()
        with torch.no_grad():
            model(input_ids=ids)
    model.train()
    ref.train()
    got, want = _forward_backward(model, ids), _forward_backward(ref, ids)
    assert got.keys() == want.keys()
    lora = [k for k in got if "lora_" in k]
    assert len(lora) >= 4
    torch.testing.assert_close(got["logits"], want["logits"], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(got["loss"], want["loss"], rtol=1e-4, atol=1e-5)
    for key in ["embeds", *lora]:
        assert got[key].abs().sum() > 0, f"{key}: no gradient reached it"
        torch.testing.assert_close(
            got[key], want[key], rtol=1e-3, atol=1e-6, msg=lambda m, k=key: f"{k}: {m}"
        )
