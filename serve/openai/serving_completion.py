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
from serve.openai.serving import OpenAIServing, with_deadline


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
    def __init__(self, serving: OpenAIServing, request: CompletionRequest) -> None:
        serving.log_unknown(request, "completions")
        prompts = request.prompts()
        serving.check_n(request.n * len(prompts))
        if request.echo and request.logprobs is not None:
            raise APIError(400, "echo with logprobs (prompt logprobs) is not supported", param="echo")
        self.request = request
        self.adapter = serving.resolve_adapter(request.model)
        tok = serving.engine.tokenizer
        self.prompt_ids = [p if isinstance(p, list) else encode_text(tok, p) for p in prompts]
        self.prompt_texts = [
            tok.decode(p, skip_special_tokens=True) if isinstance(p, list) else p for p in prompts
        ]
        vocab = len(tok)
        for ids in self.prompt_ids:
            if any(not 0 <= t < vocab for t in ids):
                raise APIError(400, f"prompt token ids must be in 0..{vocab - 1}", param="prompt")
        self.max_tokens = min(serving.max_tokens(request, len(ids)) for ids in self.prompt_ids)
        self.safety: dict | None = None  # set with the refusal when the input check blocks
        self.refusal: str | None = None
        self.id = random_id("cmpl")
        self.created = int(time.time())
        n = request.n
        # choice i belongs to prompt i // n, as in OpenAI's and vLLM's responses
        self.choice_prompts = [self.prompt_ids[i // n] for i in range(n * len(prompts))]
        self.gen = serving.new_generation(
            self.id,
            self.choice_prompts,
            [request.to_sampling(self.max_tokens, i % n) for i in range(len(self.choice_prompts))],
            self.adapter,
            request.model,
        )

    def usage(self) -> Usage:
        return Usage.of(sum(len(p) for p in self.prompt_ids), self.gen.usage_completion())

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
        usage = Usage.of(sum(len(p) for p in plan.prompt_ids), 0)
        choices = [refused(plan, i) for i in range(k)]
        return CompletionResponse(
            id=plan.id, created=plan.created, model=plan.request.model, choices=choices, usage=usage
        )
    texts = [plan.echo(i) for i in range(k)]
    finish: list[str | None] = [None] * k
    lps: list[list[TokenLogprob] | None] = [
        [] if plan.request.logprobs is not None else None for _ in range(k)
    ]
    safety: list[dict | None] = [None] * k
    async for ev in with_deadline(plan.gen.events(), deadline):
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


async def completion_stream(
    serving: OpenAIServing, plan: CompletionPlan, deadline: float
) -> AsyncIterator[str]:
    r = plan.request

    def chunk(choices, usage=None) -> str:
        c = CompletionResponse(id=plan.id, created=plan.created, model=r.model, choices=choices, usage=usage)
        return "data: " + c.model_dump_json() + "\n\n"

    offsets = [0] * len(plan.choice_prompts)
    if plan.refusal is not None:
        for i in range(len(plan.choice_prompts)):
            yield chunk([refused(plan, i)])
        yield "data: [DONE]\n\n"
        return
    try:
        if r.echo:
            for i in range(len(plan.choice_prompts)):
                yield chunk([CompletionChoice(index=i, text=plan.echo(i))])
        async for ev in with_deadline(plan.gen.events(), deadline):
            extra = {"crossling_safety": ev.safety} if ev.safety else {}
            yield chunk(
                [
                    CompletionChoice(
                        index=ev.index,
                        text=ev.text,
                        finish_reason=ev.finish_reason,
                        logprobs=completion_logprobs(ev.logprobs, offsets[ev.index]),
                        **extra,
                    )
                ]
            )
            offsets[ev.index] += len(ev.text)
    except APIError as e:
        import json

        yield f"data: {json.dumps(e.body())}\n\n"
    if r.include_usage():
        yield chunk([], usage=plan.usage())
    yield "data: [DONE]\n\n"
