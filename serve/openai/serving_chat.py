"""``POST /v1/chat/completions``: chat template → engine → OpenAI chat JSON or SSE chunks."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from serve.engine.base import TokenLogprob, render_chat
from serve.errors import APIError
from serve.openai.protocol import (
    AssistantMessage,
    ChatChoice,
    ChatChunkChoice,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatCompletionResponse,
    ChatLogprob,
    ChatLogprobs,
    ChatLogprobToken,
    DeltaMessage,
    Usage,
    random_id,
)
from serve.openai.serving import Generation, OpenAIServing, SSEStream, with_deadline


def chat_logprobs(items: list[TokenLogprob] | None) -> ChatLogprobs | None:
    if items is None:
        return None
    return ChatLogprobs(
        content=[
            ChatLogprobToken(
                token=t.token,
                logprob=t.logprob,
                bytes=list(t.token.encode()),
                top_logprobs=[ChatLogprob(token=s, logprob=lp, bytes=list(s.encode())) for s, _, lp in t.top],
            )
            for t in items
        ]
    )


class ChatPlan:
    """A validated chat request, ready to run: prompt ids, budget, adapter, maybe a refusal."""

    def __init__(self, serving: OpenAIServing, request: ChatCompletionRequest) -> None:
        serving.log_unknown(request, "chat.completions")
        serving.check_n(request.n)
        self.request = request
        self.adapter = serving.resolve_adapter(request.model)
        try:
            self.prompt_ids = render_chat(serving.engine.tokenizer, request.template_messages())
        except Exception as e:  # the model's template rejects the conversation (e.g. role order)
            raise APIError(
                400, f"messages do not fit the model's chat template: {e}", param="messages"
            ) from e
        self.max_tokens = serving.max_tokens(request, len(self.prompt_ids))
        self.id = random_id("chatcmpl")
        self.created = int(time.time())
        self.safety: dict | None = None
        self.refusal: str | None = None
        self.user_language: str | None = None  # from the input check: refusals answer in it
        self.gen: Generation | None = None  # set once the request goes to the engine

    def generation(self, serving: OpenAIServing) -> Generation:
        r = self.request
        self.gen = serving.new_generation(
            self.id,
            [self.prompt_ids] * r.n,
            [r.to_sampling(self.max_tokens, i) for i in range(r.n)],
            self.adapter,
            r.model,
        )
        return self.gen

    def usage(self) -> Usage:
        """Prompt tokens, and the tokens generated so far (none for a refused request)."""
        return Usage.of(len(self.prompt_ids), self.gen.usage_completion() if self.gen else 0)

    def chunk(self, choices: list[ChatChunkChoice], usage: Usage | None = None) -> ChatCompletionChunk:
        return ChatCompletionChunk(
            id=self.id, created=self.created, model=self.request.model, choices=choices, usage=usage
        )


def refusal_response(plan: ChatPlan) -> ChatCompletionResponse:
    choices = [
        ChatChoice(
            index=i,
            message=AssistantMessage(content=plan.refusal),
            finish_reason="content_filter",
            crossling_safety=plan.safety,
        )
        for i in range(plan.request.n)
    ]
    return ChatCompletionResponse(
        id=plan.id,
        created=plan.created,
        model=plan.request.model,
        choices=choices,
        usage=plan.usage(),
        crossling_safety=plan.safety,
    )


async def chat_full(serving: OpenAIServing, plan: ChatPlan, deadline: float) -> ChatCompletionResponse:
    if plan.refusal is not None:
        return refusal_response(plan)
    gen = plan.generation(serving)
    n = plan.request.n
    texts, finish = [""] * n, [None] * n
    lps: list[list[TokenLogprob] | None] = [[] if plan.request.logprobs else None for _ in range(n)]
    cut: dict | None = None
    async for ev in with_deadline(gen.events(), deadline):
        texts[ev.index] += ev.text
        if ev.logprobs and lps[ev.index] is not None:
            lps[ev.index] += ev.logprobs
        if ev.finish_reason:
            finish[ev.index] = ev.finish_reason
        if ev.safety:
            cut = ev.safety
            lang = plan.user_language or ev.safety["language"]
            texts[ev.index] = serving.safety.refusal(lang, ev.safety["category"])
    choices = []
    for i in range(n):
        extra = {"crossling_safety": cut} if finish[i] == "content_filter" else {}
        choices.append(
            ChatChoice(
                index=i,
                message=AssistantMessage(content=texts[i]),
                logprobs=chat_logprobs(lps[i]),
                finish_reason=finish[i],
                **extra,
            )
        )
    plan.safety = cut
    return ChatCompletionResponse(
        id=plan.id,
        created=plan.created,
        model=plan.request.model,
        choices=choices,
        usage=plan.usage(),
    )


def chat_stream(serving: OpenAIServing, plan: ChatPlan, deadline: float) -> SSEStream:
    """SSE: a role chunk per choice, content chunks, finish chunks, usage if asked, ``[DONE]``."""
    usage = (lambda: plan.chunk([], usage=plan.usage())) if plan.request.include_usage() else None
    return SSEStream(chat_chunks(serving, plan, deadline), usage, serving.engine)


async def chat_chunks(
    serving: OpenAIServing, plan: ChatPlan, deadline: float
) -> AsyncIterator[ChatCompletionChunk]:
    r = plan.request
    for i in range(r.n):
        yield plan.chunk([ChatChunkChoice(index=i, delta=DeltaMessage(role="assistant", content=""))])
    if plan.refusal is not None:
        for i in range(r.n):
            refusal = ChatChunkChoice(
                index=i,
                delta=DeltaMessage(content=plan.refusal),
                finish_reason="content_filter",
                crossling_safety=plan.safety,
            )
            yield plan.chunk([refusal])
        return
    gen = plan.generation(serving)
    async for ev in with_deadline(gen.events(), deadline):
        extra = {"crossling_safety": ev.safety} if ev.safety else {}
        delta = DeltaMessage(content=ev.text) if ev.text else DeltaMessage()
        choice = ChatChunkChoice(
            index=ev.index,
            delta=delta,
            logprobs=chat_logprobs(ev.logprobs),
            finish_reason=ev.finish_reason,
            **extra,
        )
        yield plan.chunk([choice])
