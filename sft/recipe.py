"""The QLoRA SFT recipe: ``setup() → train() → save() → cleanup()``, one config, one run folder.

Reads a built dataset (``data/built/<name>/``: rows of ``data_recipes.schema``, ``messages`` plus
``lang``/``recipe``/``split``), balances languages, tokenizes with assistant-only labels and
*verifies* them, loads the model (``sft.modeling.load_model_for_training``), trains with :class:`sft.trainer.CrosslingSFTTrainer`
and writes the run folder (``sft.runs``): ``config.yaml``, ``metrics.jsonl``, ``tb/``,
``checkpoint-N/``, ``adapter/`` (PEFT; vLLM ``--lora-modules``), ``loss.png``, ``summary.json``.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from crossling.config import save_config
from crossling.device import has_cuda, mixed_precision
from crossling.errors import DataError
from sft import data as sft_data
from sft.config import SFTRunConfig
from sft.modeling import load_model_for_training
from sft.runs import (
    MetricsJsonlCallback,
    ThroughputProgressCallback,
    average_adapters,
    list_checkpoints,
    plot_losses,
    prepare_run_dir,
)
from sft.trainer import CrosslingSFTTrainer

logger = logging.getLogger("crossling.sft")


def _is_main() -> bool:
    from accelerate import PartialState

    return PartialState().is_main_process


def _say(msg: str) -> None:
    if _is_main():
        print(f"[sft] {msg}", flush=True)


class SFTRecipe:
    def __init__(self, config: SFTRunConfig, command: str | None = None):
        self.config = config
        self.command = command
        self.run_dir = Path(config.output_dir)
        self.trainer = None
        self.resume: str | None = None  # the checkpoint this run continues (set by setup)
        self.summary: dict = {}

    # --- setup -----------------------------------------------------------------------------------

    def prepare_data(self, tokenizer) -> tuple[list[dict], dict[str, list[dict]]]:
        """Rows → (tokenized train rows, {lang: tokenized eval rows}); masks checked."""
        cfg = self.config
        train_rows, dev_rows = sft_data.load_sft_rows(cfg.data)
        if cfg.languages:
            keep = set(cfg.languages)
            train_rows = [r for r in train_rows if r["lang"] in keep]
            dev_rows = [r for r in dev_rows if r["lang"] in keep]
            if not train_rows:
                raise DataError(f"{cfg.data}: no training rows in languages {sorted(keep)}")
        if not dev_rows:
            train_rows, dev_rows = sft_data.split_dev(train_rows, cfg.eval_samples_per_language, cfg.seed)
        before = sft_data.language_counts(train_rows)
        train_rows = sft_data.balance_languages(train_rows, cfg.language_temperature, cfg.seed)
        if cfg.max_train_samples:
            train_rows = train_rows[: cfg.max_train_samples]
        after = sft_data.language_counts(train_rows)
        _say(
            f"train rows by language (as built → sampled, T={cfg.language_temperature}): "
            + ", ".join(f"{k} {before.get(k, 0)}→{after.get(k, 0)}" for k in sorted(set(before) | set(after)))
        )
        self.summary["train_languages"] = after

        if cfg.assistant_only_loss:
            train_tok, report = sft_data.tokenize_rows(
                train_rows, tokenizer, cfg.max_length, "tokenizing train"
            )
            checked = sft_data.check_assistant_masks(
                train_rows, train_tok, tokenizer, cfg.mask_check_samples, cfg.seed
            )
            _say(
                f"assistant-only loss: {report.trained_tokens:,} of {report.tokens:,} tokens trained "
                f"({report.trained_fraction:.1%}); masks verified on {checked} rows; "
                f"{report.truncated} rows cut at max_length={cfg.max_length}"
            )
            if report.dropped:
                drop_path = self.run_dir / "dropped_rows.jsonl"
                if _is_main():
                    drop_path.write_text("".join(json.dumps(d) + "\n" for d in report.dropped))
                _say(
                    f"WARNING: {len(report.dropped)} rows had no trained token left after truncation; "
                    f"listed in {drop_path}"
                )
            self.summary.update(
                trained_fraction=round(report.trained_fraction, 4), dropped_rows=len(report.dropped)
            )
        else:
            train_tok = sft_data.full_sequence_labels(train_rows, tokenizer, cfg.max_length)
        eval_tok = {}
        for lang, rows in sft_data.eval_slices(dev_rows, cfg.eval_samples_per_language, cfg.seed).items():
            if cfg.assistant_only_loss:
                eval_tok[lang], _ = sft_data.tokenize_rows(
                    rows, tokenizer, cfg.max_length, f"tokenizing eval {lang}"
                )
            else:
                eval_tok[lang] = sft_data.full_sequence_labels(rows, tokenizer, cfg.max_length)
        return train_tok, eval_tok

    def trl_config(self):
        from trl import SFTConfig

        cfg = self.config
        eval_steps = cfg.eval_steps if cfg.eval_steps else None
        return SFTConfig(
            output_dir=str(self.run_dir),
            # examples arrive tokenized and truncated; padding-free without packing takes max_length=None
            max_length=cfg.max_length if cfg.packing else None,
            packing=cfg.packing,
            padding_free=cfg.padding_free or cfg.packing,
            eval_packing=False,
            assistant_only_loss=False,  # labels are built (and checked) by sft.data
            learning_rate=cfg.learning_rate,
            lr_scheduler_type=cfg.lr_scheduler_type,
            warmup_steps=cfg.warmup_steps,
            weight_decay=cfg.weight_decay,
            max_grad_norm=cfg.max_grad_norm,
            num_train_epochs=cfg.num_train_epochs,
            max_steps=cfg.max_steps,
            per_device_train_batch_size=cfg.per_device_train_batch_size,
            per_device_eval_batch_size=cfg.per_device_eval_batch_size,
            gradient_accumulation_steps=cfg.gradient_accumulation_steps,
            seed=cfg.seed,
            data_seed=cfg.seed,
            logging_steps=cfg.logging_steps,
            eval_strategy="steps" if eval_steps else "no",
            eval_steps=eval_steps,
            # a resumed run has its step-0 eval in metrics.jsonl already: not a second one at step N
            eval_on_start=cfg.eval_on_start and bool(eval_steps) and not self.resume,
            save_strategy="steps",
            save_steps=cfg.save_steps,
            save_total_limit=cfg.save_total_limit,
            report_to="none",  # TensorBoard is attached by us, writing to <run>/tb
            dataloader_num_workers=cfg.dataloader_num_workers,
            disable_tqdm=True,  # our progress bar (tokens/s) replaces transformers'
            **mixed_precision(),
            use_cpu=not has_cuda(),
            ddp_find_unused_parameters=False,
            include_num_input_tokens_seen="no",
            remove_unused_columns=True,
            gradient_checkpointing=False,  # applied at load time (sft.modeling)
        )

    def setup(self) -> None:
        import datasets

        cfg = self.config
        # first: a refused run must not touch the folder (its config.yaml included) nor load a model
        self.resume = prepare_run_dir(
            self.run_dir,
            cfg.resume_from_checkpoint,
            cfg.overwrite_output_dir,
            self.command or "crossling sft train CONFIG",
            is_main=_is_main(),
        )
        if _is_main():
            save_config(cfg, self.run_dir / "config.yaml", self.command)
        t0 = time.time()
        from transformers import set_seed

        set_seed(cfg.seed)  # LoRA's A matrices are drawn at load time: seed first, so runs repeat exactly
        model, tokenizer = load_model_for_training(
            cfg.model,
            quantization=cfg.quantization,
            lora_r=cfg.lora_r,
            lora_alpha=cfg.lora_alpha,
            lora_dropout=cfg.lora_dropout,
            target_modules=cfg.target_modules[0]
            if cfg.target_modules == ["all-linear"]
            else cfg.target_modules,
            modules_to_save=cfg.modules_to_save,
            adapter=cfg.adapter,
            full_finetune=cfg.full_finetune,
            gradient_checkpointing=cfg.gradient_checkpointing,
        )
        _say(f"loaded {cfg.model} ({cfg.quantization}, LoRA r={cfg.lora_r}) in {time.time() - t0:.1f}s")
        train_tok, eval_tok = self.prepare_data(tokenizer)
        columns = ["input_ids", "labels"]
        train_ds = datasets.Dataset.from_list([{k: r[k] for k in columns} for r in train_tok])
        eval_ds = {
            lang: datasets.Dataset.from_list([{k: r[k] for k in columns} for r in rows])
            for lang, rows in eval_tok.items()
        }
        self.trainer = CrosslingSFTTrainer(
            model=model,
            args=self.trl_config(),
            train_dataset=train_ds,
            eval_dataset=eval_ds or None,
            processing_class=tokenizer,
        )
        self._add_callbacks()
        fraction = sft_data.check_batches(self.trainer.get_train_dataloader(), max_batches=4)
        _say(f"first batches: {fraction:.1%} of real tokens trained")

    def _add_callbacks(self) -> None:
        from transformers.trainer_callback import PrinterCallback, ProgressCallback

        trainer = self.trainer
        trainer.remove_callback(ProgressCallback)
        trainer.remove_callback(PrinterCallback)
        trainer.add_callback(ThroughputProgressCallback(trainer.total_real_tokens))
        trainer.add_callback(MetricsJsonlCallback(self.run_dir / "metrics.jsonl"))
        if "tensorboard" in self.config.report_to and _is_main():
            from transformers.integrations import TensorBoardCallback

            tensorboard = TensorBoardCallback()
            tensorboard.logging_dir = str(self.run_dir / "tb")  # also where it reopens for the final eval
            trainer.add_callback(tensorboard)

    # --- train / save ----------------------------------------------------------------------------

    def train(self) -> None:
        resume = self.resume
        if resume:
            _say(f"resuming from {resume}")
        if (
            self.config.eval_on_start
            and not self.config.eval_steps
            and self.trainer.eval_dataset
            and not resume
        ):
            start = self.trainer.evaluate()  # step-0 baseline (with eval_steps set, eval_on_start does it)
            self.summary["eval_loss_by_language_at_start"] = _eval_losses(start)
        t0 = time.time()  # train time includes evals every eval_steps, if any
        tokens0 = self.trainer._total_train_tokens
        output = self.trainer.train(resume_from_checkpoint=resume)
        seconds = time.time() - t0
        tokens = self.trainer._total_train_tokens - tokens0
        self.summary.update(
            steps=output.global_step,
            train_loss=round(output.training_loss, 4),  # mean over the run (this process)
            last_logged_loss=next(
                (round(r["loss"], 4) for r in reversed(self.trainer.state.log_history) if "loss" in r), None
            ),
            train_seconds=round(seconds, 1),
            real_tokens=tokens,
            real_tokens_per_second=round(tokens / max(seconds, 1e-6), 1),
            trained_tokens=self.trainer.trained_tokens,
            processes=self.trainer.accelerator.num_processes,
            launch=self.trainer.launch,  # world size, effective batch, learning rate of this start
        )
        if self.trainer.eval_dataset:
            metrics = self.trainer.evaluate()
            self.summary["eval_loss_by_language"] = _eval_losses(metrics)

    def save(self) -> Path:
        trainer, cfg = self.trainer, self.config
        adapter_dir = self.run_dir / "adapter"
        trainer.accelerator.wait_for_everyone()
        if cfg.average_last_k > 1:
            checkpoints = list_checkpoints(self.run_dir)[-cfg.average_last_k :]
            if _is_main():
                trainer.save_model(str(self.run_dir / "adapter_last"))
                average_adapters(checkpoints, adapter_dir)
            self.summary["averaged_checkpoints"] = [p.name for p in checkpoints]
        else:
            trainer.save_model(str(adapter_dir))
        if _is_main():
            trainer.processing_class.save_pretrained(str(adapter_dir))
            plot = plot_losses(self.run_dir / "metrics.jsonl", self.run_dir / "loss.png", f"SFT {cfg.model}")
            self.summary.update(adapter=str(adapter_dir), plot=str(plot) if plot else None)
            (self.run_dir / "summary.json").write_text(json.dumps(self.summary, indent=2, ensure_ascii=False))
            _say(f"adapter: {adapter_dir}")
            _say("summary: " + json.dumps(self.summary, ensure_ascii=False))
        return adapter_dir

    def cleanup(self) -> None:
        for cb in self.trainer.callback_handler.callbacks if self.trainer else []:
            writer = getattr(cb, "tb_writer", None)
            if writer is not None:
                writer.close()


def _eval_losses(metrics: dict) -> dict[str, float]:
    """``{"eval_de_loss": 2.1, ...}`` → ``{"de": 2.1, ...}``."""
    return {
        k.removeprefix("eval_").removesuffix("_loss"): round(v, 4)
        for k, v in metrics.items()
        if k.endswith("_loss")
    }


def run(config: SFTRunConfig, command: str | None = None) -> dict:
    """Run the whole recipe; return the summary (also written to ``<run>/summary.json``)."""
    recipe = SFTRecipe(config, command)
    try:
        recipe.setup()
        recipe.train()
        recipe.save()
    finally:
        recipe.cleanup()
    return recipe.summary
