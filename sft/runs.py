"""Run-folder helpers any crossling trainer reuses (sft, and align's reward/DPO/KTO).

A run folder (``runs/<name>/``) holds ``config.yaml``, ``metrics.jsonl``, ``tb/`` (TensorBoard),
``checkpoint-N/`` (atomic), ``adapter/`` (final PEFT adapter), ``loss.png`` and ``summary.json``.
Here: the callbacks that write metrics and show progress, the atomic-checkpoint mixin for any
``transformers.Trainer`` subclass, the loss plot, checkpoint averaging and adapter merging. Nothing
here knows about SFT data; see ``sft.trainer`` for the SFT trainer itself.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from pathlib import Path

from transformers import TrainerCallback
from transformers.trainer_callback import ProgressCallback

from crossling.adapters import ADAPTER_CONFIG, adapter_base_model, require_adapter
from crossling.errors import ConfigError, CrosslingError
from crossling.models import load_causal_lm, load_tokenizer

logger = logging.getLogger(__name__)

CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
STAGING = ".staging"


# --- callbacks -----------------------------------------------------------------------------------


class MetricsJsonlCallback(TrainerCallback):
    """Append every log (train and eval) as one JSON line: ``{"step", "epoch", "time", ...}``."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        record = {"step": state.global_step, "epoch": state.epoch, "time": round(time.time(), 3), **logs}
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")


class ThroughputProgressCallback(ProgressCallback):
    """transformers' progress bar (steps, ETA) plus real tokens/s and the last loss.

    ``tokens_fn`` returns the real (non-padding) tokens seen so far on all processes.
    """

    def __init__(self, tokens_fn, max_str_len: int = 100):
        super().__init__(max_str_len)
        self.tokens_fn = tokens_fn
        self._t0: float | None = None
        self._tokens0 = 0
        self._loss: float | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        super().on_train_begin(args, state, control, **kwargs)
        self._t0, self._tokens0 = time.time(), self.tokens_fn()

    def on_step_end(self, args, state, control, **kwargs):
        super().on_step_end(args, state, control, **kwargs)
        if self.training_bar is not None and self._t0 is not None:
            rate = (self.tokens_fn() - self._tokens0) / max(time.time() - self._t0, 1e-6)
            postfix = {"tok/s": f"{rate:.0f}"}
            if self._loss is not None:
                postfix["loss"] = f"{self._loss:.3f}"
            self.training_bar.set_postfix(postfix, refresh=False)

    def on_prediction_step(self, args, state, control, eval_dataloader=None, **kwargs):
        pass  # one bar per language's eval would flood the console; eval is short

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self._loss = logs["loss"]
        # the parent prints every log dict under the bar; keep the console to the bar (metrics.jsonl has all)
        if state.is_world_process_zero and self.training_bar is not None and logs and "train_runtime" in logs:
            self.training_bar.write(
                json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in logs.items()})
            )


# --- atomic checkpoints --------------------------------------------------------------------------


class AtomicCheckpointMixin:
    """Mix into any ``transformers.Trainer`` subclass: a checkpoint appears whole or not at all.

    transformers writes ``checkpoint-N/`` file by file, so a kill -9 mid-save leaves a folder that
    ``resume_from_checkpoint`` would pick up and fail on. Here the checkpoint is written under
    ``<output_dir>/.staging/`` and renamed into place (atomic on one filesystem) once every process
    has finished writing; only then are old checkpoints rotated.
    """

    _staging_save = False

    def _get_output_dir(self, trial):
        run_dir = super()._get_output_dir(trial)
        return os.path.join(run_dir, STAGING) if self._staging_save else run_dir

    def _save_checkpoint(self, model, trial):
        from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints

        self._staging_save = True
        try:
            staging = self._get_output_dir(trial)
            super()._save_checkpoint(model, trial)
        finally:
            self._staging_save = False
        run_dir = self._get_output_dir(trial)
        name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        self.accelerator.wait_for_everyone()
        if self.args.should_save:
            final = os.path.join(run_dir, name)
            if os.path.exists(final):
                shutil.rmtree(final)
            os.replace(os.path.join(staging, name), final)
            shutil.rmtree(staging, ignore_errors=True)
            _fsync_dir(run_dir)
            rotate_checkpoints(output_dir=run_dir, save_total_limit=self.args.save_total_limit)
        self.accelerator.wait_for_everyone()

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        # With several adapters (DPO/KTO: the trained "default" plus TRL's frozen "ref"), PEFT saves the
        # trained one at the top of the checkpoint and the others in sub-folders, and transformers
        # (5.19) then loads only the sub-folders: a resumed DPO/KTO run went on from the SFT weights.
        model = model if model is not None else self.model
        peft_config = getattr(model, "peft_config", None)
        top = Path(resume_from_checkpoint) / "adapter_model.safetensors"
        if not peft_config or len(peft_config) < 2 or not top.is_file():
            return
        active = model.active_adapters[0]
        model.load_adapter(resume_from_checkpoint, active, is_trainable=True)
        model.set_adapter(active)


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def clean_staging(run_dir: str | Path) -> None:
    """Remove a half-written checkpoint left by a killed run."""
    shutil.rmtree(Path(run_dir) / STAGING, ignore_errors=True)


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = [
        (int(m.group(1)), p) for p in run_dir.iterdir() if (m := CHECKPOINT_RE.match(p.name)) and p.is_dir()
    ]
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


# --- starting a run in a folder: resume, refuse, or start over ------------------------------------

# What a finished run leaves besides its checkpoints; a fresh start removes them so that nothing of an
# older run passes for this one's (align's reward run adds its transfer report). Caches such as DPO's
# scored.jsonl are kept: they are keyed by their inputs.
RUN_OUTPUTS = (
    "adapter", "adapter_last", "metrics.jsonl", "launches.jsonl", "summary.json", "loss.png", "tb",
    "transfer.json", "transfer.md", "transfer.png",
)  # fmt: skip


class RunFolderInUse(ConfigError):
    """The output folder holds an earlier run that a fresh start would destroy."""


def prepare_run_dir(
    run_dir: str | Path,
    resume_from_checkpoint: str | None,
    overwrite_output_dir: bool,
    command: str,
    is_main: bool = True,
) -> str | None:
    """Make ``run_dir`` ready for a run; return the checkpoint to resume from (None: from step 0).

    - resume (a checkpoint folder, or ``latest``): ``metrics.jsonl`` is cut back to the checkpoint's
      step, since the steps after it are trained (and logged) again;
    - a fresh start in a folder with checkpoints or an adapter of an earlier run is refused with the
      two commands to choose from: the new run would begin at step 0 and its keep-last-N rotation
      would delete the earlier checkpoints within a few saves;
    - ``overwrite_output_dir``: the earlier run's checkpoints and outputs are deleted, and said so.

    ``command`` is the command line that started this run (the error shows it with the fix added).
    Only the main process (``is_main``) changes files; every process takes the same decision.
    """
    run_dir = Path(run_dir)
    if is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        clean_staging(run_dir)
    checkpoint = _resume_checkpoint(run_dir, resume_from_checkpoint)
    if resume_from_checkpoint == "latest" and checkpoint is None and is_main:
        print(
            f"resume_from_checkpoint: latest — no checkpoint in {run_dir}, starting from step 0", flush=True
        )
    if checkpoint is not None:
        if is_main:
            truncate_metrics(run_dir / "metrics.jsonl", checkpoint_step(checkpoint))
        return str(checkpoint)
    earlier = [p.name for p in list_checkpoints(run_dir)] + (
        ["adapter"] if (run_dir / "adapter").exists() else []
    )
    if earlier and not overwrite_output_dir:
        raise RunFolderInUse(_in_use_message(run_dir, earlier, command))
    if is_main:
        if earlier:
            print(
                f"overwrite_output_dir: deleting the earlier run's {', '.join(earlier)} in {run_dir}",
                flush=True,
            )
        for path in list_checkpoints(run_dir) + [run_dir / name for name in RUN_OUTPUTS]:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)  # a fresh run starts its own log
    return None


def _resume_checkpoint(run_dir: Path, spec: str | None) -> Path | None:
    if not spec:
        return None
    if spec == "latest":
        return latest_checkpoint(run_dir)
    if not (Path(spec) / "trainer_state.json").is_file():
        raise ConfigError(f"resume_from_checkpoint: {spec} is not a complete checkpoint folder")
    return Path(spec)


def _in_use_message(run_dir: Path, earlier: list[str], command: str) -> str:
    resumable = any(CHECKPOINT_RE.match(name) for name in earlier)
    lines = [
        f"{run_dir} holds an earlier run ({', '.join(earlier)}); starting this one at step 0 would "
        "overwrite it, and checkpoint rotation would delete its checkpoints. Choose:"
    ]
    if resumable:
        lines.append(f"  continue it:   {command} --resume_from_checkpoint latest")
    lines.append(f"  start anew:    {command} --output_dir {run_dir}-2")
    lines.append(f"  replace it:    {command} --overwrite_output_dir true   (deletes {', '.join(earlier)})")
    return "\n".join(lines)


def checkpoint_step(checkpoint: str | Path) -> int:
    """The global step a checkpoint was saved at (its ``trainer_state.json``, else its name)."""
    state = Path(checkpoint) / "trainer_state.json"
    if state.is_file():
        return int(json.loads(state.read_text(encoding="utf-8"))["global_step"])
    m = CHECKPOINT_RE.match(Path(checkpoint).name)
    if not m:
        raise CrosslingError(f"{checkpoint}: not a checkpoint-N folder")
    return int(m.group(1))


def truncate_metrics(path: str | Path, step: int) -> int:
    """Drop the records logged after ``step`` (a resume logs those steps again); returns how many.

    Rewritten atomically (temp file + rename): a kill during the rewrite leaves the old log whole.
    """
    path = Path(path)
    if not path.is_file():
        return 0
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = [line for line in lines if line.strip() and _logged_step(line) <= step]
    if kept == lines and (not lines or lines[-1].endswith("\n")):
        return 0
    tmp = path.with_name(path.name + ".tmp")
    # every line ends in \n, so the resumed run's first record does not join the last one kept
    tmp.write_text("".join(line if line.endswith("\n") else line + "\n" for line in kept), encoding="utf-8")
    os.replace(tmp, path)
    return len(lines) - len(kept)


def _logged_step(line: str) -> float:
    try:
        return json.loads(line).get("step", 0)
    except (json.JSONDecodeError, AttributeError):
        return float("inf")  # a line cut by a kill -9 mid-write: drop it


# --- plots ---------------------------------------------------------------------------------------


def read_metrics(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def plot_losses(metrics_path: str | Path, out_png: str | Path, title: str = "loss") -> Path | None:
    """Train loss and every ``eval_*loss`` series (one line per language) against step, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(metrics_path)
    series: dict[str, list[tuple[int, float]]] = {}
    for rec in records:
        for key, value in rec.items():
            is_loss = key == "loss" or (key.startswith("eval_") and key.endswith("_loss"))
            if is_loss and isinstance(value, (int, float)):
                series.setdefault(key, []).append((rec["step"], float(value)))
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(8, 5))
    for key, points in sorted(series.items()):
        steps, values = zip(*points, strict=True)
        label = "train" if key == "loss" else key.removeprefix("eval_").removesuffix("_loss") or "eval"
        style = "-" if key == "loss" else "--o"
        ax.plot(steps, values, style, label=label, linewidth=2 if key == "loss" else 1, markersize=3)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    out_png = Path(out_png)
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png


# --- adapters: averaging and merging -------------------------------------------------------------


ADAPTER_WEIGHTS = "adapter_model.safetensors"


def average_adapters(adapter_dirs: list[str | Path], out_dir: str | Path) -> Path:
    """Uniform average of PEFT adapters of the same shape ("checkpoint averaging"; e.g. the last k
    checkpoints of one run). Writes a normal adapter folder (config copied from the last one)."""
    from safetensors.torch import load_file, save_file

    dirs = [Path(d) for d in adapter_dirs]
    if not dirs:
        raise CrosslingError("average_adapters: no adapter folders given")
    for d in dirs:
        if not (d / ADAPTER_WEIGHTS).is_file():
            raise CrosslingError(f"{d}: no {ADAPTER_WEIGHTS} (not a PEFT adapter folder)")
    total = None
    for d in dirs:
        weights = load_file(str(d / ADAPTER_WEIGHTS))
        if total is None:
            total = {k: v.double() for k, v in weights.items()}
            dtypes = {k: v.dtype for k, v in weights.items()}
        else:
            if weights.keys() != total.keys():
                raise CrosslingError(f"{d}: adapter tensors differ from {dirs[0]} (different LoRA settings?)")
            for k, v in weights.items():
                total[k] += v.double()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    averaged = {k: (v / len(dirs)).to(dtypes[k]).contiguous() for k, v in total.items()}
    save_file(averaged, str(out_dir / ADAPTER_WEIGHTS), metadata={"format": "pt"})
    for name in (ADAPTER_CONFIG, "README.md"):
        if (dirs[-1] / name).is_file():
            shutil.copy(dirs[-1] / name, out_dir / name)
    (out_dir / "averaged_from.json").write_text(json.dumps([str(d) for d in dirs], indent=2))
    return out_dir


def merge_adapter(adapter_dir: str | Path, out_dir: str | Path, base_model: str | None = None) -> Path:
    """Merge a LoRA adapter into a full-precision copy of its base and save a plain checkpoint.

    The base is loaded unquantized (fp32 on CPU, bf16 on CUDA) even for QLoRA adapters: merging into
    4-bit weights would round the update away. The result loads with ``from_pretrained`` / vLLM.
    """
    from peft import PeftModel

    adapter_dir = require_adapter(adapter_dir, "adapter")
    base = base_model or adapter_base_model(adapter_dir)
    if not base:
        raise CrosslingError(f"{adapter_dir}: {ADAPTER_CONFIG} names no base model; pass --model")
    model = load_causal_lm(base)
    model = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    tokenizer = load_tokenizer(base)
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / "crossling.json").write_text(
        json.dumps({"kind": "merged", "base": base, "adapter": str(adapter_dir)})
    )
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)
    return out_dir
