"""translation_following (CrossAlpaca, x-LLaMA): parallel sentence pairs → "translate X→Y" instructions.

Each NTREX pair (train and dev documents only; test documents are evaluation-only) gives one example
per direction, en→xx and xx→en (and xx→yy when ``non_english_pairs``). The instruction is phrased with
one of many templates (64 across 11 languages), written in English, in the source language or in the
target language, so the model learns to follow a translation request whatever language it is asked in.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from crossling import corpora
from data_recipes.schema import instruction_language, lang_name, sft_row, templates

RECIPE = "translation_following"


@dataclass
class TranslationFollowingConfig:
    enabled: bool = field(default=True, metadata={"help": "Build this recipe."})
    directions: str = field(
        default="both", metadata={"help": "'both' (en→xx and xx→en), 'from_en' or 'to_en'."}
    )
    non_english_pairs: bool = field(
        default=False, metadata={"help": "Also pair two non-English languages (xx→yy, NTREX is parallel)."}
    )
    instruction_languages: dict[str, float] = field(
        default_factory=lambda: {"en": 0.4, "src": 0.3, "tgt": 0.3},
        metadata={
            "help": "Weights for writing the instruction in English, the source or the target language."
        },
    )
    max_chars: int = field(
        default=300, metadata={"help": "Skip sentences longer than this (keeps rows short)."}
    )
    splits: list[str] = field(
        default_factory=lambda: ["train", "dev"],
        metadata={"help": "NTREX document splits to draw from (never 'test': evaluation-only)."},
    )

    def __post_init__(self) -> None:
        if self.directions not in ("both", "from_en", "to_en"):
            raise ValueError(f"directions must be both|from_en|to_en, got {self.directions!r}")
        if "test" in self.splits:
            raise ValueError("NTREX test documents are evaluation-only: remove 'test' from splits")
        check_instruction_languages(self.instruction_languages)


def check_instruction_languages(weights: dict[str, float]) -> None:
    """Keys ``en`` / ``src`` / ``tgt`` (who writes the request), weights >= 0, one of them > 0."""
    if not weights or set(weights) - {"en", "src", "tgt"}:
        raise ValueError(f"instruction_languages keys must be en, src, tgt, got {sorted(weights)}")
    if any(w < 0 for w in weights.values()) or not any(w > 0 for w in weights.values()):
        raise ValueError("instruction_languages weights must be >= 0 with at least one > 0")


def pick_instruction_language(weights: dict[str, float], src: str, tgt: str, rng: random.Random) -> str:
    """The language a request is written in: English, ``src`` or ``tgt``, drawn by ``weights``.

    One key with a positive weight draws nothing from ``rng`` (its later draws are unchanged).
    """
    live = {k: w for k, w in weights.items() if w > 0}
    choice = next(iter(live)) if len(live) == 1 else rng.choices(list(live), list(live.values()))[0]
    return {"en": "en", "src": src, "tgt": tgt}[choice]


def translation_prompt(text: str, src: str, tgt: str, inst_lang: str, rng: random.Random) -> str:
    """A translate-``src``-to-``tgt`` request for ``text``, written in ``inst_lang``."""
    inst_lang = instruction_language(inst_lang)
    template = rng.choice(templates()["translate"][inst_lang])
    return template.format(src=lang_name(src, inst_lang), tgt=lang_name(tgt, inst_lang), text=text)


def _pairs(cfg: TranslationFollowingConfig, langs: list[str]) -> list[tuple[str, str]]:
    others = [lang for lang in langs if lang != "en" and lang in corpora.ntrex_languages()]
    pairs = []
    if cfg.directions in ("both", "from_en"):
        pairs += [("en", lang) for lang in others]
    if cfg.directions in ("both", "to_en"):
        pairs += [(lang, "en") for lang in others]
    if cfg.non_english_pairs:
        pairs += [(a, b) for a in others for b in others if a != b]
    return pairs


def build(cfg: TranslationFollowingConfig, langs: list[str], seed: int = 0) -> list[dict]:
    """Every (pair, direction) example from the allowed NTREX splits; ``split`` follows the document."""
    rng = random.Random(f"{RECIPE}-{seed}")
    rows = []
    for src, tgt in _pairs(cfg, langs):
        for split in cfg.splits:
            for pair in corpora.ntrex_pairs(src, tgt, split):
                if max(len(pair["src"]), len(pair["tgt"])) > cfg.max_chars:
                    continue
                inst_lang = pick_instruction_language(cfg.instruction_languages, src, tgt, rng)
                row = sft_row(
                    translation_prompt(pair["src"], src, tgt, inst_lang, rng),
                    pair["tgt"],
                    recipe=RECIPE,
                    lang=tgt,
                    src_lang=src,
                    tgt_lang=tgt,
                    source=f"{pair['id']}:{src}-{tgt}",
                    group=pair["doc_id"],
                    checks=[(pair["src"], src), (pair["tgt"], tgt)],
                )
                row["split"] = "dev" if split == "dev" else "train"
                row["_fixed_split"] = True
                rows.append(row)
    return rows
