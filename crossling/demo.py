"""``crossling demo [CONFIG]``: the main job on the embedded default model, end to end.

prepare model → build data → build preference pairs → SFT (QLoRA) → reward model (English) →
alignment (``alignment: kto`` or ``dpo``) on target-language samples scored by the transferred reward
→ evaluate base vs SFT vs aligned, with the aligned-over-SFT win rate on the same held-out prompts
(bootstrap intervals on every number) → serve the tuned adapters with the UI.

Each stage runs the same ``crossling`` command a user would type (in a subprocess, so memory is given
back between stages) and is skipped when its output already exists, so a rerun resumes where the last
one stopped (``--force [sft]`` reruns a stage). ``--fast true`` is the smoke version: the same stages
with a handful of steps and samples, written under ``runs/fast/`` and ``results/fast/``. Generations
are cached under ``runs/`` (``runs/generations``), so a clean clone starts from nothing and a rerun in
the same clone generates nothing twice. The demo ends with a timing table (``demo_timings.json``):
each stage's time, the cores it and other processes kept busy, and the CPU time the host reported
stolen, so a slow run says whether other work on the machine was the cause.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from crossling import models
from crossling.config import Verb, configs_of, parse_cli
from crossling.device import CpuClock, cpu_clock, cpu_summary, cpu_use


@dataclass
class DemoConfig:
    """``crossling demo [CONFIG]``: which alignment ends the chain, the fast smoke mode, serving."""

    alignment: Literal["kto", "dpo"] = field(
        default="kto",
        metadata={"help": "The preference method after SFT (configs/align/gemma3-270m_<method>.yaml)."},
    )
    backend: Literal["llamacpp", "transformers", "auto"] = field(
        default="llamacpp",
        metadata={
            "help": "Generation backend of the alignment's sampling and of the eval: llamacpp (built by "
            "`make llamacpp`; with an adapter ~2x transformers and far above vLLM-CPU here), "
            "transformers, or auto (crossling.generation's choice)."
        },
    )
    fast: bool = field(default=False, metadata={"help": "Smoke run: a few steps and samples per stage."})
    serve: bool = field(default=True, metadata={"help": "Serve the adapters (and the UI) at the end."})
    stop_after: str | None = field(
        default=None, metadata={"help": "Stop after this stage (make train: align)."}
    )
    force: list[str] = field(default_factory=list, metadata={"help": "Stages to rerun even if done."})
    port: int = field(default=8000, metadata={"help": "Port of the server at the end."})

    def __post_init__(self) -> None:
        names = stage_names()
        for name in [*self.force, *([self.stop_after] if self.stop_after else [])]:
            if name not in names:
                raise ValueError(f"unknown stage {name!r}; stages: {', '.join(names)}")


VERBS = {"": Verb(DemoConfig, "the whole pipeline on the default model")}
CONFIGS = configs_of(VERBS)


@dataclass
class Stage:
    name: str
    args: list[str]  # crossling CLI arguments
    done_when: str  # a path that exists once the stage has finished
    run_dir: str | None = None  # a trainer's output_dir (checkpoints: resume, or overwrite when forced)


def run_args(stage: Stage, forced: bool) -> list[str]:
    """The stage's arguments, plus what its trainer needs to touch an earlier run in its folder:
    ``--overwrite_output_dir true`` when the stage is forced, ``--resume_from_checkpoint latest`` when
    an interrupted run left checkpoints (trainers refuse a silent fresh start over them)."""
    if stage.run_dir is None or not Path(stage.run_dir).is_dir():
        return stage.args
    if forced:
        return [*stage.args, "--overwrite_output_dir", "true"]
    if any(Path(stage.run_dir).glob("checkpoint-*")):
        return [*stage.args, "--resume_from_checkpoint", "latest"]
    return stage.args


def stage_names() -> list[str]:
    return ["data", "preferences", "sft", "reward", "align", "eval"]


def run_dirs(fast: bool, alignment: str) -> dict[str, str]:
    if fast:
        return {"sft": "runs/fast/sft", "reward": "runs/fast/reward", "align": f"runs/fast/{alignment}",
                "eval": "fast"}  # fmt: skip
    return {"sft": "runs/sft-gemma3-270m", "reward": "runs/gemma3-270m_reward",
            "align": f"runs/gemma3-270m_{alignment}", "eval": "default"}  # fmt: skip


def stages(fast: bool, alignment: str = "kto", backend: str = "llamacpp") -> list[Stage]:
    d = run_dirs(fast, alignment)
    eval_cfg = "configs/eval/fast.yaml" if fast else "configs/eval/default.yaml"
    b = f"backend: {backend}"
    models_ = (
        f"[{{name: base, model: gemma3-270m, {b}}}, {{name: sft, model: gemma3-270m, adapter: {d['sft']}/adapter, {b}}},"
        f" {{name: {alignment}, model: gemma3-270m, adapter: {d['align']}/adapter, {b}}}]"
    )
    sft_fast = ["--max_steps", "8", "--eval_samples_per_language", "1", "--save_steps", "8"]
    rm_fast = ["--max_train_pairs", "32", "--eval_pairs_per_language", "4"]
    align_fast = ["--prompts_per_language", "2", "--n", "2", "--max_new_tokens", "24",
                  "--target_languages", "[de,sw]"]  # fmt: skip
    return [
        Stage("data", ["data", "build", "configs/data/default.yaml"], "data/built/default/card.md"),
        Stage("preferences", ["align", "data", "configs/align/preferences.yaml"], "data/built/preferences"),
        Stage(
            "sft",
            ["sft", "train", "configs/sft/gemma3-270m_lora.yaml", "--output_dir", d["sft"]]
            + (sft_fast if fast else []),
            f"{d['sft']}/adapter/adapter_config.json",
            d["sft"],
        ),
        Stage(
            "reward",
            ["align", "reward", "configs/align/gemma3-270m_reward.yaml", "--output_dir", d["reward"]]
            + (rm_fast if fast else []),
            f"{d['reward']}/transfer.json",
            d["reward"],
        ),
        Stage(
            "align",
            ["align", alignment, f"configs/align/gemma3-270m_{alignment}.yaml", "--output_dir", d["align"],
             "--adapter", f"{d['sft']}/adapter", "--reward_model", d["reward"], "--backend", backend]
            + (align_fast if fast else []),
            f"{d['align']}/adapter/adapter_config.json",
            d["align"],
        ),
        Stage(
            "eval",
            ["eval", "run", eval_cfg, "--models", models_, "--reward_report", f"{d['reward']}/transfer.json",
             "--win_rates", f"[{alignment}:sft]", "--win_rate_reward_model", d["reward"]],
            f"results/{d['eval']}/report.md",
        ),
    ]  # fmt: skip


def _run(stage: Stage, env: dict[str, str], forced: bool = False) -> None:
    args = run_args(stage, forced)
    cmd = [sys.executable, "-m", "crossling", *args]
    print(f"\n== [{stage.name}] crossling {' '.join(args)}", flush=True)
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env)
    took = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"demo: stage {stage.name!r} failed (exit {proc.returncode}) after {took:.0f}s")


def timing_table(
    timings: dict[str, float | None], machine: str | None = None, usage: dict[str, dict] | None = None
) -> str:
    """Markdown: seconds and minutes per stage (``None``: done before, not run now), and the total,
    headed by the machine they were taken on (:func:`crossling.device.cpu_summary`). With ``usage``
    (stage -> :func:`crossling.device.cpu_use`) each stage also says how many cores it kept busy, how
    many other processes did, and what share of the CPUs' time the host reported stolen."""
    lines = [f"Machine: {machine or cpu_summary()}."]
    cols = " cores busy: the stage / other processes | stolen by the host |" if usage else ""
    lines += ["", f"| stage | time |{cols}", "|---|---|" + ("---|---|" if usage else "")]
    for name, secs in timings.items():
        took = "done before" if secs is None else f"{secs / 60:.1f} min ({secs:.0f} s)"
        row = f"| {name} | {took} |"
        if usage:
            row += f" {_usage_cells(usage.get(name))} |"
        lines.append(row)
    total = sum(s for s in timings.values() if s is not None)
    lines.append(f"| **stages run now** | **{total / 60:.1f} min** |" + (" | |" if usage else ""))
    return "\n".join(lines)


def _usage_cells(use: dict | None) -> str:
    if not use or use["seconds"] < 1.0:  # too short to measure: noise in the CPU clocks
        return " |"
    other = "?" if use["other_cores"] is None else f"{use['other_cores']:.2f}"
    steal = "?" if use["steal"] is None else f"{100 * use['steal']:.1f} %"
    return f"{use['own_cores']:.2f} / {other} | {steal}"


def _measured(timings: dict, usage: dict[str, dict], name: str, clock: CpuClock) -> CpuClock:
    """Record stage ``name``'s time and CPU use since ``clock``, both from one reading, which starts
    the next stage."""
    now = cpu_clock()
    usage[name] = cpu_use(clock, now)
    timings[name] = usage[name]["seconds"]
    return now


def main(argv: list[str] | None = None) -> int:
    cfg: DemoConfig = parse_cli("crossling demo", VERBS, list(sys.argv[1:] if argv is None else argv),
                                description=__doc__.split("\n")[0]).config  # fmt: skip
    env = dict(os.environ)
    env.setdefault("CROSSLING_GENERATION_CACHE", str(Path("runs/generations").resolve()))
    timings: dict[str, float | None] = {}
    usage: dict[str, dict] = {}
    clock = cpu_clock()
    print("== [model] crossling model prepare", flush=True)
    models.prepare()
    clock = _measured(timings, usage, "model", clock)
    plan = stages(cfg.fast, cfg.alignment, cfg.backend)
    for stage in plan:
        if Path(stage.done_when).exists() and stage.name not in cfg.force:
            print(f"== [{stage.name}] done already ({stage.done_when}); --force [{stage.name}] reruns it")
            timings[stage.name] = None
        else:
            _run(stage, env, forced=stage.name in cfg.force)
            clock = _measured(timings, usage, stage.name, clock)
        if stage.name == cfg.stop_after:
            break
    results = Path("results") / run_dirs(cfg.fast, cfg.alignment)["eval"]
    results.mkdir(parents=True, exist_ok=True)
    machine = cpu_summary()
    record = {"machine": machine, "seconds": timings, "cpu": usage}
    (results / "demo_timings.json").write_text(json.dumps(record, indent=2))
    table = timing_table(timings, machine, usage)
    (results / "demo_timings.md").write_text(table + "\n")
    if (results / "report.md").exists() and cfg.stop_after in (None, "eval"):
        print((results / "report.md").read_text(encoding="utf-8")[:6000])
    print(f"\n== demo timings (also {results}/demo_timings.md)\n{table}", flush=True)
    if not cfg.serve or cfg.stop_after not in (None, "eval"):
        return 0
    d = run_dirs(cfg.fast, cfg.alignment)
    adapters = f"{{sft: {d['sft']}/adapter, {cfg.alignment}: {d['align']}/adapter}}"
    serve = ["serve", "configs/serve/default.yaml", "--adapters", adapters, "--port", str(cfg.port)]
    print(f"\n== [serve] crossling {' '.join(serve)}  (Ctrl-C to stop)", flush=True)
    return subprocess.call([sys.executable, "-m", "crossling", *serve], env=env)
