"""What the align recipes (reward, DPO, KTO) share: model loading, TRL arguments, run folders.

Model loading is sft's (``sft.modeling.load_model_for_training``, the same fields and rules); the run folder follows
sft's habits through ``sft.runs`` (``config.yaml``, ``metrics.jsonl``, ``tb/``, atomic
``checkpoint-N/``, ``adapter/``, ``loss.png``, ``summary.json``). Nothing here knows about
preferences; see the recipes for that.

The reference model: DPO/KTO continue the SFT adapter. Given a PEFT model, TRL 1.16 copies the
trainable adapter into a frozen ``ref`` adapter and computes reference log-probs with it — so the
reference is the SFT policy (not the adapter-disabled base) and costs one adapter (MBs), not a
second model. The tests check that ``ref`` exists and stays frozen.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from crossling.adapters import require_adapter
from crossling.config import save_config
from crossling.device import has_cuda, mixed_precision


def say(msg: str) -> None:
    print(f"[align] {msg}", flush=True)


def target_modules(cfg) -> str | list[str]:
    return cfg.target_modules[0] if cfg.target_modules == ["all-linear"] else cfg.target_modules


def check_adapter(path: str | None, what: str, hint: str) -> None:
    """An optional config adapter (``adapter: null`` passes) must be a PEFT adapter folder."""
    if path:
        require_adapter(path, what, hint)


def load_policy(cfg) -> tuple[Any, Any]:
    """The policy to align: the SFT adapter, trainable (TRL adds the frozen ``ref`` copy itself)."""
    from transformers import set_seed

    from sft.modeling import load_model_for_training

    check_adapter(cfg.adapter, "adapter", "Train it first (`make train-sft`) or set adapter: null.")
    set_seed(cfg.seed)  # a new LoRA (adapter: null) is drawn at load time: seeded, so runs repeat exactly
    model, tokenizer = load_model_for_training(
        cfg.model,
        task="causal_lm",
        quantization=cfg.quantization,
        lora_r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=target_modules(cfg),
        adapter=cfg.adapter,
    )
    return model, tokenizer


def score_labelled_positions_only() -> None:
    """Make TRL's fused LM head run only where a log-probability is needed, on every device.

    TRL 1.16's DPO and KTO trainers compute per-token log-probs through a chunked head
    (``trl.trainer.utils.add_fused_lm_head``). On Triton devices it gathers the positions whose label
    is not -100 (the completion) first; elsewhere (our CPUs) it scores *every* position, prompt and
    padding included, through Gemma 3's 262k-vocabulary head — the larger half of a 270M model's
    FLOPs. Compacting only changes which rows go through the same kernel (the result is scattered
    back, zeros elsewhere, exactly as on a GPU); TRL avoids it off-Triton only because a varying
    row count recompiles XLA/Neuron graphs, which eager CPU execution does not have. Measured on the
    default model, batch 8 × 170 tokens, 60 completion tokens: forward 11.0 → 7.0 s, forward +
    backward 28 → 15.5 s. The name is the one ``add_fused_lm_head`` reads at call time (the test
    checks it still does).
    """
    import trl.trainer.utils as trl_utils

    if getattr(trl_utils, "_crossling_compact_head", False):
        return
    triton_device = trl_utils._use_triton
    trl_utils._use_triton = lambda device: device.type not in ("xla", "neuron") or triton_device(device)
    trl_utils._crossling_compact_head = True


def training_arguments(cfg, run_dir: Path) -> dict[str, Any]:
    """The transformers/TRL arguments every align recipe shares (fp32 on CPU, bf16 autocast on CUDA)."""
    return dict(
        output_dir=str(run_dir),
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler_type,
        warmup_steps=cfg.warmup_steps,
        num_train_epochs=cfg.num_train_epochs,
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.per_device_train_batch_size,
        per_device_eval_batch_size=cfg.per_device_train_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        max_length=cfg.max_length,
        seed=cfg.seed,
        data_seed=cfg.seed,
        logging_steps=cfg.logging_steps,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        report_to="none",  # TensorBoard is attached by us, writing to <run>/tb like sft
        **mixed_precision(),
        use_cpu=not has_cuda(),
        gradient_checkpointing=False,  # ~30% slower; our sequences are short
        dataloader_num_workers=0,
        disable_tqdm=False,
    )


def start_run(cfg, command: str | None, verb: str) -> tuple[Path, str | None]:
    """(run folder, checkpoint to resume from): sft's rules (``sft.runs.prepare_run_dir``): resume
    with ``resume_from_checkpoint``, start over with ``overwrite_output_dir``, else an earlier run in
    the folder is refused, never rotated away."""
    from sft.runs import prepare_run_dir

    run_dir = Path(cfg.output_dir)
    resume = prepare_run_dir(
        run_dir,
        cfg.resume_from_checkpoint,
        cfg.overwrite_output_dir,
        command or f"crossling align {verb} CONFIG",
    )
    save_config(cfg, run_dir / "config.yaml", command)
    return run_dir, resume


def add_callbacks(trainer, run_dir: Path, report_to: list[str]) -> None:
    from sft.runs import MetricsJsonlCallback
    from sft.trainer import LaunchReport

    trainer.add_callback(MetricsJsonlCallback(run_dir / "metrics.jsonl"))
    trainer.add_callback(LaunchReport(trainer, tag="align"))  # world size, effective batch, learning rate
    if "tensorboard" in report_to:
        from transformers.integrations import TensorBoardCallback

        tensorboard = TensorBoardCallback()
        tensorboard.logging_dir = str(run_dir / "tb")
        trainer.add_callback(tensorboard)


def train_and_save(trainer, run_dir: Path, title: str, summary: dict, resume: str | None = None) -> Path:
    """Train (from ``resume``, a checkpoint, if given), save the trained adapter (not the frozen
    reference) to ``adapter/``, plot, summarise."""
    from sft.runs import plot_losses

    if resume:
        say(f"resuming from {resume}")
    t0 = time.time()
    output = trainer.train(resume_from_checkpoint=resume)
    summary.update(
        steps=output.global_step,
        train_loss=round(output.training_loss, 4),
        train_seconds=round(time.time() - t0, 1),
        launch=getattr(trainer, "launch", {}),  # LaunchReport: world size, effective batch, learning rate
    )
    adapter_dir = run_dir / "adapter"
    model = trainer.accelerator.unwrap_model(trainer.model)
    model.save_pretrained(str(adapter_dir), selected_adapters=["default"])
    trainer.processing_class.save_pretrained(str(adapter_dir))
    plot = plot_losses(run_dir / "metrics.jsonl", run_dir / "loss.png", title)
    summary.update(adapter=str(adapter_dir), plot=str(plot) if plot else None)
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False))
    for cb in trainer.callback_handler.callbacks:
        writer = getattr(cb, "tb_writer", None)
        if writer is not None:
            writer.close()
    say(f"adapter: {adapter_dir}")
    say("summary: " + json.dumps(summary, ensure_ascii=False))
    return adapter_dir


def last_logged(run_dir: Path, key: str) -> float | None:
    from sft.runs import read_metrics

    values = [rec[key] for rec in read_metrics(run_dir / "metrics.jsonl") if key in rec]
    return values[-1] if values else None
