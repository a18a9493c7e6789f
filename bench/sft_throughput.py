"""SFT throughput: crossling's recipe vs a plain TRL ``SFTTrainer`` script, same model/data/LoRA/steps.

    flock /tmp/crossling-heavy.lock timeout 1500 .venv/bin/python bench/sft_throughput.py

Each variant runs in its own process (so peak RSS is its own) for ``--steps`` optimizer steps on 360
NTREX translation chats (en → de/fr/es/zh/sw/ru, train documents), QLoRA nf4 with fp32 compute,
LoRA r=16 on all linear layers, batch 4, max_length 256, assistant-only loss, seed 0:

- ``trl``: the plain script a TRL user writes (``SFTConfig(assistant_only_loss=True)`` + ``peft_config``).
- ``crossling``: ``sft.recipe``'s trainer (loss on trained positions only, fp32 LoRA on CPU,
  padding-free batches).
- ``crossling-fp32``: the same with a full-precision (fp32) base instead of nf4, for memory.

Throughput counts only real tokens (padding excluded) and skips the first step (warm-up). The losses
at equal steps are printed side by side: the recipes must train the same loss.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TARGETS = ["de", "fr", "es", "zh", "sw", "ru"]


def ntrex_chats(n: int = 360) -> list[dict]:
    from crossling.corpora import ntrex_pairs
    from crossling.languages import name

    per = n // len(TARGETS)
    rows = []
    for tgt in TARGETS:
        for pair in ntrex_pairs("en", tgt, "train")[:per]:
            rows.append(
                {
                    "messages": [
                        {"role": "user", "content": f"Translate into {name(tgt)}:\n{pair['src']}"},
                        {"role": "assistant", "content": pair["tgt"]},
                    ],
                    "lang": tgt,
                }
            )
    return rows


class StepClock:
    """A TrainerCallback recording (time, real tokens, loss) at every step end."""

    def __new__(cls, trainer):
        from transformers import TrainerCallback

        class _Clock(TrainerCallback):
            def __init__(self):
                self.marks: list[tuple[float, int]] = []
                self.losses: dict[int, float] = {}

            def on_step_end(self, args, state, control, **kwargs):
                self.marks.append((time.perf_counter(), trainer._total_train_tokens))

            def on_log(self, args, state, control, logs=None, **kwargs):
                if logs and "loss" in logs:
                    self.losses[state.global_step] = logs["loss"]

        return _Clock()


def common_args(steps: int, out: str) -> dict:
    return dict(
        output_dir=out,
        max_steps=steps,
        per_device_train_batch_size=4,
        learning_rate=2e-4,
        logging_steps=1,
        save_strategy="no",
        eval_strategy="no",
        report_to="none",
        seed=0,
        data_seed=0,
        disable_tqdm=True,
        lr_scheduler_type="constant",
        warmup_steps=0,
        use_cpu=True,
        bf16=False,
    )


def run_trl(model_path: str, steps: int, out: str):
    """What a TRL user writes: nf4 base + peft_config, assistant_only_loss, default metrics."""
    import datasets
    import torch
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig
    from trl import SFTConfig, SFTTrainer

    from crossling.models import load_tokenizer

    tokenizer = load_tokenizer(model_path)
    bnb = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.float32,
    )
    model = AutoModelForCausalLM.from_pretrained(
        model_path, quantization_config=bnb, dtype=torch.float32, device_map={"": "cpu"}
    )
    peft = LoraConfig(
        r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM"
    )
    ds = datasets.Dataset.from_list([{"messages": r["messages"]} for r in ntrex_chats()])
    args = SFTConfig(max_length=256, assistant_only_loss=True, **common_args(steps, out))
    return SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tokenizer, peft_config=peft)


def run_crossling(model_path: str, steps: int, out: str, quantization: str):
    import datasets
    from trl import SFTConfig

    from sft import data as sft_data
    from sft.modeling import load_model_for_training
    from sft.trainer import CrosslingSFTTrainer

    model, tokenizer = load_model_for_training(model_path, quantization=quantization)
    rows = ntrex_chats()
    tokenized, _ = sft_data.tokenize_rows(rows, tokenizer, 256)
    ds = datasets.Dataset.from_list([{"input_ids": r["input_ids"], "labels": r["labels"]} for r in tokenized])
    args = SFTConfig(max_length=None, padding_free=True, assistant_only_loss=False, **common_args(steps, out))
    return CrosslingSFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tokenizer)


def worker(variant: str, model: str, steps: int) -> dict:
    import tempfile

    import torch

    from crossling.models import resolve_model

    torch.manual_seed(0)
    path = resolve_model(model)
    out = tempfile.mkdtemp(prefix=f"bench-sft-{variant}-")
    if variant == "trl":
        trainer = run_trl(path, steps, out)
    else:
        trainer = run_crossling(path, steps, out, "none" if variant == "crossling-fp32" else "nf4")
    clock = StepClock(trainer)
    trainer.add_callback(clock)
    trainer.train()
    (t0, tok0), (t1, tok1) = clock.marks[0], clock.marks[-1]
    return {
        "variant": variant,
        "steps": len(clock.marks),
        "real_tokens_per_s": (tok1 - tok0) / (t1 - t0),
        "seconds_per_step": (t1 - t0) / max(len(clock.marks) - 1, 1),
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "losses": clock.losses,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="gemma3-270m")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--variants", default="trl,crossling,crossling-fp32")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    if args.worker:
        print("RESULT " + json.dumps(worker(args.worker, args.model, args.steps)), flush=True)
        return 0
    results = {}
    for variant in args.variants.split(","):
        print(f"== {variant}: {args.steps} steps on {args.model} ...", flush=True)
        proc = subprocess.run(
            [
                sys.executable,
                __file__,
                "--worker",
                variant,
                "--model",
                args.model,
                "--steps",
                str(args.steps),
            ],
            capture_output=True,
            text=True,
            env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},
        )
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode or not lines:
            print(proc.stderr[-3000:], file=sys.stderr)
            raise SystemExit(f"{variant} failed (exit {proc.returncode})")
        results[variant] = json.loads(lines[-1].removeprefix("RESULT "))
        r = results[variant]
        print(
            f"   {r['real_tokens_per_s']:.1f} real tok/s, {r['seconds_per_step']:.2f} s/step, "
            f"peak RSS {r['peak_rss_gb']:.2f} GB",
            flush=True,
        )
    report(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


def report(results: dict) -> None:
    print("\nvariant          real tok/s   s/step   peak RSS GB")
    for name, r in results.items():
        print(
            f"{name:<16} {r['real_tokens_per_s']:>10.1f} {r['seconds_per_step']:>8.2f} {r['peak_rss_gb']:>12.2f}"
        )
    if "trl" in results and "crossling" in results:
        a, b = results["crossling"], results["trl"]
        print(
            f"\nthroughput crossling / plain TRL: {a['real_tokens_per_s'] / b['real_tokens_per_s']:.2f}x; "
            f"peak RSS {a['peak_rss_gb']:.2f} vs {b['peak_rss_gb']:.2f} GB"
        )
        steps = sorted(set(a["losses"]) & set(b["losses"]), key=int)
        print(
            "loss at equal steps (crossling | TRL): "
            + ", ".join(f"{s}: {a['losses'][s]:.3f} | {b['losses'][s]:.3f}" for s in steps)
        )
        diffs = [abs(a["losses"][s] - b["losses"][s]) for s in steps]
        if diffs:
            print(f"max |loss difference|: {max(diffs):.4f}")
    if "crossling-fp32" in results and "crossling" in results:
        print(
            f"peak RSS fp32 LoRA {results['crossling-fp32']['peak_rss_gb']:.2f} GB vs "
            f"QLoRA nf4 {results['crossling']['peak_rss_gb']:.2f} GB"
        )


if __name__ == "__main__":
    raise SystemExit(main())
