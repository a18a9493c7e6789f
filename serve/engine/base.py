"""The engine protocol the API is written against, and the small pieces both engines share.

An engine turns one prompt (token ids) + :class:`SamplingSettings` + an optional adapter name into
an async stream of :class:`Delta` s, and can ``abort`` a request by id; an engine that can die while
the server runs (a worker thread, a subprocess) also says whether it is ``healthy()``, which
``/health`` reports and the API checks before taking a request. The API layer never knows which
engine runs. Not here: HTTP, auth, limits, safety (those live in ``serve.openai`` / ``serve.app``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

FinishReason = Literal["stop", "length", "abort"]


class EngineError(Exception):
    """The engine could not run a request (bad adapter, dead engine, ...)."""


class UnknownAdapterError(EngineError):
    pass


class EngineDeadError(EngineError):
    """The engine stopped while the server runs (its worker or process died); only a restart helps."""


@dataclass
class SamplingSettings:
    """Per-choice sampling, in OpenAI's terms (the API's protocol models build it)."""

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logprobs: int | None = None  # None: no logprobs; k >= 0: chosen token + k alternatives
    ignore_eos: bool = False  # vLLM's extension: run to max_tokens (benchmarks)
    min_tokens: int = 0  # vLLM's extension: no end-of-sequence before this many tokens

    @property
    def greedy(self) -> bool:
        return self.temperature <= 1e-5


@dataclass
class TokenLogprob:
    token: str
    token_id: int
    logprob: float
    top: list[tuple[str, int, float]] = field(default_factory=list)  # (token, id, logprob), best first


@dataclass
class Delta:
    """New output since the last delta of one request; counts are cumulative and exact."""

    text: str
    token_ids: list[int]
    finish_reason: FinishReason | None = None
    logprobs: list[TokenLogprob] | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0


@runtime_checkable
class Engine(Protocol):
    """What every engine provides. ``tokenizer`` is a Hugging Face tokenizer with a chat template."""

    tokenizer: object
    max_model_len: int
    adapters: dict[str, str]

    async def start(self) -> None: ...

    def generate(
        self, prompt_token_ids: list[int], sampling: SamplingSettings, adapter: str | None, request_id: str
    ) -> AsyncIterator[Delta]: ...

    async def abort(self, request_id: str) -> None: ...

    async def shutdown(self) -> None: ...


def engine_healthy(engine: object) -> bool:
    """``engine.healthy()`` where the engine has it (optional in the protocol), else True."""
    healthy = getattr(engine, "healthy", None)
    return bool(healthy()) if callable(healthy) else True


def check_request(ready: bool, adapter: str | None, adapters) -> None:
    """What every engine checks before generating: it was started and knows the adapter asked for."""
    if not ready:
        raise EngineError("engine not started")
    if adapter is not None and adapter not in adapters:
        raise UnknownAdapterError(f"unknown adapter {adapter!r}")


def render_chat(tokenizer, messages: list[dict]) -> list[int]:
    """Chat messages → prompt token ids through the model's own chat template.

    The template writes ``<bos>`` itself, so the tokenizer must not add a second one.
    """
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def encode_text(tokenizer, text: str) -> list[int]:
    """A raw completion prompt → token ids, with ``<bos>`` (Gemma babbles without it)."""
    return tokenizer(text)["input_ids"]


class StopMatcher:
    """Cuts generated text at the first stop string without ever showing a piece of one.

    Text that might be the start of a stop string is held back until the next piece proves
    otherwise (vLLM does the same), so stop strings never leak into a stream.
    """

    def __init__(self, stops: list[str]) -> None:
        self.stops = [s for s in stops if s]
        self.hold = max((len(s) for s in self.stops), default=1) - 1
        self.text = ""  # all text so far
        self.sent = 0  # characters released

    def feed(self, piece: str, final: bool = False) -> tuple[str, bool]:
        """Add new text; return (text safe to release, whether a stop string was hit)."""
        start = max(0, len(self.text) - self.hold)
        self.text += piece
        hits = [i for i in (self.text.find(s, start) for s in self.stops) if i >= 0]
        if hits:
            cut = min(hits)
            out, self.sent = self.text[self.sent : cut], cut
            return out, True
        upto = len(self.text) if final else len(self.text) - self._open_prefix()
        upto = max(upto, self.sent)
        out, self.sent = self.text[self.sent : upto], upto
        return out, False

    def _open_prefix(self) -> int:
        """Length of the longest tail of the text that a stop string starts with (held back)."""
        for k in range(min(self.hold, len(self.text) - self.sent), 0, -1):
            tail = self.text[-k:]
            if any(s.startswith(tail) for s in self.stops):
                return k
        return 0


class IncrementalDecoder:
    """Token ids → text pieces, holding back bytes of a character split across tokens."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.sent = ""

    def add(self, token_id: int) -> str:
        self.ids.append(token_id)
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if text.endswith("\ufffd"):  # an incomplete UTF-8 sequence: wait for the rest
            return ""
        piece = text[len(self.sent) :] if text.startswith(self.sent) else ""
        self.sent = text
        return piece
