"""The transfer report: how well a reward model trained in one language ranks pairs in every language.

Held-out (dev-document) pairs are built the same way in every language (``align.preference_data``),
so the accuracy gap between the source language and a target language is the cost of transfer
("Reuse Your Rewards", Wu et al. 2024). Written as ``transfer.json``, ``transfer.md`` and
``transfer.png`` (one bar per language, the source highlighted, chance at 50 %). Not here: training.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from align import preference_data, training


def accuracy_by_language(scorer, pairs_by_lang: dict[str, list[dict]]) -> dict[str, dict]:
    """``{lang: {"n", "accuracy", "mean_margin", "by_kind": {kind: accuracy}}}`` (languages with pairs)."""
    results: dict[str, dict] = {}
    for lang, pairs in pairs_by_lang.items():
        if not pairs:
            continue
        prompts = [p.get("prompt", []) for p in pairs]
        chosen = scorer.score(prompts, [p["chosen"] for p in pairs])
        rejected = scorer.score(prompts, [p["rejected"] for p in pairs])
        wins = [c > r for c, r in zip(chosen, rejected, strict=True)]
        by_kind: dict[str, list[bool]] = defaultdict(list)
        for pair, win in zip(pairs, wins, strict=True):
            by_kind[pair.get("kind", "all")].append(win)
        results[lang] = {
            "n": len(pairs),
            "accuracy": round(sum(wins) / len(wins), 4),
            "mean_margin": round(sum(c - r for c, r in zip(chosen, rejected, strict=True)) / len(pairs), 4),
            "by_kind": {k: round(sum(v) / len(v), 4) for k, v in sorted(by_kind.items())},
        }
    return results


def format_table(results: dict[str, dict], source_lang: str) -> str:
    kinds = sorted({k for row in results.values() for k in row["by_kind"]})
    head = ["lang", "n", "accuracy", "Δ vs source", "margin", *kinds]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    src = results.get(source_lang, {}).get("accuracy")
    for lang, row in results.items():
        delta = "—" if lang == source_lang or src is None else f"{100 * (row['accuracy'] - src):+.1f}"
        cells = [
            lang + (" (source)" if lang == source_lang else ""),
            str(row["n"]),
            f"{100 * row['accuracy']:.1f} %",
            delta,
            f"{row['mean_margin']:.2f}",
            *[f"{100 * row['by_kind'][k]:.0f} %" if k in row["by_kind"] else "" for k in kinds],
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(results: dict[str, dict], source_lang: str, out_png: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    langs = list(results)
    values = [100 * results[lang]["accuracy"] for lang in langs]
    colors = ["#d95f02" if lang == source_lang else "#1b9e77" for lang in langs]
    fig, ax = plt.subplots(figsize=(max(5, 0.7 * len(langs) + 2), 4))
    bars = ax.bar(langs, values, color=colors)
    ax.axhline(50, color="grey", linestyle="--", linewidth=1, label="chance")
    for bar, value in zip(bars, values, strict=True):
        ax.text(bar.get_x() + bar.get_width() / 2, value + 1, f"{value:.0f}", ha="center", fontsize=8)
    ax.set_ylim(0, 105)
    ax.set_ylabel("pairwise accuracy (%)")
    ax.set_title(f"reward model trained on {source_lang}: accuracy on held-out pairs by language")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png


def write_report(results: dict[str, dict], source_lang: str, out_dir: Path, meta: dict | None = None) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    report = {"source_lang": source_lang, **(meta or {}), "languages": results}
    (out_dir / "transfer.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    table = format_table(results, source_lang)
    (out_dir / "transfer.md").write_text(f"# Reward transfer from {source_lang}\n\n{table}\n")
    plot(results, source_lang, out_dir / "transfer.png")
    return report


def run_transfer_report(cfg, scorer, run_dir: Path) -> dict:
    """Score the dev pairs of every ``eval_languages`` entry and write the report into ``run_dir``."""
    folder = preference_data.ensure_built(cfg.preference_data, [cfg.source_lang, *cfg.eval_languages])
    rows = preference_data.load_pairs(folder / "dev.jsonl")
    langs = list(dict.fromkeys([cfg.source_lang, *cfg.eval_languages]))
    grouped = preference_data.per_language(rows, langs, cfg.eval_pairs_per_language, cfg.seed)
    missing = [lang for lang, pairs in grouped.items() if not pairs]
    if missing:
        training.say(
            f"no held-out pairs for {', '.join(missing)} in {folder}/dev.jsonl: left out of the report"
        )
    results = accuracy_by_language(scorer, grouped)
    report = write_report(
        results, cfg.source_lang, run_dir, {"reward_model": str(run_dir), "pairs": str(folder)}
    )
    print(format_table(results, cfg.source_lang), flush=True)
    training.say(f"transfer report: {run_dir / 'transfer.json'}, {run_dir / 'transfer.png'}")
    return report
