"""``crossling eval``: evaluate models/adapters/endpoints and write results/<name>/.

crossling eval run configs/eval/default.yaml [--field value ...]
crossling eval configs/eval/default.yaml            # same: `run` is the default verb
crossling eval report results/default               # re-render report.md + charts from results.json
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from crossling.config import add_config_arguments, load_config
from crossling.errors import CrosslingError
from evaluation.config import EvalConfig

CONFIGS: dict[str, type] = {"run": EvalConfig, "": EvalConfig}  # "": `crossling eval CONFIG`


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="crossling eval", description="evaluate models: fidelity, chrF, MGSM, safety"
    )
    sub = parser.add_subparsers(dest="verb")
    run = sub.add_parser("run", help="run an evaluation config")
    add_config_arguments(run, EvalConfig)
    report = sub.add_parser("report", help="re-render report.md and charts from results.json")
    report.add_argument("results_dir", help="folder holding results.json")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] not in ("run", "report", "-h", "--help"):
        argv = ["run", *argv]  # `crossling eval CONFIG` is `crossling eval run CONFIG`
    parser = make_parser()
    args, rest = parser.parse_known_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.verb == "report":
        from evaluation.report import write_report

        path = Path(args.results_dir) / "results.json"
        if not path.is_file():
            raise CrosslingError(f"no results.json in {args.results_dir}")
        print(write_report(json.loads(path.read_text(encoding="utf-8")), args.results_dir))
        return 0
    if args.verb != "run":
        parser.print_help()
        return 2
    cfg = load_config(EvalConfig, args.config, rest)
    from evaluation.report import main_table
    from evaluation.runner import run_eval

    command = "crossling eval run " + " ".join(argv[1:])
    results = run_eval(cfg, command=command)
    out = Path(cfg.output_dir) / cfg.name
    print(main_table(results))
    for name, why in results.get("skipped_models", {}).items():
        print(f"left out {name}: {why}")
    print(f"\nwrote {out / 'results.json'}, {out / 'report.md'} and charts")
    return 0
