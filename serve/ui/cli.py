"""``crossling ui``: the chat page on its own, against any OpenAI-compatible base URL.

    crossling ui --base-url http://127.0.0.1:8000/v1 --api-key KEY --port 7860

The key defaults to $CROSSLING_API_KEY, then $OPENAI_API_KEY. ``crossling serve`` mounts the same
page at ``/ui`` itself; this command is for pointing the UI at another server. No YAML config: the
few settings are flags (``CONFIGS`` is empty).
"""

from __future__ import annotations

import argparse
import os

DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"

CONFIGS: dict[str, type] = {}


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="crossling ui", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--base-url", default=DEFAULT_BASE_URL, help=f"the API's /v1 URL (default {DEFAULT_BASE_URL})"
    )
    p.add_argument(
        "--api-key",
        default=None,
        help="API key sent to the server (default: $CROSSLING_API_KEY, then $OPENAI_API_KEY, else none)",
    )
    p.add_argument("--host", default="127.0.0.1", help="address the page listens on (0.0.0.0: all)")
    p.add_argument("--port", type=int, default=7860, help="port the page listens on (default 7860)")
    return p


def resolve_api_key(flag: str | None) -> str | None:
    return flag or os.environ.get("CROSSLING_API_KEY") or os.environ.get("OPENAI_API_KEY") or None


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    from serve.ui.app import CSS, build_ui, warm_up_language_id

    print("crossling ui: loading the language identifier (for Answer in: Auto)…", flush=True)
    warm_up_language_id(wait=True)
    demo = build_ui(args.base_url, resolve_api_key(args.api_key))
    print(
        f"crossling ui: chat page on http://{args.host}:{args.port}/ talking to {args.base_url}", flush=True
    )
    demo.queue().launch(server_name=args.host, server_port=args.port, css=CSS, show_error=True, quiet=True)
    return 0
