"""`make demo` chains the area CLIs with overrides: every stage's config + overrides must load, and
each stage must read what the previous ones write (a renamed field or path breaks this test, not a
user 40 minutes into the demo)."""

import pytest

from crossling.cli import area_module
from crossling.config import load_config
from crossling.demo import stages


@pytest.mark.parametrize("fast", [False, True])
def test_every_stage_config_loads_with_its_overrides(fast):
    for stage in stages(fast):
        module = area_module(stage.args[0])
        cls = module.CONFIGS.get(stage.args[1]) or module.CONFIGS.get("")
        load_config(cls, stage.args[2], stage.args[3:])


@pytest.mark.parametrize("fast", [False, True])
def test_stages_feed_each_other(fast):
    plan = {s.name: s for s in stages(fast)}
    assert list(plan) == ["data", "preferences", "sft", "reward", "dpo", "win-rate", "eval"]
    sft_adapter = plan["sft"].done_when.removesuffix("/adapter_config.json")
    rm_dir = plan["reward"].done_when.removesuffix("/transfer.json")
    dpo_adapter = plan["dpo"].done_when.removesuffix("/adapter_config.json")
    dpo = load_config(area_module("align").CONFIGS["dpo"], plan["dpo"].args[2], plan["dpo"].args[3:])
    assert dpo.adapter == sft_adapter and dpo.reward_model == rm_dir
    ev = load_config(area_module("eval").CONFIGS["run"], plan["eval"].args[2], plan["eval"].args[3:])
    adapters = {m.name: m.adapter for m in ev.models}
    assert adapters == {"base": None, "sft": sft_adapter, "dpo": dpo_adapter}
    assert ev.win_rate_report == plan["win-rate"].done_when
    assert ev.reward_report == f"{rm_dir}/transfer.json"
    assert plan["eval"].done_when == f"{ev.output_dir}/{ev.name}/report.md"
