"""The thin HTTP layer: routes → serving logic. Auth, admission, timeouts and disconnects live here,
and what the OpenAPI document says about each route (its error statuses, the bearer key)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.background import BackgroundTask

from safety import moderation  # the safety area owns the moderation schema and the checks
from serve.engine.base import engine_healthy
from serve.errors import APIError
from serve.openai.protocol import (
    ChatCompletionRequest,
    ChatCompletionResponse,
    CompletionRequest,
    CompletionResponse,
    ErrorResponse,
    ModelList,
)
from serve.openai.serving import OpenAIServing, as_api_error, safety_header
from serve.openai.serving_chat import ChatPlan, chat_full, chat_stream
from serve.openai.serving_completion import CompletionPlan, completion_full, completion_stream

# FastAPI's own check would answer 403 in its own shape: ours answers 401 in OpenAI's (require_key).
# This instance is here for the OpenAPI document: the bearer scheme and which routes need it.
bearer = HTTPBearer(auto_error=False, description="An API key of this server: `Authorization: Bearer KEY`.")


def _errors(*statuses: int) -> dict:
    what = {
        400: "Invalid request (the message names the parameter)",
        401: "Missing or wrong API key",
        404: "Unknown model, or no safety filter on this server",
        413: "Request body over the server's limit",
        429: "Server busy (queue full); retry after `Retry-After` seconds",
        500: "Internal error (details in the server log only)",
        503: "The model engine is not running",
        504: "Request timed out; the generation was aborted",
    }
    return {s: {"model": ErrorResponse, "description": what[s]} for s in statuses}


_GENERATION_ERRORS = _errors(400, 401, 404, 413, 429, 500, 503, 504)
# One schema per server-sent event: its `data` is a JSON chunk (or an error object), the last `[DONE]`.
_SSE = {
    "text/event-stream": {
        "schema": {
            "type": "object",
            "required": ["data"],
            "properties": {
                "data": {
                    "type": "string",
                    "description": "A JSON chunk (`object`: `chat.completion.chunk` / `text_completion`), "
                    'or `{"error": {...}}` when the request fails midway; the last event is `[DONE]`.',
                }
            },
        }
    }
}


def require_key(request: Request, _: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
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


@router.get(
    "/health",
    responses={503: {"description": "The engine is not running: the server must be restarted"}},
)
async def health(request: Request) -> Response:
    """Readiness: 200 while the engine can serve, 503 once it has died (no key needed)."""
    serving = _serving(request)
    if not engine_healthy(serving.engine):  # its worker thread, engine core or subprocess died
        return JSONResponse({"status": "engine down", "model": serving.config.model_name}, status_code=503)
    return JSONResponse({"status": "ok", "model": serving.config.model_name})


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(request: Request) -> Response:
    """Prometheus text (no key needed)."""
    return Response(_serving(request).metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")


@v1.get("/models", response_model=ModelList, responses=_errors(401))
async def models(request: Request) -> dict:
    return _serving(request).model_list().model_dump()


@v1.post(
    "/chat/completions",
    response_model=ChatCompletionResponse,
    responses=_GENERATION_ERRORS | {200: {"content": _SSE}},
)
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


@v1.post(
    "/completions",
    response_model=CompletionResponse,
    responses=_GENERATION_ERRORS | {200: {"content": _SSE}},
)
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


@v1.post(
    "/moderations",
    response_model=moderation.ModerationResponse,
    responses=_errors(400, 401, 404, 413, 429, 500, 504),
)
async def moderations(body: moderation.ModerationRequest, request: Request) -> Response:
    """The safety filter on each input, within the same admission limits and metrics as generation."""
    serving = _serving(request)
    started = time.monotonic()
    if serving.safety is None:
        raise APIError(
            404,
            "this server runs without a safety filter (start it with safety: true)",
            code="no_safety_filter",
        )
    try:
        texts = body.texts()
    except moderation.ModerationInputError as e:
        raise APIError(400, str(e), param="input") from e
    serving.check_moderation(texts)
    slot = await _acquire(request, serving, started)
    status = "error"
    try:
        remaining = max(0.0, serving.deadline(started) - time.monotonic())
        work = asyncio.to_thread(moderation.moderate, body, serving.safety)
        result = await asyncio.wait_for(work, remaining)  # the thread finishes its (bounded) batch
        status = "ok"
        return JSONResponse(result.model_dump())
    except (TimeoutError, asyncio.TimeoutError):
        status = "504"
        raise APIError(504, "moderation timed out", code="timeout") from None
    except Exception as e:
        error = as_api_error(e)
        status = str(error.status)
        error.counted = True
        raise error from e
    finally:
        slot.release()
        # one label value whatever `model` the client sent: labels must not grow with client input
        serving.metrics.requests.labels("moderations", moderation.MODEL_NAME, status).inc()
        serving.metrics.e2e.labels(moderation.MODEL_NAME).observe(time.monotonic() - started)


async def _acquire(request: Request, serving: OpenAIServing, started: float):
    """A slot of the concurrency limiter, or 429 (queue full) / 504 (no slot before the deadline)."""
    deadline = serving.deadline(started)
    try:
        return await asyncio.wait_for(
            request.app.state.limiter.acquire(), max(0.0, deadline - time.monotonic())
        )
    except (TimeoutError, asyncio.TimeoutError):
        raise APIError(504, "request timed out waiting for a free slot", code="timeout") from None


async def _respond(
    request, serving, endpoint, model, stream, started, plan, full, streamer, safety_info
) -> Response:
    serving.require_engine()
    slot = await _acquire(request, serving, started)
    deadline = serving.deadline(started)
    m = serving.metrics

    def finish(status: str) -> None:
        slot.release()
        m.requests.labels(endpoint, model, status).inc()
        m.e2e.labels(model).observe(time.monotonic() - started)

    if stream:
        events = streamer(serving, plan, deadline)

        async def body() -> AsyncIterator[str]:
            status = "aborted"  # the client went away before the end
            try:
                async for line in events:
                    yield line
                status = events.status  # "ok", or the status of the error event it ended with
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
    except Exception as e:
        error = as_api_error(e, serving.engine)
        status = str(error.status)
        error.counted = True  # finish() counts it, with the model name
        raise error from (None if error is e else e)
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
