"""Adapters after training: merge gives the same logits as adapter+base; checkpoint averaging; CLI verbs."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from crossling.cli import main
from crossling.errors import CrosslingError
from sft.modeling import load_model_for_training
from sft.runs import average_adapters


@pytest.fixture(scope="module")
def trained_adapter(tiny_model_dir, tmp_path_factory):
    """A LoRA adapter with random (non-zero) B matrices, as if trained."""
    model, _ = load_model_for_training(str(tiny_model_dir), quantization="none")
    torch.manual_seed(1)
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.05)
    out = tmp_path_factory.mktemp("adapter")
    model.save_pretrained(out)
    return out


def test_merge_gives_the_same_logits_as_adapter_on_base(tiny_model_dir, trained_adapter, tmp_path, capsys):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    merged_dir = tmp_path / "merged"
    assert main(["sft", "merge", "--adapter", str(trained_adapter), "--output", str(merged_dir)]) == 0
    assert "merged" in capsys.readouterr().out
    ids = torch.tensor([[2, 10, 20, 30, 40, 50, 60]])
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    with torch.no_grad():
        base_logits = base(input_ids=ids).logits
        with_adapter = PeftModel.from_pretrained(base, str(trained_adapter)).eval()
        adapter_logits = with_adapter(input_ids=ids).logits
        merged = AutoModelForCausalLM.from_pretrained(merged_dir, dtype=torch.float32).eval()
        merged_logits = merged(input_ids=ids).logits
    assert not torch.allclose(adapter_logits, base_logits, atol=1e-3)  # the adapter does something
    # fp32 where the merge ran on CPU; on a GPU it merges (and saves) in bf16, which rounds at ~1e-2
    saved = json.loads((merged_dir / "config.json").read_text()).get("dtype")
    assert torch.allclose(merged_logits, adapter_logits, atol=1e-4 if saved == "float32" else 2e-2), saved
    assert (merged_dir / "tokenizer.json").is_file() and not (merged_dir / "adapter_config.json").exists()


def test_average_of_adapters_is_the_elementwise_mean(trained_adapter, tmp_path):
    weights = load_file(str(trained_adapter / "adapter_model.safetensors"))
    folders = []
    for k, scale in enumerate([1.0, 2.0, 6.0]):
        folder = tmp_path / f"checkpoint-{k + 1}"
        folder.mkdir()
        save_file({n: v * scale for n, v in weights.items()}, str(folder / "adapter_model.safetensors"))
        (folder / "adapter_config.json").write_text((trained_adapter / "adapter_config.json").read_text())
        folders.append(folder)
    # through the CLI, as a user would: the last 2 checkpoints of a run folder
    assert (
        main(["sft", "average", "--run", str(tmp_path), "--last", "2", "--output", str(tmp_path / "avg2")])
        == 0
    )
    avg2 = load_file(str(tmp_path / "avg2" / "adapter_model.safetensors"))
    assert all(torch.allclose(avg2[n], v * 4.0, atol=1e-6) for n, v in weights.items())
    avg3 = load_file(str(average_adapters(folders, tmp_path / "avg3") / "adapter_model.safetensors"))
    assert all(torch.allclose(avg3[n], v * 3.0, atol=1e-6) for n, v in weights.items())
    assert json.loads((tmp_path / "avg3" / "averaged_from.json").read_text())[0].endswith("checkpoint-1")
    odd = tmp_path / "odd"
    odd.mkdir()
    save_file({"x": torch.zeros(2)}, str(odd / "adapter_model.safetensors"))
    with pytest.raises(CrosslingError, match="differ"):
        average_adapters([folders[0], odd], tmp_path / "bad")
    with pytest.raises(CrosslingError, match="not a PEFT adapter"):
        average_adapters([tmp_path / "avg2" / "nope"], tmp_path / "bad")


def test_seq_cls_model_for_align_trains_its_score_head(tiny_model_dir):
    model, tokenizer = load_model_for_training(str(tiny_model_dir), task="seq_cls", quantization="none")
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert any("score" in n for n in trainable) and any("lora_A" in n for n in trainable)
    enc = tokenizer(["Hallo Welt", "Bonjour"], return_tensors="pt", padding=True).to(model.device)
    assert model(**enc).logits.shape == (2, 1)
    with pytest.raises(CrosslingError, match="full_finetune"):
        load_model_for_training(str(tiny_model_dir), full_finetune=True)
