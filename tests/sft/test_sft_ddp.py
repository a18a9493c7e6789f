"""Scale-out: the recipe as 2 CPU processes (gloo DDP, via torchrun) on the tiny model.

accelerate's own launcher needs mpirun for several CPU processes, so CPU DDP goes through torchrun;
on GPUs ``accelerate launch --config_file configs/accelerate/<ddp|fsdp|zero3>.yaml -m sft train``.
One 2-process run (3 steps, a checkpoint at step 2) serves both tests: its losses against 1 process
with the same global batch, and its step-2 checkpoint resumed by 1 process.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sft.config import SFTRunConfig
from sft.recipe import run

FIELDS = {
    "quantization": "none",
    "max_steps": 3,
    "eval_steps": None,
    "save_steps": 2,
    "eval_samples_per_language": 1,
    "report_to": ["none"],
    "logging_steps": 1,
    "lora_dropout": 0.0,
    # a large step, so that 2 steps move the loss far more than the tolerance: a resume that lost the
    # trained weights or the optimizer state, or a wrong gradient average, cannot pass for a match
    "learning_rate": 1e-2,
    "warmup_steps": 0,
}
TOLERANCE = 1e-3  # measured: <= 1e-6 (the float summation order differs between 1 and 2 processes)


def _losses(run_dir: Path) -> dict[int, float]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return {rec["step"]: rec["loss"] for rec in map(json.loads, lines) if "loss" in rec}


def _launches(run_dir: Path) -> list[tuple]:
    lines = (run_dir / "launches.jsonl").read_text().splitlines()
    keys = ("step", "world_size", "distributed_type", "effective_batch_size", "learning_rate")
    return [tuple(rec[k] for k in keys) for rec in map(json.loads, lines)]


def _fixture_data(folder: Path) -> Path:
    """The rows of the ``built_dataset`` fixture (tests/sft/conftest.py), for a module-scoped run."""
    spec = importlib.util.spec_from_file_location("sft_fixture_rows", Path(__file__).with_name("conftest.py"))
    rows = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rows)
    folder.mkdir()
    rows.write_jsonl(folder / "train.jsonl", rows.make_rows(4))
    rows.write_jsonl(folder / "dev.jsonl", rows.make_rows(1, split="dev"))
    return folder


@pytest.fixture(scope="module")
def ddp_run(tiny_model_dir, tmp_path_factory):
    """``torchrun --nproc_per_node 2 -m sft train`` with 2 rows per process: (fields, run dir, stdout)."""
    tmp = tmp_path_factory.mktemp("ddp")
    fields = {**FIELDS, "model": str(tiny_model_dir), "data": str(_fixture_data(tmp / "built"))}
    out = tmp / "ddp"
    config = tmp / "ddp.yaml"
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
    return fields, out, proc.stdout


def test_two_process_gloo_ddp_matches_one_process_with_the_same_global_batch(ddp_run, tmp_path):
    fields, out, stdout = ddp_run
    summary = json.loads((out / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["steps"] == 3
    assert summary["trained_tokens"] > 0 and summary["real_tokens"] > summary["trained_tokens"]
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    # each rank wrote its RNG state into the checkpoint before the atomic rename
    assert {p.name for p in (out / "checkpoint-2").glob("rng_state_*.pth")} == {
        "rng_state_0.pth",
        "rng_state_1.pth",
    }
    # the batch plan for this world size: said once (by the main process) and kept in the run folder
    line = (
        "[sft] world size 2 (MULTI_CPU) x 2 rows per device x 1 accumulation steps = effective batch 4 "
        "rows per optimizer step; learning rate 0.01 (cosine, the same at every world size)"
    )
    assert stdout.count("[sft] world size") == 1 and line in stdout
    assert _launches(out) == [(0, 2, "MULTI_CPU", 4, 1e-2)]

    # 2 processes x 2 rows see the same global batches as 1 process x 4: same losses step by step
    single = tmp_path / "single"
    run(SFTRunConfig(**fields, output_dir=str(single), per_device_train_batch_size=4))
    assert _launches(single) == [(0, 1, "NO", 4, 1e-2)]
    losses = _losses(out)
    assert list(losses) == [1, 2, 3] and abs(losses[3] - losses[1]) > 10 * TOLERANCE
    assert list(losses.values()) == pytest.approx(list(_losses(single).values()), abs=TOLERANCE)


def test_a_two_process_checkpoint_resumes_in_one_process_and_the_step_counter_goes_on(
    ddp_run, tmp_path, capsys
):
    """The 2-process run's folder as a kill after its step-2 checkpoint leaves it, resumed by 1 process
    with the same global batch (1 x 4 rows): step 3 is trained again and gives the same loss."""
    from crossling.cli import main

    fields, out, _ = ddp_run
    resumed = tmp_path / "resumed"
    shutil.copytree(out / "checkpoint-2", resumed / "checkpoint-2")
    for name in ("config.yaml", "metrics.jsonl", "launches.jsonl"):
        shutil.copy(out / name, resumed / name)
    config = tmp_path / "one.yaml"
    config.write_text(
        yaml.safe_dump({**fields, "output_dir": str(resumed), "per_device_train_batch_size": 4})
    )

    assert main(["sft", "train", str(config), "--resume_from_checkpoint", "latest"]) == 0
    printed = capsys.readouterr().out
    assert f"resuming from {resumed / 'checkpoint-2'}" in printed
    assert "world size 1 (NO) x 4 rows per device" in printed and "from step 2" in printed
    assert "WARNING: resumed" not in printed  # same effective batch: the data skip lands right

    summary = json.loads((resumed / "summary.json").read_text())
    assert summary["processes"] == 1 and summary["steps"] == 3
    state = json.loads((resumed / "checkpoint-3" / "trainer_state.json").read_text())
    assert state["global_step"] == 3
    assert (resumed / "adapter" / "adapter_model.safetensors").is_file()
    losses, ddp_losses = _losses(resumed), _losses(out)
    assert list(losses) == [1, 2, 3]  # steps 1-2 logged by the 2 processes, step 3 by the 1
    assert losses[3] == pytest.approx(ddp_losses[3], abs=TOLERANCE)
    assert _launches(resumed) == [(0, 2, "MULTI_CPU", 4, 1e-2), (2, 1, "NO", 4, 1e-2)]
