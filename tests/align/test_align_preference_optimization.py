"""DPO and KTO on a tiny model: sample → score → pairs/labels → a few TRL steps that change the adapter."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from align.config import DPORunConfig, KTORunConfig
from align.preference_optimization import PreferenceRecipe


def _save_adapter(tiny_model_dir, out, task: str):
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    torch.manual_seed(0)
    if task == "seq_cls":
        base = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=1)
        task_type = TaskType.SEQ_CLS
    else:
        base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
        task_type = TaskType.CAUSAL_LM
    model = get_peft_model(
        base, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type=task_type)
    )
    with torch.no_grad():  # a non-zero B, so the adapter really differs from the base (as a trained one does)
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02)
    model.save_pretrained(out)
    return str(out)


@pytest.fixture(scope="module")
def adapters(tmp_path_factory, tiny_model_dir):
    tmp = tmp_path_factory.mktemp("adapters")
    sft = _save_adapter(tiny_model_dir, tmp / "sft", "causal_lm")
    _save_adapter(tiny_model_dir, tmp / "rm" / "adapter", "seq_cls")
    (tmp / "rm" / "config.yaml").write_text(f"model: {tiny_model_dir}\nquantization: none\nmax_length: 128\n")
    return sft, str(tmp / "rm")


def _common(tiny_model_dir, adapters, tmp_path) -> dict:
    sft, rm = adapters
    return dict(
        model=str(tiny_model_dir), quantization="none", adapter=sft, reward_model=rm, output_dir=str(tmp_path / "run"),
        target_languages=["de", "zh"], prompts_per_language=2, n=3, max_new_tokens=8, backend="transformers",
        max_steps=2, per_device_train_batch_size=2, learning_rate=1e-2, logging_steps=1, save_steps=1000,
        report_to=[], max_length=128, seed=0,
    )  # fmt: skip


def _weights(path) -> dict:
    return load_file(str(Path(path) / "adapter_model.safetensors"))


def _changed(before: dict, after: dict) -> bool:
    return any(not torch.equal(before[k], after[k]) for k in before if "lora" in k)


def test_dpo_samples_scores_pairs_and_changes_the_adapter(tiny_model_dir, adapters, tmp_path, monkeypatch):
    monkeypatch.setenv("CROSSLING_CACHE", str(tmp_path / "cache"))
    cfg = DPORunConfig(**_common(tiny_model_dir, adapters, tmp_path), min_margin=0.0)
    recipe = PreferenceRecipe(cfg, "dpo")
    rows = recipe.data()
    scored = [json.loads(line) for line in (recipe.run_dir / "scored.jsonl").read_text().splitlines()]
    assert len(scored) == 4 and all(len(r["rewards"]) == 3 for r in scored)
    assert {r["lang"] for r in rows} <= {"de", "zh"} and rows
    recipe.setup()
    model = recipe.trainer.model
    assert "ref" in model.peft_config  # the frozen SFT adapter is TRL's reference
    ref_before = {k: v.clone() for k, v in model.state_dict().items() if ".ref." in k}
    recipe.train()
    after = _weights(recipe.run_dir / "adapter")
    assert _changed(_weights(adapters[0]), after)
    ref_after = {k: v for k, v in recipe.trainer.model.state_dict().items() if ".ref." in k}
    assert ref_before and all(torch.equal(ref_before[k], ref_after[k]) for k in ref_before)
    assert not (recipe.run_dir / "adapter" / "ref").exists()  # only the trained adapter is saved
    # a rerun in the same folder must say how (resume or start over); starting over reuses the scored
    # generations (a cache keyed by its inputs) instead of sampling again
    rerun = PreferenceRecipe(dataclasses.replace(cfg, overwrite_output_dir=True), "dpo")
    assert rerun.data() == rows and not (recipe.run_dir / "adapter").exists()


def test_kto_runs_a_few_steps_and_changes_the_adapter(tiny_model_dir, adapters, tmp_path):
    # QLoRA here (nf4 base), LoRA on a full-precision base in the DPO test: both loading paths run.
    cfg = KTORunConfig(**{**_common(tiny_model_dir, adapters, tmp_path), "quantization": "nf4"})
    recipe = PreferenceRecipe(cfg, "kto")
    prompt = [{"role": "user", "content": "Translate into German: good morning"}]
    recipe.rows = [
        {"prompt": prompt, "completion": [{"role": "assistant", "content": text}], "label": label}
        for text, label in [("Guten Morgen", True), ("good morning", False)] * 2
    ]
    recipe.run_dir.mkdir(parents=True)
    recipe.setup()
    assert getattr(recipe.trainer.model, "is_loaded_in_4bit", False)
    trainable = [p for p in recipe.trainer.model.parameters() if p.requires_grad]
    assert trainable and all(
        p.dtype == torch.float32 for p in trainable
    )  # TRL's bf16 cast undone, on every device
    recipe.train()
    assert _changed(_weights(adapters[0]), _weights(recipe.run_dir / "adapter"))
    assert (recipe.run_dir / "metrics.jsonl").read_text().strip()


def test_win_rate_reports_both_judges_and_best_of_n(tiny_model_dir, adapters, tmp_path, monkeypatch):
    from align import win_rate
    from align.config import WinRateConfig

    monkeypatch.setenv("CROSSLING_CACHE", str(tmp_path / "cache"))
    sft, rm = adapters
    candidate = _save_adapter(tiny_model_dir, tmp_path / "aligned", "causal_lm")
    cfg = WinRateConfig(
        model=str(tiny_model_dir), baseline_adapter=sft, candidate_adapter=candidate, reward_model=rm,
        languages=["de", "sw"], prompts_per_language=2, max_new_tokens=6, backend="transformers",
        best_of_n=2, sampled=2, temperature=1.0, output_dir=str(tmp_path / "wr"),
    )  # fmt: skip
    report = win_rate.run(cfg)
    for system in ("aligned", "best_of_2", "aligned@1"):
        judges = report["win_rate"][system]
        assert set(judges) == {"transferred_rm", "fidelity_chrf"}
        assert set(judges["fidelity_chrf"]) == {"de", "sw", "all"}
        assert all(0.0 <= v <= 1.0 for v in judges["transferred_rm"].values())
    assert (tmp_path / "wr" / "win_rate.png").stat().st_size > 1000
    answers = [json.loads(line) for line in (tmp_path / "wr" / "answers.jsonl").read_text().splitlines()]
    assert len(answers) == 4 and all(len(a["sft@1"]) == len(a["aligned@1"]) == 2 for a in answers)
    assert report["mean_scores"]["aligned@1"]["fidelity_chrf"] >= 0.0


def test_dpo_loss_weights_reach_trl_and_must_match_the_losses(tiny_model_dir, adapters, tmp_path):
    common = _common(tiny_model_dir, adapters, tmp_path)
    cfg = DPORunConfig(**common, loss_type=["sigmoid", "sft"], loss_weights=[1.0, 0.5])
    args = PreferenceRecipe(cfg, "dpo").trl_args()
    assert list(args.loss_type) == ["sigmoid", "sft"] and list(args.loss_weights) == [1.0, 0.5]
    with pytest.raises(ValueError, match="one per loss"):
        DPORunConfig(**common, loss_type=["sigmoid", "sft"], loss_weights=[1.0])
