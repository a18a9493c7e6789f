"""The ``crossling`` command: one front door that hands each area's arguments to that area's CLI.

``crossling <area> ...`` imports ``<package>.cli`` lazily (so ``crossling model prepare`` never
imports vLLM) and calls its ``main(argv)``. Every area CLI module exposes:

- ``main(argv: list[str] | None) -> int``
- ``CONFIGS: dict[str, type]`` — verb → config dataclass, so shipped YAMLs can be validated
  (``tests/test_configs.py``).

All but ``demo`` read ``VERB [CONFIG] [ARG ...] [--field value ...]`` the same way:
``crossling.config.parse_cli`` over their ``VERBS``, through a ``parse(argv)`` the tests call too.
"""

from __future__ import annotations

import importlib
import sys

from crossling.errors import CrosslingError

AREAS: dict[str, tuple[str, str]] = {
    "model": ("crossling.model_cli", "prepare / inspect the default model (or any HF model)"),
    "data": ("data_recipes.cli", "build multilingual training sets from recipes"),
    "sft": ("sft.cli", "QLoRA supervised fine-tuning"),
    "align": ("align.cli", "reward model, cross-lingual reward transfer, DPO / KTO"),
    "serve": ("serve.cli", "OpenAI-compatible server (vLLM or transformers) + UI"),
    "safety": ("safety.cli", "multilingual safety filter: build seed, train, check texts"),
    "ui": ("serve.ui.cli", "the Gradio chat UI on its own, against any OpenAI-compatible URL"),
    "eval": ("evaluation.cli", "evaluate a model or endpoint: fidelity, chrF, MGSM, safety"),
    "export": ("sft.export_cli", "GGUF (f16/q8_0/q4_k_m) + GGUF LoRA + Ollama Modelfile, verified"),
    "demo": ("crossling.demo", "the whole pipeline on the default model"),
}


def area_module(area: str):
    return importlib.import_module(AREAS[area][0])


def _usage() -> str:
    lines = ["usage: crossling <area> ...", "", "areas:"]
    lines += [f"  {name:<7} {help_}" for name, (_, help_) in AREAS.items()]
    lines += ["", "Run `crossling <area> --help` for an area's commands."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    area, rest = argv[0], argv[1:]
    if area not in AREAS:
        print(f"crossling: unknown area {area!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    try:
        module = area_module(area)
    except ModuleNotFoundError as e:
        print(f"crossling {area}: not available ({e})", file=sys.stderr)
        return 2
    try:
        return int(module.main(rest) or 0)
    except CrosslingError as e:
        print(f"crossling {area}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"crossling {area}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
