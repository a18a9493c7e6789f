"""``crossling model prepare|verify|path``: the embedded default model."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

from crossling import models
from crossling.config import CliArgs, Verb, configs_of, parse_cli


@dataclass
class ModelDirConfig:
    cache: str | None = field(
        default=None, metadata={"help": "cache folder (default: $CROSSLING_CACHE or ~/.cache/crossling)"}
    )


@dataclass
class PrepareConfig(ModelDirConfig):
    force: bool = field(default=False, metadata={"help": "convert again even if a verified copy exists"})
    no_verify: bool = field(default=False, metadata={"help": "skip the generation check"})


# No YAML: the few settings are flags (CONFIGS is empty).
VERBS: dict[str, Verb] = {
    "prepare": Verb(PrepareConfig, "convert the embedded Gemma 3 270M GGUF once (cached)", yaml=False),
    "verify": Verb(
        ModelDirConfig, "re-check checksums and fluent generations of the prepared model", yaml=False
    ),
    "path": Verb(ModelDirConfig, "print the folder of the prepared default model", yaml=False),
}
CONFIGS: dict[str, type] = configs_of(VERBS)


def parse(argv: list[str]) -> CliArgs:
    return parse_cli("crossling model", VERBS, argv, description=__doc__)


def main(argv: list[str] | None = None) -> int:
    cli = parse(list(sys.argv[1:] if argv is None else argv))
    cache = cli.config.cache
    if cli.verb == "prepare":
        force = cli.config.force
        start = time.perf_counter()
        was_ready = models.is_prepared(models.default_model_dir(cache))
        folder = models.prepare(cache=cache, force=force, verify=not cli.config.no_verify)
        took = time.perf_counter() - start
        state = "already prepared" if was_ready and not force else "converted and verified"
        print(f"default model {state} in {took:.1f}s: {folder}")
        manifest = models._read_manifest(folder) or {}
        if manifest.get("verification") and not (was_ready and not force):
            print(manifest["verification"])
        return 0
    folder = models.default_model_dir(cache)
    if cli.verb == "path":
        print(folder)
        return 0 if models.is_prepared(folder) else 1
    # verify
    if not models.is_prepared(folder, check_hashes=True):
        print(f"{folder}: missing, unfinished or checksum mismatch; run `crossling model prepare --force`")
        return 1
    # transformers takes seconds to import: only for the one verb that loads the model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    result = models.verify_model(
        AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    )
    print(result.report())
    return 0 if result.ok else 1
