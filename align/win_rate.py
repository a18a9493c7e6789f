"""Win rate of an aligned adapter over the SFT adapter, judged by the RM that trained it and independently.

Held-out prompts: NTREX *test* documents (evaluation-only; ``split: dev`` takes the dev documents, to
choose between settings without touching test), a translation request per language with its human
reference. Both adapters answer greedily. Judges:

- ``transferred_rm``: the reward model whose scores built the DPO/KTO data. It is *biased*: the
  aligned policy was optimised against it, so it rewards whatever that RM over-values (reward hacking).
- ``fidelity_chrf``: chrF against the reference, and 0 when the answer is not in the requested
  language (``crossling.langid``). Independent of the reward model; when the training reward also
  weighed agreement with references (``reference_weight`` > 0) it measures the same kind of thing on
  other documents (the training prompts are NTREX *train* documents): translation quality on unseen
  sentences, the number to trust.
- ``judge_rm`` (optional): a reward model trained on another source language.

A win counts 1, a tie 0.5. Optional ``sampled``: both adapters also answer with ``sampled`` samples per
prompt at ``temperature`` (how a chat is served), sample i against sample i (``aligned@T`` row).
Optional best-of-n: the SFT policy's best of ``n`` samples by the
transferred RM, judged the same way (the paper's baseline). Written as ``win_rate.json``, ``.md``, ``.png``.
"""

from __future__ import annotations

import json
from pathlib import Path

from align import scoring, training
from align.config import WinRateConfig
from align.reward import RewardScorer, reward_model_parts
from crossling import generation


def wins(candidate: list[float], baseline: list[float], eps: float = 1e-6) -> float:
    """Share of items where ``candidate`` beats ``baseline`` (ties count half)."""
    if not candidate:
        return float("nan")
    total = sum(
        1.0 if c > b + eps else 0.5 if abs(c - b) <= eps else 0.0
        for c, b in zip(candidate, baseline, strict=True)
    )
    return total / len(candidate)


def _judge_scores(prompts: list[dict], answers: dict[str, list[str]], scorer, judge_scorer) -> dict:
    scores: dict[str, dict[str, list[float]]] = {}
    for system, texts in answers.items():
        scores[system] = {
            "transferred_rm": scorer.score([p["prompt"] for p in prompts], texts, progress=True),
            "fidelity_chrf": [
                scoring.fidelity_chrf(t, p.get("reference"), p["lang"])
                for t, p in zip(texts, prompts, strict=True)
            ],
        }
        if judge_scorer is not None:
            scores[system]["judge_rm"] = judge_scorer.score([p["prompt"] for p in prompts], texts)
    return scores


def compare(prompts: list[dict], scores: dict, candidate: str, baseline: str) -> dict:
    """``{judge: {lang: win rate, "all": win rate}}`` of ``candidate`` over ``baseline``."""
    out: dict[str, dict[str, float]] = {}
    langs = list(dict.fromkeys(p["lang"] for p in prompts))
    for judge in scores[candidate]:
        cand, base = scores[candidate][judge], scores[baseline][judge]
        per = {lang: wins([c for c, p in zip(cand, prompts, strict=True) if p["lang"] == lang],
                          [b for b, p in zip(base, prompts, strict=True) if p["lang"] == lang]) for lang in langs}  # fmt: skip
        out[judge] = {**{k: round(v, 4) for k, v in per.items()}, "all": round(wins(cand, base), 4)}
    return out


def _generate(
    cfg: WinRateConfig, prompts: list[dict], adapter: str | None, n: int = 1, temperature: float = 0.0
):
    outs = generation.generate(
        cfg.model, [p["prompt"] for p in prompts], adapter=adapter, n=n, temperature=temperature,
        max_new_tokens=cfg.max_new_tokens, seed=cfg.seed, backend=cfg.backend, desc=f"win-rate {adapter or 'base'}",
    )  # fmt: skip
    generation.release()
    return outs


def run(cfg: WinRateConfig, command: str | None = None) -> dict:

    training.check_adapter(cfg.candidate_adapter, "candidate_adapter", "Train it with `crossling align dpo`.")
    training.check_adapter(cfg.baseline_adapter, "baseline_adapter", "Train it with `make train-sft`.")
    reward_model_parts(cfg.reward_model)  # fail before generating, not after
    prompts = scoring.target_prompts(
        "ntrex", cfg.languages, cfg.prompts_per_language, cfg.split, cfg.seed, cfg.instruction_languages
    )
    answers = {
        "sft": [o[0] for o in _generate(cfg, prompts, cfg.baseline_adapter)],
        "aligned": [o[0] for o in _generate(cfg, prompts, cfg.candidate_adapter)],
    }
    scorer = RewardScorer(cfg.reward_model)
    if cfg.best_of_n > 1:
        samples = _generate(cfg, prompts, cfg.baseline_adapter, n=cfg.best_of_n, temperature=cfg.temperature)
        scored = scoring.score_completions(prompts, samples, scorer)
        answers[f"best_of_{cfg.best_of_n}"] = [b["completion"] for b in scoring.best_of_n(scored)]
    judge = RewardScorer(cfg.judge_reward_model) if cfg.judge_reward_model else None
    scores = _judge_scores(prompts, answers, scorer, judge)
    win_rate = {system: compare(prompts, scores, system, "sft") for system in answers if system != "sft"}
    sampled: dict[str, list[str]] = {}
    if cfg.sampled:
        tag = f"@{cfg.temperature:g}"
        for system, adapter in (("sft", cfg.baseline_adapter), ("aligned", cfg.candidate_adapter)):
            outs = _generate(cfg, prompts, adapter, n=cfg.sampled, temperature=cfg.temperature)
            sampled[system + tag] = [t for o in outs for t in o]
        repeated = [p for p in prompts for _ in range(cfg.sampled)]
        scores.update(_judge_scores(repeated, sampled, scorer, judge))
        win_rate["aligned" + tag] = compare(repeated, scores, "aligned" + tag, "sft" + tag)
    report = {
        "candidate": cfg.candidate_adapter,
        "baseline": cfg.baseline_adapter,
        "prompts": len(prompts),
        "split": cfg.split,
        "win_rate": win_rate,
        "mean_scores": {s: {j: round(sum(v) / len(v), 4) for j, v in js.items()} for s, js in scores.items()},
        "biased_judge": "transferred_rm (it produced the training signal; trust fidelity_chrf)",
    }
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "win_rate.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    examples = [
        {**p, **{s: answers[s][i] for s in answers},
         **{s: texts[i * cfg.sampled : (i + 1) * cfg.sampled] for s, texts in sampled.items()}}
        for i, p in enumerate(prompts)
    ]  # fmt: skip
    scoring.write_jsonl(examples, out / "answers.jsonl")
    table = format_table(report["win_rate"])
    (out / "win_rate.md").write_text(f"# Win rate over SFT\n\n{table}\n")
    plot(report["win_rate"], out / "win_rate.png")
    print(table, flush=True)
    training.say(f"win-rate report: {out / 'win_rate.json'}")
    return report


def format_table(win_rate: dict) -> str:
    lines = ["| system | judge | " + " | ".join(next(iter(next(iter(win_rate.values())).values()))) + " |"]
    lines.append("|" + "---|" * (2 + len(next(iter(next(iter(win_rate.values())).values())))))
    for system, judges in win_rate.items():
        for judge, per in judges.items():
            lines.append(
                f"| {system} | {judge} | " + " | ".join(f"{100 * v:.0f} %" for v in per.values()) + " |"
            )
    return "\n".join(lines)


def plot(win_rate: dict, out_png: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = [(f"{s} / {j}", per) for s, judges in win_rate.items() for j, per in judges.items()]
    langs = list(series[0][1])
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(langs) + 2), 4))
    for k, (label, per) in enumerate(series):
        ax.bar(
            [i + k * width for i in range(len(langs))],
            [100 * per[lang] for lang in langs],
            width,
            label=label,
        )
    ax.axhline(50, color="grey", linestyle="--", linewidth=1)
    ax.set_xticks([i + width * (len(series) - 1) / 2 for i in range(len(langs))], langs)
    ax.set_ylabel("win rate over SFT (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png
