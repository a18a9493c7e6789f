"""Throughput of the local generation backends on the default model: which one `auto` should pick.

    python -m evaluation.benchmark --backend transformers --prompts 30 --batch_size 32
    python -m evaluation.benchmark --backend vllm --prompts 100 --adapter runs/gemma3-270m_dpo/adapter
    python -m evaluation.benchmark --backend vllm --prompts 80 --n 4 --temperature 0.7 --max_new_tokens 64

Prompts are NTREX test sentences (en→xx, spread over the demo languages) with the eval's translation
instruction, greedy (or ``--n`` samples at ``--temperature``), no cache. Prints one JSON line: wall
time, prompts/s and generated tokens/s (and, with an adapter, the time of a second pass through the
adapter — on vLLM it reuses the engine; ``--adapter_only`` skips the pass without it).
Heavy: run it under the shared lock, `flock /tmp/crossling-heavy.lock python -m evaluation.benchmark`.
"""

from __future__ import annotations

import argparse
import json
import time

from crossling.generation import generate
from crossling.languages import DEMO_LANGUAGES
from crossling.models import load_tokenizer
from evaluation.tasks.translation import Translation


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="transformers", choices=["transformers", "vllm"])
    parser.add_argument("--model", default="gemma3-270m")
    parser.add_argument("--adapter", default=None)
    parser.add_argument("--prompts", type=int, default=30)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--max_new_tokens", type=int, default=80)
    parser.add_argument("--n", type=int, default=1, help="samples per prompt (with --temperature > 0)")
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--top_p", type=float, default=1.0)
    parser.add_argument("--adapter_only", action="store_true", help="skip the pass without the adapter")
    args = parser.parse_args(argv)
    per_lang = max(1, args.prompts // len(DEMO_LANGUAGES))
    items = Translation(list(DEMO_LANGUAGES), sentences=per_lang).items()[: args.prompts]
    prompts = [i.messages for i in items]
    kw = dict(
        max_new_tokens=args.max_new_tokens,
        cache_dir="off",
        backend=args.backend,
        batch_size=args.batch_size,
        n=args.n,
        temperature=args.temperature,
        top_p=args.top_p,
    )
    tokenizer = load_tokenizer(args.model)
    result = {"backend": args.backend, "prompts": len(prompts), "max_new_tokens": args.max_new_tokens,
              "n": args.n, "temperature": args.temperature}  # fmt: skip
    passes = [] if args.adapter_only and args.adapter else [("base", None)]
    passes += [("adapter", args.adapter)] if args.adapter else []
    for label, adapter in passes:
        started = time.time()
        outs = generate(args.model, prompts, adapter=adapter, **kw)
        seconds = time.time() - started
        # Re-tokenized output length: close to the generated count for a real model.
        texts = [t for o in outs for t in (o if args.temperature > 0 else o[:1])]
        tokens = sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)
        result[label] = {"seconds": round(seconds, 1), "prompts_per_s": round(len(prompts) / seconds, 3),
                         "generated_tokens": tokens, "tokens_per_s": round(tokens / seconds, 1)}  # fmt: skip
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
