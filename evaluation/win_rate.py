"""Paired win rates between evaluated models, from the generations the eval already has.

``win_rates: [kto:sft]`` compares, prompt by prompt, what two models answered to the same NTREX test
translation requests (the ``translation`` task's items, greedy): a win counts 1, a tie ½. The
independent judge is align's ``fidelity_chrf`` (sentence chrF against the human reference, 0 when
the answer is not in the requested language); optionally the transferred reward model judges too
(``win_rate_reward_model``: biased, since the aligned policy was optimised against it). Every win
rate carries a bootstrap 95 % interval (prompts resampled within each language). No generation
happens here: the eval generated each answer once, and this compares them.

Not here: best-of-n or sampled comparisons (``crossling align win-rate`` does those).
"""

from __future__ import annotations

from typing import Any

from align.scoring import fidelity_chrf
from align.win_rate import wins
from evaluation.intervals import rounded, sample_mean_intervals

JUDGE = "fidelity_chrf"


def parse_pairs(specs: list[str], names: list[str]) -> list[tuple[str, str]]:
    """``["kto:sft"]`` → ``[("kto", "sft")]``; both names must be evaluated models."""
    pairs = []
    for spec in specs:
        candidate, sep, baseline = spec.partition(":")
        if not sep or candidate not in names or baseline not in names or candidate == baseline:
            raise ValueError(
                f"win_rates entry {spec!r}: expected CANDIDATE:BASELINE, two different model names of {names}"
            )
        pairs.append((candidate, baseline))
    return pairs


def _key(record: dict) -> str:
    return f"{record['subtask']}/{record['id']}"  # one sentence is asked 0-shot and 1-shot


def _judged(records: list[dict], scorer=None) -> dict[str, dict[str, float]]:
    """``{item key: {judge: score}}`` for one model's translation records."""
    out = {_key(r): {JUDGE: fidelity_chrf(r["output"], r["reference"], r["tgt_lang"])} for r in records}
    if scorer is not None:
        prompts = [[{"role": "user", "content": r["prompt"]}] for r in records]
        for r, reward in zip(records, scorer.score(prompts, [r["output"] for r in records]), strict=True):
            out[_key(r)]["transferred_rm"] = reward
    return out


def compare(candidate: list[dict], baseline: list[dict], scorer=None) -> dict[str, Any]:
    """Win rate of ``candidate`` over ``baseline`` on the items both answered, per judge."""
    got, base = _judged(candidate, scorer), _judged(baseline, scorer)
    lang_of = {_key(r): r["lang"] for r in candidate}
    shared = [i for i in lang_of if i in base]
    out: dict[str, Any] = {"prompts": len(shared)}
    for judge in got[shared[0]] if shared else []:
        per_item: dict[str, list[float]] = {}
        for i in shared:
            per_item.setdefault(lang_of[i], []).append(wins([got[i][judge]], [base[i][judge]]))
        per_lang_ci, mean_ci = sample_mean_intervals(per_item)
        all_items = [v for values in per_item.values() for v in values]
        out[judge] = {
            "win_rate": round(sum(all_items) / len(all_items), 4),
            "ci": rounded(mean_ci),
            "per_language": {
                lang: {"win_rate": round(sum(v) / len(v), 4), "n": len(v), "ci": rounded(per_lang_ci[lang])}
                for lang, v in per_item.items()
            },
        }
    return out


def win_rates(
    pairs: list[tuple[str, str]], translation_records: dict[str, list[dict]], scorer=None
) -> dict[str, Any]:
    """``{"kto:sft": compare(...)}`` for each pair, from each model's translation records."""
    return {
        f"{cand}:{base}": compare(translation_records[cand], translation_records[base], scorer)
        for cand, base in pairs
    }


def table(results: dict[str, Any]) -> str:
    """Markdown: one row per comparison and judge, the win rate with its interval, then per language."""
    lines = []
    for name, comparison in results.items():
        candidate, baseline = name.split(":")
        judges = [j for j in comparison if j != "prompts"]
        langs = list(comparison[judges[0]]["per_language"]) if judges else []
        lines += [
            f"{candidate} over {baseline}, {comparison['prompts']} held-out prompts (NTREX test, greedy):",
            "",
            "| judge | all | " + " | ".join(langs) + " |",
            "|---|---|" + "---|" * len(langs),
        ]
        for judge in judges:
            res = comparison[judge]
            cells = [f"{100 * res['per_language'][lang]['win_rate']:.0f} %" for lang in langs]
            lo, hi = res["ci"]
            lines.append(f"| {judge} | **{100 * res['win_rate']:.1f} %** [{100 * lo:.1f}, {100 * hi:.1f}] | "
                         + " | ".join(cells) + " |")  # fmt: skip
        lines.append("")
    return "\n".join(lines)
