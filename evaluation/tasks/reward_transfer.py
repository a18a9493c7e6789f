"""Reward model: per-language pairwise accuracy, read from align's transfer report (not recomputed).

align trains the reward model on source-language preferences and measures, per target language, how
often it scores the chosen answer above the rejected one. This module only reads that JSON, in the
shapes align may write (``{"per_language": {lang: {"accuracy": x}}}``, ``{"languages": ...}``, or a
flat ``{lang: accuracy}``), so the eval report shows it beside the generation metrics. It is the
``reward`` task: a :class:`~evaluation.tasks.base.ReportTask`, read once per run (no model generates),
into ``results["reward_model"]`` (and ``reward_model_missing`` when align has not written it yet).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crossling.errors import DataError
from crossling.languages import LANGUAGES
from evaluation.tasks.base import SubtaskScores, TaskSpec, language_mean

if TYPE_CHECKING:  # for annotations only: evaluation.config imports the task registry
    from evaluation.config import EvalConfig

SUBTASK = "reward_transfer"


def _per_language(data: Any) -> dict[str, dict[str, float]]:
    if not isinstance(data, dict):
        return {}
    for key in ("per_language", "languages", "accuracy_per_language", "by_language"):
        if isinstance(data.get(key), dict):
            return _per_language(data[key])
    out = {}
    for lang, value in data.items():
        if lang not in LANGUAGES:
            continue
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[lang] = {"accuracy": float(value)}
        elif isinstance(value, dict):
            acc = value.get("accuracy", value.get("acc"))
            if isinstance(acc, (int, float)):
                out[lang] = {"accuracy": float(acc), **({"n": value["n"]} if "n" in value else {})}
    return out


def read_reward_report(path: str | Path) -> SubtaskScores | None:
    """The report's per-language accuracy as scores, or ``None`` when align has not written it yet."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON: {e}") from e
    per_language = _per_language(data)
    if not per_language:
        raise DataError(
            f"{path}: no per-language accuracy found (expected {{'per_language': {{lang: {{'accuracy': x}}}}}})"
        )
    return {
        SUBTASK: {
            "per_language": per_language,
            "mean": language_mean(per_language, ["accuracy"]),
            "source": str(path),
        }
    }


@dataclass
class RewardTransfer:
    report: str | None  # align's transfer JSON; None: nothing to read
    name: str = "reward"

    def results(self) -> dict[str, Any]:
        """Top-level keys for ``results.json``: the scores, or why they are missing."""
        if not self.report:
            return {}
        scores = read_reward_report(self.report)
        if scores is None:
            return {
                "reward_model": None,
                "reward_model_missing": f"{self.report} not found (run the align reward stage)",
            }
        return {"reward_model": scores}


def build(cfg: EvalConfig) -> RewardTransfer:
    return RewardTransfer(cfg.reward_report)


SPEC = TaskSpec(build, columns={SUBTASK: [("accuracy", "RM acc %", True)]})
