"""OpenAI-shaped errors: every failure a client sees is ``{"error": {message, type, param, code}}``.

Handlers for FastAPI turn our :class:`APIError`, pydantic validation errors, unknown routes and any
unexpected exception into that body with the right status; clients never see a stack trace.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

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
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def error_response(status: int, message: str, **kw) -> JSONResponse:
    return APIError(status, message, **kw).response()


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    errors = exc.errors()
    if not errors:
        return "invalid request", None
    first = errors[0]
    loc = [str(x) for x in first.get("loc", ()) if x != "body"]
    param = ".".join(loc) or None
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{param + ': ' if param else ''}{first.get('msg', 'invalid value')}{more}", param


_ENDPOINTS = {"/v1/chat/completions": "chat", "/v1/completions": "completions"}


def _count(request: Request, status: int) -> None:
    """Requests refused before they reach the serving logic still count in crossling_requests_total."""
    endpoint = _ENDPOINTS.get(request.url.path)
    serving = getattr(request.app.state, "serving", None)
    if endpoint and serving is not None:
        serving.metrics.requests.labels(endpoint, "", str(status)).inc()


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        if not getattr(exc, "counted", False):
            _count(request, exc.status)
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = _validation_message(exc)
        _count(request, 400)
        return error_response(400, message, param=param, code="invalid_request")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = "not found: " + request.url.path if exc.status_code == 404 else str(exc.detail)
        return error_response(exc.status_code, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)  # the trace goes to the log only
        return error_response(500, "internal server error", code="internal_error")
