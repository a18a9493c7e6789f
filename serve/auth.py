"""API keys: where they come from, and the constant-time check of ``Authorization: Bearer KEY``.

Keys come from the config (``api_keys``), a file (``api_key_file``, one per line) and
``$CROSSLING_API_KEYS`` (comma-separated). With none configured the server refuses to start unless
``allow_no_auth`` says so explicitly; ``crossling serve`` then makes a key for the run instead.
"""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

from crossling.errors import ConfigError

ENV_KEYS = "CROSSLING_API_KEYS"


def collect_keys(api_keys: list[str], api_key_file: str | None) -> list[str]:
    keys = [k.strip() for k in api_keys if k and k.strip()]
    if api_key_file:
        path = Path(api_key_file).expanduser()
        if not path.is_file():
            raise ConfigError(f"api_key_file not found: {path}")
        for line in path.read_text(encoding="utf-8").splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                keys.append(line)
    keys += [k.strip() for k in os.environ.get(ENV_KEYS, "").split(",") if k.strip()]
    return list(dict.fromkeys(keys))


def new_key() -> str:
    return "sk-crossling-" + secrets.token_urlsafe(24)


class KeyChecker:
    """Checks a request's Authorization header against the accepted keys."""

    def __init__(self, keys: list[str], allow_no_auth: bool = False) -> None:
        if not keys and not allow_no_auth:
            raise ConfigError(
                "no API key configured: set api_keys / api_key_file / $CROSSLING_API_KEYS, "
                "or allow_no_auth: true to serve without keys"
            )
        self._keys = [k.encode() for k in keys]
        self.open = not keys

    def check(self, authorization: str | None) -> bool:
        if self.open:
            return True
        scheme, _, token = (authorization or "").partition(" ")
        given = token.strip().encode() if scheme.lower() == "bearer" else b""
        # compare against every key, whatever matches first, so timing says nothing about which
        ok = False
        for key in self._keys:
            ok |= hmac.compare_digest(given, key)
        return ok
