"""Every shipped sft / accelerate config loads, and its first line is the command that runs it."""

from __future__ import annotations

from pathlib import Path

import pytest

from crossling.config import load_config
from sft.cli import CONFIGS

REPO = Path(__file__).resolve().parents[2]
SFT_YAMLS = sorted((REPO / "configs" / "sft").glob("*.yaml"))
ACCELERATE_YAMLS = sorted((REPO / "configs" / "accelerate").glob("*.yaml"))


def test_configs_are_shipped():
    assert any(p.name == "gemma3-270m_qlora.yaml" for p in SFT_YAMLS)
    assert {p.stem for p in ACCELERATE_YAMLS} >= {"ddp", "fsdp_qlora", "deepspeed_zero3_qlora"}


@pytest.mark.parametrize("path", SFT_YAMLS, ids=lambda p: p.name)
def test_sft_yaml_loads_and_names_its_command(path):
    first = path.read_text().splitlines()[0]
    assert first == f"# crossling sft train configs/sft/{path.name}" or first.startswith(
        "# accelerate launch"
    )
    config = load_config(CONFIGS["train"], path)
    assert config.assistant_only_loss and config.output_dir.startswith("runs/")


@pytest.mark.parametrize("path", ACCELERATE_YAMLS, ids=lambda p: p.name)
def test_accelerate_yaml_is_valid_for_accelerate(path):
    from accelerate.commands.config.config_args import load_config_from_file

    assert path.read_text().startswith(
        f"# accelerate launch --config_file configs/accelerate/{path.name} -m sft train"
    )
    config = load_config_from_file(str(path))
    assert config.num_processes >= 2 and config.mixed_precision == "bf16"
