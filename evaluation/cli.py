"""``crossling eval``: evaluate models/adapters/endpoints and write results/<name>/.

crossling eval run configs/eval/default.yaml [--field value ...]
crossling eval configs/eval/default.yaml            # same: `run` is the default verb
crossling eval report results/default               # re-render report.md + charts from results.json
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from crossling.config import CliArgs, Verb, configs_of, parse_cli
from crossling.errors import CrosslingError
from evaluation.config import EvalConfig
from evaluation.report import main_table, write_report
from evaluation.runner import run_eval

VERBS: dict[str, Verb] = {
    "run": Verb(EvalConfig, "run an evaluation config"),
    "report": Verb(None, "re-render report.md and charts from results.json", args="RESULTS_DIR"),
}
# "": `crossling eval CONFIG` (the first line of a YAML may name the command without `run`)
CONFIGS: dict[str, type] = {**configs_of(VERBS), "": EvalConfig}


def parse(argv: list[str]) -> CliArgs:
    return parse_cli(
        "crossling eval",
        VERBS,
        argv,
        description="evaluate models: fidelity, chrF, MGSM, safety",
        default_verb="run",
    )


def main(argv: list[str] | None = None) -> int:
    cli = parse(list(sys.argv[1:] if argv is None else argv))
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request to a local llama-server
    if cli.verb == "report":
        results_dir = cli.args[0]
        path = Path(results_dir) / "results.json"
        if not path.is_file():
            raise CrosslingError(f"no results.json in {results_dir}")
        print(write_report(json.loads(path.read_text(encoding="utf-8")), results_dir))
        return 0
    cfg = cli.config
    results = run_eval(cfg, command=cli.command)
    out = Path(cfg.output_dir) / cfg.name
    print(main_table(results))
    for name, why in results.get("skipped_models", {}).items():
        print(f"left out {name}: {why}")
    print(f"\nwrote {out / 'results.json'}, {out / 'report.md'} and charts")
    return 0
