"""A small but real OpenAI-compatible HTTP server for the UI tests (FastAPI + uvicorn in a thread),
so the UI's real ``openai`` client is exercised end to end: SSE streaming, headers, status codes.

The model name picks the behaviour: ``echo`` streams back the last user message, ``slow`` streams
until the client goes away (and records that it did), ``blocked``/``cut`` imitate the safety filter,
``ratelimited``/``boom`` fail with 429/500; any other name is a 404. Every request body is recorded.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from crossling import testing

API_KEY = "test-key"
MODELS = [
    {"id": "echo", "object": "model", "owned_by": "crossling"},
    {"id": "echo-lora", "object": "model", "owned_by": "crossling", "parent": "echo"},
    {"id": "slow", "object": "model", "owned_by": "crossling"},
]


@dataclass
class FakeState:
    requests: list[dict] = field(default_factory=list)
    disconnected: threading.Event = field(default_factory=threading.Event)
    slow_chunks_sent: int = 0


def _error(status: int, message: str, type_: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": type_, "code": status}}, status_code=status)


def _chunk(model: str, content: str | None = None, finish: str | None = None, **extra) -> str:
    delta = {"content": content} if content is not None else {}
    body = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        **extra,
    }
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"


def _pieces(text: str, size: int = 4) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def create_fake_app(state: FakeState, chunk_delay_s: float = 0.0) -> FastAPI:
    app = FastAPI()

    def authorized(request: Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {API_KEY}"

    @app.get("/v1/models")
    async def models(request: Request):
        if not authorized(request):
            return _error(401, "Invalid API key.", "authentication_error")
        return {"object": "list", "data": MODELS}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        if not authorized(request):
            return _error(401, "Invalid API key.", "authentication_error")
        body = await request.json()
        state.requests.append(body)
        model = body["model"]
        if model == "ratelimited":
            return _error(429, "Rate limit reached: 2 requests per minute.", "rate_limit_error")
        if model == "boom":
            return _error(500, "engine crashed", "server_error")
        if model not in {m["id"] for m in MODELS} | {"blocked", "cut"}:
            return _error(404, f"The model '{model}' does not exist.", "not_found_error")
        last = body["messages"][-1]["content"]
        headers = {}
        if model == "blocked":
            verdict = {"action": "block", "category": "violent_crimes", "language": "bn", "stage": "input"}
            headers["x-crossling-safety"] = json.dumps(verdict)
        return StreamingResponse(
            _stream(model, last, chunk_delay_s), media_type="text/event-stream", headers=headers
        )

    async def _stream(model: str, last: str, delay: float):
        if model == "slow":
            try:
                for i in range(10_000):
                    state.slow_chunks_sent = i + 1
                    yield _chunk(model, f"tok{i} ")
                    await asyncio.sleep(0.05)
            finally:  # the client closed the connection (stop button) or the test ended
                state.disconnected.set()
            return
        if model == "blocked":
            yield _chunk(model, "দুঃখিত, আমি এতে সাহায্য করতে পারব না।")
            yield _chunk(model, finish="content_filter")
        elif model == "cut":
            yield _chunk(model, "Here is the first part ")
            verdict = {"action": "block", "categories": {"self_harm": 0.93, "hate": 0.1}, "language": "de"}
            yield _chunk(model, finish="content_filter", crossling_safety=verdict)
        else:
            for piece in _pieces(f"Echo: {last}"):
                yield _chunk(model, piece)
                await asyncio.sleep(delay)
            yield _chunk(model, finish="stop")
        usage = {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}
        yield f"data: {json.dumps({'id': 'chatcmpl-fake', 'object': 'chat.completion.chunk', 'created': 0, 'model': model, 'choices': [], 'usage': usage})}\n\n"
        yield "data: [DONE]\n\n"

    return app


def free_port(start: int = 18100, end: int = 18199) -> int:
    """A port in the UI's range (18100-18199) that nothing listens on now."""
    return testing.free_port(start, end)


@contextmanager
def serve_in_thread(app, port: int) -> Iterator[str]:
    """Run ``app`` with uvicorn on 127.0.0.1:``port`` in a thread; yields the base URL."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started:
        if time.time() > deadline or not thread.is_alive():
            raise RuntimeError(f"server on port {port} did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextmanager
def fake_openai_server(chunk_delay_s: float = 0.0) -> Iterator[tuple[str, FakeState]]:
    """``(base_url ending in /v1, state)`` of a fake OpenAI-compatible server."""
    state = FakeState()
    with serve_in_thread(create_fake_app(state, chunk_delay_s), free_port()) as url:
        yield f"{url}/v1", state
