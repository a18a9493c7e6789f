"""Fault injection for the trainers: kill -9 mid-run, then resume — nothing lost, nothing trained twice.

    .venv/bin/python bench/faults_training.py                        # sft only: ~1-2 min on 2 busy cores
    .venv/bin/python bench/faults_training.py --trainers sft,reward,dpo,kto   # all four: ~8 min

For each trainer, on a tiny random Gemma 3 (built here, no downloads) and a few hand-written rows:

1. ``reference``: an uninterrupted run records the hash of every batch it trains on;
2. ``killed``: the same run, in its own process, gets SIGKILL as soon as a checkpoint exists;
3. ``refused``: a rerun in that folder without ``resume_from_checkpoint`` must exit 2 and leave the
   checkpoints (it used to restart at step 0 and rotate them away);
4. ``resumed``: ``resume_from_checkpoint: latest`` must train exactly the reference's batches after the
   checkpoint's step, log every step once in ``metrics.jsonl`` and end on the reference's adapter.

Each step runs the recipe classes the CLI runs (``sft.recipe.SFTRecipe``, ``align.reward.RewardRecipe``,
``align.preference_optimization.PreferenceRecipe``); DPO/KTO rows are given directly instead of being
sampled and scored (that stage is cached in ``scored.jsonl`` and not what a crash loses). Prints a
table, one row per trainer; exits 1 if any check fails. Bounded: each process is killed after
``--timeout`` seconds (the run then fails with a message saying so).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TRAINERS = ("sft", "reward", "dpo", "kto")
# (German request, good answer, bad answer): distinct rows, so a wrong batch order shows in the hashes
ROWS = [
    ("Translate into German: The capital of France is Paris.", "Die Hauptstadt von Frankreich ist Paris.", "Paris."),
    ("Translate into German: Please translate the sentence.", "Übersetze den Satz bitte.", "translate"),
    ("Translate into German: Good morning, everyone.", "Guten Morgen, alle zusammen.", "good morning"),
    ("Translate into German: The train is late again.", "Der Zug ist schon wieder zu spät.", "train late"),
    ("Translate into German: I like green tea.", "Ich mag grünen Tee.", "tea"),
    ("Translate into German: Where is the station?", "Wo ist der Bahnhof?", "station?"),
    ("Translate into German: The book is on the table.", "Das Buch liegt auf dem Tisch.", "book table"),
    ("Translate into German: We are going home now.", "Wir gehen jetzt nach Hause.", "home"),
]  # fmt: skip


# --- the worker: one run of one trainer, in its own process -----------------------------------------


def worker(trainer: str, workdir: Path, run_dir: Path, resume: bool, max_steps: int, save_steps: int) -> int:
    """Train once, appending ``{"step", "batch"}`` per training step to ``<run_dir>.batches.jsonl``."""
    from crossling.errors import CrosslingError

    common = dict(
        model=str(workdir / "tiny"), quantization="none", output_dir=str(run_dir), max_steps=max_steps,
        save_steps=save_steps, save_total_limit=2, per_device_train_batch_size=2, learning_rate=1e-2,
        logging_steps=1, lora_dropout=0.0, resume_from_checkpoint="latest" if resume else None,
    )  # fmt: skip
    try:
        recipe = _setup(trainer, workdir, common)
    except CrosslingError as e:  # as the CLI does: a one-line error, exit 2
        print(f"error: {e}", file=sys.stderr)
        return 2
    _record_batches(recipe.trainer, Path(f"{run_dir}.batches.jsonl"))
    recipe.train()
    if trainer == "sft":
        recipe.save()
    return 0


def _setup(trainer: str, workdir: Path, common: dict):
    if trainer == "sft":
        from sft.config import SFTRunConfig
        from sft.recipe import SFTRecipe

        cfg = SFTRunConfig(
            **common, data=str(workdir / "sft.jsonl"), eval_steps=None, report_to=["none"],
            eval_samples_per_language=1, mask_check_samples=4, warmup_steps=0,
        )  # fmt: skip
        recipe = SFTRecipe(cfg, command="faults_training sft")
        recipe.setup()
        return recipe
    if trainer == "reward":
        from align.config import RewardRunConfig
        from align.reward import RewardRecipe

        cfg = RewardRunConfig(**common, train_file=str(workdir / "pairs.jsonl"), report_to=[], max_length=64)
        recipe = RewardRecipe(cfg, command="faults_training reward")
        recipe.setup()
        return recipe
    from align import training
    from align.config import DPORunConfig, KTORunConfig
    from align.preference_optimization import PreferenceRecipe

    cfg = (DPORunConfig if trainer == "dpo" else KTORunConfig)(
        **common, adapter=None, report_to=[], max_length=64
    )
    recipe = PreferenceRecipe(cfg, trainer, command=f"faults_training {trainer}")
    recipe.run_dir, recipe.resume = training.start_run(cfg, recipe.command, trainer)  # what data() does first
    recipe.rows = _preference_rows(trainer)
    recipe.setup()
    return recipe


def _preference_rows(trainer: str) -> list[dict]:
    def turn(role: str, text: str) -> list[dict]:
        return [{"role": role, "content": text}]

    if trainer == "dpo":
        return [
            {"prompt": turn("user", p), "chosen": turn("assistant", g), "rejected": turn("assistant", b)}
            for p, g, b in ROWS
        ]
    return [
        {"prompt": turn("user", p), "completion": turn("assistant", text), "label": label}
        for p, g, b in ROWS
        for text, label in ((g, True), (b, False))
    ]  # fmt: skip


def _record_batches(trainer, path: Path) -> None:
    """Wrap ``training_step`` to log a hash of every tensor of every batch, flushed as it goes."""
    original = trainer.training_step

    def training_step(model, inputs, *args, **kwargs):
        digest = hashlib.sha1()
        for key in sorted(inputs):
            if hasattr(inputs[key], "cpu"):
                digest.update(key.encode() + inputs[key].cpu().numpy().tobytes())
        record = {"step": trainer.state.global_step + 1, "batch": digest.hexdigest()[:12]}
        with path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        return original(model, inputs, *args, **kwargs)

    trainer.training_step = training_step


# --- the driver ------------------------------------------------------------------------------------


def prepare(workdir: Path) -> None:
    from align import preference_data
    from crossling.testing import build_tiny_model

    if not (workdir / "tiny").is_dir():
        build_tiny_model(workdir / "tiny")
    sft_rows = [
        {"messages": [{"role": "user", "content": p}, {"role": "assistant", "content": g}], "lang": "de"}
        for p, g, _ in ROWS
    ]
    pairs = [
        preference_data.pair(p, g, b, lang="en", kind="fault", source=f"f{i}", split="train")
        for i, (p, g, b) in enumerate(ROWS)
    ]
    for name, rows in (("sft.jsonl", sft_rows), ("pairs.jsonl", pairs)):
        (workdir / name).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def _spawn(args: argparse.Namespace, trainer: str, run_dir: Path, resume: bool) -> subprocess.Popen:
    cmd = [sys.executable, __file__, "--worker", trainer, "--workdir", str(args.workdir), "--run_dir",
           str(run_dir), "--max_steps", str(args.max_steps), "--save_steps", str(args.save_steps)]  # fmt: skip
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    log = (run_dir.parent / f"{run_dir.name}.log").open("a")
    return subprocess.Popen(
        cmd + (["--resume"] if resume else []), cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT
    )


def _batches(run_dir: Path) -> list[dict]:
    path = Path(f"{run_dir}.batches.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def _wait(proc: subprocess.Popen, timeout: float) -> int | None:
    """The exit code, or None after killing a process that ran past ``timeout`` seconds."""
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None


def check(args: argparse.Namespace, trainer: str) -> tuple[bool, dict]:
    """Reference run, killed run, refused rerun, resumed run: (all checks passed, figures for the table)."""
    from sft.runs import checkpoint_step, latest_checkpoint, list_checkpoints, read_metrics

    base = args.workdir / trainer
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    reference, killed = base / "reference", base / "killed"
    fail = lambda why: (False, {"error": why})  # noqa: E731
    code = _wait(_spawn(args, trainer, reference, resume=False), args.timeout)
    if code != 0:
        return fail(f"reference run {'timed out' if code is None else f'exit {code}'} (log: {reference}.log)")

    proc = _spawn(args, trainer, killed, resume=False)
    deadline = time.time() + args.timeout
    while latest_checkpoint(killed) is None and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    checkpoint = latest_checkpoint(killed)
    if checkpoint is None and time.time() >= deadline:
        return fail(f"no checkpoint within --timeout {args.timeout:.0f} s (a busy machine?): raise it")
    if checkpoint is None or (killed / "adapter").exists():
        return fail("no checkpoint before the kill, or the run finished first: lower --save_steps")
    step, saved = checkpoint_step(checkpoint), [p.name for p in list_checkpoints(killed)]
    trained_before_kill = max((b["step"] for b in _batches(killed)), default=0)

    refused = _wait(_spawn(args, trainer, killed, resume=False), args.timeout)
    kept = [p.name for p in list_checkpoints(killed)] == saved

    Path(f"{killed}.batches.jsonl").unlink(missing_ok=True)
    code = _wait(_spawn(args, trainer, killed, resume=True), args.timeout)
    if code != 0:
        return fail(f"resumed run {'timed out' if code is None else f'exit {code}'} (log: {killed}.log)")
    want = [b["batch"] for b in _batches(reference)][step:]
    same_batches = [b["batch"] for b in _batches(killed)] == want
    logged = [r["step"] for r in read_metrics(killed / "metrics.jsonl") if "loss" in r]
    once = logged == list(range(1, args.max_steps + 1))
    delta = _adapter_delta(reference / "adapter", killed / "adapter")
    ok = refused == 2 and kept and same_batches and once and delta < 1e-5
    return ok, {
        "killed at step": f"~{trained_before_kill}",
        "on disk": ", ".join(saved),
        "rerun w/o resume": f"exit {refused}" + ("" if refused == 2 else " FAILED"),
        "checkpoints kept": _mark(kept),
        "resumed from": step,
        "next batches = reference": f"{_mark(same_batches)} ({step + 1}..{args.max_steps})",
        "steps logged once": _mark(once),
        "adapter max abs diff": f"{delta:.1e}" + ("" if delta < 1e-5 else " FAILED"),
    }


def _mark(good: bool) -> str:
    return "yes" if good else "no: FAILED"


def _adapter_delta(a: Path, b: Path) -> float:
    from safetensors.torch import load_file

    x, y = load_file(str(a / "adapter_model.safetensors")), load_file(str(b / "adapter_model.safetensors"))
    if x.keys() != y.keys():
        return float("inf")
    return max(float((x[k].float() - y[k].float()).abs().max()) for k in x)


def table(rows: list[dict]) -> str:
    """Markdown, one row per trainer; a trainer that failed early shows its error in the last column."""
    columns = list(dict.fromkeys(k for row in rows for k in row if k != "error")) + ["error"] * any(
        "error" in row for row in rows
    )
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--trainers", default="sft", help="comma-separated, of sft,reward,dpo,kto (default: sft)")
    p.add_argument("--max_steps", type=int, default=8)
    p.add_argument("--save_steps", type=int, default=3)
    p.add_argument("--timeout", type=float, default=150, help="seconds any one training process may take")
    p.add_argument("--workdir", type=Path, default=None, help="default: a temporary folder, removed after")
    p.add_argument("--worker", choices=TRAINERS, help=argparse.SUPPRESS)
    p.add_argument("--run_dir", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--resume", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args.worker, args.workdir, args.run_dir, args.resume, args.max_steps, args.save_steps)

    trainers = [t for t in args.trainers.split(",") if t]
    unknown = set(trainers) - set(TRAINERS)
    if unknown:
        p.error(f"unknown trainer(s) {sorted(unknown)}; choose from {','.join(TRAINERS)}")
    temporary = args.workdir is None
    args.workdir = Path(tempfile.mkdtemp(prefix="crossling-faults-")) if temporary else args.workdir.resolve()
    prepare(args.workdir)
    failed = 0
    rows = []
    for trainer in trainers:
        start = time.perf_counter()
        ok, figures = check(args, trainer)
        failed += not ok
        rows.append({"trainer": trainer, "result": "PASS" if ok else "FAIL",
                     "time": f"{time.perf_counter() - start:.0f} s", **figures})  # fmt: skip
        print(" · ".join(f"{k}: {v}" for k, v in rows[-1].items()), flush=True)
    print(f"\nkill -9 then resume (tiny Gemma 3, max_steps {args.max_steps}, save_steps {args.save_steps})")
    print(table(rows))
    if temporary and not failed:
        shutil.rmtree(args.workdir, ignore_errors=True)
    elif failed:
        print(f"logs and run folders kept in {args.workdir}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
