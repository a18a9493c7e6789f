"""``crossling data build CONFIG [--field value ...]``: build a dataset from a YAML recipe mix."""

from __future__ import annotations

import argparse
import sys

from crossling.config import add_config_arguments, load_config
from data_recipes.build import BuildConfig

CONFIGS: dict[str, type] = {"build": BuildConfig}


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="crossling data", description="Build multilingual training sets.")
    sub = parser.add_subparsers(dest="verb", required=True)
    build = sub.add_parser("build", help="recipes → quality gates → mix → data/built/<name>/")
    add_config_arguments(build, BuildConfig)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args, overrides = make_parser().parse_known_args(argv)
    cfg = load_config(CONFIGS[args.verb], args.config, overrides)
    from data_recipes import build, card  # heavy imports (datasets, lingua) only once the config is valid

    command = "crossling data build " + " ".join(argv[1:])
    result = build.run(cfg)
    out = card.write(cfg, result, command)
    print(result.report.to_text())
    print(
        f"built {out}: train {len(result.train)} rows, dev {len(result.dev)} rows, "
        f"{len(result.prompts)} preference prompts in {result.seconds:.1f} s (card: {out / 'card.md'})"
    )
    return 0
