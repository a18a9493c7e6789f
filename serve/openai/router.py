"""The thin HTTP layer: routes → serving logic. Auth, admission, timeouts and disconnects live here."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import ValidationError
from starlette.background import BackgroundTask

from safety import moderation  # the safety area owns the moderation schema and the checks
from serve.errors import APIError
from serve.openai.protocol import ChatCompletionRequest, CompletionRequest
from serve.openai.serving import OpenAIServing, safety_header
from serve.openai.serving_chat import ChatPlan, chat_full, chat_stream
from serve.openai.serving_completion import CompletionPlan, completion_full, completion_stream


def require_key(request: Request) -> None:
    if not request.app.state.keys.check(request.headers.get("authorization")):
        raise APIError(
            401,
            "invalid or missing API key: send `Authorization: Bearer <key>` "
            "(OpenAI SDK: api_key=... or $OPENAI_API_KEY)",
            code="invalid_api_key",
        )


router = APIRouter()
v1 = APIRouter(prefix="/v1", dependencies=[Depends(require_key)])


def _serving(request: Request) -> OpenAIServing:
    return request.app.state.serving


@router.get("/health")
async def health(request: Request) -> dict:
    return {"status": "ok", "model": _serving(request).config.model_name}


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    return Response(_serving(request).metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")


@v1.get("/models")
async def models(request: Request) -> dict:
    return _serving(request).model_list().model_dump()


@v1.post("/chat/completions")
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
    serving = _serving(request)
    started = time.monotonic()
    plan = ChatPlan(serving, body)
    plan.safety, plan.refusal, plan.user_language = await serving.check_input(body.user_text())
    return await _respond(
        request,
        serving,
        "chat",
        body.model,
        body.stream,
        started,
        plan,
        chat_full,
        chat_stream,
        lambda: plan.safety,
    )


@v1.post("/completions")
async def completions(body: CompletionRequest, request: Request) -> Response:
    serving = _serving(request)
    started = time.monotonic()
    plan = CompletionPlan(serving, body)
    plan.safety, plan.refusal, _ = await serving.check_input("\n".join(plan.prompt_texts))
    return await _respond(
        request,
        serving,
        "completions",
        body.model,
        body.stream,
        started,
        plan,
        completion_full,
        completion_stream,
        lambda: plan.safety,
    )


@v1.post("/moderations")
async def moderations(request: Request) -> Response:
    serving = _serving(request)
    if serving.safety is None:
        raise APIError(
            404,
            "this server runs without a safety filter (start it with safety: true)",
            code="no_safety_filter",
        )
    try:
        body = moderation.ModerationRequest.model_validate(await request.json())
        result = await asyncio.to_thread(moderation.moderate, body, serving.safety)
    except (ValidationError, moderation.ModerationInputError, ValueError) as e:
        raise APIError(400, f"invalid moderation request: {e}", param="input") from e
    return JSONResponse(result.model_dump())


async def _respond(
    request, serving, endpoint, model, stream, started, plan, full, streamer, safety_info
) -> Response:
    limiter = request.app.state.limiter
    deadline = serving.deadline(started)
    try:
        slot = await asyncio.wait_for(limiter.acquire(), max(0.0, deadline - time.monotonic()))
    except (TimeoutError, asyncio.TimeoutError):
        raise APIError(504, "request timed out waiting for a free slot", code="timeout") from None
    m = serving.metrics

    def finish(status: str) -> None:
        slot.release()
        m.requests.labels(endpoint, model, status).inc()
        m.e2e.labels(model).observe(time.monotonic() - started)

    if stream:

        async def body() -> AsyncIterator[str]:
            status = "aborted"
            try:
                async for line in streamer(serving, plan, deadline):
                    yield line
                status = "ok"
            finally:
                finish(status)

        # slot.release is idempotent: the background task covers a stream that never started
        return StreamingResponse(
            body(),
            media_type="text/event-stream",
            headers=safety_header(safety_info()),
            background=BackgroundTask(slot.release),
        )
    status = "error"
    try:
        result = await _unless_disconnected(request, full(serving, plan, deadline))
        if result is None:
            status = "aborted"
            return Response(status_code=499)  # nobody is listening; for the logs only
        status = "ok"
        return JSONResponse(result.model_dump(), headers=safety_header(getattr(plan, "safety", None)))
    except APIError as e:
        status = str(e.status)
        e.counted = True  # finish() counts it, with the model name
        raise
    finally:
        finish(status)


async def _unless_disconnected(request: Request, work: Awaitable):
    """Run ``work`` unless the client hangs up first; then cancel it (which aborts the generation)."""
    task = asyncio.ensure_future(work)

    async def hangup() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(hangup())
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if task in done:
        return task.result()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return None


router.include_router(v1)
