"""Scale-out: the recipe as 2 CPU processes (gloo DDP, via torchrun) on the tiny model.

accelerate's own launcher needs mpirun for several CPU processes, so CPU DDP goes through torchrun;
on GPUs ``accelerate launch --config_file configs/accelerate/<ddp|fsdp|zero3>.yaml -m sft train``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sft.config import SFTRunConfig
from sft.recipe import run


def _losses(run_dir: Path) -> list[float]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [rec["loss"] for rec in map(json.loads, lines) if "loss" in rec]


def test_two_process_gloo_ddp_matches_one_process_with_the_same_global_batch(
    tiny_model_dir, built_dataset, tmp_path
):
    fields = {
        "model": str(tiny_model_dir),
        "data": str(built_dataset),
        "quantization": "none",
        "max_steps": 3,
        "eval_steps": None,
        "save_steps": 2,
        "eval_samples_per_language": 1,
        "report_to": ["none"],
        "logging_steps": 1,
        "lora_dropout": 0.0,
    }
    out = tmp_path / "ddp"
    config = tmp_path / "ddp.yaml"
    config.write_text(yaml.safe_dump({**fields, "output_dir": str(out), "per_device_train_batch_size": 2}))
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [
        str(torchrun),
        "--nproc_per_node",
        "2",
        "--master_port",
        "18631",
        "-m",
        "sft",
        "train",
        str(config),
    ]
    # CPU processes even on a GPU machine: two ranks on one GPU is not what this test is about
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=240, env=env, cwd=Path(__file__).parents[2]
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["steps"] == 3
    assert summary["trained_tokens"] > 0 and summary["real_tokens"] > summary["trained_tokens"]
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    # each rank wrote its RNG state into the checkpoint before the atomic rename
    assert {p.name for p in (out / "checkpoint-2").glob("rng_state_*.pth")} == {
        "rng_state_0.pth",
        "rng_state_1.pth",
    }

    # 2 processes x 2 rows see the same global batches as 1 process x 4: same losses step by step
    single = tmp_path / "single"
    run(SFTRunConfig(**fields, output_dir=str(single), per_device_train_batch_size=4))
    assert _losses(out) == pytest.approx(_losses(single), abs=2e-3)
