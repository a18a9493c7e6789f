"""``crossling align data | reward | transfer | dpo | kto | win-rate`` — parse a config, run one step.

The usual order: ``reward`` (trains the RM in the source language and writes the transfer report),
then ``dpo`` or ``kto`` (samples the SFT policy in the target languages, scores with the RM, trains),
then ``win-rate`` (aligned vs SFT, judged by the transferred RM and by an independent judge, with an
optional best-of-n baseline). ``data`` builds the shipped preference pairs on their own; ``transfer``
re-runs the report of a trained RM (e.g. on more languages).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

from align import preference_data, reward, transfer, win_rate
from align.config import DPORunConfig, KTORunConfig, PreferenceDataConfig, RewardRunConfig, WinRateConfig
from crossling.config import CliArgs, Verb, configs_of, parse_cli

VERBS: dict[str, Verb] = {
    "data": Verb(
        PreferenceDataConfig, "build the shipped preference pairs (translation + safety) in every language"
    ),
    "reward": Verb(
        RewardRunConfig, "train a reward model in one source language, then write the transfer report"
    ),
    "transfer": Verb(
        RewardRunConfig, "per-language accuracy of a trained reward model on held-out pairs (JSON + PNG)"
    ),
    "dpo": Verb(
        DPORunConfig, "sample the SFT policy, score with the transferred RM, train DPO on best-vs-worst pairs"
    ),
    "kto": Verb(
        KTORunConfig, "sample the SFT policy, score with the transferred RM, train KTO on thresholded labels"
    ),
    "win-rate": Verb(
        WinRateConfig,
        "aligned vs SFT on held-out prompts: transferred RM vs an independent judge (+ best-of-n)",
    ),
}
CONFIGS: dict[str, type] = configs_of(VERBS)


def parse(argv: list[str]) -> CliArgs:
    return parse_cli("crossling align", VERBS, argv, description="reward transfer, DPO and KTO")


def main(argv: list[str] | None = None) -> int:
    cli = parse(list(sys.argv[1:] if argv is None else argv))
    verb, config = cli.verb, cli.config
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if verb == "data":
        out = preference_data.write(preference_data.build(config), config.output_dir, config)
        print((out / "summary.json").read_text())
    elif verb == "reward":
        reward.run(config, cli.command)
    elif verb == "transfer":
        transfer.run_transfer_report(config, reward.RewardScorer(config.output_dir), Path(config.output_dir))
    elif verb in ("dpo", "kto"):
        # imports torch and transformers (through sft.runs): only for the verbs that train with them
        from align import preference_optimization

        preference_optimization.run(config, verb, cli.command)
    elif verb == "win-rate":
        report = win_rate.run(config, cli.command)
        print(json.dumps(report["win_rate"], indent=2))
    return 0
