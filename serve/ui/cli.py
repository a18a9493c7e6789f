"""``crossling ui``: the chat page on its own, against any OpenAI-compatible base URL.

    crossling ui --base-url http://127.0.0.1:8000/v1 --api-key KEY --port 7860

The key defaults to $CROSSLING_API_KEY, then $OPENAI_API_KEY. Listening beyond loopback (``--host``)
with a key, the page asks for that key first (Gradio's login). ``crossling serve`` mounts the same
page at ``/ui`` itself; this command is for pointing the UI at another server. No YAML config: the
few settings are flags (``CONFIGS`` is empty).
"""

from __future__ import annotations

import hmac
import os
import sys
from dataclasses import dataclass, field

from crossling.config import CliArgs, Verb, configs_of, parse_cli

DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"


@dataclass
class UIConfig:
    base_url: str = field(
        default=DEFAULT_BASE_URL, metadata={"help": f"the API's /v1 URL (default {DEFAULT_BASE_URL})"}
    )
    api_key: str | None = field(
        default=None,
        metadata={"help": "API key sent to the server (default: $CROSSLING_API_KEY, then $OPENAI_API_KEY)"},
    )
    host: str = field(default="127.0.0.1", metadata={"help": "address the page listens on (0.0.0.0: all)"})
    port: int = field(default=7860, metadata={"help": "port the page listens on (default 7860)"})


VERBS: dict[str, Verb] = {"": Verb(UIConfig, __doc__, yaml=False)}
CONFIGS: dict[str, type] = configs_of(VERBS)


def parse(argv: list[str]) -> CliArgs:
    return parse_cli("crossling ui", VERBS, argv)


def resolve_api_key(flag: str | None) -> str | None:
    return flag or os.environ.get("CROSSLING_API_KEY") or os.environ.get("OPENAI_API_KEY") or None


def main(argv: list[str] | None = None) -> int:
    cfg: UIConfig = parse(list(sys.argv[1:] if argv is None else argv)).config
    # gradio takes seconds to import: only once the flags are valid
    from serve.ui.app import CSS, build_ui, warm_up_language_id

    print("crossling ui: loading the language identifier (for Answer in: Auto)…", flush=True)
    warm_up_language_id(wait=True)
    key = resolve_api_key(cfg.api_key)
    demo = build_ui(cfg.base_url, key)
    print(f"crossling ui: chat page on http://{cfg.host}:{cfg.port}/ talking to {cfg.base_url}", flush=True)
    demo.queue().launch(
        server_name=cfg.host,
        server_port=cfg.port,
        css=CSS,
        show_error=True,
        quiet=True,
        **login_required(cfg.host, key),
    )
    return 0


def login_required(host: str, key: str | None) -> dict:
    """Gradio's login when the page is reachable from other machines and holds a key: the page uses
    that key, so whoever opens it must know it (any user name, the key as password)."""
    if not key or host in ("127.0.0.1", "localhost", "::1"):
        return {}

    def check(_user: str, password: str) -> bool:
        return hmac.compare_digest(password.encode(), key.encode())

    return {
        "auth": check,
        "auth_message": "Log in with the API key this page was started with (any user name).",
    }
