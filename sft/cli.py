"""``crossling sft train | merge | average`` — parse a config, run one recipe step, print the result.

Under ``accelerate launch`` use the module form: ``accelerate launch -m sft train CONFIG``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from crossling.config import add_config_arguments, load_config
from sft.config import AverageConfig, MergeConfig, SFTRunConfig

CONFIGS: dict[str, type] = {"train": SFTRunConfig, "merge": MergeConfig, "average": AverageConfig}

HELP = {
    "train": "QLoRA supervised fine-tuning on a built dataset (writes runs/<name>/)",
    "merge": "merge a LoRA adapter into a full checkpoint",
    "average": "average the last k checkpoints of a run (or given adapters) into one adapter",
}


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="crossling sft", description="QLoRA supervised fine-tuning")
    sub = parser.add_subparsers(dest="verb", required=True)
    for verb, cls in CONFIGS.items():
        add_config_arguments(sub.add_parser(verb, help=HELP[verb], description=HELP[verb]), cls)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = make_parser()
    if not argv or argv[0] not in CONFIGS or any(a in ("-h", "--help") for a in argv):
        parser.parse_args(argv)  # prints usage / help and exits
    # CONFIG is optional, so `train --model x` must not take x for the config: split by hand
    verb, rest = argv[0], argv[1:]
    path = rest[0] if rest and not rest[0].startswith("--") else None
    config = load_config(CONFIGS[verb], path, rest[1:] if path else rest)
    args = argparse.Namespace(verb=verb, config=path)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.verb == "train":
        from sft.recipe import run

        command = "crossling sft train " + " ".join(rest)
        run(config, command=command)
    elif args.verb == "merge":
        from sft.runs import merge_adapter

        out = merge_adapter(config.adapter, config.output, config.model)
        print(f"merged {config.adapter} → {out}")
    elif args.verb == "average":
        from sft.runs import average_adapters, list_checkpoints

        dirs = config.adapters or [str(p) for p in list_checkpoints(config.run)[-config.last :]]
        if not dirs:
            from crossling.errors import CrosslingError

            raise CrosslingError(f"{config.run}: no checkpoint-N folders to average")
        out = average_adapters(dirs, config.output)
        print(json.dumps({"averaged": dirs, "output": str(out)}, indent=2))
    return 0
