"""``crossling model prepare|verify|path``: the embedded default model."""

from __future__ import annotations

import argparse
import time

from crossling import models

CONFIGS: dict[str, type] = {}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="crossling model", description=__doc__)
    sub = p.add_subparsers(dest="verb", required=True)
    prep = sub.add_parser("prepare", help="convert the embedded Gemma 3 270M GGUF once (cached)")
    prep.add_argument("--cache", help="cache folder (default: $CROSSLING_CACHE or ~/.cache/crossling)")
    prep.add_argument("--force", action="store_true", help="convert again even if a verified copy exists")
    prep.add_argument("--no-verify", dest="verify", action="store_false", help="skip the generation check")
    ver = sub.add_parser("verify", help="re-check checksums and fluent generations of the prepared model")
    ver.add_argument("--cache")
    pth = sub.add_parser("path", help="print the folder of the prepared default model")
    pth.add_argument("--cache")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.verb == "prepare":
        start = time.perf_counter()
        was_ready = models.is_prepared(models.default_model_dir(args.cache))
        folder = models.prepare(cache=args.cache, force=args.force, verify=args.verify)
        took = time.perf_counter() - start
        state = "already prepared" if was_ready and not args.force else "converted and verified"
        print(f"default model {state} in {took:.1f}s: {folder}")
        manifest = models._read_manifest(folder) or {}
        if manifest.get("verification") and not (was_ready and not args.force):
            print(manifest["verification"])
        return 0
    folder = models.default_model_dir(args.cache)
    if args.verb == "path":
        print(folder)
        return 0 if models.is_prepared(folder) else 1
    # verify
    if not models.is_prepared(folder, check_hashes=True):
        print(f"{folder}: missing, unfinished or checksum mismatch; run `crossling model prepare --force`")
        return 1
    from transformers import AutoModelForCausalLM, AutoTokenizer

    result = models.verify_model(
        AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    )
    print(result.report())
    return 0 if result.ok else 1
