"""Config dataclasses for ``crossling align reward | transfer | pairs | dpo | kto | best-of-n | win-rate``.

Field names follow TRL where TRL has one (``beta``, ``max_length``, ``loss_type``,
``precompute_ref_log_probs``, ``learning_rate``, ``per_device_train_batch_size``, ...). Defaults that
differ from TRL: ``bf16`` is never on for CPU (bf16 matmuls are >10x slower on our AVX2 CPUs), LoRA
learning rates (1e-4 reward, 5e-5 DPO/KTO) instead of full fine-tuning ones, ``logging_steps`` 5.

Not here: what the recipes do (``align.reward``, ``align.preference_optimization``, ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from crossling.languages import LANGUAGES
from data_recipes.recipes.translation_following import check_instruction_languages
from sft.config import check_max_steps, check_numbers, check_resume_or_overwrite

DEFAULT_TARGETS = ["de", "fr", "es", "ru", "zh", "ja", "ar", "hi", "bn", "sw"]


def _check_langs(langs: list[str], what: str) -> None:
    unknown = [lang for lang in langs if lang not in LANGUAGES]
    if unknown:
        raise ValueError(
            f"{what}: unknown language code(s) {', '.join(unknown)}; known: {', '.join(LANGUAGES)}"
        )


@dataclass
class PreferenceDataConfig:
    """The shipped preference pairs (``crossling align data CONFIG``), built from our own corpora."""

    output_dir: str = field(
        default="data/built/preferences", metadata={"help": "Where train/dev/test JSONL go."}
    )
    languages: list[str] = field(
        default_factory=lambda: ["en", *DEFAULT_TARGETS], metadata={"help": "Languages to build pairs in."}
    )
    pivot_lang: str = field(
        default="en",
        metadata={"help": "Language the text to translate is in (de for pairs whose answer is in it)."},
    )
    max_pairs_per_language: int = field(
        default=400, metadata={"help": "Cap per language and split (0 = no cap)."}
    )
    max_chars: int = field(
        default=240, metadata={"help": "Skip sentences longer than this (short rows train fast)."}
    )
    safety_seed: str = field(
        default="data/safety/seed.jsonl",
        metadata={
            "help": "Safety seed file (benign: helpful > refusal; harmful: refusal in the language > elsewhere)."
        },
    )
    pivot_asks_other_languages: bool = field(
        default=True,
        metadata={
            "help": "Also give the pivot language prompts that ask for another language (chosen = that "
            "language, rejected = the untranslated pivot text), so an RM trained on the pivot's pairs "
            "learns 'the requested language', not 'the pivot language'."
        },
    )
    seed: int = field(default=0, metadata={"help": "Seed for rejection kinds and sampling."})

    def __post_init__(self) -> None:
        _check_langs(self.languages, "languages")


@dataclass
class LoraFields:
    """Model loading shared by every align recipe: ``sft.modeling.load_model_for_training`` builds the
    trainable model (4-bit nf4 / LoRA / full) from these fields, exactly as for SFT."""

    model: str = field(
        default="gemma3-270m", metadata={"help": "Base model: gemma3-270m, a local folder or a hub id."}
    )
    quantization: Literal["nf4", "none"] = field(
        default="nf4",
        metadata={"help": "nf4: QLoRA (4-bit base, double quant); none: LoRA on a full-precision base."},
    )
    lora_r: int = field(default=16, metadata={"help": "LoRA rank (ignored when continuing an adapter)."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha."})
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA input."})
    target_modules: list[str] = field(
        default_factory=lambda: ["all-linear"],
        metadata={"help": "LoRA targets; [all-linear] = every Linear."},
    )

    def __post_init__(self) -> None:
        check_numbers(self, {"lora_r": ">= 1", "lora_alpha": "> 0", "lora_dropout": ">= 0"})


@dataclass
class TrainFields:
    """Optimisation and run-folder fields (transformers / TRL names)."""

    output_dir: str = field(
        default="runs/align", metadata={"help": "Run folder (config, metrics, adapter, plots)."}
    )
    learning_rate: float = field(default=1e-4, metadata={"help": "Peak learning rate."})
    num_train_epochs: float = field(default=1.0, metadata={"help": "Epochs (ignored when max_steps > 0)."})
    max_steps: int = field(default=-1, metadata={"help": "Optimizer steps; -1 = from num_train_epochs."})
    per_device_train_batch_size: int = field(default=8, metadata={"help": "Examples (pairs) per step."})
    gradient_accumulation_steps: int = field(
        default=1, metadata={"help": "Micro-batches per optimizer step."}
    )
    warmup_steps: float = field(
        default=0.1, metadata={"help": "Warmup steps, or a fraction of all steps if < 1."}
    )
    lr_scheduler_type: str = field(default="cosine", metadata={"help": "Schedule after warmup."})
    max_length: int = field(
        default=256, metadata={"help": "Max tokens of prompt + completion (TRL's max_length)."}
    )
    logging_steps: int = field(default=5, metadata={"help": "Log every N steps."})
    save_steps: int = field(default=100, metadata={"help": "Checkpoint every N steps."})
    save_total_limit: int | None = field(default=2, metadata={"help": "Keep only the last N checkpoints."})
    seed: int = field(default=0, metadata={"help": "Seed for LoRA init, data order, sampling."})
    report_to: list[str] = field(default_factory=lambda: ["tensorboard"], metadata={"help": "Loggers."})
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

    def __post_init__(self) -> None:
        check_numbers(self, TRAIN_NUMBER_RULES)
        check_max_steps(self.max_steps, self.num_train_epochs)
        check_resume_or_overwrite(self.resume_from_checkpoint, self.overwrite_output_dir)


# Negative or zero values that make no sense fail with the field's name (see sft.config).
TRAIN_NUMBER_RULES = {
    "learning_rate": "> 0", "num_train_epochs": ">= 0", "per_device_train_batch_size": ">= 1",
    "gradient_accumulation_steps": ">= 1", "warmup_steps": ">= 0", "max_length": ">= 1",
    "logging_steps": ">= 1", "save_steps": ">= 1", "save_total_limit": ">= 1",
}  # fmt: skip


@dataclass
class RewardRunConfig(TrainFields, LoraFields):
    """Train a reward model on one source language (``crossling align reward CONFIG``)."""

    output_dir: str = field(default="runs/gemma3-270m_reward", metadata={"help": "Run folder."})
    source_lang: str = field(default="en", metadata={"help": "Language of the training preferences."})
    train_file: str | None = field(
        default=None,
        metadata={
            "help": "Pairwise preferences (JSONL/JSON/Parquet or hf:NAME:SPLIT); default: the shipped pairs."
        },
    )
    preference_data: str = field(
        default="data/built/preferences",
        metadata={"help": "Folder of the shipped pairs (built when missing)."},
    )
    max_train_pairs: int = field(default=320, metadata={"help": "Cap on training pairs (0 = all)."})
    eval_languages: list[str] = field(
        default_factory=lambda: ["en", *DEFAULT_TARGETS],
        metadata={"help": "Languages of the transfer report (held-out dev pairs, same construction)."},
    )
    eval_pairs_per_language: int = field(
        default=40, metadata={"help": "Held-out pairs per language in the report."}
    )
    center_rewards_coefficient: float | None = field(
        default=0.01, metadata={"help": "TRL: pull mean reward to 0 so thresholds mean the same across runs."}
    )

    def __post_init__(self) -> None:
        _check_langs([self.source_lang, *self.eval_languages], "source_lang/eval_languages")
        TrainFields.__post_init__(self)
        LoraFields.__post_init__(self)
        check_numbers(self, {"max_train_pairs": ">= 0", "eval_pairs_per_language": ">= 1"})


def instruction_languages_field():
    """``instruction_languages`` of the sampling and win-rate configs (NTREX prompts only)."""
    return field(
        default_factory=lambda: {"tgt": 1.0},
        metadata={
            "help": "NTREX prompts: who writes each translation request, as weights for English, the source "
            "or the target language (the translation_following recipe's keys en / src / tgt)."
        },
    )


@dataclass
class SamplingFields:
    """Sampling the SFT policy and scoring with the transferred reward model."""

    adapter: str | None = field(
        default="runs/sft-gemma3-270m/adapter",
        metadata={"help": "The SFT adapter (policy and reference); null = start from the base model."},
    )
    reward_model: str = field(
        default="runs/gemma3-270m_reward", metadata={"help": "Reward run folder (or its adapter/ folder)."}
    )
    prompts: str = field(
        default="ntrex",
        metadata={
            "help": "'ntrex' (translation requests from NTREX train documents) or a JSONL of {prompt, lang}."
        },
    )
    target_languages: list[str] = field(
        default_factory=lambda: ["de", "fr", "ru", "zh", "sw"], metadata={"help": "Languages to align."}
    )
    prompts_per_language: int = field(default=24, metadata={"help": "Prompts sampled per target language."})
    instruction_languages: dict[str, float] = instruction_languages_field()
    n: int = field(default=4, metadata={"help": "Samples per prompt (the paper used 64 for best-of-n)."})
    temperature: float = field(
        default=0.7,
        metadata={"help": "Sampling temperature (at 0.9 a 270M policy's samples drift into other scripts)."},
    )
    top_p: float = field(default=0.95, metadata={"help": "Nucleus sampling."})
    max_new_tokens: int = field(default=64, metadata={"help": "Tokens per sample."})
    backend: Literal["auto", "vllm", "transformers", "llamacpp"] = field(
        default="auto",
        metadata={
            "help": "Generation backend of crossling.generation.generate (auto: fastest for the device; "
            "llamacpp: a llama.cpp server on a GGUF of the model and adapter, built on first use)."
        },
    )
    score_batch_size: int = field(default=16, metadata={"help": "Completions per reward-model forward."})
    reference_weight: float = field(
        default=0.0,
        metadata={
            "help": "Weight of each sample's agreement with its prompt's reference translation (fidelity × "
            "chrF) next to the reward model's score, both standardised per language before they are added; "
            "0 = the transferred reward model alone (the paper's setting). Needs prompts with references."
        },
    )
    reference_examples: bool = field(
        default=False,
        metadata={
            "help": "Also train on each prompt's reference translation: a desirable example (KTO), or "
            "chosen over the prompt's lowest-scored sample (DPO). Anchors languages where every sample of "
            "a small policy is poor, so the best of them is still a bad target. Needs prompts with references."
        },
    )

    def __post_init__(self) -> None:
        _check_langs(self.target_languages, "target_languages")
        check_instruction_languages(self.instruction_languages)
        if self.n < 2:
            raise ValueError("n must be >= 2: pairs need a best and a worst sample")
        check_numbers(
            self,
            {"prompts_per_language": ">= 1", "temperature": ">= 0", "top_p": "> 0", "max_new_tokens": ">= 1",
             "score_batch_size": ">= 1", "reference_weight": ">= 0"},
        )  # fmt: skip


@dataclass
class DPORunConfig(TrainFields, SamplingFields, LoraFields):
    """Score samples with the transferred RM, build best-vs-worst pairs, train DPO (``crossling align dpo``)."""

    output_dir: str = field(default="runs/gemma3-270m_dpo", metadata={"help": "Run folder."})
    learning_rate: float = field(default=5e-5, metadata={"help": "Peak learning rate."})
    per_device_train_batch_size: int = field(default=4, metadata={"help": "Pairs per step."})
    min_margin: float = field(
        default=0.5, metadata={"help": "Keep a pair only if reward(best) - reward(worst) >= this."}
    )
    beta: float = field(
        default=0.1, metadata={"help": "TRL: strength of the KL pull to the reference (SFT)."}
    )
    loss_type: list[str] = field(
        default_factory=lambda: ["sigmoid", "sft"],
        metadata={"help": "TRL DPO loss(es); [sigmoid, sft] = DPO plus NLL on the chosen answer (RPO)."},
    )
    loss_weights: list[float] | None = field(
        default=None, metadata={"help": "TRL: one weight per loss_type entry (null: all 1.0)."}
    )
    precompute_ref_log_probs: bool = field(
        default=True,
        metadata={"help": "TRL: reference log-probs once before training (one pass, not one per step)."},
    )

    def __post_init__(self) -> None:
        SamplingFields.__post_init__(self)
        TrainFields.__post_init__(self)
        LoraFields.__post_init__(self)
        check_numbers(self, {"beta": "> 0", "min_margin": ">= 0"})
        if self.loss_weights is not None and len(self.loss_weights) != len(self.loss_type):
            raise ValueError(
                f"loss_weights has {len(self.loss_weights)} entries, loss_type {len(self.loss_type)}: one per loss"
            )


@dataclass
class KTORunConfig(TrainFields, SamplingFields, LoraFields):
    """Score samples, label them desirable/undesirable, train KTO (``crossling align kto``)."""

    output_dir: str = field(default="runs/gemma3-270m_kto", metadata={"help": "Run folder."})
    learning_rate: float = field(default=5e-5, metadata={"help": "Peak learning rate."})
    per_device_train_batch_size: int = field(
        default=8, metadata={"help": "Completions per step (KTO needs > 1)."}
    )
    threshold: float | None = field(
        default=None, metadata={"help": "Reward above this = desirable; null = use the quantiles below."}
    )
    desirable_quantile: float = field(
        default=0.7, metadata={"help": "Top share counted desirable (no threshold)."}
    )
    undesirable_quantile: float = field(default=0.3, metadata={"help": "Bottom share counted undesirable."})
    beta: float = field(default=0.1, metadata={"help": "TRL: KL strength."})
    loss_type: str = field(default="kto", metadata={"help": "TRL KTO loss: kto or apo_zero_unpaired."})
    desirable_weight: float = field(default=1.0, metadata={"help": "TRL: weight of desirable examples."})
    undesirable_weight: float = field(default=1.0, metadata={"help": "TRL: weight of undesirable examples."})
    precompute_ref_log_probs: bool = field(
        default=True, metadata={"help": "TRL: reference log-probs up front."}
    )
    safety_examples: int = field(
        default=0,
        metadata={
            "help": "Self-Defence: per language (safety_languages), this many harmful seed requests → their refusal "
            "(desirable) and as many benign look-alikes → their answer (desirable) and a refusal "
            "(undesirable). Seed phrases the data build holds out for dev are never used. 0 = none."
        },
    )
    safety_seed: str = field(
        default="data/safety/seed.jsonl", metadata={"help": "Seed prompts for safety_examples."}
    )
    safety_languages: list[str] | None = field(
        default=None,
        metadata={
            "help": "Languages of the safety_examples (null: target_languages; add en to keep English safe too)."
        },
    )

    def __post_init__(self) -> None:
        SamplingFields.__post_init__(self)
        TrainFields.__post_init__(self)
        LoraFields.__post_init__(self)
        check_numbers(
            self,
            {
                "beta": "> 0",
                "desirable_weight": "> 0",
                "undesirable_weight": "> 0",
                "safety_examples": ">= 0",
            },
        )
        if self.safety_languages is not None:
            _check_langs(self.safety_languages, "safety_languages")
        if not 0 <= self.undesirable_quantile <= self.desirable_quantile <= 1:
            raise ValueError("need 0 <= undesirable_quantile <= desirable_quantile <= 1")


@dataclass
class WinRateConfig:
    """Aligned vs SFT on held-out prompts, judged twice (``crossling align win-rate CONFIG``)."""

    model: str = field(default="gemma3-270m", metadata={"help": "Base model of both adapters."})
    baseline_adapter: str | None = field(
        default="runs/sft-gemma3-270m/adapter", metadata={"help": "The SFT adapter (null: the base model)."}
    )
    candidate_adapter: str = field(
        default="runs/gemma3-270m_dpo/adapter", metadata={"help": "The aligned adapter."}
    )
    reward_model: str = field(
        default="runs/gemma3-270m_reward", metadata={"help": "The transferred RM (biased judge)."}
    )
    judge_reward_model: str | None = field(
        default=None,
        metadata={"help": "Optional RM trained on another source language (an independent judge)."},
    )
    languages: list[str] = field(
        default_factory=lambda: ["de", "fr", "ru", "zh", "sw"], metadata={"help": "Languages."}
    )
    prompts_per_language: int = field(
        default=24, metadata={"help": "Held-out NTREX prompts per language (of `split`)."}
    )
    instruction_languages: dict[str, float] = instruction_languages_field()
    split: Literal["dev", "test"] = field(
        default="test",
        metadata={
            "help": "NTREX documents the prompts come from: dev to choose between settings or runs, test to "
            "report the chosen one once (choosing on test would make its figure optimistic)."
        },
    )
    max_new_tokens: int = field(default=64, metadata={"help": "Greedy tokens per answer."})
    backend: Literal["auto", "vllm", "transformers", "llamacpp"] = field(
        default="auto", metadata={"help": "Generation backend (as the sampling's backend)."}
    )
    output_dir: str = field(
        default="results/align/win_rate", metadata={"help": "Report folder (JSON, MD, PNG)."}
    )
    best_of_n: int = field(
        default=0, metadata={"help": "Also judge best-of-n of the baseline (n samples; 0 = off)."}
    )
    sampled: int = field(
        default=0,
        metadata={"help": "Also compare n sampled answers per prompt at `temperature`, as served (0 = off)."},
    )
    temperature: float = field(
        default=0.7, metadata={"help": "Sampling temperature of best-of-n and of the sampled comparison."}
    )
    seed: int = field(default=0, metadata={"help": "Seed."})

    def __post_init__(self) -> None:
        _check_langs(self.languages, "languages")
        check_instruction_languages(self.instruction_languages)
