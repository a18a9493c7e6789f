"""crossling's multilingual safety filter: ``SafetyFilter.check(text, role) -> Verdict``, with no web code.

The server (input and streamed output), ``/v1/moderations``, the data recipes (refusal rows) and the
evaluation all use this one filter and its refusals, so the tuned model, the served filter and the
report say no the same way in the user's language. Stages: normalisation (``safety.normalize``), the
n-gram hazard classifier (``safety.classifier``), the fine-tuned guard model (``safety.guard_model``,
the default stage for user input), the older frozen-encoder stage (``safety.semantic``) and optional
plug-in guards (``safety.guards``); the policy is ``SafetyConfig`` (``configs/safety/default.yaml``).
Training data and commands: ``crossling safety build-seed | import-public | train | train-guard |
train-semantic | check``.
"""

from safety.categories import CATEGORIES, CATEGORY_IDS, OPENAI_CATEGORIES, Category
from safety.config import GuardConfig, GuardModelConfig, SafetyConfig, SemanticConfig
from safety.filter import SafetyFilter
from safety.moderation import ModerationRequest, ModerationResponse, moderate
from safety.normalize import normalize
from safety.refusals import refusal_text
from safety.stream import StreamGuard, StreamStep
from safety.verdict import SafetyFilterProtocol, Verdict

__all__ = [
    "CATEGORIES",
    "CATEGORY_IDS",
    "OPENAI_CATEGORIES",
    "Category",
    "GuardConfig",
    "GuardModelConfig",
    "ModerationRequest",
    "ModerationResponse",
    "SafetyConfig",
    "SafetyFilter",
    "SafetyFilterProtocol",
    "SemanticConfig",
    "StreamGuard",
    "StreamStep",
    "Verdict",
    "moderate",
    "normalize",
    "refusal_text",
]
