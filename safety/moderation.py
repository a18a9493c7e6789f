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
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from safety.categories import CATEGORIES, CATEGORY_IDS, OPENAI_CATEGORIES
from safety.verdict import SafetyFilterProtocol, Verdict

log = logging.getLogger(__name__)

MODEL_NAME = "crossling-safety-1"


class ModerationInputError(ValueError):
    """The request cannot be moderated as asked (the route answers 400 with this message)."""


def _documented_as_string(schema: dict) -> None:
    """``text`` parses as optional (a missing one gets a clear 400) but is documented as a string."""
    schema.pop("anyOf", None)
    schema["type"] = "string"


class TextInput(BaseModel):
    # Any part parses, so that the route answers other types and a missing text with a clear 400
    # (ModerationInputError); the schema documents what is served: text parts with their text.
    model_config = ConfigDict(extra="allow", json_schema_extra={"required": ["type", "text"]})
    type: str = Field(
        description="Only `text` parts are moderated here.", json_schema_extra={"enum": ["text"]}
    )
    text: str | None = Field(None, json_schema_extra=_documented_as_string)


class ModerationRequest(BaseModel):
    """OpenAI's request: ``input`` is a string, a list of strings, or a list of text parts. How many
    inputs and characters one request may hold is the server's limit (``LimitsConfig``)."""

    # unknown fields are accepted (and logged by the route) so newer clients keep working
    model_config = ConfigDict(extra="allow")
    input: str | Annotated[list[str], Field(min_length=1)] | Annotated[list[TextInput], Field(min_length=1)]
    model: str | None = None

    @field_validator("input", mode="before")
    @classmethod
    def _not_empty(cls, v: Any) -> Any:
        if isinstance(v, list) and not v:  # one clear message instead of one per union member
            raise ValueError("must not be an empty list")
        return v

    def texts(self) -> list[str]:
        if isinstance(self.input, str):
            return [self.input]
        out: list[str] = []
        for item in self.input:
            if isinstance(item, str):
                out.append(item)
            elif item.type != "text":
                raise ModerationInputError(f"input type {item.type!r} is not supported (text only)")
            elif item.text is None:
                raise ModerationInputError("a text part needs its `text`")
            else:
                out.append(item.text)
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
