"""OpenAI's request/response schemas for /v1/chat/completions, /v1/completions and /v1/models.

Pydantic models only; they own their conversions (``to_sampling``). Unknown request fields are
accepted (clients with newer fields must not break) and reported by ``unknown_fields()`` so the
serving layer can log them. Not here: limits, auth, engines.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)

from serve.engine.base import SamplingSettings

# OpenAI documents `seed` as a 64-bit signed integer; both engines reduce it to 63 bits (`to_sampling`)
SEED_MIN, SEED_MAX = -(2**63), 2**63 - 1
MAX_STOP_SEQUENCES = 4


def random_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def utf8_text(value: str) -> str:
    """JSON's ``\\ud800`` escapes decode to lone surrogates, which no tokenizer can encode: say so."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(
            f"is not valid UTF-8 text: a lone surrogate (\\u{ord(value[e.start]):04x}) at character {e.start}"
        ) from None
    return value


def _integral(value: Any) -> Any:
    """JSON Schema counts 2.0 as an integer: so does the server (strict mode would refuse it)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


# Integers as JSON Schema means them: whole numbers, never strings or booleans (the models are strict).
# The bound comes before the validator: after it, pydantic would write the bound as an unknown key.
Integral = BeforeValidator(_integral)
PositiveInt = Annotated[int, Field(ge=1), Integral]
NonNegativeInt = Annotated[int, Field(ge=0), Integral]
Seed = Annotated[int, Field(ge=SEED_MIN, le=SEED_MAX), Integral]
TopLogprobs = Annotated[int, Field(ge=0, le=20), Integral]
Text = Annotated[str, AfterValidator(utf8_text)]
# An empty stop string would end every choice before its first token: refused, not ignored silently.
StopText = Annotated[str, Field(min_length=1), AfterValidator(utf8_text)]
TokenId = NonNegativeInt  # the upper bound is the served tokenizer's (documented per server)


class _Request(BaseModel):
    # strict: JSON types as documented ("1" is no number, 0 no boolean), as the OpenAPI document says
    model_config = ConfigDict(extra="allow", strict=True)

    def unknown_fields(self) -> list[str]:
        return sorted((self.model_extra or {}).keys())


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    include_usage: bool = False


class _SamplingFields(_Request):
    """The fields chat and text completions share. Upper bounds that are the server's own limits
    (``max_tokens``, ``n``, ``min_tokens``) are checked by the serving layer and written into the
    OpenAPI document per server (``serve.openapi``)."""

    model: str
    n: PositiveInt = 1
    # some clients send null for "the default": allowed, and documented as allowed
    temperature: float | None = Field(1.0, ge=0.0, le=2.0)
    top_p: float | None = Field(1.0, gt=0.0, le=1.0)
    max_tokens: PositiveInt | None = None
    stop: StopText | Annotated[list[StopText], Field(max_length=MAX_STOP_SEQUENCES)] | None = Field(
        None, description="Up to 4 non-empty strings; the text stops before the first one generated."
    )
    seed: Seed | None = None
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None
    # vLLM's extensions, which its benchmark clients send
    ignore_eos: bool = False
    min_tokens: NonNegativeInt = Field(
        0, description="No end of sequence before this many tokens (<= max_tokens)."
    )

    @field_validator("temperature", "top_p", mode="after")
    @classmethod
    def _none_is_default(cls, v: float | None) -> float:
        return 1.0 if v is None else v

    def stop_list(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])

    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    def requested_max_tokens(self) -> int | None:
        return self.max_tokens

    def logprobs_k(self) -> int | None:
        return None

    def to_sampling(self, max_tokens: int, choice: int = 0) -> SamplingSettings:
        """Engine settings for choice ``choice``; seeds differ per choice so n>1 choices differ."""
        return SamplingSettings(
            max_tokens=max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            stop=self.stop_list(),
            # seed + choice may leave int64; engines take a non-negative 63-bit seed
            seed=None if self.seed is None else (self.seed + choice) % 2**63,
            presence_penalty=self.presence_penalty,
            frequency_penalty=self.frequency_penalty,
            logprobs=self.logprobs_k(),
            ignore_eos=self.ignore_eos,
            min_tokens=self.min_tokens,
        )


# --- chat ---------------------------------------------------------------------------------------


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    type: Literal["text"] = Field(description="Only text parts are served.")
    text: Text


ROLES = ("system", "developer", "user", "assistant", "tool")


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Text | list[ContentPart] | None = None
    name: str | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content)

    def to_template(self) -> dict[str, str]:
        # 'developer' is OpenAI's newer name for 'system'; our templates know system/user/assistant
        role = {"developer": "system", "tool": "user"}.get(self.role, self.role)
        return {"role": role, "content": self.text()}


class ChatCompletionRequest(_SamplingFields):
    # top_logprobs needs logprobs: true, said in the schema too (so generated clients and fuzzers know)
    model_config = ConfigDict(
        json_schema_extra={
            "if": {"properties": {"top_logprobs": {"type": "integer"}}, "required": ["top_logprobs"]},
            "then": {"properties": {"logprobs": {"const": True}}, "required": ["logprobs"]},
        }
    )
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: PositiveInt | None = None
    logprobs: bool | None = False
    top_logprobs: TopLogprobs | None = Field(None, description="Needs logprobs: true.")

    @field_validator("top_logprobs")
    @classmethod
    def _needs_logprobs(cls, v: int | None, info: ValidationInfo) -> int | None:
        if v is not None and not info.data.get("logprobs"):
            raise ValueError("needs logprobs: true")
        return v

    def requested_max_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    def logprobs_k(self) -> int | None:
        return (self.top_logprobs or 0) if self.logprobs else None

    def template_messages(self) -> list[dict[str, str]]:
        return [m.to_template() for m in self.messages]

    def user_text(self) -> str:
        """What the safety filter reads on input: the latest user turn."""
        users = [m.text() for m in self.messages if m.role == "user"]
        return users[-1] if users else self.messages[-1].text()


class ChatLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None = None


class ChatLogprobToken(ChatLogprob):
    top_logprobs: list[ChatLogprob] = Field(default_factory=list)


class ChatLogprobs(BaseModel):
    content: list[ChatLogprobToken] | None = None


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None = None


class ChatChoice(BaseModel):
    model_config = ConfigDict(extra="allow")
    index: int
    message: AssistantMessage
    logprobs: ChatLogprobs | None = None
    finish_reason: str | None = None


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0

    @classmethod
    def of(cls, prompt: int, completion: int) -> Usage:
        return cls(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


class ChatCompletionResponse(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[ChatChoice]
    usage: Usage


class DeltaMessage(BaseModel):
    role: str | None = None
    content: str | None = None


class ChatChunkChoice(BaseModel):
    model_config = ConfigDict(extra="allow")
    index: int
    delta: DeltaMessage
    logprobs: ChatLogprobs | None = None
    finish_reason: str | None = None


class ChatCompletionChunk(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChatChunkChoice]
    usage: Usage | None = None


# --- completions ----------------------------------------------------------------------------------


def _kind(x: Any) -> str:
    if isinstance(x, bool):
        return "other"
    if isinstance(x, int) or isinstance(x, float) and x.is_integer():
        return "id"
    return {str: "text", list: "ids"}.get(type(x), "other")


def _prompt_shape(v: Any) -> Any:
    """Clear messages for the shapes the prompt union does not cover (pydantic would list a failure
    per union member), before pydantic checks the details."""
    if isinstance(v, str) or not isinstance(v, list):
        return v
    if not v:
        raise ValueError("must not be empty")
    kinds = {_kind(x) for x in v}
    if len(kinds) > 1 or "other" in kinds:
        raise ValueError(
            "must be a string, a list of strings, a list of token ids or a list of token-id lists"
        )
    for i, x in enumerate(v):
        if isinstance(x, list) and not x:
            raise ValueError(f"prompt[{i}] is an empty list of token ids")
        for t in x if isinstance(x, list) else [x]:
            if _kind(t) == "id" and t < 0:
                raise ValueError(f"prompt[{i}] holds token id {int(t)}; token ids are >= 0")
    return v


class CompletionRequest(_SamplingFields):
    # echo with logprobs would need prompt logprobs, which neither engine gives: said in the schema too
    model_config = ConfigDict(
        json_schema_extra={
            "not": {
                "required": ["echo", "logprobs"],
                "properties": {"echo": {"const": True}, "logprobs": {"type": "integer"}},
            }
        }
    )
    prompt: (
        Text
        | Annotated[list[Text], Field(min_length=1)]
        | Annotated[list[TokenId], Field(min_length=1)]
        | Annotated[list[Annotated[list[TokenId], Field(min_length=1)]], Field(min_length=1)]
    ) = Field(description="Text, texts, token ids (0 <= id < vocabulary size) or lists of token ids.")
    logprobs: TopLogprobs | None = None
    echo: bool | None = False

    @field_validator("prompt", mode="before")
    @classmethod
    def _prompt(cls, v: Any) -> Any:
        return _prompt_shape(v)

    def logprobs_k(self) -> int | None:
        return self.logprobs

    def prompts(self) -> list[str | list[int]]:
        """One entry per prompt: text, or token ids as sent."""
        p = self.prompt
        if isinstance(p, str):
            return [p]
        if all(isinstance(x, int) for x in p):
            return [list(p)]  # type: ignore[arg-type]
        return list(p)  # type: ignore[arg-type]


class CompletionLogprobs(BaseModel):
    tokens: list[str] = Field(default_factory=list)
    token_logprobs: list[float | None] = Field(default_factory=list)
    top_logprobs: list[dict[str, float] | None] = Field(default_factory=list)
    text_offset: list[int] = Field(default_factory=list)


class CompletionChoice(BaseModel):
    model_config = ConfigDict(extra="allow")
    index: int
    text: str
    logprobs: CompletionLogprobs | None = None
    finish_reason: str | None = None


class CompletionResponse(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None


# --- models + errors ------------------------------------------------------------------------------


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = Field(default_factory=lambda: int(time.time()))
    owned_by: str = "crossling"
    root: str | None = None
    parent: str | None = None


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorInfo(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | int | None = None


class ErrorResponse(BaseModel):
    error: ErrorInfo
