"""A run folder is never destroyed silently: a rerun resumes, starts over when told to, or is refused.

Regression tests of issue 16: a rerun of ``crossling sft train`` on a folder with checkpoints, without
``--resume_from_checkpoint``, restarted from step 0 and its keep-last-N rotation deleted the earlier
checkpoints; after a resume, ``metrics.jsonl`` held the replayed steps twice; ``--max_steps -3`` trained.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from crossling.errors import DataError
from sft import data as sft_data
from sft.config import SFTRunConfig
from sft.recipe import SFTRecipe
from sft.runs import RunFolderInUse, prepare_run_dir, read_metrics


def _earlier_run(run_dir: Path, steps: tuple[int, ...] = (3, 6), logged: int = 9) -> Path:
    """A folder as a killed run leaves it: checkpoints, an adapter, a log that goes past the last save."""
    for step in steps:
        (run_dir / f"checkpoint-{step}").mkdir(parents=True)
        (run_dir / f"checkpoint-{step}" / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    (run_dir / "adapter").mkdir()
    log = "".join(json.dumps({"step": s, "loss": 1.0 / s}) + "\n" for s in range(1, logged + 1))
    (run_dir / "metrics.jsonl").write_text(log + '{"step": 10, "lo')  # the last line cut by the kill
    (run_dir / "scored.jsonl").write_text("{}\n")  # a cache that no restart may delete
    return run_dir


def test_a_fresh_start_on_an_earlier_run_is_refused_with_the_commands_to_choose_from(tmp_path):
    run_dir = _earlier_run(tmp_path / "run")
    before = sorted(p.name for p in run_dir.iterdir())
    with pytest.raises(RunFolderInUse) as e:
        prepare_run_dir(run_dir, None, False, "crossling sft train my.yaml")
    message = str(e.value)
    assert "(checkpoint-3, checkpoint-6, adapter)" in message
    assert "crossling sft train my.yaml --resume_from_checkpoint latest" in message
    assert f"crossling sft train my.yaml --output_dir {run_dir}-2" in message
    assert "crossling sft train my.yaml --overwrite_output_dir true" in message
    assert sorted(p.name for p in run_dir.iterdir()) == before  # nothing deleted, nothing written


def test_resume_cuts_the_log_back_to_the_checkpoint_and_overwrite_deletes_the_earlier_run(tmp_path):
    run_dir = _earlier_run(tmp_path / "run")
    assert prepare_run_dir(run_dir, "latest", False, "x") == str(run_dir / "checkpoint-6")
    assert [r["step"] for r in read_metrics(run_dir / "metrics.jsonl")] == [1, 2, 3, 4, 5, 6]
    assert (run_dir / "checkpoint-3").is_dir()  # resuming deletes nothing

    assert prepare_run_dir(run_dir, None, True, "x") is None
    assert sorted(p.name for p in run_dir.iterdir()) == ["scored.jsonl"]
    assert prepare_run_dir(tmp_path / "new", "latest", False, "x") is None  # nothing to resume: step 0


def test_cli_rerun_is_refused_before_loading_anything(tiny_model_dir, tmp_path, capsys):
    from crossling.cli import main

    run_dir = _earlier_run(tmp_path / "run")
    (run_dir / "config.yaml").write_text("# the earlier run's config\n")
    argv = ["sft", "train", "--model", str(tiny_model_dir), "--output_dir", str(run_dir), "--max_steps", "4"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"crossling sft train --model {tiny_model_dir} --output_dir {run_dir} --max_steps 4 " in err
    assert "--resume_from_checkpoint latest" in err and "--overwrite_output_dir true" in err
    assert "Traceback" not in err
    assert (run_dir / "config.yaml").read_text() == "# the earlier run's config\n"
    assert (run_dir / "checkpoint-3").is_dir() and (run_dir / "checkpoint-6").is_dir()


def _config(model_dir, data_dir, out, **overrides) -> SFTRunConfig:
    values = dict(
        model=str(model_dir), data=str(data_dir), output_dir=str(out), quantization="none", max_steps=8,
        learning_rate=1e-2, warmup_steps=0, per_device_train_batch_size=4, logging_steps=1, eval_steps=None,
        save_steps=4, save_total_limit=2, eval_samples_per_language=1, mask_check_samples=8,
        report_to=["none"], lora_dropout=0.0,
    )  # fmt: skip
    values.update(overrides)
    return SFTRunConfig(**values)


def _train(cfg: SFTRunConfig) -> None:
    recipe = SFTRecipe(cfg)
    recipe.setup()
    recipe.train()
    recipe.save()


def test_resumed_run_logs_every_step_once_with_the_uninterrupted_losses(
    tiny_model_dir, built_dataset, tmp_path
):
    run_dir = tmp_path / "run"
    _train(_config(tiny_model_dir, built_dataset, run_dir))
    full = {r["step"]: r["loss"] for r in read_metrics(run_dir / "metrics.jsonl") if "loss" in r}
    # what a kill -9 between the saves at steps 4 and 8 leaves
    shutil.rmtree(run_dir / "checkpoint-8")
    shutil.rmtree(run_dir / "adapter")
    with pytest.raises(RunFolderInUse):  # the fresh start that rotated checkpoint-4 away is refused
        _train(_config(tiny_model_dir, built_dataset, run_dir))
    assert (run_dir / "checkpoint-4").is_dir()

    _train(_config(tiny_model_dir, built_dataset, run_dir, resume_from_checkpoint="latest"))
    records = read_metrics(run_dir / "metrics.jsonl")
    steps = [r["step"] for r in records if "loss" in r]
    assert steps == list(range(1, 9))  # before: 1..8 then 5..8 again
    resumed = {r["step"]: r["loss"] for r in records if "loss" in r}
    assert all(resumed[s] == pytest.approx(full[s], abs=1e-4) for s in range(5, 9))  # the same batches


@pytest.mark.parametrize(
    ("field", "value"),
    [("max_steps", -3), ("max_steps", 0), ("per_device_train_batch_size", 0), ("learning_rate", -1e-4),
     ("save_steps", 0), ("logging_steps", -1), ("lora_r", 0), ("max_length", 0), ("save_total_limit", 0),
     ("gradient_accumulation_steps", 0), ("num_train_epochs", -1.0)],
)  # fmt: skip
def test_numbers_that_make_no_sense_are_rejected_with_the_field_name(field, value):
    with pytest.raises(ValueError, match=rf"^{field} must be"):
        SFTRunConfig(**{field: value})


def test_resume_and_overwrite_together_are_rejected():
    with pytest.raises(ValueError, match="set one of them"):
        SFTRunConfig(resume_from_checkpoint="latest", overwrite_output_dir=True)


def test_a_bad_training_row_names_what_to_do_not_a_field_sft_lacks(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text('{"messages": [{"role": "user", "content": "hi"}], "lang": "en"}\n')
    with pytest.raises(DataError) as e:
        sft_data.load_sft_rows(path)
    message = str(e.value)
    assert message.startswith(f"{path}:1: no non-empty assistant message")
    # before: "(set lenient: true to quarantine bad rows)", and sft has no lenient field
    assert "set lenient: true" not in message and "crossling data build --extra_sft_files" in message
    assert "lenient" not in {f for f in SFTRunConfig.__dataclass_fields__}
