"""Real (tiny-model) training: loss falls and LoRA moves, same loss as full logits, resume, checkpoints."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from sft.config import SFTRunConfig
from sft.modeling import load_model_for_training
from sft.recipe import SFTRecipe, run
from sft.trainer import trained_positions_loss_sum


def tiny_config(model_dir, data_dir, out, **overrides) -> SFTRunConfig:
    values = dict(
        model=str(model_dir),
        data=str(data_dir),
        output_dir=str(out),
        quantization="none",
        max_steps=12,
        learning_rate=1e-2,
        warmup_steps=0,
        per_device_train_batch_size=4,
        logging_steps=2,
        eval_steps=6,
        save_steps=6,
        eval_samples_per_language=2,
        mask_check_samples=16,
    )
    values.update(overrides)
    return SFTRunConfig(**values)


def test_tiny_qlora_run_lowers_loss_moves_lora_and_writes_the_run_folder(
    tiny_model_dir, built_dataset, tmp_path
):
    out = tmp_path / "run"
    summary = run(
        tiny_config(
            tiny_model_dir,
            built_dataset,
            out,
            quantization="nf4",
            max_steps=16,
            learning_rate=3e-2,
            eval_steps=8,
        )
    )
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert losses[-1] < losses[0] - 0.1 and max(losses[len(losses) // 2 :]) < losses[0], losses
    eval_keys = {k for r in records for k in r if k.startswith("eval_") and k.endswith("_loss")}
    assert {"eval_de_loss", "eval_sw_loss", "eval_zh_loss"} <= eval_keys  # per-language eval each eval step
    assert set(summary["eval_loss_by_language"]) == {"de", "en", "es", "fr", "ru", "sw", "zh"}
    assert 0 < summary["trained_fraction"] < 0.5 and summary["real_tokens_per_second"] > 0
    adapter = load_file(str(out / "adapter" / "adapter_model.safetensors"))
    lora_b = [v for k, v in adapter.items() if "lora_B" in k]
    assert lora_b and all(v.abs().sum() > 0 for v in lora_b)  # B starts at zero: non-zero = trained
    assert json.loads((out / "adapter" / "adapter_config.json").read_text())["r"] == 16
    assert (out / "loss.png").stat().st_size > 5000
    assert list((out / "tb").glob("events.out.tfevents.*")) and not (out / "runs").exists()
    assert (out / "config.yaml").read_text().startswith("model:") or "model:" in (
        out / "config.yaml"
    ).read_text()
    assert [p.name for p in sorted(out.glob("checkpoint-*"))] == [
        "checkpoint-12",
        "checkpoint-16",
        "checkpoint-6",
    ]
    assert not (out / ".staging").exists()


def test_trained_positions_loss_equals_full_logits_loss_and_gradients(tiny_model_dir):
    # the math is checked in fp32 (on a GPU the base would load in bf16 and round the comparison away)
    model, tokenizer = load_model_for_training(
        str(tiny_model_dir), quantization="none", lora_dropout=0.0, device="cpu"
    )
    base = model.get_base_model()
    for name, p in model.named_parameters():  # give LoRA B non-zero values so its gradient path is exercised
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.02)
    torch.manual_seed(0)
    ids = torch.randint(5, len(tokenizer), (2, 24)).to(model.device)
    labels = ids.clone()
    labels[:, :10] = -100
    labels[1, 20:] = -100
    ref = base(input_ids=ids, labels=labels).loss  # transformers' loss over full logits
    ref.backward()
    ref_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad()
    hidden = base.model(input_ids=ids).last_hidden_state
    loss_sum, n = trained_positions_loss_sum(hidden, labels, base.get_output_embeddings())
    assert n == int((labels[:, 1:] != -100).sum())
    (loss_sum / n).backward()
    assert torch.allclose(loss_sum / n, ref, atol=1e-5)
    for name, grad in ref_grads.items():
        assert torch.allclose(dict(model.named_parameters())[name].grad, grad, atol=1e-5), name


def _record_batches(trainer) -> list[str]:
    seen: list[str] = []
    original = trainer.training_step

    def training_step(model, inputs, *args, **kwargs):
        seen.append(hashlib.sha1(inputs["input_ids"].cpu().numpy().tobytes()).hexdigest()[:12])
        return original(model, inputs, *args, **kwargs)

    trainer.training_step = training_step
    return seen


def test_resume_continues_with_the_same_batches_and_weights(tiny_model_dir, built_dataset, tmp_path):
    full = SFTRecipe(
        tiny_config(
            tiny_model_dir, built_dataset, tmp_path / "full", max_steps=8, save_steps=4, eval_steps=None
        )
    )
    full.setup()
    full_batches = _record_batches(full.trainer)
    full.train()
    full.save()

    # Resume a copy of the run from checkpoint-4 (what `resume_from_checkpoint: latest` finds after a kill
    # -9 between saves), with a half-written checkpoint in staging that must be ignored and removed.
    resumed_dir = tmp_path / "resumed"
    resumed_dir.mkdir()
    shutil.copytree(tmp_path / "full" / "checkpoint-4", resumed_dir / "checkpoint-4")
    (resumed_dir / ".staging" / "checkpoint-6").mkdir(parents=True)
    cfg = tiny_config(
        tiny_model_dir,
        built_dataset,
        resumed_dir,
        max_steps=8,
        save_steps=4,
        eval_steps=None,
        resume_from_checkpoint="latest",
    )
    resumed = SFTRecipe(cfg)
    resumed.setup()
    assert not (resumed_dir / ".staging").exists()
    resumed_batches = _record_batches(resumed.trainer)
    resumed.train()
    resumed.save()
    assert len(full_batches) == 8 and resumed_batches == full_batches[4:]
    a = load_file(str(tmp_path / "full" / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(resumed_dir / "adapter" / "adapter_model.safetensors"))
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_bad_resume_path_and_missing_data_are_one_line_errors(tiny_model_dir, tmp_path, capsys):
    from crossling.cli import main

    rc = main(
        [
            "sft",
            "train",
            "--model",
            str(tiny_model_dir),
            "--data",
            str(tmp_path / "nope.jsonl"),
            "--output_dir",
            str(tmp_path / "r"),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "no such dataset" in err and "Traceback" not in err
    rc = main(["sft", "train", "--full_finetune", "true"])
    assert rc == 2 and "quantization: none" in capsys.readouterr().err


@pytest.mark.parametrize("packing", [True])
def test_packing_trains_on_the_same_tokens(tiny_model_dir, built_dataset, tmp_path, packing):
    summary = run(
        tiny_config(
            tiny_model_dir,
            built_dataset,
            tmp_path / "p",
            packing=packing,
            max_length=128,
            max_steps=3,
            eval_steps=None,
            save_steps=100,
        )
    )
    assert summary["steps"] == 3 and summary["trained_tokens"] > 0
    assert Path(summary["adapter"]).joinpath("adapter_model.safetensors").is_file()


@pytest.mark.slow
def test_kill_9_mid_run_then_resume_latest_matches_the_uninterrupted_run(
    tiny_model_dir, built_dataset, tmp_path
):
    import os
    import signal
    import subprocess
    import sys
    import time

    import yaml

    from crossling.config import load_config
    from sft.runs import latest_checkpoint

    fields = dict(
        model=str(tiny_model_dir),
        data=str(built_dataset),
        quantization="none",
        max_steps=20,
        save_steps=3,
        save_total_limit=2,
        eval_steps=None,
        report_to=["none"],
        lora_dropout=0.0,
        per_device_train_batch_size=2,
        learning_rate=1e-2,
        eval_samples_per_language=1,
    )
    killed = tmp_path / "killed"
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({**fields, "output_dir": str(killed)}))
    proc = subprocess.Popen(
        [sys.executable, "-m", "sft", "train", str(config)],
        cwd=Path(__file__).parents[2],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 600  # generous: on a shared 2-core box setup alone has taken minutes
    while not (killed / "checkpoint-6").is_dir() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "summary.json").exists(), "the run finished before it could be killed"
    assert latest_checkpoint(killed) is not None, "no checkpoint within 600 s"
    step = int(latest_checkpoint(killed).name.split("-")[1])
    assert 6 <= step < 20

    resumed = SFTRecipe(load_config(SFTRunConfig, config, ["--resume_from_checkpoint", "latest"]))
    resumed.setup()
    resumed_batches = _record_batches(resumed.trainer)
    resumed.train()
    resumed.save()
    reference = SFTRecipe(SFTRunConfig(**fields, output_dir=str(tmp_path / "reference")))
    reference.setup()
    reference_batches = _record_batches(reference.trainer)
    reference.train()
    reference.save()
    assert resumed_batches == reference_batches[step:]
    a = load_file(str(killed / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "reference" / "adapter" / "adapter_model.safetensors"))
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
