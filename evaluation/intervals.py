"""Bootstrap 95 % intervals for every number the report shows.

A mean over languages is resampled *within* each language (stratified bootstrap: every replicate
keeps each language's sample size, as the eval does), so the interval of the mean over languages
answers "how much would this move with another draw of prompts of the same sizes?". Per-sample
metrics (fidelity, refusal, accuracy, win/tie/loss) resample their values; corpus metrics (chrF,
BLEU) resample sentences and recompute the corpus score from sacrebleu's per-sentence statistics, so
a replicate costs a sum, not a re-scoring. Percentile intervals, 1,000 replicates, a fixed seed: the
same samples always give the same interval.

Not here: which samples are drawn (the tasks) or how the report prints them (``evaluation.report``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

N_BOOT = 1000
LEVEL = 0.95

Stat = Callable[[np.ndarray], float]  # resampled rows of one language -> that language's value


def _percentiles(values: np.ndarray, level: float) -> tuple[float, float]:
    lo, hi = np.percentile(values, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return float(lo), float(hi)


def stratified(
    rows: Mapping[str, np.ndarray],
    stat: Stat | Mapping[str, Stat] | None = None,
    n_boot: int = N_BOOT,
    seed: int = 0,
    level: float = LEVEL,
) -> tuple[dict[str, tuple[float, float]], tuple[float, float]]:
    """Intervals of ``stat`` per language and of its unweighted mean over languages.

    ``rows[lang]`` is an array whose first axis is the samples of that language (values, or
    per-sentence statistics); ``stat`` turns a resample of them into the language's number (None:
    their mean, computed for all replicates at once; a mapping: one function per language).
    """
    langs = [lang for lang in rows if len(rows[lang])]
    if not langs:
        return {}, (float("nan"), float("nan"))
    stats = stat if isinstance(stat, Mapping) else dict.fromkeys(langs, stat)
    draws = np.stack(
        [_replicates(rows[lang], stats[lang], n_boot, seed + j) for j, lang in enumerate(langs)], axis=1
    )
    per_language = {lang: _percentiles(draws[:, j], level) for j, lang in enumerate(langs)}
    return per_language, _percentiles(draws.mean(axis=1), level)


def _replicates(data: np.ndarray, stat: Stat | None, n_boot: int, seed: int) -> np.ndarray:
    """``stat`` of ``n_boot`` resamples (with replacement, same size) of ``data``'s rows."""
    data = np.asarray(data)
    idx = np.random.default_rng(seed).integers(0, len(data), size=(n_boot, len(data)))
    return data[idx].mean(axis=1) if stat is None else np.array([stat(data[i]) for i in idx])


def sample_mean_intervals(
    values: Mapping[str, Sequence[float]], n_boot: int = N_BOOT, seed: int = 0
) -> tuple[dict[str, tuple[float, float]], tuple[float, float]]:
    """Intervals of per-language sample means and of their mean over languages."""
    return stratified({k: np.asarray(v, dtype=float) for k, v in values.items()}, None, n_boot, seed)


def corpus_metric_intervals(
    metric_for: Callable[[str], Any],
    pairs: Mapping[str, tuple[list[str], list[str]]],
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> tuple[dict[str, tuple[float, float]], tuple[float, float]]:
    """Intervals of a sacrebleu corpus metric per language and averaged over languages.

    ``pairs[lang] = (hypotheses, references)``; ``metric_for(lang)`` is that language's sacrebleu
    metric (``CHRF()``, ``BLEU(tokenize=...)``). sacrebleu's per-sentence statistics add up to the
    corpus statistics (the route its own paired bootstrap takes), so a replicate sums resampled rows
    and scores the sum.
    """
    rows, stats = {}, {}
    for lang, (hyps, refs) in pairs.items():
        if not hyps:
            continue
        metric = metric_for(lang)
        rows[lang] = np.asarray(metric._extract_corpus_statistics(hyps, [refs]), dtype=float)
        stats[lang] = lambda sample, metric=metric: float(
            metric._compute_score_from_stats(sample.sum(axis=0).tolist()).score
        )
    return stratified(rows, stats, n_boot, seed)


def rounded(interval: tuple[float, float], digits: int = 4) -> list[float]:
    return [round(interval[0], digits), round(interval[1], digits)]
