"""The safety contract shared by the server, /v1/moderations, the data recipes and the eval.

``SafetyFilter.check(text, role) -> Verdict``. The server only relies on what is declared here, so
any filter (the built-in one, a plug-in guard, a test stand-in) can be handed to it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

Action = Literal["allow", "flag", "block"]


@dataclass
class Verdict:
    flagged: bool  # any category over its threshold (OpenAI's `flagged`)
    action: Action  # what the policy says to do: block > flag > allow
    categories: dict[str, float] = field(default_factory=dict)  # category -> score in [0, 1]
    language: str | None = None  # BCP-47 code of the checked text, if identified
    latency_ms: float = 0.0
    flagged_categories: list[str] = field(default_factory=list)  # over threshold, highest first
    role: str = "user"  # whose text was checked: "user" (input) or "assistant" (output)
    notes: list[str] = field(default_factory=list)  # e.g. a plug-in guard that was down (fail-closed)

    def to_dict(self) -> dict:
        """JSON-ready form (response headers/fields, metrics, logs)."""
        return {
            "flagged": self.flagged,
            "action": self.action,
            "language": self.language,
            "flagged_categories": self.flagged_categories,
            "categories": self.categories,
            "latency_ms": self.latency_ms,
            "role": self.role,
            "notes": self.notes,
        }

    @property
    def blocked(self) -> bool:
        return self.action == "block"

    @property
    def top_category(self) -> str | None:
        return self.flagged_categories[0] if self.flagged_categories else None


class SafetyFilterProtocol(Protocol):
    def check(self, text: str, role: str = "user") -> Verdict: ...

    def refusal(self, language: str | None, category: str | None = None) -> str:
        """A short refusal written in ``language`` (English when unknown)."""
        ...
