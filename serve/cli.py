"""``crossling serve CONFIG [--field value ...]``: run the OpenAI-compatible server.

Fields of :class:`serve.config.ServeConfig` can be overridden on the command line; nested limits
with a dot: ``--limits.max_queue 8``. With no API key configured (and ``allow_no_auth`` off) a key
is made for this run and printed, so ``make serve`` is never an open server by accident.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

import yaml

from crossling.config import config_help, from_dict, parse_overrides
from crossling.errors import ConfigError
from serve.auth import collect_keys, new_key
from serve.config import ServeConfig

# `crossling serve CONFIG` has no verb: the empty verb maps to the one config.
CONFIGS: dict[str, type] = {"": ServeConfig}


def load_serve_config(path: str | None, overrides: list[str]) -> ServeConfig:
    values: dict[str, Any] = {}
    source = "command line"
    if path:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        try:
            values = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{p}: not valid YAML: {e}") from e
        if not isinstance(values, dict):
            raise ConfigError(f"{p}: expected a mapping of field: value")
        source = str(p)
    for key, value in parse_overrides(overrides).items():
        head, _, rest = key.partition(".")
        if rest:  # --limits.max_queue 8 → limits: {max_queue: 8}, keeping the YAML's other limits
            nested = values.setdefault(head, {})
            if not isinstance(nested, dict):
                raise ConfigError(f"--{key}: {head} is not a mapping")
            nested[rest] = value
        else:
            values[key] = value
    return from_dict(ServeConfig, values, source=source)


def load_safety_filter(config_path: str | None = None):
    """The built-in multilingual filter of the safety area, warmed up before the first request."""
    try:
        from safety.filter import SafetyFilter
    except ImportError as e:
        raise ConfigError(f"safety: true, but the safety filter is not available ({e})") from e
    safety = SafetyFilter.from_config(config_path)
    safety.warmup()
    return safety


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="crossling serve",
        description="OpenAI-compatible server (vLLM or transformers engine) with adapters, limits, metrics, UI.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=config_help(ServeConfig)
        + "\n\nNested limits: --limits.FIELD VALUE (see LimitsConfig in serve/config.py).",
    )
    parser.add_argument("config", nargs="?", help="YAML config (e.g. configs/serve/default.yaml)")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args, rest = make_parser().parse_known_args(argv)
    config = load_serve_config(args.config, rest)
    logging.basicConfig(
        level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    generated = None
    if not collect_keys(config.api_keys, config.api_key_file) and not config.allow_no_auth:
        generated = new_key()
        config.api_keys = [generated]
    safety = load_safety_filter(config.safety_config) if config.safety else None

    import uvicorn

    from serve.app import create_app, local_base_url

    app = create_app(config, safety=safety)
    base = local_base_url(config)
    print(f"crossling serve: {config.model_name} on engine {config.engine}", flush=True)
    print(f"  API: {base}   (OpenAI SDK: OpenAI(base_url='{base}', api_key=...))", flush=True)
    if any(getattr(r, "path", "") == "/ui" for r in app.routes):
        print(f"  UI:  {base.removesuffix('/v1')}/ui/", flush=True)
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
