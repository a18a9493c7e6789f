"""preference_prompts: multilingual prompt sets for alignment (prompts only, per language).

DPO/KTO need prompts to sample the SFT model on; these are taken from the recipes' rows that passed
every gate but were *not* chosen for the SFT mix, so alignment does not re-score prompts the model
was trained to answer. Rows: ``{"prompt": [{"role": "user", "content": ...}], "lang", "recipe",
"source"}`` with ``lang`` the language the answer should be in (TRL's conversational prompt format).
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field

RECIPE = "preference_prompts"


@dataclass
class PreferencePromptsConfig:
    enabled: bool = field(
        default=True, metadata={"help": "Write preference_prompts.jsonl next to the SFT data."}
    )
    per_language: int = field(
        default=64, metadata={"help": "Prompts per answer language (fewer if not available)."}
    )
    recipes: list[str] = field(
        default_factory=lambda: ["translation_following", "xcot", "cross_lingual_instructions"],
        metadata={"help": "Recipes whose leftover rows become prompts (safety is left to the eval)."},
    )


def from_rows(cfg: PreferencePromptsConfig, rows: list[dict], seed: int = 0) -> list[dict]:
    """Up to ``per_language`` prompts per language, spread evenly over ``recipes``."""
    rng = random.Random(f"{RECIPE}-{seed}")
    by_lang: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        if row["recipe"] in cfg.recipes and row.get("split") == "train":
            by_lang[row["lang"]][row["recipe"]].append(row)
    out = []
    for lang in sorted(by_lang):
        pools = [rng.sample(p, len(p)) for _, p in sorted(by_lang[lang].items())]
        picked: list[dict] = []
        while len(picked) < cfg.per_language and any(pools):  # round-robin over recipes
            for pool in pools:
                if pool and len(picked) < cfg.per_language:
                    picked.append(pool.pop())
        for row in picked:
            prompt = [m for m in row["messages"][:-1]]
            out.append({"prompt": prompt, "lang": lang, "recipe": row["recipe"], "source": row["source"]})
    return out
