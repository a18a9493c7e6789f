"""The OpenAPI document at ``/openapi.json`` (shown at ``/docs`` and ``/redoc``), made to say what this
server does: errors answer 400 in OpenAI's shape (FastAPI's default document says 422), every ``/v1``
route needs the bearer key, and the bounds that are this server's own limits (``max_tokens``, ``n``,
``min_tokens``, token ids below the vocabulary size, moderation inputs) are written in per server.

The document names no model, adapter, key or path: served names are for ``GET /v1/models`` (which
needs a key), so the document can stay public (docs/serve.md, "Security").
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from serve.config import ServeConfig
from serve.engine import Engine
from serve.openai.protocol import SEED_MAX, SEED_MIN

_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")


def install_openapi(app: FastAPI, config: ServeConfig, engine: Engine) -> None:
    """Replace ``app.openapi`` with the corrected document (built once the engine knows its vocabulary)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description="OpenAI-compatible API of crossling (chat, completions, models, moderations).",
            routes=app.routes,
        )
        _drop_422(schema)
        tokenizer = getattr(engine, "tokenizer", None)
        vocab = len(tokenizer) if tokenizer is not None else None
        _write_limits(schema, config, vocab)
        if vocab is not None:  # before the engine started the document lacks the token-id bound
            app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _drop_422(schema: dict) -> None:
    """Validation errors are answered 400 (serve.errors), never FastAPI's 422."""
    for operations in schema.get("paths", {}).values():
        for op in operations.values():
            op.get("responses", {}).pop("422", None)
    components = schema.get("components", {}).get("schemas", {})
    for name in _VALIDATION_SCHEMAS:
        components.pop(name, None)


def _write_limits(schema: dict, config: ServeConfig, vocab: int | None) -> None:
    lim = config.limits
    components = schema.get("components", {}).get("schemas", {})
    _integral_bounds(components)
    for name in ("ChatCompletionRequest", "CompletionRequest"):
        props = components.get(name, {}).get("properties", {})
        # FastAPI writes bounds as floats: 2**63 - 1 would read as 2**63, a seed the server refuses
        _bound(props.get("seed"), "minimum", SEED_MIN)
        _bound(props.get("seed"), "maximum", SEED_MAX)
        for field in ("max_tokens", "max_completion_tokens", "min_tokens"):
            _bound(props.get(field), "maximum", lim.max_completion_tokens)
        _bound(props.get("n"), "maximum", lim.max_n)
        if vocab is not None and "prompt" in props:
            _bound_token_ids(props["prompt"], vocab - 1)
    moderation = components.get("ModerationRequest", {}).get("properties", {})
    for branch in moderation.get("input", {}).get("anyOf", []):
        if branch.get("type") == "array":
            branch["maxItems"] = lim.max_moderation_inputs


def _integral_bounds(node: Any) -> None:
    """``minimum: 1.0`` on an integer → ``1`` (FastAPI's document model holds bounds as floats)."""
    if isinstance(node, dict):
        if node.get("type") == "integer":
            for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
                if isinstance(node.get(key), float) and node[key].is_integer():
                    node[key] = int(node[key])
        for value in node.values():
            _integral_bounds(value)
    elif isinstance(node, list):
        for item in node:
            _integral_bounds(item)


def _bound(prop: dict | None, key: str, value: int) -> None:
    """Set ``key`` on the integer schema of a property (itself, or its integer branch of an anyOf)."""
    if not prop:
        return
    for branch in [prop, *prop.get("anyOf", [])]:
        if branch.get("type") == "integer":
            branch[key] = value


def _bound_token_ids(prop: dict, highest: int) -> None:
    """Every integer inside the prompt's union (token ids, flat or nested) is at most ``highest``."""
    if isinstance(prop, dict):
        if prop.get("type") == "integer":
            prop["maximum"] = highest
        for value in prop.values():
            if isinstance(value, (dict, list)):
                _bound_token_ids(value, highest)
    elif isinstance(prop, list):
        for item in prop:
            _bound_token_ids(item, highest)
