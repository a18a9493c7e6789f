"""``crossling serve CONFIG [--field value ...]``: run the OpenAI-compatible server.

Fields of :class:`serve.config.ServeConfig` can be overridden on the command line; nested limits
with a dot: ``--limits.max_queue 8``. With no API key configured (and ``allow_no_auth`` off) a key
is made for this run and printed, so ``make serve`` is never an open server by accident.
"""

from __future__ import annotations

import logging
import sys

from crossling.config import CliArgs, Verb, configs_of, parse_cli
from safety.filter import SafetyFilter
from serve.auth import collect_keys, new_key
from serve.config import ServeConfig

# `crossling serve CONFIG` has no verb: the empty verb maps to the one config.
VERBS: dict[str, Verb] = {
    "": Verb(
        ServeConfig,
        "OpenAI-compatible server (vLLM or transformers engine) with adapters, limits, metrics, UI.",
    )
}
CONFIGS: dict[str, type] = configs_of(VERBS)


def parse(argv: list[str]) -> CliArgs:
    return parse_cli("crossling serve", VERBS, argv)


def load_safety_filter(config_path: str | None = None) -> SafetyFilter:
    """The built-in multilingual filter of the safety area, warmed up before the first request."""
    safety = SafetyFilter.from_config(config_path)
    safety.warmup()
    return safety


def main(argv: list[str] | None = None) -> int:
    config = parse(list(sys.argv[1:] if argv is None else argv)).config
    logging.basicConfig(
        level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    generated = None
    if not collect_keys(config.api_keys, config.api_key_file) and not config.allow_no_auth:
        generated = new_key()
        config.api_keys = [generated]
    safety = load_safety_filter(config.safety_config) if config.safety else None

    # uvicorn and the app (FastAPI, the engines) load only once the config is valid: `--help` stays fast
    import uvicorn

    from serve.app import create_app, local_base_url

    app = create_app(config, safety=safety)
    base = local_base_url(config)
    print(f"crossling serve: {config.model_name} on engine {config.engine}", flush=True)
    print(f"  API: {base}   (OpenAI SDK: OpenAI(base_url='{base}', api_key=...))", flush=True)
    if any(getattr(r, "path", "") == "/ui" for r in app.routes):
        login = "" if config.ui_allow_anonymous or config.allow_no_auth else "   (log in with an API key)"
        print(f"  UI:  {base.removesuffix('/v1')}/ui/{login}", flush=True)
    if generated:
        print(
            f"  API key for this run (set api_key_file or $CROSSLING_API_KEYS to choose one): {generated}",
            flush=True,
        )
    uvicorn.run(
        app, host=config.host, port=config.port, log_level=config.log_level, timeout_graceful_shutdown=5
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
