"""Run an evaluation: for each model, build every task's prompts, generate (cached), score, save.

Writes ``<output_dir>/<name>/``: ``results.json`` (every number, plus the config and timings),
``samples/<model>/<task>.jsonl`` (each prompt, output and per-sample score, to read failures),
``report.md`` and PNG charts (``evaluation.report``). Models are evaluated one after another and
released in between, so three 270M models never sit in memory together.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from align.reward import RewardScorer
from crossling import generation
from crossling.config import save_config
from crossling.errors import ConfigError
from evaluation.config import EvalConfig, ModelSpec
from evaluation.report import write_report
from evaluation.tasks import TASKS, Item, ReportTask, Task
from evaluation.win_rate import parse_pairs, win_rates

logger = logging.getLogger(__name__)


def build_all(cfg: EvalConfig) -> tuple[list[Task], list[ReportTask]]:
    """The tasks ``cfg.tasks`` names, in registry order: generation tasks, and report tasks."""
    built = [spec.build(cfg) for name, spec in TASKS.items() if name in cfg.tasks]
    return [t for t in built if isinstance(t, Task)], [t for t in built if isinstance(t, ReportTask)]


def build_tasks(cfg: EvalConfig) -> list[Task]:
    """The generation tasks ``cfg.tasks`` names, in registry order."""
    return build_all(cfg)[0]


def check_models(cfg: EvalConfig) -> tuple[list[ModelSpec], dict[str, str]]:
    """Models to run, and those left out with the reason (only with ``skip_missing_adapters``)."""
    run, skipped = [], {}
    for spec in cfg.models:
        local = not spec.base_url and spec.backend != "endpoint"
        if local and spec.adapter and not Path(spec.adapter).is_dir():
            reason = f"adapter folder {spec.adapter} does not exist (train it first)"
            if not cfg.skip_missing_adapters:
                raise ConfigError(f"model {spec.name!r}: {reason}, or set skip_missing_adapters: true")
            skipped[spec.name] = reason
            continue
        run.append(spec)
    return run, skipped


def generate_for(spec: ModelSpec, items: list[Item], cfg: EvalConfig, desc: str, backend: str) -> list[str]:
    """One completion per item; items with different token budgets or stop rules go in separate calls."""
    outputs: list[str | None] = [None] * len(items)
    groups: dict[tuple[int, str], list[int]] = {}
    for k, item in enumerate(items):
        groups.setdefault((item.max_new_tokens, item.until or ""), []).append(k)
    for (budget, until), idx in sorted(groups.items()):
        outs = generation.generate(
            spec.model,
            [items[k].messages for k in idx],
            adapter=spec.adapter,
            temperature=cfg.temperature,
            max_new_tokens=budget,
            until=until or None,
            seed=cfg.seed,
            backend=backend,  # type: ignore[arg-type]
            base_url=spec.base_url,
            api_key=spec.api_key,
            cache_dir=cfg.cache_dir,
            concurrency=cfg.concurrency,
            batch_size=cfg.batch_size,
            desc=desc,
        )
        for k, out in zip(idx, outs, strict=True):
            outputs[k] = out[0]
    return [o or "" for o in outputs]


def run_eval(cfg: EvalConfig, command: str | None = None) -> dict[str, Any]:
    """Evaluate every model on every task; write results.json, samples, report.md and charts."""
    out_dir = Path(cfg.output_dir) / cfg.name
    out_dir.mkdir(parents=True, exist_ok=True)
    # API keys never land in the results folder (it is meant to be shared).
    redacted = replace(cfg, models=[replace(m, api_key="***" if m.api_key else None) for m in cfg.models])
    save_config(redacted, out_dir / "config.yaml", command=command)
    models, skipped = check_models(cfg)
    tasks, reports = build_all(cfg)
    task_items = {t.name: t.items() for t in tasks}  # built once: bad data fails before any generation
    results: dict[str, Any] = {
        "name": cfg.name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "languages": cfg.languages,
        "models": [asdict(m) | {"api_key": None} for m in models],
        "skipped_models": skipped,
        "scores": {},
        "lm_eval": {},
        "timing_s": {},
    }
    # One backend choice for the whole run: vLLM's start-up is paid once for every local model.
    translation_records: dict[str, list[dict]] = {}  # per model: what the win rates compare
    local = [
        m for m in models if not m.base_url and m.backend in ("auto", "vllm", "transformers", "llamacpp")
    ]
    total = sum(len(v) for v in task_items.values()) * len(local)
    for spec in models:
        backend = spec.backend
        if backend == "auto" and not spec.base_url:
            backend = generation.choose_backend("auto", n_prompts=total)
        started = time.time()
        results["scores"][spec.name] = {}
        for task in tasks:
            items = task_items[task.name]
            outputs = generate_for(spec, items, cfg, f"{spec.name}/{task.name}", backend)
            records, scores = task.score(items, outputs)
            if task.name == "translation":
                translation_records[spec.name] = records
            _write_jsonl(out_dir / "samples" / spec.name / f"{task.name}.jsonl", records)
            results["scores"][spec.name].update(scores)
            results["lm_eval"].setdefault(spec.name, {}).update(_lm_eval_view(records))
        results["timing_s"][spec.name] = round(time.time() - started, 1)
        if backend != "vllm":  # the vLLM engine serves every adapter; a transformers model is per adapter
            generation.release()
        logger.info("%s evaluated in %.0f s", spec.name, results["timing_s"][spec.name])
    generation.release()
    if cfg.win_rates:
        scorer = RewardScorer(cfg.win_rate_reward_model) if cfg.win_rate_reward_model else None
        pairs = parse_pairs(cfg.win_rates, list(translation_records))
        results["win_rates"] = win_rates(pairs, translation_records, scorer)
    for report in reports:
        results.update(report.results())
    if cfg.win_rate_report and Path(cfg.win_rate_report).is_file():
        results["win_rate"] = json.loads(Path(cfg.win_rate_report).read_text(encoding="utf-8"))
        table = Path(cfg.win_rate_report).with_suffix(".md")
        results["win_rate_table"] = table.read_text(encoding="utf-8") if table.is_file() else None
    (out_dir / "results.json").write_text(json.dumps(results, indent=2, ensure_ascii=False))
    write_report(results, out_dir)
    return results


def _lm_eval_view(records: list[dict]) -> dict[str, float]:
    """MGSM accuracy under lm-eval's task names (``mgsm_direct_de``), for comparing with lm-eval runs."""
    by_task: dict[str, list[float]] = {}
    for r in records:
        if "lm_eval_task" in r:
            by_task.setdefault(r["lm_eval_task"], []).append(r["accuracy"])
    return {t: round(sum(v) / len(v), 4) for t, v in sorted(by_task.items())}


def _write_jsonl(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
