"""``crossling sft train | merge | average`` — parse a config, run one recipe step, print the result.

Under ``accelerate launch`` use the module form: ``accelerate launch -m sft train CONFIG``.
"""

from __future__ import annotations

import json
import logging
import os
import sys

from crossling.config import CliArgs, Verb, configs_of, parse_cli
from crossling.errors import CrosslingError
from sft.config import AverageConfig, MergeConfig, SFTRunConfig

VERBS: dict[str, Verb] = {
    "train": Verb(SFTRunConfig, "QLoRA supervised fine-tuning on a built dataset (writes runs/<name>/)"),
    "merge": Verb(MergeConfig, "merge a LoRA adapter into a full checkpoint"),
    "average": Verb(
        AverageConfig, "average the last k checkpoints of a run (or given adapters) into one adapter"
    ),
}
CONFIGS: dict[str, type] = configs_of(VERBS)


def parse(argv: list[str]) -> CliArgs:
    return parse_cli("crossling sft", VERBS, argv, description="QLoRA supervised fine-tuning")


def main(argv: list[str] | None = None) -> int:
    cli = parse(list(sys.argv[1:] if argv is None else argv))
    config = cli.config
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # sft.recipe and sft.runs import torch/transformers/peft: only once the config is valid, so that
    # `crossling sft --help` and config errors stay fast.
    if cli.verb == "train":
        from sft.recipe import run

        run(config, command=cli.command)
    elif cli.verb == "merge":
        from sft.runs import merge_adapter

        out = merge_adapter(config.adapter, config.output, config.model)
        print(f"merged {config.adapter} → {out}")
    elif cli.verb == "average":
        from sft.runs import average_adapters, list_checkpoints

        dirs = config.adapters or [str(p) for p in list_checkpoints(config.run)[-config.last :]]
        if not dirs:
            raise CrosslingError(f"{config.run}: no checkpoint-N folders to average")
        out = average_adapters(dirs, config.output)
        print(json.dumps({"averaged": dirs, "output": str(out)}, indent=2))
    return 0
