"""``crossling export gguf [CONFIG] [--adapter DIR] [--quant f16,q8_0,q4_k_m]``: GGUF + Ollama export.

Also ``crossling export llamacpp``: build llama.cpp's server and quantizer into the cache now (every
other llama.cpp path builds it on first use).
"""

from __future__ import annotations

import json
import logging
import sys

from crossling.config import CliArgs, Verb, configs_of, parse_cli
from sft.export import ExportConfig

VERBS: dict[str, Verb] = {
    "gguf": Verb(
        ExportConfig,
        "merge an adapter into its base → GGUF (f16/q8_0/q4_k_m...) + GGUF LoRA + Ollama Modelfile, verified",
    ),
    "llamacpp": Verb(None, "build llama.cpp's llama-server + llama-quantize once into the cache"),
}
CONFIGS: dict[str, type] = configs_of(VERBS)


def parse(argv: list[str]) -> CliArgs:
    return parse_cli("crossling export", VERBS, argv, description="export models for llama.cpp and Ollama")


def main(argv: list[str] | None = None) -> int:
    cli = parse(list(sys.argv[1:] if argv is None else argv))
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if cli.verb == "llamacpp":
        from crossling.llamacpp import build

        found = build()
        print(json.dumps({"root": str(found.root), **found.manifest()}, indent=2))
        return 0
    from sft.export import export_gguf

    report = export_gguf(cli.config)
    print(f"exported in {report['seconds']} s → {report['output']}")
    for f in report["files"]:
        print(f"  {f}")
    print(f"  {report['modelfile']}   (ollama create <name> -f {report['modelfile']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
