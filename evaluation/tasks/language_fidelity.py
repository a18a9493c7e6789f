"""Language fidelity: is the answer written in the language the user asked for?

Held-out open prompts (``data/eval_prompts/open_prompts.jsonl``, written for crossling, never trained
on): ``native`` prompts are asked in a language and must be answered in it; ``cross`` prompts ask in
one language for an answer in another (ask in English, answer in Swahili; ask in Hindi, answer in
English). Each response is checked against the language it was asked for (``crossling.langid``) and
counted under the non-English language of the pair, so "sw" holds sw→sw, en→sw and sw→en:
``fidelity`` over all of them, ``fidelity_native`` and ``fidelity_cross`` apart. Empty responses fail.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from crossling.errors import DataError
from crossling.langid import in_language
from crossling.loaders import read_records
from evaluation.tasks.base import Item, SubtaskScores, TaskSpec, group_means

if TYPE_CHECKING:  # for annotations only: evaluation.config imports the task registry
    from evaluation.config import EvalConfig

SUBTASK = "language_fidelity"


def load_open_prompts(path: str | Path) -> list[dict]:
    """Rows ``{"id", "kind", "lang", "target_lang", "prompt"}``; a bad line is an error naming it."""
    if not Path(path).is_file():
        raise DataError(f"fidelity prompts not found: {path}")
    rows = read_records(path, required=("id", "kind", "lang", "prompt", "target_lang"))
    for row in rows:
        row.pop("_line", None)
    return rows


@dataclass
class LanguageFidelity:
    prompts_path: str
    languages: list[str]
    native_per_language: int = 3
    cross_per_language: int = 1
    max_new_tokens: int = 80
    name: str = SUBTASK

    def items(self) -> list[Item]:
        rows = load_open_prompts(self.prompts_path)
        wanted = set(self.languages)
        items: list[Item] = []
        for kind, limit in (("native", self.native_per_language), ("cross", self.cross_per_language)):
            taken: dict[str, int] = {}
            for row in rows:
                # Cross prompts that want English are counted under the language they are asked in.
                key = row["target_lang"] if row["target_lang"] != "en" or kind == "native" else row["lang"]
                if row["kind"] != kind or key not in wanted or taken.get(key, 0) >= limit:
                    continue
                taken[key] = taken.get(key, 0) + 1
                items.append(
                    Item(
                        id=row["id"],
                        subtask=SUBTASK,
                        lang=key,
                        messages=[{"role": "user", "content": row["prompt"]}],
                        ref={"kind": kind, "prompt_lang": row["lang"], "target_lang": row["target_lang"]},
                        max_new_tokens=self.max_new_tokens,
                    )
                )
            short = sorted(lang for lang in wanted if taken.get(lang, 0) < limit)
            if short and limit:
                raise DataError(
                    f"{self.prompts_path}: fewer than {limit} {kind} prompt(s) for {', '.join(short)}"
                )
        return items

    def score(self, items: list[Item], outputs: list[str]) -> tuple[list[dict], SubtaskScores]:
        records = []
        for item, out in zip(items, outputs, strict=True):
            ok = float(in_language(out, item.ref["target_lang"]))
            records.append(
                {
                    "id": item.id,
                    "subtask": item.subtask,
                    "lang": item.lang,
                    "kind": item.ref["kind"],
                    "target_lang": item.ref["target_lang"],
                    "prompt": item.messages[-1]["content"],
                    "output": out,
                    "fidelity": ok,
                    "fidelity_native": ok if item.ref["kind"] == "native" else None,
                    "fidelity_cross": ok if item.ref["kind"] == "cross" else None,
                }
            )
        return records, group_means(records, ["fidelity", "fidelity_native", "fidelity_cross"])


def build(cfg: EvalConfig) -> LanguageFidelity:
    return LanguageFidelity(
        cfg.fidelity_prompts,
        cfg.languages,
        cfg.fidelity_native,
        cfg.fidelity_cross,
        cfg.fidelity_max_new_tokens,
    )


SPEC = TaskSpec(
    build,
    columns={
        SUBTASK: [
            ("fidelity", "fidelity %", True),
            ("fidelity_native", "native %", True),
            ("fidelity_cross", "ask in A, answer in B %", True),
        ]
    },
)
