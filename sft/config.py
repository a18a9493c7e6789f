"""Config dataclasses for ``crossling sft train | merge | average`` (fields use TRL's names).

Defaults that differ from TRL's ``SFTConfig``: ``assistant_only_loss`` true (we train replies, not
prompts), ``learning_rate`` 2e-4 (LoRA, not full fine-tuning), ``max_length`` 512, ``logging_steps``
5, TRL's per-token entropy/accuracy metrics off (they cost a full-vocab pass per token).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

# Ranges of numeric fields, checked when a config is made: a negative or zero value that makes no
# sense must fail with its field name, not train silently (`--max_steps -3` trained for an epoch).
# None (where a field allows it) always passes.
SFT_NUMBER_RULES = {
    "lora_r": ">= 1", "lora_alpha": "> 0", "lora_dropout": ">= 0", "max_length": ">= 1",
    "language_temperature": ">= 0", "max_train_samples": ">= 1", "eval_samples_per_language": ">= 0",
    "mask_check_samples": ">= 0", "learning_rate": "> 0", "warmup_steps": ">= 0", "weight_decay": ">= 0",
    "max_grad_norm": ">= 0", "num_train_epochs": ">= 0", "per_device_train_batch_size": ">= 1",
    "gradient_accumulation_steps": ">= 1", "per_device_eval_batch_size": ">= 1", "logging_steps": ">= 1",
    "eval_steps": ">= 1", "save_steps": ">= 1", "save_total_limit": ">= 1", "average_last_k": ">= 0",
    "dataloader_num_workers": ">= 0",
}  # fmt: skip


def check_numbers(config: object, rules: dict[str, str]) -> None:
    """A ValueError naming the first field outside its range (``{"lora_r": ">= 1", "beta": "> 0"}``)."""
    for name, rule in rules.items():
        value = getattr(config, name)
        op, bound = rule.split()
        if value is not None and not (value > float(bound) if op == ">" else value >= float(bound)):
            hint = " (null keeps every checkpoint)" if name == "save_total_limit" else ""
            raise ValueError(f"{name} must be {rule}, got {value}{hint}")


def check_max_steps(max_steps: int, num_train_epochs: float) -> None:
    if max_steps == 0 or max_steps < -1:
        raise ValueError(f"max_steps must be > 0, or -1 to train num_train_epochs epochs; got {max_steps}")
    if max_steps == -1 and num_train_epochs <= 0:
        raise ValueError("set max_steps > 0 or num_train_epochs > 0")


def check_resume_or_overwrite(resume_from_checkpoint: str | None, overwrite_output_dir: bool) -> None:
    if resume_from_checkpoint and overwrite_output_dir:
        raise ValueError(
            "resume_from_checkpoint continues the run in output_dir and overwrite_output_dir deletes it: "
            "set one of them"
        )


@dataclass
class SFTRunConfig:
    """One supervised fine-tuning run (``crossling sft train CONFIG``)."""

    model: str = field(
        default="gemma3-270m", metadata={"help": "Base model: gemma3-270m, a local folder or a hub id."}
    )
    data: str = field(
        default="data/built/default",
        metadata={
            "help": "Built dataset folder (train.jsonl/dev.jsonl or hf/), a .jsonl file or a save_to_disk folder."
        },
    )
    output_dir: str = field(
        default="runs/sft-gemma3-270m", metadata={"help": "Run folder (checkpoints, adapter, logs)."}
    )
    # model loading (sft.modeling.load_model_for_training; align's LoraFields are the same fields)
    quantization: Literal["nf4", "none"] = field(
        default="nf4",
        metadata={"help": "nf4: QLoRA (4-bit base, double quant); none: LoRA on a full-precision base."},
    )
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA scaling alpha (update scaled by alpha / r)."})
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA input."})
    target_modules: list[str] = field(
        default_factory=lambda: ["all-linear"],
        metadata={"help": "Modules given LoRA adapters; [all-linear] = every Linear except the output head."},
    )
    modules_to_save: list[str] | None = field(
        default=None,
        metadata={
            "help": "Modules trained in full, e.g. [embed_tokens, lm_head] for a new language or script."
        },
    )
    full_finetune: bool = field(
        default=False, metadata={"help": "Train every weight (needs quantization: none)."}
    )
    adapter: str | None = field(
        default=None, metadata={"help": "Continue training this PEFT adapter folder."}
    )
    gradient_checkpointing: bool = field(
        default=False, metadata={"help": "Recompute activations in backward: less memory, ~30% slower."}
    )
    # data
    max_length: int = field(
        default=512, metadata={"help": "Tokens per example; longer ones are cut (keep start)."}
    )
    assistant_only_loss: bool = field(
        default=True,
        metadata={"help": "Train only on assistant replies (+ their <end_of_turn>), not prompts."},
    )
    packing: bool = field(
        default=False, metadata={"help": "Pack whole examples into max_length rows (TRL bfd, padding-free)."}
    )
    padding_free: bool = field(
        default=True,
        metadata={
            "help": "Concatenate a batch into one row with per-example position ids: no padding compute."
        },
    )
    languages: list[str] | None = field(
        default=None, metadata={"help": "Train only on these languages (row 'lang'); default all."}
    )
    language_temperature: float = field(
        default=1.0,
        metadata={
            "help": "Language sampling: share ∝ n_lang ** T. 1 = mix as built, 0.3-0.7 = up-sample rare ones, 0 = uniform."
        },
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Cap on training rows (after balancing)."}
    )
    eval_samples_per_language: int = field(
        default=24, metadata={"help": "Held-out rows per language for the per-language eval loss."}
    )
    mask_check_samples: int = field(
        default=64,
        metadata={"help": "Rows whose assistant masks are verified against the replies before training."},
    )
    # optimisation (TRL / transformers names)
    learning_rate: float = field(default=2e-4, metadata={"help": "Peak learning rate."})
    lr_scheduler_type: str = field(
        default="cosine", metadata={"help": "Schedule after warmup: cosine, linear, constant."}
    )
    warmup_steps: float = field(
        default=0.05, metadata={"help": "Warmup: steps, or a fraction of all steps if < 1."}
    )
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping norm."})
    num_train_epochs: float = field(default=1.0, metadata={"help": "Epochs (ignored when max_steps > 0)."})
    max_steps: int = field(default=-1, metadata={"help": "Optimizer steps; -1 = from num_train_epochs."})
    per_device_train_batch_size: int = field(default=4, metadata={"help": "Examples per step per process."})
    gradient_accumulation_steps: int = field(
        default=1, metadata={"help": "Micro-batches per optimizer step."}
    )
    per_device_eval_batch_size: int = field(default=8, metadata={"help": "Examples per eval batch."})
    seed: int = field(default=0, metadata={"help": "Seed for sampling, LoRA init and data order."})
    # logging / checkpoints
    logging_steps: int = field(default=5, metadata={"help": "Log train loss every N steps."})
    eval_steps: int | None = field(
        default=50, metadata={"help": "Per-language eval every N steps (null: end only)."}
    )
    eval_on_start: bool = field(
        default=False,
        metadata={"help": "Also evaluate before the first step (the base model's per-language loss)."},
    )
    save_steps: int = field(default=50, metadata={"help": "Write an (atomic) checkpoint every N steps."})
    save_total_limit: int | None = field(default=3, metadata={"help": "Keep only the last N checkpoints."})
    average_last_k: int = field(
        default=0, metadata={"help": "If > 1, the final adapter is the average of the last k checkpoints."}
    )
    resume_from_checkpoint: str | None = field(
        default=None, metadata={"help": "A checkpoint folder, or 'latest' for the newest in output_dir."}
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Start over in an output_dir that holds an earlier run: its checkpoints, adapter and "
            "metrics are deleted first. Without it such a run is refused (resume it, or use a new output_dir)."
        },
    )
    report_to: list[str] = field(
        default_factory=lambda: ["tensorboard"], metadata={"help": "Loggers (tensorboard, none)."}
    )
    dataloader_num_workers: int = field(default=0, metadata={"help": "Data loader worker processes."})

    def __post_init__(self) -> None:
        if self.full_finetune and self.quantization != "none":
            raise ValueError("full_finetune: true needs quantization: none")
        check_numbers(self, SFT_NUMBER_RULES)
        check_max_steps(self.max_steps, self.num_train_epochs)
        check_resume_or_overwrite(self.resume_from_checkpoint, self.overwrite_output_dir)
        if (
            self.average_last_k > 1
            and self.save_total_limit is not None
            and self.save_total_limit < self.average_last_k
        ):
            raise ValueError(
                f"average_last_k={self.average_last_k} needs save_total_limit >= {self.average_last_k}"
            )


@dataclass
class MergeConfig:
    """Merge a LoRA adapter into its base (``crossling sft merge --adapter DIR --output DIR``)."""

    adapter: str = field(default="", metadata={"help": "PEFT adapter folder (e.g. runs/<name>/adapter)."})
    output: str = field(default="", metadata={"help": "Folder for the merged full checkpoint."})
    model: str | None = field(
        default=None, metadata={"help": "Base model (default: the one the adapter names)."}
    )

    def __post_init__(self) -> None:
        if not self.adapter or not self.output:
            raise ValueError("merge needs --adapter DIR and --output DIR")


@dataclass
class AverageConfig:
    """Average adapters (``crossling sft average --run runs/x --last 3 --output DIR``)."""

    run: str | None = field(
        default=None, metadata={"help": "Run folder whose last checkpoints are averaged."}
    )
    last: int = field(default=3, metadata={"help": "How many of the run's newest checkpoints to average."})
    adapters: list[str] | None = field(
        default=None, metadata={"help": "Explicit adapter folders (instead of run)."}
    )
    output: str = field(default="", metadata={"help": "Folder for the averaged adapter."})

    def __post_init__(self) -> None:
        if not self.output or not (self.run or self.adapters):
            raise ValueError("average needs --output DIR and --run DIR or --adapters [a, b, ...]")
