"""`make demo` chains the area CLIs with overrides: every stage's config + overrides must load, and
each stage must read what the previous ones write (a renamed field or path breaks this test, not a
user half an hour into the demo)."""

import json

import pytest

from crossling.cli import area_module
from crossling.config import ConfigError, load_config
from crossling.demo import DemoConfig, main, run_args, stages, timing_table


@pytest.mark.parametrize("alignment", ["kto", "dpo"])
@pytest.mark.parametrize("fast", [False, True])
def test_every_stage_config_loads_with_its_overrides(fast, alignment):
    for stage in stages(fast, alignment):
        module = area_module(stage.args[0])
        cls = module.CONFIGS.get(stage.args[1]) or module.CONFIGS.get("")
        load_config(cls, stage.args[2], stage.args[3:])


@pytest.mark.parametrize("alignment", ["kto", "dpo"])
@pytest.mark.parametrize("fast", [False, True])
def test_stages_feed_each_other(fast, alignment):
    plan = {s.name: s for s in stages(fast, alignment)}
    assert list(plan) == ["data", "preferences", "sft", "reward", "align", "eval"]
    sft_adapter = plan["sft"].done_when.removesuffix("/adapter_config.json")
    rm_dir = plan["reward"].done_when.removesuffix("/transfer.json")
    aligned = plan["align"].done_when.removesuffix("/adapter_config.json")
    assert plan["align"].args[:2] == ["align", alignment]
    cfg = load_config(area_module("align").CONFIGS[alignment], plan["align"].args[2], plan["align"].args[3:])
    assert cfg.adapter == sft_adapter and cfg.reward_model == rm_dir
    ev = load_config(area_module("eval").CONFIGS["run"], plan["eval"].args[2], plan["eval"].args[3:])
    adapters = {m.name: m.adapter for m in ev.models}
    assert adapters == {"base": None, "sft": sft_adapter, alignment: aligned}
    assert ev.win_rates == [f"{alignment}:sft"] and ev.win_rate_reward_model == rm_dir
    assert "translation" in ev.tasks  # the win rate compares the translation answers
    assert ev.reward_report == f"{rm_dir}/transfer.json"
    assert plan["eval"].done_when == f"{ev.output_dir}/{ev.name}/report.md"


def test_the_alignment_method_is_one_field(repo_root):
    cfg = load_config(DemoConfig, repo_root / "configs/demo/default.yaml")
    assert cfg.alignment == "kto"
    with pytest.raises(ConfigError, match="alignment"):
        load_config(DemoConfig, None, ["--alignment", "ppo"])
    with pytest.raises(ConfigError, match="unknown stage 'trian'"):
        load_config(DemoConfig, None, ["--stop_after", "trian"])


def test_a_finished_demo_prints_its_timing_table(tmp_path, monkeypatch, capsys):
    # every stage's output already exists: nothing runs, and the table says so
    monkeypatch.chdir(tmp_path)
    for stage in stages(True, "kto"):
        done = tmp_path / stage.done_when
        done.parent.mkdir(parents=True, exist_ok=True)
        done.write_text("x")
    monkeypatch.setattr("crossling.demo.models.prepare", lambda: None)
    assert main(["--fast", "true", "--serve", "false"]) == 0
    out = capsys.readouterr().out
    assert "| sft | done before |" in out and "| **stages run now** |" in out
    assert "| cores busy: the stage / other processes | stolen by the host |" in out
    assert (tmp_path / "results/fast/demo_timings.md").is_file()
    record = json.loads((tmp_path / "results/fast/demo_timings.json").read_text())
    assert set(record["cpu"]["model"]) == {"seconds", "own_cores", "other_cores", "steal"}


def test_timing_table_sums_the_stages_run_now():
    table = timing_table(
        {"model": 1.0, "data": None, "sft": 600.0, "eval": 299.0}, machine="2 cores, X (AVX2)"
    )
    assert table.startswith("Machine: 2 cores, X (AVX2).")
    assert "| sft | 10.0 min (600 s) |" in table and "| data | done before |" in table
    assert table.splitlines()[-1] == "| **stages run now** | **15.0 min** |"


def test_timing_table_says_how_busy_the_machine_was():
    use = {"seconds": 600.0, "own_cores": 1.93, "other_cores": 0.04, "steal": 0.012}
    blink = {"seconds": 0.01, "own_cores": 3.0, "other_cores": 0.0, "steal": 0.0}  # clock noise, not shown
    usage = {"sft": use, "model": blink}
    table = timing_table(
        {"model": 0.01, "sft": 600.0, "eval": None}, machine="2 cores, X (AVX2)", usage=usage
    )
    assert "| model | 0.0 min (0 s) |  | |" in table
    assert "| sft | 10.0 min (600 s) | 1.93 / 0.04 | 1.2 % |" in table
    assert "| eval | done before |  | |" in table
    no_proc = {"seconds": 1.0, "own_cores": 1.0, "other_cores": None, "steal": None}
    assert "| 1.00 / ? | ? |" in timing_table({"sft": 1.0}, "m", usage={"sft": no_proc})


def test_trainer_stages_resume_or_overwrite_their_earlier_run(tmp_path):
    sft = next(s for s in stages(False, "kto") if s.name == "sft")
    sft.run_dir = str(tmp_path / "sft")
    assert run_args(sft, forced=False) == sft.args  # no folder yet: a plain start
    (tmp_path / "sft" / "checkpoint-40").mkdir(parents=True)
    assert run_args(sft, forced=False)[-2:] == ["--resume_from_checkpoint", "latest"]  # interrupted
    assert run_args(sft, forced=True)[-2:] == ["--overwrite_output_dir", "true"]  # --force [sft]
    data = next(s for s in stages(False, "kto") if s.name == "data")
    assert data.run_dir is None and run_args(data, forced=True) == data.args
    # every trainer stage names its folder, and the arguments it adds are fields of its config
    for stage in stages(False, "kto"):
        if stage.name in ("sft", "reward", "align"):
            assert stage.run_dir and stage.run_dir in stage.args
            module = area_module(stage.args[0])
            cls = module.CONFIGS.get(stage.args[1]) or module.CONFIGS.get("")
            assert load_config(
                cls, stage.args[2], [*stage.args[3:], "--overwrite_output_dir", "true"]
            ).overwrite_output_dir
