"""Translation: chrF and BLEU (sacrebleu) on held-out NTREX-128 *test* documents, en→xx and xx→en.

Every model gets the same instruction (the first English template the data recipes train on:
"Translate the following text from {src} to {tgt}.\\n\\n{text}"), 0-shot, or 1-shot with one earlier
user/assistant turn whose example pair comes from the NTREX *dev* split (never a test document).
The first line of the response, after a leading label line, is the hypothesis; generation stops as
soon as that line is complete (``until="first_line"``), so a model that runs on after its
translation (the base model repeats the instruction) costs no more tokens than the line it is scored on.
Subtasks: ``ntrex_en-xx_0shot``, ``ntrex_xx-en_1shot``...; per language = the non-English side.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from crossling import corpora
from crossling.errors import ConfigError
from crossling.generation import clean_translation
from crossling.languages import name as language_name
from evaluation.metrics import translation_intervals, translation_scores
from evaluation.tasks.base import Item, SubtaskScores, TaskSpec, language_mean, set_intervals

if TYPE_CHECKING:  # for annotations only: evaluation.config imports the task registry
    from evaluation.config import EvalConfig

INSTRUCTION = "Translate the following text from {src} to {tgt}.\n\n{text}"
DIRECTIONS = ("en-xx", "xx-en")

PairsFn = Callable[[str, str, str], list[dict]]


def _ntrex_pairs(src: str, tgt: str, split: str) -> list[dict]:
    return corpora.ntrex_pairs(src, tgt, split)


def prompt_for(src: str, tgt: str, text: str) -> str:
    return INSTRUCTION.format(src=language_name(src), tgt=language_name(tgt), text=text)


@dataclass
class Translation:
    languages: list[str]
    directions: list[str] = field(default_factory=lambda: ["en-xx"])
    shots: list[int] = field(default_factory=lambda: [0])
    sentences: int = 12
    max_new_tokens: int = 128
    pairs_fn: PairsFn = _ntrex_pairs
    name: str = "translation"

    def __post_init__(self) -> None:
        bad = [d for d in self.directions if d not in DIRECTIONS]
        if bad or any(s not in (0, 1) for s in self.shots):
            raise ConfigError(f"translation: directions must be in {DIRECTIONS} and shots in (0, 1)")

    def items(self) -> list[Item]:
        items = []
        for direction in self.directions:
            for lang in self.languages:
                if lang == "en":
                    continue
                src, tgt = ("en", lang) if direction == "en-xx" else (lang, "en")
                test = self.pairs_fn(src, tgt, "test")[: self.sentences]
                example = self.pairs_fn(src, tgt, "dev")[0]
                for shots in self.shots:
                    subtask = f"ntrex_{direction}_{shots}shot"
                    for row in test:
                        messages = []
                        if shots:
                            messages += [
                                {"role": "user", "content": prompt_for(src, tgt, example["src"])},
                                {"role": "assistant", "content": example["tgt"]},
                            ]
                        messages.append({"role": "user", "content": prompt_for(src, tgt, row["src"])})
                        items.append(
                            Item(
                                id=f"{row['id']}:{src}-{tgt}",
                                subtask=subtask,
                                lang=lang,
                                messages=messages,
                                ref={"src": row["src"], "ref": row["tgt"], "tgt_lang": tgt},
                                max_new_tokens=self.max_new_tokens,
                                until="first_line",
                            )
                        )
        return items

    def score(self, items: list[Item], outputs: list[str]) -> tuple[list[dict], SubtaskScores]:
        records = []
        groups: dict[tuple[str, str], list[tuple[str, str]]] = {}
        for item, out in zip(items, outputs, strict=True):
            hyp = clean_translation(out)
            records.append(
                {
                    "id": item.id,
                    "subtask": item.subtask,
                    "lang": item.lang,
                    "tgt_lang": item.ref["tgt_lang"],
                    "prompt": item.messages[-1]["content"],
                    "source": item.ref["src"],
                    "reference": item.ref["ref"],
                    "output": out,
                    "hypothesis": hyp,
                }
            )
            groups.setdefault((item.subtask, item.lang), []).append((hyp, item.ref["ref"]))
        scores: SubtaskScores = {}
        tgt_of = {(i.subtask, i.lang): i.ref["tgt_lang"] for i in items}
        for (subtask, lang), pairs in groups.items():
            hyps, refs = [h for h, _ in pairs], [r for _, r in pairs]
            per_lang = scores.setdefault(subtask, {"per_language": {}, "mean": {}})["per_language"]
            per_lang[lang] = translation_scores(hyps, refs, tgt_of[(subtask, lang)])
        for subtask, sub in scores.items():
            sub["mean"] = language_mean(sub["per_language"], ["chrf", "bleu"])
            pairs = {
                lang: ([h for h, _ in groups[subtask, lang]], [r for _, r in groups[subtask, lang]])
                for lang in sub["per_language"]
            }
            tgt = {lang: tgt_of[subtask, lang] for lang in pairs}
            for key, (per_lang, of_mean) in translation_intervals(pairs, tgt).items():
                set_intervals(sub, key, per_lang, of_mean)
        return records, scores


def build(cfg: EvalConfig) -> Translation:
    return Translation(
        cfg.languages, cfg.translation_directions, cfg.translation_shots, cfg.translation_sentences,
        cfg.translation_max_new_tokens,
    )  # fmt: skip


SPEC = TaskSpec(build, columns={"ntrex_": [("chrf", "chrF", False), ("bleu", "BLEU", False)]})
