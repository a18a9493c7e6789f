"""``crossling data build [CONFIG] [--field value ...]``: build a dataset from a YAML recipe mix."""

from __future__ import annotations

import sys

from crossling.config import CliArgs, Verb, configs_of, parse_cli
from data_recipes import build, card

VERBS: dict[str, Verb] = {
    "build": Verb(build.BuildConfig, "recipes → quality gates → mix → data/built/<name>/"),
}
CONFIGS: dict[str, type] = configs_of(VERBS)


def parse(argv: list[str]) -> CliArgs:
    return parse_cli("crossling data", VERBS, argv, description="Build multilingual training sets.")


def main(argv: list[str] | None = None) -> int:
    cli = parse(list(sys.argv[1:] if argv is None else argv))
    result = build.run(cli.config)
    out = card.write(cli.config, result, cli.command)
    print(result.report.to_text())
    print(
        f"built {out}: train {len(result.train)} rows, dev {len(result.dev)} rows, "
        f"{len(result.prompts)} preference prompts in {result.seconds:.1f} s (card: {out / 'card.md'})"
    )
    return 0
