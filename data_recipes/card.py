"""Writing a built dataset: JSONL, a Hugging Face DatasetDict, the dataset card and the drop report.

``data/built/<name>/`` gets ``train.jsonl``, ``dev.jsonl``, ``hf/`` (``save_to_disk``, splits
train/dev), ``preference_prompts.jsonl``, ``card.md`` (counts per recipe × language, tokens, sources,
licences, the config), ``drop_report.json``, ``config.yaml`` and, in lenient mode, ``quarantine.jsonl``.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from crossling.config import save_config
from crossling.models import load_tokenizer, resolve_model
from data_recipes.build import BuildConfig, BuildResult, check_output_dir
from data_recipes.schema import card_label, public

SOURCES = [
    ("NTREX-128", "data/ntrex/", "CC BY-SA 4.0", "Federmann et al. 2022, 'NTREX-128 — News Test References for MT Evaluation of 128 Languages'"),
    ("MGSM exemplars", "data/mgsm/exemplars.json", "CC BY 4.0", "Shi et al. 2022, 'Language Models are Multilingual Chain-of-Thought Reasoners'"),
    ("GSM8K train", "data/gsm8k/train.jsonl", "MIT", "Cobbe et al. 2021, 'Training Verifiers to Solve Math Word Problems'"),
    ("crossling safety seeds", "data/safety/seed.jsonl", "Apache-2.0 (this project)", "written for crossling"),
    ("crossling native safety prompts", "data/safety/prompts/native/", "Apache-2.0 (this project)", "written for crossling in each language (read when safety.native_dir names them)"),
]  # fmt: skip


def write_jsonl(path: Path, rows: list[dict]) -> None:
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def token_counts(rows: list[dict], tokenizer_name: str | None) -> dict[str, int] | None:
    """Tokens per recipe with the model's chat template (None when no tokenizer can be loaded)."""
    if not tokenizer_name or not rows:
        return None
    try:
        tok = load_tokenizer(resolve_model(tokenizer_name))
    except Exception as e:  # token counts are informative only; a missing model must not fail a build
        print(f"note: token counts skipped ({type(e).__name__}: {e})")
        return None
    counts: Counter = Counter()
    for row in rows:
        ids = tok.apply_chat_template(row["messages"], tokenize=True)
        ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
        counts[card_label(row)] += len(ids)
    return dict(counts)


def table(rows: list[dict]) -> str:
    """Markdown table of rows per recipe × language."""
    counts = Counter((card_label(r), r["lang"]) for r in rows)
    recipes = sorted({r for r, _ in counts})
    langs = sorted({lang for _, lang in counts})
    head = "| recipe | " + " | ".join(langs) + " | total |"
    lines = [head, "|" + "---|" * (len(langs) + 2)]
    for recipe in recipes:
        cells = [str(counts.get((recipe, lang), 0)) for lang in langs]
        lines.append(
            f"| {recipe} | " + " | ".join(cells) + f" | {sum(counts[(recipe, lg)] for lg in langs)} |"
        )
    totals = [str(sum(counts[(r, lang)] for r in recipes)) for lang in langs]
    lines.append("| **total** | " + " | ".join(totals) + f" | {len(rows)} |")
    return "\n".join(lines)


def card_text(cfg: BuildConfig, result: BuildResult, tokens: dict[str, int] | None, command: str) -> str:
    parts = [
        f"# crossling dataset `{cfg.name}`",
        "",
        f"Built with `{command}` in {result.seconds:.1f} s (seed {cfg.seed}). Languages: {', '.join(cfg.languages)}.",
        f"Mixing: {cfg.mixing} (alpha {cfg.alpha}"
        + (f", recipe weights {cfg.recipe_weights})" if cfg.mixing == "weights" else ")"),
        "",
        f"## Train: {len(result.train)} rows",
        "",
        table(result.train),
        "",
        f"## Dev: {len(result.dev)} rows",
        "",
        table(result.dev),
        "",
    ]
    if tokens:
        total = sum(tokens.values())
        parts += [
            "## Train tokens (chat template applied)",
            "",
            "| recipe | tokens | share |",
            "|---|---|---|",
        ]
        parts += [f"| {r} | {n} | {n / total:.0%} |" for r, n in sorted(tokens.items())]
        parts += [f"| **total** | {total} | |", ""]
    parts += [
        f"## Preference prompts: {len(result.prompts)}",
        "",
        ", ".join(f"{k}={v}" for k, v in sorted(Counter(p["lang"] for p in result.prompts).items()))
        or "none",
        "",
        "## Quality gates",
        "",
        "```",
        result.report.to_text(),
        "```",
        "",
        "## Sources and licences",
        "",
        "| source | file | licence | reference |",
        "|---|---|---|---|",
    ]
    parts += [f"| {a} | `{b}` | {c} | {d} |" for a, b, c, d in SOURCES]
    parts += [
        "",
        "Evaluation-only (never in this dataset; used to decontaminate): MGSM test (all languages), NTREX",
        "test documents (`data/ntrex/splits.tsv`), MultiJail, the open prompts of the fidelity and benign",
        "safety evals (`data/eval_prompts/open_prompts.jsonl`).",
        "",
        "## Config",
        "",
        "```yaml",
        yaml.safe_dump(_plain(cfg), sort_keys=False, allow_unicode=True).rstrip(),
        "```",
        "",
    ]
    return "\n".join(parts)


def _plain(cfg: BuildConfig) -> dict[str, Any]:
    import dataclasses

    return dataclasses.asdict(cfg)


def write(cfg: BuildConfig, result: BuildResult, command: str) -> Path:
    """Write every output of a build; returns the dataset folder."""
    out = check_output_dir(cfg)
    if out.exists():
        shutil.rmtree(out)  # a rebuild replaces the folder: stale files must not mix with new ones
    out.mkdir(parents=True)
    train, dev = [public(r) for r in result.train], [public(r) for r in result.dev]
    write_jsonl(out / "train.jsonl", train)
    write_jsonl(out / "dev.jsonl", dev)
    write_jsonl(out / "preference_prompts.jsonl", result.prompts)
    if result.quarantine:
        write_jsonl(out / "quarantine.jsonl", result.quarantine)
    _save_hf(out / "hf", train, dev)
    report = result.report.to_dict()
    report["candidates"] = _cells(result.candidates)
    report["passed_gates"] = _cells(result.available)
    report["seconds"] = round(result.seconds, 2)
    (out / "drop_report.json").write_text(json.dumps(report, ensure_ascii=False, indent=2), encoding="utf-8")
    save_config(cfg, out / "config.yaml", command=command)
    tokens = token_counts(result.train, cfg.count_tokens_with)
    (out / "card.md").write_text(card_text(cfg, result, tokens, command), encoding="utf-8")
    return out


def _cells(per_split: dict[str, dict[tuple[str, str], int]]) -> dict[str, dict[str, int]]:
    return {
        split: {f"{r}/{lang}": n for (r, lang), n in sorted(cells.items())}
        for split, cells in per_split.items()
    }


def _save_hf(path: Path, train: list[dict], dev: list[dict]) -> None:
    """The splits as a ``DatasetDict`` on disk, in one process whatever ``num_proc``: ``save_to_disk``
    with ``num_proc`` N writes at least N shards (another layout, other files), and the splits are
    the mixed rows only (``train_examples``, small), so processes would gain nothing here."""
    import datasets

    features = datasets.Features(
        {
            "messages": datasets.List(
                {"role": datasets.Value("string"), "content": datasets.Value("string")}
            ),
            "recipe": datasets.Value("string"),
            "lang": datasets.Value("string"),
            "src_lang": datasets.Value("string"),
            "tgt_lang": datasets.Value("string"),
            "source": datasets.Value("string"),
            "split": datasets.Value("string"),
        }
    )

    def table(rows: list[dict]) -> datasets.Dataset:  # from_list cannot make an empty split
        columns = {k: [r[k] for r in rows] for k in features}
        return datasets.Dataset.from_dict(columns, features=features)

    dd = datasets.DatasetDict({"train": table(train), "dev": table(dev)})
    dd.save_to_disk(str(path))
