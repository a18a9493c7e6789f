"""Batch generation benchmark: ``crossling.generation.generate`` on the llama.cpp backend vs transformers
(and vLLM with ``--backends``), the workload of evaluation and align's sampling.

    flock /tmp/crossling-heavy.lock timeout 3000 .venv/bin/python bench/generation.py

80 chat prompts (NTREX dev sentences to translate into German, French, Spanish and Swahili), 64 new
tokens at most, greedy, no cache; each backend warmed up first (model loaded, llama-server started,
GGUFs converted), then timed on the base model and on a LoRA adapter (bench/serve.py's: r 16, every
linear layer). Prints output tokens per second (tokens counted by the model's tokenizer). A script,
not a timed test.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(REPO)  # run as a script: import `bench.serve`, not the `serve` package by accident

from bench.serve import bench_adapter  # noqa: E402
from crossling.corpora import ntrex_pairs  # noqa: E402
from crossling.generation import generate, release  # noqa: E402
from crossling.models import load_tokenizer, resolve_model  # noqa: E402

TARGETS = {"de": "German", "fr": "French", "es": "Spanish", "sw": "Swahili"}


def prompts(n: int) -> list[list[dict]]:
    per = -(-n // len(TARGETS))
    out = []
    for code, name in TARGETS.items():
        for pair in ntrex_pairs("en", code, "dev")[:per]:
            out.append([{"role": "user", "content": f"Translate into {name}:\n{pair['src']}"}])
    return out[:n]


def run(model: str, batch: list, backend: str, adapter: str | None, tokens: int, tokenizer) -> dict:
    generate(
        model, batch[:2], adapter=adapter, backend=backend, max_new_tokens=4, cache_dir="off", progress=False
    )
    t = time.perf_counter()
    outs = generate(model, batch, adapter=adapter, backend=backend, max_new_tokens=tokens, cache_dir="off")
    wall = time.perf_counter() - t
    n = sum(len(tokenizer(o[0], add_special_tokens=False)["input_ids"]) for o in outs)
    return {"wall_s": wall, "tokens": n, "tok_s": n / wall, "first": outs[0][0][:80]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="gemma3-270m")
    p.add_argument("--prompts", type=int, default=80)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--backends", default="llamacpp,transformers")
    p.add_argument("--adapter", default="/tmp/crossling-bench-lora")
    args = p.parse_args()
    model_dir = resolve_model(args.model)
    adapter = bench_adapter(model_dir, args.adapter)
    tokenizer = load_tokenizer(model_dir)
    batch = prompts(args.prompts)
    print(
        f"load before: {os.getloadavg()[0]:.2f}; {len(batch)} prompts x <= {args.max_new_tokens} tokens, greedy"
    )
    rows = {}
    for backend in args.backends.split(","):
        for name, lora in (("base", None), ("+lora", adapter)):
            r = rows[f"{backend} {name}"] = run(
                args.model, batch, backend, lora, args.max_new_tokens, tokenizer
            )
            print(
                f"  {backend} {name}: {r['tok_s']:.1f} tok/s ({r['tokens']} tokens in {r['wall_s']:.1f} s, "
                f"load {os.getloadavg()[0]:.1f}) | {r['first']!r}",
                flush=True,
            )
        release()
    base = rows.get("transformers base")
    for key, r in rows.items():
        if base and not key.startswith("transformers"):
            print(f"{key} / transformers base: {r['tok_s'] / base['tok_s']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
