"""``POST /v1/completions``: raw prompts (text or token ids) → engine → OpenAI text_completion."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from serve.engine.base import TokenLogprob, encode_text
from serve.errors import APIError
from serve.openai.protocol import (
    CompletionChoice,
    CompletionLogprobs,
    CompletionRequest,
    CompletionResponse,
    Usage,
    random_id,
)
from serve.openai.serving import Generation, OpenAIServing, SSEStream, with_deadline


def completion_logprobs(items: list[TokenLogprob] | None, offset: int) -> CompletionLogprobs | None:
    if items is None:
        return None
    out = CompletionLogprobs()
    for t in items:
        out.tokens.append(t.token)
        out.token_logprobs.append(t.logprob)
        out.top_logprobs.append({s: lp for s, _, lp in t.top})
        out.text_offset.append(offset)
        offset += len(t.token)
    return out


class CompletionPlan:
    """A validated completions request, ready to run: prompt ids per choice, budget, maybe a refusal."""

    def __init__(self, serving: OpenAIServing, request: CompletionRequest) -> None:
        serving.log_unknown(request, "completions")
        prompts = request.prompts()
        serving.check_n(request.n * len(prompts))
        if request.echo and request.logprobs is not None:
            raise APIError(400, "echo with logprobs (prompt logprobs) is not supported", param="echo")
        self.request = request
        self.adapter = serving.resolve_adapter(request.model)
        tok = serving.engine.tokenizer
        vocab = len(tok)
        for i, p in enumerate(prompts):  # before anything decodes them: the tokenizer overflows
            bad = next((t for t in p if not 0 <= t < vocab), None) if isinstance(p, list) else None
            if bad is not None:
                where = "prompt" if isinstance(request.prompt[0], int) else f"prompt[{i}]"
                raise APIError(
                    400, f"{where} holds token id {bad}; this model's ids are 0..{vocab - 1}", param="prompt"
                )
        self.prompt_ids = [p if isinstance(p, list) else encode_text(tok, p) for p in prompts]
        self.prompt_texts = [
            tok.decode(p, skip_special_tokens=True) if isinstance(p, list) else p for p in prompts
        ]
        self.max_tokens = min(serving.max_tokens(request, len(ids)) for ids in self.prompt_ids)
        self.safety: dict | None = None  # set with the refusal when the input check blocks
        self.refusal: str | None = None
        self.id = random_id("cmpl")
        self.created = int(time.time())
        n = request.n
        # choice i belongs to prompt i // n, as in OpenAI's and vLLM's responses
        self.choice_prompts = [self.prompt_ids[i // n] for i in range(n * len(prompts))]
        self.gen: Generation | None = None  # set once the request goes to the engine

    def generation(self, serving: OpenAIServing) -> Generation:
        r = self.request
        self.gen = serving.new_generation(
            self.id,
            self.choice_prompts,
            [r.to_sampling(self.max_tokens, i % r.n) for i in range(len(self.choice_prompts))],
            self.adapter,
            r.model,
        )
        return self.gen

    def usage(self) -> Usage:
        """Prompt tokens, and the tokens generated so far (none for a refused request)."""
        completion = self.gen.usage_completion() if self.gen else 0
        return Usage.of(sum(len(p) for p in self.prompt_ids), completion)

    def chunk(self, choices: list[CompletionChoice], usage: Usage | None = None) -> CompletionResponse:
        return CompletionResponse(
            id=self.id, created=self.created, model=self.request.model, choices=choices, usage=usage
        )

    def echo(self, i: int) -> str:
        return self.prompt_texts[i // self.request.n] if self.request.echo else ""


def refused(plan: CompletionPlan, i: int) -> CompletionChoice:
    return CompletionChoice(
        index=i, text=plan.refusal or "", finish_reason="content_filter", crossling_safety=plan.safety
    )


async def completion_full(
    serving: OpenAIServing, plan: CompletionPlan, deadline: float
) -> CompletionResponse:
    k = len(plan.choice_prompts)
    if plan.refusal is not None:
        choices = [refused(plan, i) for i in range(k)]
        return CompletionResponse(
            id=plan.id, created=plan.created, model=plan.request.model, choices=choices, usage=plan.usage()
        )
    texts = [plan.echo(i) for i in range(k)]
    finish: list[str | None] = [None] * k
    lps: list[list[TokenLogprob] | None] = [
        [] if plan.request.logprobs is not None else None for _ in range(k)
    ]
    safety: list[dict | None] = [None] * k
    async for ev in with_deadline(plan.generation(serving).events(), deadline):
        texts[ev.index] += ev.text
        if ev.logprobs and lps[ev.index] is not None:
            lps[ev.index] += ev.logprobs
        finish[ev.index] = ev.finish_reason or finish[ev.index]
        safety[ev.index] = ev.safety or safety[ev.index]
    choices = [
        CompletionChoice(
            index=i,
            text=texts[i],
            logprobs=completion_logprobs(lps[i], 0),
            finish_reason=finish[i],
            **({"crossling_safety": safety[i]} if safety[i] else {}),
        )
        for i in range(k)
    ]
    return CompletionResponse(
        id=plan.id, created=plan.created, model=plan.request.model, choices=choices, usage=plan.usage()
    )


def completion_stream(serving: OpenAIServing, plan: CompletionPlan, deadline: float) -> SSEStream:
    """SSE: the echoed prompts if asked, text chunks, finish chunks, usage if asked, ``[DONE]``."""
    usage = (lambda: plan.chunk([], usage=plan.usage())) if plan.request.include_usage() else None
    return SSEStream(completion_chunks(serving, plan, deadline), usage, serving.engine)


async def completion_chunks(
    serving: OpenAIServing, plan: CompletionPlan, deadline: float
) -> AsyncIterator[CompletionResponse]:
    k = len(plan.choice_prompts)
    if plan.refusal is not None:
        for i in range(k):
            yield plan.chunk([refused(plan, i)])
        return
    if plan.request.echo:
        for i in range(k):
            yield plan.chunk([CompletionChoice(index=i, text=plan.echo(i))])
    offsets = [0] * k
    async for ev in with_deadline(plan.generation(serving).events(), deadline):
        extra = {"crossling_safety": ev.safety} if ev.safety else {}
        choice = CompletionChoice(
            index=ev.index,
            text=ev.text,
            finish_reason=ev.finish_reason,
            logprobs=completion_logprobs(ev.logprobs, offsets[ev.index]),
            **extra,
        )
        yield plan.chunk([choice])
        offsets[ev.index] += len(ev.text)
