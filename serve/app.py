"""``create_app(config, engine=None, safety=None)``: the FastAPI app ``crossling serve`` runs.

Wires the engine, the safety filter (any object with ``check``/``refusal``), keys, limits, metrics,
the OpenAI routes, the OpenAPI document (``serve.openapi``) and, unless ``ui: false``, the Gradio UI
at ``/ui`` behind the same keys (``serve.ui.login``).
"""

from __future__ import annotations

import contextlib
import logging

from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serve.auth import KeyChecker, collect_keys
from serve.config import ServeConfig
from serve.engine import Engine, build_engine
from serve.errors import CatchAll, error_response, install_error_handlers
from serve.limits import ConcurrencyLimiter
from serve.metrics import ServerMetrics
from serve.openai.router import router
from serve.openai.serving import OpenAIServing
from serve.openapi import install_openapi

log = logging.getLogger("crossling.serve")


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body is over this server's limit of {limit} bytes")


class BodySizeLimit:
    """413 for bodies over ``max_bytes``: by Content-Length up front, else while reading a chunked body
    (``code: body_too_large`` both ways)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return await self._too_large(scope, receive, send)
        seen = 0
        started = False

        async def counted() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)  # FastAPI passes HTTPExceptions through body parsing
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except BodyTooLarge:  # raised where no FastAPI handler catches it (the mounted UI)
            if not started:
                await self._too_large(scope, receive, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(413, BodyTooLarge(self.max_bytes).detail, code="body_too_large")
        await response(scope, receive, send)


def create_app(config: ServeConfig, engine: Engine | None = None, safety=None) -> FastAPI:
    engine = engine or build_engine(config)
    metrics = ServerMetrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        await engine.start()
        log.info("serving %s (+ %d adapters)", config.model_name, len(engine.adapters))
        try:
            yield
        finally:
            await engine.shutdown()

    docs = config.api_docs
    app = FastAPI(
        title="crossling",
        version="0.1.0",
        lifespan=lifespan,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
    )
    app.state.serving = OpenAIServing(engine, config, metrics, safety)
    app.state.keys = KeyChecker(collect_keys(config.api_keys, config.api_key_file), config.allow_no_auth)
    lim = config.limits
    app.state.limiter = ConcurrencyLimiter(
        lim.max_concurrent_requests, lim.max_queue, lim.retry_after_s, metrics
    )
    install_error_handlers(app)
    app.include_router(router)
    install_openapi(app, config, engine)
    if config.ui:
        mount_ui(app, config)
    app.add_middleware(BodySizeLimit, max_bytes=lim.max_body_bytes)
    app.add_middleware(CatchAll)  # outermost of ours: whatever escapes the rest ends as a clean 500
    return app


def local_base_url(config: ServeConfig) -> str:
    host = "127.0.0.1" if config.host in ("0.0.0.0", "::", "") else config.host
    return f"http://{host}:{config.port}/v1"


def mount_ui(app: FastAPI, config: ServeConfig) -> None:
    """Mount the Gradio UI at /ui; it talks to this API over HTTP, like any other client.

    The page calls the API with the server's first key, so it is behind the same keys: a browser logs
    in at /ui/login with any accepted key (``serve.ui.login``). Only ``ui_allow_anonymous: true`` opens
    it to whoever reaches the port, and a server without keys (``allow_no_auth``) has nothing to guard.
    """
    from serve.ui import app as ui_app  # imports gradio: only servers that show the UI pay for it
    from serve.ui.login import UIGate

    keys = collect_keys(config.api_keys, config.api_key_file)
    ui_app.mount_ui(app, local_base_url(config), keys[0] if keys else None, path="/ui")
    if keys and not config.ui_allow_anonymous:
        app.add_middleware(UIGate, keys=app.state.keys, prefix="/ui")
