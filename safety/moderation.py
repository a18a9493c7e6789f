"""``POST /v1/moderations``: OpenAI's request/response schema and the function the route calls.

Pydantic models only, plus :func:`moderate` (given any object with the safety protocol). The serve
engineer's router is a thin wrapper: parse :class:`ModerationRequest`, call :func:`moderate`, return
the :class:`ModerationResponse`. Results carry OpenAI's category names (so ``openai`` SDK clients
read ``result.categories.violence`` as usual) *and* crossling's own category ids, plus the
action/language the policy decided, as extra fields.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from safety.categories import CATEGORIES, CATEGORY_IDS, OPENAI_CATEGORIES
from safety.verdict import SafetyFilterProtocol, Verdict

log = logging.getLogger(__name__)

MODEL_NAME = "crossling-safety-1"


class ModerationInputError(ValueError):
    """The request cannot be moderated as asked (the route answers 400 with this message)."""


class TextInput(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class ModerationRequest(BaseModel):
    """OpenAI's request: ``input`` is a string, a list of strings, or a list of typed parts."""

    # unknown fields are accepted (and logged by the route) so newer clients keep working
    model_config = ConfigDict(extra="allow")
    input: str | list[str] | list[TextInput]
    model: str | None = None

    @field_validator("input")
    @classmethod
    def _not_empty(cls, v: Any) -> Any:
        if isinstance(v, list) and not v:
            raise ValueError("input must not be an empty list")
        return v

    def texts(self) -> list[str]:
        if isinstance(self.input, str):
            return [self.input]
        out: list[str] = []
        for item in self.input:
            if isinstance(item, str):
                out.append(item)
            elif item.type == "text" and item.text is not None:
                out.append(item.text)
            else:
                raise ModerationInputError(f"input type {item.type!r} is not supported (text only)")
        return out


class ModerationResult(BaseModel):
    model_config = ConfigDict(extra="allow")
    flagged: bool
    categories: dict[str, bool]
    category_scores: dict[str, float]
    category_applied_input_types: dict[str, list[str]]
    # crossling extras (ignored by clients that do not know them)
    action: str = "allow"
    language: str | None = None
    flagged_categories: list[str] = Field(default_factory=list)


class ModerationResponse(BaseModel):
    id: str
    model: str
    results: list[ModerationResult]


def to_result(verdict: Verdict) -> ModerationResult:
    """One verdict in OpenAI's shape: OpenAI names take the max score of our categories mapped to them."""
    scores = {name: 0.0 for name in OPENAI_CATEGORIES}
    flags = dict.fromkeys(OPENAI_CATEGORIES, False)
    for cat in CATEGORY_IDS:
        score = float(verdict.categories.get(cat, 0.0))
        for name in CATEGORIES[cat].openai:
            scores[name] = max(scores[name], score)
            flags[name] = flags[name] or cat in verdict.flagged_categories
    for cat in CATEGORY_IDS:  # our own ids too ("hate" is the same name in both)
        scores[cat] = max(scores.get(cat, 0.0), float(verdict.categories.get(cat, 0.0)))
        flags[cat] = flags.get(cat, False) or cat in verdict.flagged_categories
    return ModerationResult(
        flagged=verdict.flagged,
        categories=flags,
        category_scores={k: round(v, 6) for k, v in scores.items()},
        category_applied_input_types={k: ["text"] for k in scores},
        action=verdict.action,
        language=verdict.language,
        flagged_categories=verdict.flagged_categories,
    )


def moderate(request: ModerationRequest, safety: SafetyFilterProtocol) -> ModerationResponse:
    """Check each input text with ``safety`` and answer in OpenAI's schema."""
    extra = sorted((request.model_extra or {}).keys())
    if extra:
        log.info("moderations: ignoring unknown request fields %s", extra)
    results = [to_result(safety.check(text, role="user")) for text in request.texts()]
    return ModerationResponse(
        id=f"modr-{uuid.uuid4().hex}", model=request.model or MODEL_NAME, results=results
    )
