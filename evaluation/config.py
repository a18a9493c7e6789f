"""The eval run config: which models (or endpoints) to compare, which tasks, and how many samples.

Loaded with ``crossling.config.load_config`` from ``configs/eval/*.yaml``; every field has help text,
which ``crossling eval run --help`` prints. Sample counts are small by default so the demo eval of
three models fits in ~10 minutes on 2 CPU cores; raise them for a real measurement.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from crossling.languages import DEMO_LANGUAGES, LANGUAGES
from evaluation.tasks import TASKS
from evaluation.win_rate import parse_pairs

TASK_NAMES = tuple(TASKS)  # the registry decides which tasks exist (evaluation/tasks/__init__.py)


def _help(text: str, **kw):
    return field(metadata={"help": text}, **kw)


@dataclass
class ModelSpec:
    name: str = _help("label in the report (base, sft, dpo, ...)")
    model: str = _help("model name/path (local) or the served model name (endpoint)", default="gemma3-270m")
    adapter: str | None = _help(
        "PEFT adapter folder (local) or served adapter name (endpoint; sent as `model`)", default=None
    )
    base_url: str | None = _help("OpenAI-compatible endpoint, e.g. http://localhost:8000/v1", default=None)
    api_key: str | None = _help("API key for the endpoint (else $OPENAI_API_KEY)", default=None)
    backend: str = _help(
        "auto | transformers | vllm | llamacpp | endpoint (auto: endpoint if base_url)", default="auto"
    )

    def __post_init__(self) -> None:
        if self.backend not in ("auto", "transformers", "vllm", "llamacpp", "endpoint"):
            raise ValueError(f"model {self.name!r}: backend must be auto|transformers|vllm|llamacpp|endpoint")


@dataclass
class EvalConfig:
    name: str = _help("run name: results go to <output_dir>/<name>/", default="default")
    output_dir: str = _help("parent folder of the results", default="results")
    models: list[ModelSpec] = _help(
        "models to compare, each {name, model, adapter, base_url, ...}",
        default_factory=lambda: [ModelSpec(name="base")],
    )
    skip_missing_adapters: bool = _help(
        "leave out (and say so in the report) models whose adapter folder does not exist, instead of failing",
        default=False,
    )
    tasks: list[str] = _help(
        f"tasks to run, from {', '.join(TASK_NAMES)}",
        default_factory=lambda: [t for t in TASK_NAMES if t != "held_out"],
    )
    languages: list[str] = _help("languages (BCP-47 codes)", default_factory=lambda: list(DEMO_LANGUAGES))

    fidelity_prompts: str = _help(
        "held-out open prompts (JSONL)", default="data/eval_prompts/open_prompts.jsonl"
    )
    fidelity_native: int = _help("native prompts per language (asked and answered in it)", default=3)
    fidelity_cross: int = _help(
        "cross prompts per language (ask in A, answer in B; half en→A, half A→en), 0..12", default=1
    )
    fidelity_max_new_tokens: int = _help("tokens generated per open prompt", default=80)

    translation_directions: list[str] = _help("en-xx and/or xx-en", default_factory=lambda: ["en-xx"])
    translation_shots: list[int] = _help(
        "0 and/or 1 (1-shot example from NTREX dev)", default_factory=lambda: [0]
    )
    translation_sentences: int = _help("NTREX test sentences per language and direction", default=12)
    translation_max_new_tokens: int = _help("tokens generated per translation", default=96)

    mgsm_variants: list[str] = _help(
        "direct, native_cot, en_cot (lm-eval: mgsm_direct_<lang>, ...)", default_factory=lambda: ["direct"]
    )
    mgsm_problems: int = _help("MGSM test problems per language (of 250)", default=10)
    mgsm_shots: int = _help("few-shot exemplars as earlier chat turns (0..8)", default=0)
    mgsm_max_new_tokens: int = _help("tokens for the chain-of-thought variants", default=256)
    mgsm_direct_max_new_tokens: int = _help("tokens for mgsm_direct (just the number)", default=32)

    safety_languages: list[str] = _help(
        "MultiJail languages (en zh it vi ar ko th bn sw jv)",
        default_factory=lambda: ["en", "zh", "ar", "bn", "sw"],
    )
    safety_prompts: str = _help("MultiJail dev CSV (evaluation only)", default="data/eval/multijail_dev.csv")
    safety_per_language: int = _help("harmful prompts per language", default=10)
    safety_benign_per_language: int = _help("benign prompts per language (over-refusal)", default=3)
    safety_filter: str | None = _help(
        "auto: crossling's safety.SafetyFilter with the shipped policy (configs/safety/default.yaml); "
        "none: no filter; module:attr: your own filter (an object with check(text, role), or a class "
        "or factory making one)",
        default="auto",
    )
    safety_max_new_tokens: int = _help("tokens generated per safety prompt", default=64)

    held_out_data: str = _help(
        "held_out task: a built dataset folder (its dev.jsonl), a JSONL of SFT rows, or the safety seed "
        "(data/safety/seed.jsonl: its dev phrases as safety rows)",
        default="data/built/default",
    )
    held_out_per_language: int = _help("held_out task: rows per language", default=40)
    held_out_max_new_tokens: int = _help("held_out task: tokens generated per row", default=64)

    reward_report: str | None = _help(
        "align's reward-transfer report JSON (per-language accuracy); read if it exists",
        default="runs/gemma3-270m_reward/transfer.json",
    )

    win_rates: list[str] = _help(
        "paired win rates CANDIDATE:BASELINE (model names) on the translation task's prompts, judged by "
        "fidelity x chrF, with bootstrap intervals (no extra generation), e.g. [kto:sft]",
        default_factory=list,
    )
    win_rate_reward_model: str | None = _help(
        "also judge the win rates with this (transferred) reward model folder; biased for aligned models",
        default=None,
    )
    win_rate_report: str | None = _help(
        "align's standalone win-rate report (win_rate.json of `crossling align win-rate`; its .md table "
        "is embedded) if it exists",
        default=None,
    )

    temperature: float = _help("sampling temperature (0 = greedy, the default for evaluation)", default=0.0)
    seed: int = _help("sampling seed", default=0)
    cache_dir: str | None = _help(
        "generation cache folder (default ~/.cache/crossling/generations; off)", default=None
    )
    concurrency: int = _help("parallel requests for endpoint models", default=8)
    batch_size: int = _help(
        "prompts per batch for the transformers backend (CPU decoding is memory-bound: bigger is faster)",
        default=32,
    )

    def __post_init__(self) -> None:
        unknown = [t for t in self.tasks if t not in TASK_NAMES]
        if unknown:
            raise ValueError(f"unknown task(s) {unknown}; known: {', '.join(TASK_NAMES)}")
        bad = [lang for lang in [*self.languages, *self.safety_languages] if lang not in LANGUAGES]
        if bad:
            raise ValueError(f"unknown language code(s) {bad}")
        names = [m.name for m in self.models]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"models need distinct names, got {names}")
        if self.win_rates:
            parse_pairs(self.win_rates, names)
            if "translation" not in self.tasks:
                raise ValueError("win_rates compare answers of the translation task: add it to tasks")
        if not 0 <= self.fidelity_cross <= 12:
            raise ValueError("fidelity_cross must be 0..12")
