"""MGSM math reasoning: accuracy of the final number, per language, named as lm-eval names it.

Variants (lm-eval task names per language): ``mgsm_direct_<lang>`` (answer with the number),
``mgsm_native_cot_<lang>`` (step by step in the question's language), ``mgsm_en_cot_<lang>`` (question
in the language, steps in English). As chat: k-shot exemplars (MGSM's own 8, in the language) are
earlier user/assistant turns; 0-shot prompts end with the variant's answer label ("Antwort:",
"Schritt-für-Schritt-Antwort:", "Step-by-Step Answer:"). The final number is read by
``evaluation.metrics.extract_answer`` (any script's digits, 1.234,5 vs 1,234.5, answer cues).
MGSM has no Hindi or Arabic: those languages are reported as not covered, not silently skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from crossling import corpora
from crossling.errors import ConfigError
from evaluation.metrics import extract_answer, format_number, numbers_match
from evaluation.tasks.base import Item, SubtaskScores, TaskSpec, group_means

if TYPE_CHECKING:  # for annotations only: evaluation.config imports the task registry
    from evaluation.config import EvalConfig

VARIANTS = ("direct", "native_cot", "en_cot")
MGSM_LANGUAGES = ("bn", "de", "en", "es", "fr", "ja", "ru", "sw", "te", "th", "zh")
# "Answer" as lm-eval's mgsm_direct prompts write it in each language.
ANSWER_LABEL = {
    "en": "Answer", "de": "Antwort", "fr": "Réponse", "es": "Respuesta", "ru": "Ответ", "zh": "答案",
    "ja": "答え", "bn": "উত্তর", "sw": "Jibu", "te": "సమాధానం", "th": "คำตอบ",
}  # fmt: skip


def lm_eval_name(variant: str, lang: str) -> str:
    return f"mgsm_{variant}_{lang}"


def _sources():  # tests hand the task stand-in data instead
    return corpora


@dataclass
class MathReasoning:
    languages: list[str]
    variants: list[str] = field(default_factory=lambda: ["direct"])
    problems: int = 10
    shots: int = 0
    max_new_tokens: int = 256
    direct_max_new_tokens: int = 32
    sources: Callable = _sources
    name: str = "mgsm"

    def __post_init__(self) -> None:
        bad = [v for v in self.variants if v not in VARIANTS]
        if bad:
            raise ConfigError(f"mgsm: unknown variant(s) {bad}; use {', '.join(VARIANTS)}")
        if not 0 <= self.shots <= 8:
            raise ConfigError(f"mgsm: shots must be 0..8 (MGSM has 8 exemplars), got {self.shots}")

    @property
    def covered(self) -> list[str]:
        return [lang for lang in self.languages if lang in MGSM_LANGUAGES]

    @property
    def not_covered(self) -> list[str]:
        return [lang for lang in self.languages if lang not in MGSM_LANGUAGES]

    def _messages(self, variant: str, lang: str, question: str, exemplars, en_exemplars) -> list[dict]:
        src = self.sources()
        q_label, cot_label = src.mgsm_labels(lang)
        answer_label = {
            "direct": ANSWER_LABEL.get(lang, "Answer"),
            "native_cot": cot_label,
            "en_cot": src.mgsm_labels("en")[1],
        }[variant]
        messages = []
        for k, ex in enumerate(exemplars[: self.shots]):
            reply = {"direct": ex["answer"], "native_cot": ex["cot"], "en_cot": en_exemplars[k]["cot"]}[
                variant
            ]
            messages += [
                {"role": "user", "content": f"{q_label}: {ex['question']}"},
                {"role": "assistant", "content": reply},
            ]
        tail = "" if self.shots else f"\n{answer_label}:"
        messages.append({"role": "user", "content": f"{q_label}: {question}{tail}"})
        return messages

    def items(self) -> list[Item]:
        src = self.sources()
        en_exemplars = src.mgsm_exemplars("en")
        items = []
        for variant in self.variants:
            for lang in self.covered:
                exemplars = src.mgsm_exemplars(lang)
                for row in src.mgsm_problems(lang)[: self.problems]:
                    items.append(
                        Item(
                            id=f"{row['id']}:{lang}",
                            subtask=f"mgsm_{variant}",
                            lang=lang,
                            messages=self._messages(variant, lang, row["question"], exemplars, en_exemplars),
                            ref={"answer": row["answer"], "task": lm_eval_name(variant, lang)},
                            max_new_tokens=self.direct_max_new_tokens
                            if variant == "direct"
                            else self.max_new_tokens,
                        )
                    )
        return items

    def score(self, items: list[Item], outputs: list[str]) -> tuple[list[dict], SubtaskScores]:
        records = []
        for item, out in zip(items, outputs, strict=True):
            pred = extract_answer(out, item.lang)
            records.append(
                {
                    "id": item.id,
                    "subtask": item.subtask,
                    "lm_eval_task": item.ref["task"],
                    "lang": item.lang,
                    "question": item.messages[-1]["content"],
                    "output": out,
                    "answer": item.ref["answer"],
                    "extracted": format_number(pred),
                    "accuracy": float(numbers_match(pred, item.ref["answer"])),
                    "answered": float(pred is not None),
                }
            )
        scores = group_means(records, ["accuracy", "answered"])
        for sub in scores.values():
            if self.not_covered:
                sub["not_covered"] = self.not_covered
        return records, scores


def build(cfg: EvalConfig) -> MathReasoning:
    return MathReasoning(
        cfg.languages,
        cfg.mgsm_variants,
        cfg.mgsm_problems,
        cfg.mgsm_shots,
        cfg.mgsm_max_new_tokens,
        direct_max_new_tokens=cfg.mgsm_direct_max_new_tokens,
    )


SPEC = TaskSpec(build, columns={"mgsm_": [("accuracy", "acc %", True)]})
