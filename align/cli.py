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

from align.config import DPORunConfig, KTORunConfig, PreferenceDataConfig, RewardRunConfig, WinRateConfig
from crossling.config import parse_verb_config

CONFIGS: dict[str, type] = {
    "data": PreferenceDataConfig,
    "reward": RewardRunConfig,
    "transfer": RewardRunConfig,
    "dpo": DPORunConfig,
    "kto": KTORunConfig,
    "win-rate": WinRateConfig,
}

HELP = {
    "data": "build the shipped preference pairs (translation + safety) in every language",
    "reward": "train a reward model in one source language, then write the transfer report",
    "transfer": "per-language accuracy of a trained reward model on held-out pairs (JSON + PNG)",
    "dpo": "sample the SFT policy, score with the transferred RM, train DPO on best-vs-worst pairs",
    "kto": "sample the SFT policy, score with the transferred RM, train KTO on thresholded labels",
    "win-rate": "aligned vs SFT on held-out prompts: transferred RM vs an independent judge (+ best-of-n)",
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    verb, path, config = parse_verb_config(
        "crossling align", "reward transfer, DPO and KTO", CONFIGS, HELP, argv
    )
    rest = argv[1:]
    command = f"crossling align {verb} " + " ".join(rest)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if verb == "data":
        from align import preference_data

        out = preference_data.write(preference_data.build(config), config.output_dir, config)
        print((out / "summary.json").read_text())
    elif verb == "reward":
        from align import reward

        reward.run(config, command)
    elif verb == "transfer":
        from pathlib import Path

        from align import transfer
        from align.reward import RewardScorer

        transfer.run_transfer_report(config, RewardScorer(config.output_dir), Path(config.output_dir))
    elif verb in ("dpo", "kto"):
        from align import preference_optimization

        preference_optimization.run(config, verb, command)
    elif verb == "win-rate":
        from align import win_rate

        report = win_rate.run(config, command)
        print(json.dumps(report["win_rate"], indent=2))
    return 0
