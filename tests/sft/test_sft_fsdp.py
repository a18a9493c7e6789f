"""FSDP(-QLoRA) on these CPUs: what can be proved without a GPU.

FSDP cannot train on CPU with the pinned accelerate (1.15): ``accelerate launch`` sends an FSDP config
with ``use_cpu: true`` to its simple launcher (one process, or mpirun), and in launched CPU processes
``AcceleratorState`` turns FSDP on for GPU-like devices only, so 2 gloo processes become plain DDP
(``MULTI_CPU``) and the FSDP settings are dropped without a word; and ``FullyShardedDataParallelPlugin``
with ``sync_module_states`` (needed by ``cpu_ram_efficient_loading``) raises "There are currently no
available devices found" without a GPU. (torch 2.13 itself shards on gloo: a 2-layer toy model under
FSDP1 and FSDP2 gave the 1-process losses exactly in a probe; the block is accelerate's.) So there is no FSDP-vs-1-process loss
comparison here (tests/sft/test_sft_ddp.py has the DDP one); instead:

- the shipped ``configs/accelerate/fsdp_qlora.yaml``, launched by accelerate's own launcher, reaches
  the model setup in ``sft.modeling``: every FSDP unit that PEFT's wrap policy (what transformers'
  Trainer installs for a PEFT model under FSDP) would flatten holds weights of one dtype and one
  ``requires_grad``, as FSDP1 with ``use_orig_params: false`` requires;
- the same launch on a machine without a GPU is refused before a model is loaded, instead of
  training as DDP on a model set up for sharding.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from crossling.errors import ConfigError
from sft.modeling import load_model_for_training, nf4_config, requested_sharding, training_device

REPO = Path(__file__).parents[2]
FSDP_QLORA = REPO / "configs" / "accelerate" / "fsdp_qlora.yaml"
ACCELERATE = Path(sys.executable).with_name("accelerate")
# CPU processes even on a GPU machine: what a launch without a GPU does is what is tested
CPU_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
ENV_DUMP = (
    "import json, os; print(json.dumps({k: v for k, v in os.environ.items()"
    " if k.startswith(('ACCELERATE_', 'FSDP_'))}))"
)


def _launch_env(config_file: Path, port: int) -> dict[str, str]:
    """The ACCELERATE_* / FSDP_* variables ``accelerate launch --config_file`` gives its processes."""
    cmd = [str(ACCELERATE), "launch", "--config_file", str(config_file), "--num_processes", "1"]
    cmd += ["--main_process_port", str(port), "--no_python", sys.executable, "-c", ENV_DUMP]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=CPU_ENV, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _flat_param_problems(model, policy) -> list[str]:
    """FSDP units (``policy``-wrapped modules and the root) whose own weights mix dtypes or trainability:
    FSDP1 with ``use_orig_params: false`` flattens each unit's weights into one tensor and refuses those."""
    units = [
        m for m in model.modules() if m is not model and policy(module=m, recurse=False, nonwrapped_numel=0)
    ]
    units.append(model)
    names = {id(m): name or "<root>" for name, m in model.named_modules()}
    problems = []
    for unit in units:
        nested = [v for v in unit.modules() if v is not unit and any(v is u for u in units)]
        inner = {id(p) for v in nested for p in v.parameters()}
        own = [p for p in unit.parameters() if id(p) not in inner]
        dtypes, grads = {p.dtype for p in own}, {p.requires_grad for p in own}
        if len(dtypes) > 1 or len(grads) > 1:
            problems.append(f"{names[id(unit)]}: {sorted(map(str, dtypes))} requires_grad {sorted(grads)}")
    return problems


def test_the_fsdp_qlora_config_reaches_the_model_setup(tiny_model_dir, monkeypatch):
    from accelerate.utils import FullyShardedDataParallelPlugin
    from peft.utils.other import fsdp_auto_wrap_policy

    env = _launch_env(FSDP_QLORA, 18632)
    assert env["ACCELERATE_USE_FSDP"] == "true" and env["FSDP_VERSION"] == "1"
    assert env["FSDP_AUTO_WRAP_POLICY"] == "TRANSFORMER_BASED_WRAP" and env["FSDP_USE_ORIG_PARAMS"] == "false"
    assert env["ACCELERATE_MIXED_PRECISION"] == "bf16"
    for key, value in env.items():
        monkeypatch.setenv(key, value)

    assert (
        env["FSDP_SHARDING_STRATEGY"] == "FULL_SHARD" and env["FSDP_STATE_DICT_TYPE"] == "SHARDED_STATE_DICT"
    )
    assert env["FSDP_SYNC_MODULE_STATES"] == "true" and env["FSDP_CPU_RAM_EFFICIENT_LOADING"] == "true"
    # accelerate's FSDP plugin itself cannot be built without a GPU (sync_module_states asks for a device)
    with pytest.raises(RuntimeError, match="no available devices found"):
        FullyShardedDataParallelPlugin()

    assert requested_sharding() == "FSDP"
    assert nf4_config("cpu").bnb_4bit_quant_storage == torch.float32  # the dtype of the other weights
    model, _ = load_model_for_training(str(tiny_model_dir), quantization="nf4", device="cpu")
    policy = fsdp_auto_wrap_policy(model)  # transformers' Trainer: update_fsdp_plugin_peft
    wrapped = [
        name for name, m in model.named_modules() if policy(module=m, recurse=False, nonwrapped_numel=0)
    ]
    assert sum(name.endswith(".layers.0") or name.endswith(".layers.1") for name in wrapped) == 2
    assert any(".lora_A." in name for name in wrapped) and any(".lora_B." in name for name in wrapped)
    assert _flat_param_problems(model, policy) == []

    # without the launch, a CPU process keeps bitsandbytes' uint8 storage: FSDP could not flatten it
    monkeypatch.delenv("ACCELERATE_USE_FSDP")
    plain, _ = load_model_for_training(str(tiny_model_dir), quantization="nf4", device="cpu")
    assert any("uint8" in problem for problem in _flat_param_problems(plain, policy))


def test_an_fsdp_launch_without_a_gpu_is_refused_before_loading_a_model(
    tiny_model_dir, built_dataset, tmp_path
):
    out = tmp_path / "fsdp"
    config = tmp_path / "fsdp.yaml"
    fields = {
        "model": str(tiny_model_dir),
        "data": str(built_dataset),
        "output_dir": str(out),
        "max_steps": 2,
    }
    config.write_text(yaml.safe_dump({**fields, "report_to": ["none"], "eval_steps": None}))
    cmd = [str(ACCELERATE), "launch", "--config_file", str(FSDP_QLORA), "--num_processes", "2"]
    cmd += ["--main_process_port", "18633", "-m", "sft", "train", str(config)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=CPU_ENV, cwd=REPO)
    assert proc.returncode != 0
    assert "crossling sft: error: this launch asks for FSDP" in proc.stderr
    assert (
        "this machine has no GPU" in proc.stderr and "torchrun --nproc_per_node N -m sft train" in proc.stderr
    )
    assert "Traceback" not in proc.stderr.split("crossling sft: error")[0]  # refused, not crashed
    assert not (out / "launches.jsonl").exists() and not list(out.glob("checkpoint-*"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="tests what a machine without a GPU does")
def test_a_deepspeed_launch_without_a_gpu_is_refused_too(monkeypatch):
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")  # what accelerate launch sets for a ZeRO config
    with pytest.raises(ConfigError, match="this launch asks for DEEPSPEED"):
        training_device()
    assert training_device("cpu") == "cpu"  # an explicit device is the caller's choice
