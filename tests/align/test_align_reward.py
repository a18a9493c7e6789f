"""Reward model on a tiny model: trains with TRL, ranks a constructed pair, writes the transfer report."""

from __future__ import annotations

import json

import pytest

from align import preference_data, transfer
from align.config import RewardRunConfig
from align.reward import RewardRecipe, RewardScorer


def _pairs(lang: str, n: int) -> list[dict]:
    # An easy, learnable preference: a polite complete answer beats a one-word fragment.
    rows = []
    for i in range(n):
        prompt = f"Question {i}: say hello."
        rows.append(
            preference_data.pair(
                prompt,
                "Hello, the capital of France is Paris.",
                "qui",
                lang=lang,
                kind="truncated",
                source=f"t{i}",
                split="train",
            )
        )
    return rows


@pytest.fixture(scope="module")
def trained_rm(tmp_path_factory, tiny_model_dir):
    tmp = tmp_path_factory.mktemp("rm")
    prefs = tmp / "prefs"
    prefs.mkdir()
    for split, n in (("train", 16), ("dev", 4)):
        rows = _pairs("en", n) + ([] if split == "train" else _pairs("de", n))
        (prefs / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = RewardRunConfig(
        model=str(tiny_model_dir), quantization="none", output_dir=str(tmp / "run"), preference_data=str(prefs),
        eval_languages=["de"], learning_rate=5e-3, num_train_epochs=3, per_device_train_batch_size=8,
        logging_steps=1, save_steps=1000, report_to=[], eval_pairs_per_language=4, max_length=64,
    )  # fmt: skip
    recipe = RewardRecipe(cfg)
    recipe.setup()
    recipe.train()
    return cfg, recipe


def test_reward_model_ranks_constructed_pair_after_training(trained_rm):
    cfg, recipe = trained_rm
    scorer = RewardScorer(cfg.output_dir)  # reloaded from the run folder, as every later step does
    prompt = [{"role": "user", "content": "Question 99: say hello."}]
    good, bad = scorer.score([prompt, prompt], ["Hello, the capital of France is Paris.", "qui"])
    assert good > bad
    assert (recipe.run_dir / "adapter" / "adapter_config.json").is_file()
    assert (recipe.run_dir / "metrics.jsonl").read_text().strip()
    assert (recipe.run_dir / "loss.png").is_file()
    # the batch plan of this start (sft.trainer.LaunchReport), in the summary and the run folder
    launch = json.loads((recipe.run_dir / "summary.json").read_text())["launch"]
    assert (launch["world_size"], launch["effective_batch_size"], launch["learning_rate"]) == (1, 8, 5e-3)
    assert (
        json.loads((recipe.run_dir / "launches.jsonl").read_text().splitlines()[-1])["effective_batch_size"]
        == 8
    )


def test_transfer_report_has_one_row_per_language(trained_rm):
    cfg, recipe = trained_rm
    report = recipe.report(RewardScorer(cfg.output_dir))
    assert list(report["languages"]) == ["en", "de"]
    for row in report["languages"].values():
        assert row["n"] == 4 and 0.0 <= row["accuracy"] <= 1.0
    saved = json.loads((recipe.run_dir / "transfer.json").read_text())
    assert set(saved["languages"]) == {"en", "de"}
    assert (recipe.run_dir / "transfer.png").stat().st_size > 1000
    table = transfer.format_table(report["languages"], "en")
    assert len(table.splitlines()) == 2 + 2 and "en (source)" in table
