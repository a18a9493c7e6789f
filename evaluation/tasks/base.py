"""What every task shares: the item a prompt travels in, and how scores are grouped.

Scores are ``{subtask: {"per_language": {lang: {metric: value}}, "mean": {metric: value}}}``, where a
subtask is what a user compares across models (``language_fidelity``, ``ntrex_en-xx_0shot``,
``mgsm_direct``, ``multijail``...). ``mean`` is the unweighted mean over languages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from evaluation.metrics import mean

SubtaskScores = dict[str, dict[str, dict[str, Any]]]


@dataclass
class Item:
    id: str
    subtask: str
    lang: str  # the language the item is scored under (answer language, or source for xx-en)
    messages: list[dict[str, str]]
    ref: dict[str, Any] = field(default_factory=dict)  # reference, gold answer, expected language...
    max_new_tokens: int = 128


class Task(Protocol):
    name: str

    def items(self) -> list[Item]: ...

    def score(self, items: list[Item], outputs: list[str]) -> tuple[list[dict], SubtaskScores]:
        """Per-sample records (written to samples/*.jsonl) and the grouped scores."""
        ...


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
    return out


def language_mean(per_language: dict[str, dict[str, Any]], metrics: list[str]) -> dict[str, float]:
    result = {}
    for m in metrics:
        value = mean(v[m] for v in per_language.values() if v.get(m) is not None)
        if value is not None:
            result[m] = round(value, 4)
    return result
