"""``crossling demo``: the main job on the embedded default model, end to end.

prepare model → build data → build preference pairs → SFT (QLoRA) → reward model (English) →
DPO on target-language samples scored by the transferred reward → DPO-vs-SFT win rates →
evaluate base vs SFT vs DPO (report embeds the win rates) → serve the tuned adapters with the UI.

Each stage runs the same ``crossling`` command a user would type (in a subprocess, so memory is given
back between stages) and is skipped when its output already exists, so a rerun resumes where the last
one stopped (``--force STAGE`` reruns one). ``--fast`` is the smoke version: the same stages with a
handful of steps and samples, written under ``runs/fast/`` and ``results/fast/``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from crossling import models

CONFIGS: dict[str, type] = {}


@dataclass
class Stage:
    name: str
    args: list[str]  # crossling CLI arguments
    done_when: str  # a path that exists once the stage has finished


def stages(fast: bool) -> list[Stage]:
    sft_dir = "runs/fast/sft" if fast else "runs/sft-gemma3-270m"
    rm_dir = "runs/fast/reward" if fast else "runs/gemma3-270m_reward"
    dpo_dir = "runs/fast/dpo" if fast else "runs/gemma3-270m_dpo"
    eval_cfg = "configs/eval/fast.yaml" if fast else "configs/eval/default.yaml"
    eval_name = "fast" if fast else "default"
    models = (
        f"[{{name: base, model: gemma3-270m}}, {{name: sft, model: gemma3-270m, adapter: {sft_dir}/adapter}},"
        f" {{name: dpo, model: gemma3-270m, adapter: {dpo_dir}/adapter}}]"
    )
    sft_fast = ["--max_steps", "8", "--eval_samples_per_language", "1", "--save_steps", "8"]
    rm_fast = ["--max_train_pairs", "32", "--eval_pairs_per_language", "4"]
    dpo_fast = [
        "--prompts_per_language",
        "2",
        "--n",
        "2",
        "--max_new_tokens",
        "24",
        "--target_languages",
        "[de,sw]",
    ]
    win_fast = ["--prompts_per_language", "2", "--best_of_n", "2", "--languages", "[de,sw]"]
    return [
        Stage("data", ["data", "build", "configs/data/default.yaml"], "data/built/default/card.md"),
        Stage("preferences", ["align", "data", "configs/align/preferences.yaml"], "data/built/preferences"),
        Stage(
            "sft",
            ["sft", "train", "configs/sft/gemma3-270m_qlora.yaml", "--output_dir", sft_dir]
            + (sft_fast if fast else []),
            f"{sft_dir}/adapter/adapter_config.json",
        ),
        Stage(
            "reward",
            ["align", "reward", "configs/align/gemma3-270m_reward.yaml", "--output_dir", rm_dir]
            + (rm_fast if fast else []),
            f"{rm_dir}/transfer.json",
        ),
        Stage(
            "dpo",
            ["align", "dpo", "configs/align/gemma3-270m_dpo.yaml", "--output_dir", dpo_dir,
             "--adapter", f"{sft_dir}/adapter", "--reward_model", rm_dir]
            + (dpo_fast if fast else []),
            f"{dpo_dir}/adapter/adapter_config.json",
        ),
        Stage(
            "win-rate",
            ["align", "win-rate", "configs/align/gemma3-270m_win_rate.yaml",
             "--baseline_adapter", f"{sft_dir}/adapter", "--candidate_adapter", f"{dpo_dir}/adapter",
             "--reward_model", rm_dir, "--output_dir", f"results/{eval_name}/win_rate"]
            + (win_fast if fast else []),
            f"results/{eval_name}/win_rate/win_rate.json",
        ),
        Stage(
            "eval",
            ["eval", "run", eval_cfg, "--models", models, "--reward_report", f"{rm_dir}/transfer.json",
             "--win_rate_report", f"results/{eval_name}/win_rate/win_rate.json"],
            f"results/{eval_name}/report.md",
        ),
    ]  # fmt: skip


def _run(stage: Stage) -> float:
    cmd = [sys.executable, "-m", "crossling", *stage.args]
    print(f"\n== [{stage.name}] crossling {' '.join(stage.args)}", flush=True)
    start = time.perf_counter()
    proc = subprocess.run(cmd)
    took = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"demo: stage {stage.name!r} failed (exit {proc.returncode}) after {took:.0f}s")
    return took


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="crossling demo", description=__doc__)
    p.add_argument("--fast", action="store_true", help="a ~5-minute smoke version (runs/fast, results/fast)")
    p.add_argument("--force", action="append", default=[], help="rerun this stage even if done (repeatable)")
    p.add_argument("--no-serve", dest="serve", action="store_false", help="stop after the report")
    p.add_argument("--port", type=int, default=8000)
    args = p.parse_args(argv)

    timings: dict[str, float] = {}
    start = time.perf_counter()
    print("== [model] crossling model prepare", flush=True)
    models.prepare()
    timings["model"] = time.perf_counter() - start
    plan = stages(args.fast)
    for stage in plan:
        if Path(stage.done_when).exists() and stage.name not in args.force:
            print(f"== [{stage.name}] done already ({stage.done_when}); --force {stage.name} reruns it")
            continue
        timings[stage.name] = _run(stage)
    results = Path("results") / ("fast" if args.fast else "default")
    results.mkdir(parents=True, exist_ok=True)
    (results / "demo_timings.json").write_text(
        json.dumps({k: round(v, 1) for k, v in timings.items()}, indent=2)
    )
    total = sum(timings.values())
    print(f"\n== demo finished: {total / 60:.1f} min for the stages run now; report: {results}/report.md")
    if (results / "report.md").exists():
        print((results / "report.md").read_text(encoding="utf-8")[:4000])
    if not args.serve:
        return 0
    sft_dir, dpo_dir = (
        next(s for s in plan if s.name == n).done_when.rsplit("/", 2)[0] for n in ("sft", "dpo")
    )
    adapters = f"{{sft: {sft_dir}/adapter, dpo: {dpo_dir}/adapter}}"
    serve = ["serve", "configs/serve/default.yaml", "--adapters", adapters, "--port", str(args.port)]
    print(f"\n== [serve] crossling {' '.join(serve)}  (Ctrl-C to stop)", flush=True)
    return subprocess.call([sys.executable, "-m", "crossling", *serve])
