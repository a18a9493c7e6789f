"""What every task shares: the item a prompt travels in, how scores are grouped, and the
:class:`TaskSpec` each task module declares for the registry (``evaluation.tasks.TASKS``).

Scores are ``{subtask: {"per_language": {lang: {metric: value}}, "mean": {metric: value}}}``, where a
subtask is what a user compares across models (``language_fidelity``, ``ntrex_en-xx_0shot``,
``mgsm_direct``, ``multijail``...). ``mean`` is the unweighted mean over languages.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from evaluation.intervals import rounded, sample_mean_intervals
from evaluation.metrics import mean

if TYPE_CHECKING:  # for annotations only: evaluation.config imports the registry
    from evaluation.config import EvalConfig

SubtaskScores = dict[str, dict[str, dict[str, Any]]]
Column = tuple[str, str, bool]  # (metric, column title in report.md, shown as a percentage)


@dataclass
class Item:
    id: str
    subtask: str
    lang: str  # the language the item is scored under (answer language, or source for xx-en)
    messages: list[dict[str, str]]
    ref: dict[str, Any] = field(default_factory=dict)  # reference, gold answer, expected language...
    max_new_tokens: int = 128
    until: str | None = None  # a crossling.generation.STOP_RULES name: stop once the scorer has its text


@runtime_checkable
class Task(Protocol):
    """A generation task: prompts for every model, then scores of each model's completions."""

    name: str

    def items(self) -> list[Item]: ...

    def score(self, items: list[Item], outputs: list[str]) -> tuple[list[dict], SubtaskScores]:
        """Per-sample records (written to samples/*.jsonl) and the grouped scores."""
        ...


@runtime_checkable
class ReportTask(Protocol):
    """A task another stage has already measured (align's reward report): read once per run, after
    the generation tasks, into top-level keys of ``results.json``; no model generates anything."""

    name: str

    def results(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class TaskSpec:
    """What the runner and the report need to know about one task, declared next to the task."""

    build: Callable[[EvalConfig], Task | ReportTask]  # from the config's fields for this task
    # subtask name prefix -> its report.md columns, the headline first (main table and charts)
    columns: dict[str, list[Column]] = field(default_factory=dict)


def group_means(per_sample: list[dict], metrics: list[str]) -> SubtaskScores:
    """Average per-sample metric values by (subtask, language), then over languages."""
    grouped: dict[str, dict[str, dict[str, list[float]]]] = {}
    for rec in per_sample:
        by_lang = grouped.setdefault(rec["subtask"], {}).setdefault(rec["lang"], {})
        for m in metrics:
            if rec.get(m) is not None:
                by_lang.setdefault(m, []).append(float(rec[m]))
    out: SubtaskScores = {}
    for subtask, langs in grouped.items():
        per_language = {
            lang: {
                **{m: round(mean(v), 4) for m, v in vals.items()},
                "n": max(map(len, vals.values()), default=0),
            }
            for lang, vals in langs.items()
        }
        out[subtask] = {"per_language": per_language, "mean": language_mean(per_language, metrics)}
        add_intervals(out[subtask], {m: {lang: vals[m] for lang, vals in langs.items() if m in vals}
                                     for m in metrics})  # fmt: skip
    return out


def add_intervals(scores: dict[str, Any], samples: dict[str, dict[str, list[float]]]) -> None:
    """Bootstrap 95 % intervals of per-sample metrics: ``scores["ci"][metric]`` for the mean over
    languages, ``scores["per_language"][lang]["ci"][metric]`` per language."""
    for metric, by_lang in samples.items():
        if not any(by_lang.values()):
            continue
        per_lang, of_mean = sample_mean_intervals(by_lang)
        set_intervals(scores, metric, per_lang, of_mean)


def set_intervals(
    scores: dict[str, Any],
    metric: str,
    per_lang: dict[str, tuple[float, float]],
    of_mean: tuple[float, float],
) -> None:
    scores.setdefault("ci", {})[metric] = rounded(of_mean)
    for lang, interval in per_lang.items():
        scores["per_language"][lang].setdefault("ci", {})[metric] = rounded(interval)


def language_mean(per_language: dict[str, dict[str, Any]], metrics: list[str]) -> dict[str, float]:
    result = {}
    for m in metrics:
        value = mean(v[m] for v in per_language.values() if v.get(m) is not None)
        if value is not None:
            result[m] = round(value, 4)
    return result
