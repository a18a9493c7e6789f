"""OpenAI-shaped errors: every failure a client sees is ``{"error": {message, type, param, code}}``.

Handlers for FastAPI turn our :class:`APIError`, pydantic validation errors (including a body that is
not JSON) and unknown routes into that body with the right status, and :class:`CatchAll` turns any
unexpected exception into a clean 500 that keeps the connection usable; clients never see a stack
trace, a pydantic URL or a tokenizer's internals.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serve.openai.protocol import ErrorInfo, ErrorResponse

log = logging.getLogger("crossling.serve")

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    503: "server_error",
    504: "timeout_error",
}
# codes the server's own HTTP exceptions carry (the same code whichever way the limit was hit)
_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}


class ASCIIJSONResponse(JSONResponse):
    """JSON with non-ASCII escaped: an error may quote what the client sent (a model name), and a lone
    surrogate in it cannot be encoded as UTF-8; escaped, any string can."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, separators=(",", ":")).encode("ascii")


class APIError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.headers = headers or {}

    def body(self) -> dict:
        info = ErrorInfo(
            message=self.message,
            type=_TYPES.get(self.status, "server_error"),
            param=self.param,
            code=self.code,
        )
        return ErrorResponse(error=info).model_dump()

    def response(self) -> JSONResponse:
        return ASCIIJSONResponse(self.body(), status_code=self.status, headers=self.headers)


def error_response(status: int, message: str, **kw) -> JSONResponse:
    return APIError(status, message, **kw).response()


def _is_union_tag(part: Any) -> bool:
    """pydantic names the member of a union that failed inside ``loc`` ('str', 'list[int]',
    'function-after[...]', a model's class name); our field names are lower snake case."""
    if not isinstance(part, str):
        return False
    return not part.isidentifier() or part[:1].isupper() or part in ("str", "int", "float", "bool")


def param_path(loc: tuple | list) -> str | None:
    """``('body', 'messages', 0, 'role')`` → ``messages[0].role``."""
    out = ""
    for part in loc:
        if part == "body" and not out or _is_union_tag(part):
            continue
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or None


def _most_specific(errors: list[dict]) -> dict:
    """Of the errors pydantic reports (one per union member), the one that says most: a value error
    (too short, out of range, not UTF-8) before a type mismatch, then the deepest."""

    def rank(e: dict) -> tuple[int, int]:
        generic = e.get("type", "").endswith(("_type", "_parsing")) or e.get("type") == "missing"
        return (0 if generic else 1, len(e.get("loc", ())))

    return max(errors, key=rank)


def _json_message(exc: RequestValidationError, error: dict) -> str:
    """FastAPI's 'JSON decode error' at a character offset → json's own words with line and column."""
    pos = error["loc"][-1] if isinstance(error["loc"][-1], int) else 0
    doc = exc.body if isinstance(exc.body, str) else ""
    reason = (error.get("ctx") or {}).get("error") or "invalid JSON"
    where = json.JSONDecodeError(reason, doc, min(pos, len(doc)))
    return f"request body is not valid JSON: {reason} at line {where.lineno} column {where.colno}"


def validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    errors = list(exc.errors())
    if not errors:
        return "invalid request", None
    if errors[0].get("type") == "json_invalid":
        return _json_message(exc, errors[0]), None
    if all(tuple(e.get("loc", ())) == ("body",) for e in errors) and errors[0].get("type") == "missing":
        return "request body is missing: send a JSON object", None
    first = _most_specific(errors)
    param = param_path(first.get("loc", ()))
    msg = first.get("msg", "invalid value")
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    if param is None:
        if first.get("type") in ("dict_type", "model_attributes_type"):
            msg = "request body must be a JSON object"
        return msg, None
    if msg.startswith(param.split(".")[0].split("[")[0]):
        return msg, param  # the message names the field itself
    joiner = " " if msg.split(" ", 1)[0] in ("is", "must", "needs") else ": "
    return f"{param}{joiner}{msg}", param


_ENDPOINTS = {
    "/v1/chat/completions": "chat",
    "/v1/completions": "completions",
    "/v1/moderations": "moderations",
}


def _count(request: Request, status: int) -> None:
    """Requests refused before they reach the serving logic still count in crossling_requests_total."""
    endpoint = _ENDPOINTS.get(request.url.path)
    serving = getattr(request.app.state, "serving", None)
    if endpoint and serving is not None:
        serving.metrics.requests.labels(endpoint, "", str(status)).inc()


def install_error_handlers(app: FastAPI) -> None:
    """Handlers for the errors FastAPI routes raise; unexpected exceptions are :class:`CatchAll`'s."""

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        if not getattr(exc, "counted", False):
            _count(request, exc.status)
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = validation_message(exc)
        _count(request, 400)
        return error_response(400, message, param=param, code="invalid_request")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        status = exc.status_code
        if status == 404:
            message = "not found: " + request.url.path
        elif status == 405:
            message = f"method {request.method} is not allowed on {request.url.path}"
        else:
            message = str(exc.detail)
        if status == 413:
            _count(request, 413)
        headers = getattr(exc, "headers", None)
        return error_response(status, message, code=_HTTP_CODES.get(status), headers=headers)


class CatchAll:
    """Any exception that escapes a route becomes a clean 500 (the trace goes to the log only).

    Starlette's own catch-all (an ``Exception`` handler) re-raises after answering so that the server
    logs it, and uvicorn then closes the connection: the client's *next* request on that keep-alive
    connection was reset. Answering here, without re-raising, keeps the connection usable. A response
    that had already started is ended (its body closed) rather than torn down.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        state = {"started": False, "ended": False}

        async def watched(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["started"] = True
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                state["ended"] = True
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except Exception:
            log.exception("unhandled error on %s", scope.get("path"))
            if not state["started"]:
                response = error_response(500, "internal server error", code="internal_error")
                await response(scope, receive, send)
            elif not state["ended"]:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
