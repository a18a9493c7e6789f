"""The key check in front of the chat page at ``/ui``: the page and every Gradio route under it answer
only a browser that logged in with one of the server's API keys (or a client that sends
``Authorization: Bearer KEY``), because behind the page the UI calls the API with the server's key.

:class:`UIGate` is an ASGI middleware: everything under ``/ui`` is refused unless authenticated
(deny by default, so a Gradio route added upstream cannot slip through), except the login page.
A browser is sent to ``/ui/login``, a small form that takes a key and sets a session cookie
(HttpOnly, SameSite=Lax, path ``/ui``; the key itself never goes into the cookie); other clients get
a 401 in OpenAI's error shape. No Gradio here: the gate and the form work without it.
"""

from __future__ import annotations

import html
import secrets
import time
from urllib.parse import parse_qs, quote

from starlette.types import ASGIApp, Receive, Scope, Send

from serve.auth import KeyChecker
from serve.errors import error_response

COOKIE = "crossling_ui_session"
SESSION_TTL_S = 12 * 3600
MAX_SESSIONS = 10_000  # the oldest session is dropped beyond it
MAX_FORM_BYTES = 16_384


class Sessions:
    """Random session ids → expiry, in memory (a restart logs everyone out)."""

    def __init__(self, ttl_s: float = SESSION_TTL_S) -> None:
        self.ttl_s = ttl_s
        self._expiry: dict[str, float] = {}

    def new(self) -> str:
        if len(self._expiry) >= MAX_SESSIONS:
            self._expiry.pop(next(iter(self._expiry)))
        sid = secrets.token_urlsafe(32)
        self._expiry[sid] = time.monotonic() + self.ttl_s
        return sid

    def valid(self, sid: str | None) -> bool:
        expiry = self._expiry.get(sid or "")
        if expiry is None:
            return False
        if expiry < time.monotonic():
            self._expiry.pop(sid, None)
            return False
        return True

    def drop(self, sid: str | None) -> None:
        self._expiry.pop(sid or "", None)


def _cookies(headers: dict[bytes, bytes]) -> dict[str, str]:
    out = {}
    for part in headers.get(b"cookie", b"").decode("latin-1").split(";"):
        name, _, value = part.strip().partition("=")
        if name:
            out[name] = value
    return out


def _safe_next(target: str, prefix: str) -> str:
    """Only back into the UI after login: never an open redirect to another site."""
    return target if target.startswith(prefix + "/") and not target.startswith("//") else prefix + "/"


class UIGate:
    """Refuses everything under ``prefix`` without a valid key or session; serves the login form."""

    def __init__(self, app: ASGIApp, keys: KeyChecker, prefix: str = "/ui") -> None:
        self.app, self.keys, self.prefix = app, keys, prefix
        self.sessions = Sessions()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] not in ("http", "websocket") or not (
            path == self.prefix or path.startswith(self.prefix + "/")
        ):
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        if path == f"{self.prefix}/login" and scope["type"] == "http":
            return await self._login(scope, receive, send, headers)
        if path == f"{self.prefix}/logout" and scope["type"] == "http":
            return await self._logout(scope, receive, send, headers)
        if self._authenticated(headers):
            return await self.app(scope, receive, send)
        if scope["type"] == "websocket":
            return await send({"type": "websocket.close", "code": 1008})
        wants_page = scope["method"] in ("GET", "HEAD") and b"text/html" in headers.get(b"accept", b"")
        if wants_page:
            root = scope.get("root_path", "")
            target = quote(_safe_next(path, self.prefix), safe="/")
            location = f"{root}{self.prefix}/login?next={target}"
            return await _respond(send, 303, b"", [(b"location", location.encode())])
        response = error_response(
            401,
            f"log in at {self.prefix}/login with an API key of this server, "
            "or send `Authorization: Bearer <key>`",
            code="invalid_api_key",
        )
        await response(scope, receive, send)

    def _authenticated(self, headers: dict[bytes, bytes]) -> bool:
        authorization = headers.get(b"authorization")
        if authorization and self.keys.check(authorization.decode("latin-1")):
            return True
        return self.sessions.valid(_cookies(headers).get(COOKIE))

    async def _login(self, scope: Scope, receive: Receive, send: Send, headers) -> None:
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        target = _safe_next((query.get("next") or [""])[0], self.prefix)
        if scope["method"] != "POST":
            return await _respond(send, 200, login_page(target), _HTML)
        form = parse_qs((await _read_body(receive, MAX_FORM_BYTES)).decode("utf-8", "replace"))
        key = (form.get("key") or [""])[0].strip()
        target = _safe_next((form.get("next") or [target])[0], self.prefix)
        if not key or not self.keys.check(f"Bearer {key}"):
            page = login_page(target, error="That is not an API key of this server.")
            return await _respond(send, 401, page, _HTML)
        secure = "; Secure" if scope.get("scheme") == "https" else ""
        cookie = (
            f"{COOKIE}={self.sessions.new()}; Path={self.prefix}; HttpOnly; SameSite=Lax; "
            f"Max-Age={int(self.sessions.ttl_s)}{secure}"
        )
        root = scope.get("root_path", "")
        await _respond(
            send, 303, b"", [(b"location", f"{root}{target}".encode()), (b"set-cookie", cookie.encode())]
        )

    async def _logout(self, scope: Scope, receive: Receive, send: Send, headers) -> None:
        self.sessions.drop(_cookies(headers).get(COOKIE))
        expired = f"{COOKIE}=; Path={self.prefix}; HttpOnly; SameSite=Lax; Max-Age=0"
        location = f"{scope.get('root_path', '')}{self.prefix}/login"
        await _respond(send, 303, b"", [(b"location", location.encode()), (b"set-cookie", expired.encode())])


_HTML = [(b"content-type", b"text/html; charset=utf-8"), (b"cache-control", b"no-store")]


async def _respond(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Receive, limit: int) -> bytes:
    body = b""
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return body
        body += message.get("body", b"")
        if len(body) > limit or not message.get("more_body", False):
            return body[:limit]


def login_page(target: str, error: str = "") -> bytes:
    """The form: one password field for the key (a password manager can keep it), posted to itself."""
    note = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>crossling chat — log in</title>
<style>
body {{ font-family: system-ui, sans-serif; display: grid; place-items: center; min-height: 90vh; }}
form {{ display: grid; gap: .75em; min-width: 20em; }}
input, button {{ font-size: 1em; padding: .5em; }} .error {{ color: #b00020; }}
</style></head>
<body><form method="post" action="login">
<h1>crossling chat</h1>
<label for="crossling-login-key">API key of this server</label>
<input id="crossling-login-key" name="key" type="password" autocomplete="current-password" required autofocus>
<input type="hidden" name="next" value="{html.escape(target)}">
{note}<button id="crossling-login-submit" type="submit">Log in</button>
<p><small>The key <code>crossling serve</code> printed, or one from its <code>api_keys</code>.</small></p>
</form></body></html>""".encode()
