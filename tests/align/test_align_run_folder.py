"""Reward, DPO and KTO runs share sft's run-folder rules: refuse a fresh start over an earlier run,
resume from ``latest`` with each step logged once, reject numbers that make no sense (issue 16)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from align import preference_data, training
from align.config import DPORunConfig, KTORunConfig, RewardRunConfig, WinRateConfig
from align.preference_optimization import PreferenceRecipe
from align.reward import RewardRecipe
from crossling.config import load_config
from crossling.errors import ConfigError
from sft.runs import RunFolderInUse, read_metrics

PROMPT = [{"role": "user", "content": "Translate into German: good morning"}]
GOOD, BAD = "Guten Morgen", "good morning"


def _reward_config(tiny_model_dir, tmp_path: Path, **overrides) -> RewardRunConfig:
    prefs = tmp_path / "prefs"
    if not prefs.is_dir():
        prefs.mkdir()
        for split, n in (("train", 8), ("dev", 2)):
            rows = [
                preference_data.pair(
                    f"Question {i}: say hello.",
                    "Hello there, friend!",
                    "qui",
                    lang="en",
                    kind="truncated",
                    source=f"t{i}",
                    split=split,
                )  # fmt: skip
                for i in range(n)
            ]
            (prefs / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    values = dict(
        model=str(tiny_model_dir), quantization="none", output_dir=str(tmp_path / "run"),
        preference_data=str(prefs), eval_languages=["en"], learning_rate=5e-3, max_steps=4, save_steps=2,
        save_total_limit=2, per_device_train_batch_size=2, logging_steps=1, report_to=[],
        eval_pairs_per_language=2, max_length=64, lora_dropout=0.0,
    )  # fmt: skip
    return RewardRunConfig(**{**values, **overrides})


def _train_reward(cfg: RewardRunConfig) -> None:
    recipe = RewardRecipe(cfg)
    recipe.setup()
    recipe.train()


def _preference_config(method: str, tiny_model_dir, tmp_path: Path, **overrides):
    values = dict(
        model=str(tiny_model_dir), quantization="none", adapter=None, output_dir=str(tmp_path / "run"),
        max_steps=4, save_steps=2, save_total_limit=2, per_device_train_batch_size=2, learning_rate=1e-2,
        logging_steps=1, report_to=[], max_length=64, lora_dropout=0.0,
    )  # fmt: skip
    return (DPORunConfig if method == "dpo" else KTORunConfig)(**{**values, **overrides})


def _train_preference(method: str, cfg) -> None:
    recipe = PreferenceRecipe(cfg, method)
    # what data() does before sampling, without the sampling: the run folder, then the rows
    recipe.run_dir, recipe.resume = training.start_run(cfg, None, method)
    chosen, rejected = [{"role": "assistant", "content": GOOD}], [{"role": "assistant", "content": BAD}]
    if method == "dpo":
        recipe.rows = [{"prompt": PROMPT, "chosen": chosen, "rejected": rejected}] * 4
    else:
        recipe.rows = [
            {"prompt": PROMPT, "completion": c, "label": label}
            for c, label in [(chosen, True), (rejected, False)]
        ] * 2
    recipe.setup()
    recipe.train()


def _losses(run_dir: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in read_metrics(run_dir / "metrics.jsonl") if "loss" in r]


@pytest.mark.parametrize("method", ["reward", "dpo", "kto"])
def test_rerun_is_refused_and_resume_logs_each_step_once(method, tiny_model_dir, tmp_path):
    if method == "reward":
        make, train = (lambda **o: _reward_config(tiny_model_dir, tmp_path, **o)), _train_reward
    else:
        make = lambda **o: _preference_config(method, tiny_model_dir, tmp_path, **o)  # noqa: E731
        train = lambda cfg: _train_preference(method, cfg)  # noqa: E731
    run_dir = tmp_path / "run"
    train(make())
    full = _losses(run_dir)
    assert [s for s, _ in full] == [1, 2, 3, 4]
    shutil.rmtree(run_dir / "checkpoint-4")  # a kill -9 between the saves at steps 2 and 4
    shutil.rmtree(run_dir / "adapter")
    with pytest.raises(
        RunFolderInUse, match=f"crossling align {method} CONFIG --resume_from_checkpoint latest"
    ):
        train(make())  # before: a silent restart at step 0 (and a deleted log)
    assert (run_dir / "checkpoint-2").is_dir()
    train(make(resume_from_checkpoint="latest"))
    resumed = _losses(run_dir)
    assert [s for s, _ in resumed] == [1, 2, 3, 4]  # steps 3 and 4 logged once
    assert [loss for _, loss in resumed] == pytest.approx([loss for _, loss in full], abs=1e-4)


@pytest.mark.parametrize(
    ("config", "field", "value"),
    [(RewardRunConfig, "max_steps", -3), (RewardRunConfig, "lora_r", 0), (DPORunConfig, "beta", 0.0),
     (DPORunConfig, "save_steps", 0), (KTORunConfig, "per_device_train_batch_size", 0),
     (KTORunConfig, "learning_rate", -1.0), (DPORunConfig, "max_new_tokens", 0)],
)  # fmt: skip
def test_numbers_that_make_no_sense_are_rejected_with_the_field_name(config, field, value):
    with pytest.raises(ValueError, match=rf"^{field} must be"):
        config(**{field: value})


def test_resume_and_overwrite_together_are_rejected():
    with pytest.raises(ValueError, match="set one of them"):
        KTORunConfig(resume_from_checkpoint="latest", overwrite_output_dir=True)


@pytest.mark.parametrize("config", [DPORunConfig, KTORunConfig, WinRateConfig])
def test_generation_backend_llamacpp_is_accepted_and_unknown_ones_are_not(config):
    # crossling.generation serves "llamacpp"; align's configs listed only auto/vllm/transformers
    assert load_config(config, None, ["--backend", "llamacpp"]).backend == "llamacpp"
    with pytest.raises(ConfigError, match="backend"):
        load_config(config, None, ["--backend", "llama"])
