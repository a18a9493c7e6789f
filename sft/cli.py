"""``crossling sft train | merge | average`` — parse a config, run one recipe step, print the result.

Under ``accelerate launch`` use the module form: ``accelerate launch -m sft train CONFIG``.
"""

from __future__ import annotations

import json
import logging
import os
import sys

from crossling.config import parse_verb_config
from sft.config import AverageConfig, MergeConfig, SFTRunConfig

CONFIGS: dict[str, type] = {"train": SFTRunConfig, "merge": MergeConfig, "average": AverageConfig}

HELP = {
    "train": "QLoRA supervised fine-tuning on a built dataset (writes runs/<name>/)",
    "merge": "merge a LoRA adapter into a full checkpoint",
    "average": "average the last k checkpoints of a run (or given adapters) into one adapter",
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    verb, path, config = parse_verb_config(
        "crossling sft", "QLoRA supervised fine-tuning", CONFIGS, HELP, argv
    )
    rest = argv[1:]
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if verb == "train":
        from sft.recipe import run

        command = "crossling sft train " + " ".join(rest)
        run(config, command=command)
    elif verb == "merge":
        from sft.runs import merge_adapter

        out = merge_adapter(config.adapter, config.output, config.model)
        print(f"merged {config.adapter} → {out}")
    elif verb == "average":
        from sft.runs import average_adapters, list_checkpoints

        dirs = config.adapters or [str(p) for p in list_checkpoints(config.run)[-config.last :]]
        if not dirs:
            from crossling.errors import CrosslingError

            raise CrosslingError(f"{config.run}: no checkpoint-N folders to average")
        out = average_adapters(dirs, config.output)
        print(json.dumps({"averaged": dirs, "output": str(out)}, indent=2))
    return 0
