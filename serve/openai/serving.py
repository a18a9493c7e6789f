"""Serving logic shared by chat and text completions, written once against the engine protocol.

``OpenAIServing`` resolves the model name to the base model or an adapter, checks prompt and
completion limits, runs the input safety check, and runs the ``n`` choices of a request as one
:class:`Generation`: engine streams merged, output held back and checked in windows when a safety
filter is on, metrics recorded, and every unfinished engine request aborted when the client goes
away, the request times out or the filter cuts a choice. Streamed responses of both endpoints are
framed here too (:func:`sse_event`, :class:`SSEStream`), so chat and completions send the same bytes
around their chunks. Not here: HTTP routing and the JSON shapes of each endpoint (``serving_chat`` /
``serving_completion``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from pydantic import BaseModel

from safety.stream import StreamGuard, StreamStep
from serve.config import ServeConfig
from serve.engine.base import (
    Delta,
    Engine,
    EngineError,
    SamplingSettings,
    TokenLogprob,
    UnknownAdapterError,
    engine_healthy,
)
from serve.errors import APIError
from serve.metrics import ServerMetrics
from serve.openai.protocol import ModelCard, ModelList, _SamplingFields, utf8_text

log = logging.getLogger("crossling.serve")
SAFETY_HEADER = "x-crossling-safety"


@dataclass
class ChoiceEvent:
    index: int
    text: str
    token_ids: list[int]
    logprobs: list[TokenLogprob] | None
    finish_reason: str | None = None
    safety: dict | None = None  # set when the safety filter cut this choice


def verdict_info(verdict, stage: str) -> dict:
    """The verdict as clients see it (header + ``crossling_safety`` field), in the UI's keys."""
    return {
        "action": verdict.action,
        "category": verdict.top_category,
        "flagged_categories": list(verdict.flagged_categories),
        "language": verdict.language,
        "stage": stage,
    }


def safety_header(info: dict | None) -> dict[str, str]:
    return {SAFETY_HEADER: json.dumps(info, ensure_ascii=True)} if info else {}  # headers are ASCII


SSE_DONE = "data: [DONE]\n\n"


def sse_event(payload: BaseModel | dict) -> str:
    """One server-sent event, ``data: <json>\\n\\n``: every chunk and error event of both endpoints.

    Compact JSON with characters as they are (UTF-8), as OpenAI and vLLM send it: a Bengali token
    stays its bytes instead of growing into ``\\u`` escapes.
    """
    data = payload.model_dump(mode="json") if isinstance(payload, BaseModel) else payload
    return f"data: {json.dumps(data, ensure_ascii=False, separators=(',', ':'))}\n\n"


class SSEStream:
    """The body of a streamed response: each chunk; an error event if the request fails midway (the
    200 status line is already sent, so the error travels as an event, as vLLM does; *any* exception
    does, not only our own); the usage chunk when the client asked for it
    (``stream_options.include_usage``: empty ``choices``, after every other chunk, refused and failed
    requests included, as OpenAI does); then ``data: [DONE]``. ``status`` is what the metrics count:
    ``"ok"``, or the status of the error the stream ended with."""

    def __init__(
        self,
        chunks: AsyncIterator[BaseModel],
        usage_chunk: Callable[[], BaseModel] | None,
        engine: Engine | None = None,
    ) -> None:
        self.chunks, self.usage_chunk, self.engine = chunks, usage_chunk, engine
        self.status = "ok"

    async def __aiter__(self) -> AsyncIterator[str]:
        try:
            async for chunk in self.chunks:
                yield sse_event(chunk)
        except Exception as e:  # noqa: BLE001 - every failure ends the stream the same way
            error = as_api_error(e, self.engine)
            self.status = str(error.status)
            yield sse_event(error.body())
        if self.usage_chunk is not None:
            yield sse_event(self.usage_chunk())
        yield SSE_DONE


def as_api_error(e: Exception, engine: Engine | None = None) -> APIError:
    """What the client is told about a failure: our own errors as they are; an engine failure is 503
    when the engine is down (nothing will work until a restart) and 500 otherwise; anything else is
    a 500 whose details go to the log only."""
    if isinstance(e, APIError):
        return e
    if isinstance(e, EngineError) and engine is not None and not engine_healthy(engine):
        log.error("engine unavailable: %s", e)
        return engine_unavailable()
    log.error("request failed: %s", e, exc_info=e)
    if isinstance(e, EngineError):
        return APIError(500, "generation failed; see the server log", code="generation_failed")
    return APIError(500, "internal server error", code="internal_error")


def engine_unavailable() -> APIError:
    return APIError(
        503, "the model engine is not running; the server must be restarted", code="engine_unavailable"
    )


def _release(guard: StreamGuard | None, delta: Delta, final: bool) -> StreamStep:
    """What of ``delta`` may go to the client now: all of it without a filter, else what the guard
    has checked and held back long enough (token ids and logprobs travel with their text)."""
    if guard is None:
        return StreamStep(delta.text, payloads=[(delta.token_ids, delta.logprobs)])
    return guard.feed(delta.text, (delta.token_ids, delta.logprobs), final)


@dataclass
class Generation:
    """The choices of one request running on the engine."""

    serving: OpenAIServing
    request_id: str
    prompts: list[list[int]]  # one per choice
    sampling: list[SamplingSettings]
    adapter: str | None
    model: str
    started: float = field(default_factory=time.monotonic)
    first_token_at: float | None = None
    completion_tokens: dict[int, int] = field(default_factory=dict)
    finished: set[int] = field(default_factory=set)

    def choice_id(self, i: int) -> str:
        return f"{self.request_id}-{i}"

    async def events(self) -> AsyncIterator[ChoiceEvent]:
        engine, s = self.serving.engine, self.serving
        streams = [
            engine.generate(p, sp, self.adapter, self.choice_id(i))
            for i, (p, sp) in enumerate(zip(self.prompts, self.sampling, strict=True))
        ]
        guards = [None if s.safety is None else StreamGuard.from_config(s.safety) for _ in streams]
        try:
            async for i, delta in merge_streams(streams):
                if i in self.finished:  # cut by the filter: the engine may still flush a delta or two
                    continue
                if self.first_token_at is None and delta.token_ids:
                    self.first_token_at = time.monotonic()
                    s.metrics.ttft.labels(self.model).observe(self.first_token_at - self.started)
                self.completion_tokens[i] = delta.completion_tokens
                final = delta.finish_reason is not None
                guard = guards[i]
                if guard is not None and (final or guard.check_due(delta.text)):
                    step = await self._checked(guard, delta, final)
                else:
                    step = _release(guard, delta, final)
                if step.blocked:
                    info = verdict_info(step.verdict, "output")
                    s.record_block(info)
                    s.metrics.aborted.labels("safety").inc()
                    await engine.abort(self.choice_id(i))
                    self.finished.add(i)
                    yield ChoiceEvent(i, "", [], None, "content_filter", info)
                    continue
                if final:
                    self.finished.add(i)
                ids = [t for token_ids, _ in step.payloads for t in token_ids]
                lps = None if delta.logprobs is None else [lp for _, lp in step.payloads for lp in lp or []]
                if step.text or lps or final:  # ids without text yet (a split character) wait
                    finish = "stop" if delta.finish_reason == "abort" else delta.finish_reason
                    yield ChoiceEvent(i, step.text, ids, lps, finish)
        except EngineError as e:
            raise as_api_error(e, engine) from e
        finally:
            unfinished = [i for i in range(len(streams)) if i not in self.finished]
            for i in unfinished:
                await engine.abort(self.choice_id(i))
            if unfinished:
                s.metrics.aborted.labels("client_or_timeout").inc()
            s.metrics.generation_tokens.labels(self.model).inc(sum(self.completion_tokens.values()))

    async def _checked(self, guard: StreamGuard, delta: Delta, final: bool) -> StreamStep:
        """A safety check of the output, off the event loop. If the filter itself fails, the choice
        fails closed: nothing unchecked is sent (the caller's ``finally`` aborts the generation)."""
        try:
            return await asyncio.to_thread(_release, guard, delta, final)
        except Exception as e:
            log.error("output safety check failed: %s", e, exc_info=e)
            raise APIError(
                500, "the safety check of the output failed; the reply was cut", code="safety_check_failed"
            ) from e

    def usage_completion(self) -> int:
        return sum(self.completion_tokens.values())


async def merge_streams(streams: list[AsyncIterator[Delta]]) -> AsyncIterator[tuple[int, Delta]]:
    """Interleave several engine streams as their deltas arrive; closing it cancels them all."""
    if len(streams) == 1:
        async for d in streams[0]:
            yield 0, d
        return
    queue: asyncio.Queue = asyncio.Queue()
    done = object()

    async def pump(i: int, stream: AsyncIterator[Delta]) -> None:
        try:
            async for d in stream:
                await queue.put((i, d))
        except Exception as e:
            await queue.put((i, e))
        finally:
            await queue.put((i, done))

    tasks = [asyncio.create_task(pump(i, st)) for i, st in enumerate(streams)]
    try:
        remaining = len(tasks)
        while remaining:
            i, item = await queue.get()
            if item is done:
                remaining -= 1
            elif isinstance(item, Exception):
                raise item
            else:
                yield i, item
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class OpenAIServing:
    def __init__(self, engine: Engine, config: ServeConfig, metrics: ServerMetrics, safety=None) -> None:
        self.engine, self.config, self.metrics, self.safety = engine, config, metrics, safety
        self.limits = config.limits

    # --- models -----------------------------------------------------------------------------------

    def model_list(self) -> ModelList:
        base = self.config.model_name
        cards = [ModelCard(id=base, root=self.config.model)]
        cards += [ModelCard(id=name, root=path, parent=base) for name, path in self.engine.adapters.items()]
        return ModelList(data=cards)

    def resolve_adapter(self, model: str) -> str | None:
        """The adapter a ``model`` name asks for (None = the base model); 404 for unknown names."""
        if model in (self.config.model_name, self.config.model):
            return None
        if model in self.engine.adapters:
            return model
        known = ", ".join([self.config.model_name, *self.engine.adapters])
        raise APIError(
            404, f"The model `{model}` does not exist. Served: {known}", param="model", code="model_not_found"
        )

    # --- request checks ---------------------------------------------------------------------------

    def log_unknown(self, request: _SamplingFields, endpoint: str) -> None:
        unknown = request.unknown_fields()
        if unknown:
            log.warning("%s: ignoring unknown request field(s): %s", endpoint, ", ".join(unknown))

    def check_n(self, n: int) -> None:
        if n > self.limits.max_n:
            raise APIError(400, f"n={n} is over this server's limit of {self.limits.max_n}", param="n")

    def max_tokens(self, request: _SamplingFields, prompt_len: int) -> int:
        """Completion budget: the request's, within limits and the context left after the prompt."""
        if prompt_len > self.limits.max_prompt_tokens:
            raise APIError(
                400,
                f"prompt is {prompt_len} tokens; this server accepts at most {self.limits.max_prompt_tokens}",
                param="messages",
                code="context_length_exceeded",
            )
        room = self.engine.max_model_len - prompt_len
        if room < 1:
            raise APIError(
                400,
                f"prompt is {prompt_len} tokens; the model's context is {self.engine.max_model_len}",
                code="context_length_exceeded",
            )
        for name in ("max_tokens", "max_completion_tokens"):  # both, whichever of them wins
            value = getattr(request, name, None)
            if value is not None and value > self.limits.max_completion_tokens:
                raise APIError(
                    400,
                    f"{name}={value} is over this server's limit of {self.limits.max_completion_tokens}",
                    param=name,
                )
        asked = request.requested_max_tokens()
        budget = min(self.limits.max_completion_tokens, room) if asked is None else asked
        if request.min_tokens > budget:
            raise APIError(
                400,
                f"min_tokens={request.min_tokens} is over this request's completion budget of {budget} "
                "tokens (max_tokens, the server's limit and the context left after the prompt)",
                param="min_tokens",
            )
        if asked is None:
            return budget
        if asked > room:
            raise APIError(
                400,
                f"prompt ({prompt_len} tokens) + max_tokens ({asked}) exceeds the model's context of "
                f"{self.engine.max_model_len} tokens",
                param="max_tokens",
                code="context_length_exceeded",
            )
        return asked

    async def check_input(self, text: str) -> tuple[dict | None, str | None, str | None]:
        """Input safety: (verdict info, refusal text) when the filter blocks, and the user's language."""
        if self.safety is None or not text.strip():
            return None, None, None
        try:
            verdict = await asyncio.to_thread(self.safety.check, text, "user")
        except Exception as e:
            log.error("input safety check failed: %s", e, exc_info=e)
            raise APIError(500, "the safety check of the input failed", code="safety_check_failed") from e
        if not verdict.blocked:
            return None, None, verdict.language
        info = verdict_info(verdict, "input")
        self.record_block(info)
        return info, self.safety.refusal(verdict.language, verdict.top_category), verdict.language

    def check_moderation(self, texts: list[str]) -> None:
        """Bounds on one /v1/moderations request: each input costs a filter pass."""
        most, chars = self.limits.max_moderation_inputs, self.limits.max_moderation_chars
        if len(texts) > most:
            raise APIError(
                400, f"{len(texts)} inputs; this server moderates at most {most} per request", param="input"
            )
        for i, text in enumerate(texts):
            try:
                utf8_text(text)
            except ValueError as e:
                raise APIError(400, f"input[{i}] {e}", param="input") from None
        total = sum(len(t) for t in texts)
        if total > chars:
            raise APIError(
                400,
                f"inputs hold {total} characters; this server moderates at most {chars} per request",
                param="input",
            )

    def record_block(self, info: dict) -> None:
        self.metrics.safety_blocks.labels(
            info["stage"], info["language"] or "unknown", info["category"] or "unspecified"
        ).inc()

    def deadline(self, started: float) -> float:
        return started + self.limits.request_timeout_s

    def require_engine(self) -> None:
        """503 at once, before any work, when the engine has died (``/health`` says so too)."""
        if not engine_healthy(self.engine):
            raise engine_unavailable()

    def new_generation(
        self,
        request_id: str,
        prompts: list[list[int]],
        sampling: list[SamplingSettings],
        adapter: str | None,
        model: str,
    ) -> Generation:
        self.metrics.prompt_tokens.labels(model).inc(sum(len(p) for p in prompts))
        return Generation(self, request_id, prompts, sampling, adapter, model)


async def with_deadline(events: AsyncIterator, deadline: float) -> AsyncIterator:
    """Iterate ``events`` until ``deadline`` (monotonic); past it raise 504 (the caller aborts)."""
    iterator = events.__aiter__()
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            try:
                item = await asyncio.wait_for(iterator.__anext__(), remaining)
            except StopAsyncIteration:
                return
            yield item
    except (TimeoutError, asyncio.TimeoutError):  # distinct types before Python 3.11
        raise APIError(504, "request timed out; generation aborted", code="timeout") from None
    finally:
        # When the client goes away, Starlette's cancel scope can interrupt wait_for while it still
        # waits for the cancelled step to wind down: the events are then still running in that step,
        # which closes them itself (their `finally` aborts the engine requests). aclose() would raise
        # "asynchronous generator is already running" over the cancellation (seen under load).
        if not getattr(iterator, "ag_running", False):
            await iterator.aclose()


__all__ = [
    "UnknownAdapterError",
    "OpenAIServing",
    "Generation",
    "ChoiceEvent",
    "with_deadline",
    "sse_event",
    "SSEStream",
    "as_api_error",
    "SSE_DONE",
]
