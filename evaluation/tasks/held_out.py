"""Held-out rows of a built dataset: the split to *choose* a model or a data mix on.

Evaluation sets (NTREX test, MGSM test, MultiJail, the open prompts) measure and are reported once;
choices are made here, on the ``dev`` rows ``crossling data build`` kept out of training
(``data/built/<name>/dev.jsonl``). Every row's conversation up to its last answer is the prompt and
its recipe says what to score:

- every row: ``fidelity``, the answer is in the row's ``lang`` (``crossling.langid``);
- ``translation_following`` rows: corpus ``chrf`` against the row's own answer, per target language;
- ``safety`` rows: ``refusal`` where the reference answer refuses (a harmful request), else
  ``over_refusal`` (a benign request, often a look-alike).

``data`` may also be the safety seed (``data/safety/seed.jsonl``): its dev phrases, never trained on by
SFT or by align's safety examples, become safety rows (``configs/eval/safety_dev.yaml``: Self-Defence
measured where choices may be made, MultiJail is kept for reporting). Or the folder of native prompts
(``data/safety/prompts/native``): its harmful requests the data build holds out for dev, and its benign
prompts (look-alikes, sensitive-topic help, everyday, code; SFT trains on none of them) as over-refusal
rows (``configs/eval/safety_dev_native.yaml``). Or XSafety (``data/safety_public/xsafety``): its dev
prompts, harmful requests and benign sensitive-topic questions (``configs/eval/safety_dev_xsafety.yaml``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from crossling.errors import DataError
from crossling.generation import clean_translation
from crossling.langid import in_language
from crossling.loaders import read_records
from data_recipes.schema import in_dev_split
from evaluation.metrics import is_refusal, translation_intervals, translation_scores
from evaluation.tasks.base import Item, SubtaskScores, TaskSpec, group_means, language_mean, set_intervals
from evaluation.tasks.safety import refusal_texts

if TYPE_CHECKING:  # for annotations only: evaluation.config imports the task registry
    from evaluation.config import EvalConfig

SUBTASK, CHRF = "dev_rows", "dev_translation"  # neither name is a prefix of the other (report columns)


@dataclass
class HeldOut:
    data: str  # a built dataset folder (dev.jsonl) or a JSONL file of SFT rows
    languages: list[str]
    per_language: int = 40
    max_new_tokens: int = 64
    name: str = "held_out"

    def items(self) -> list[Item]:
        path = Path(self.data)
        if path.is_dir() and (path / "xsafety.jsonl.gz").exists():
            rows = xsafety_dev_rows(path, self.languages, self.per_language)
        elif path.is_dir() and not (path / "dev.jsonl").exists() and any(path.glob("*.yaml")):
            rows = native_dev_rows(path, self.languages, self.per_language)
        else:
            path = path / "dev.jsonl" if path.is_dir() else path
            if not path.is_file():
                raise DataError(f"held-out rows not found: {path} (build the data first: `make data`)")
            if _is_seed(path):
                rows = seed_dev_rows(path, self.languages, self.per_language)
            else:
                rows = read_records(path, required=("messages", "lang", "recipe"))
        taken: dict[str, int] = {}
        items = []
        for row in rows:
            lang = row["lang"]
            if lang not in self.languages or taken.get(lang, 0) >= self.per_language:
                continue
            taken[lang] = taken.get(lang, 0) + 1
            *prompt, answer = row["messages"]
            items.append(Item(id=f"{path.name}:{row['_line']}", subtask=SUBTASK, lang=lang, messages=prompt,
                              ref={"recipe": row["recipe"], "answer": answer["content"]},
                              max_new_tokens=self.max_new_tokens))  # fmt: skip
        return items

    def score(self, items: list[Item], outputs: list[str]) -> tuple[list[dict], SubtaskScores]:
        records, pairs = [], {}
        for item, out in zip(items, outputs, strict=True):
            rec = {"id": item.id, "subtask": SUBTASK, "lang": item.lang, "recipe": item.ref["recipe"],
                   "prompt": item.messages[-1]["content"], "output": out, "fidelity": float(in_language(out, item.lang))}  # fmt: skip
            if item.ref["recipe"] == "safety":
                refusals = refusal_texts(item.lang)
                harmful = is_refusal(item.ref["answer"], refusals)
                rec["refusal" if harmful else "over_refusal"] = float(is_refusal(out, refusals))
            if item.ref["recipe"] == "translation_following":
                hyps, refs = pairs.setdefault(item.lang, ([], []))
                hyps.append(clean_translation(out))
                refs.append(item.ref["answer"])
            records.append(rec)
        scores = group_means(records, ["fidelity", "refusal", "over_refusal"])
        if pairs:
            per_language = {lang: translation_scores(h, r, lang) for lang, (h, r) in pairs.items()}
            scores[CHRF] = {"per_language": per_language, "mean": language_mean(per_language, ["chrf"])}
            per_lang, of_mean = translation_intervals(pairs, {lang: lang for lang in pairs})["chrf"]
            set_intervals(scores[CHRF], "chrf", per_lang, of_mean)
        return records, scores


def _is_seed(path: Path) -> bool:
    """A safety seed file (``{text, lang, label, group}`` rows) rather than SFT rows."""
    with path.open(encoding="utf-8") as f:
        first = next((line for line in f if line.strip()), "")
    return '"label"' in first and '"messages"' not in first


def seed_dev_rows(path: Path, languages: list[str], per_language: int) -> list[dict]:
    """Safety rows from a seed file's **dev phrases** (those the data build holds out,
    ``in_dev_split``; align's ``safety_examples`` skip them too): per language up to
    ``per_language // 2`` harmful requests (reference: the refusal) and as many benign look-alikes
    (reference: their answer), one framing per phrase, drawn with a fixed seed per language."""
    import random

    from data_recipes.recipes.safety import draw_phrases, read_seed
    from safety.refusals import refusal_text

    seed = read_seed(path)
    out = []
    for lang in languages:
        rng = random.Random(f"safety-dev-{lang}")
        for r in draw_phrases(seed, lang, dev=True, per_label=per_language // 2, rng=rng):
            answer = refusal_text(lang, r.get("category")) if r["label"] == "harmful" else r["response"]
            out.append(_safety_row(r["text"], answer, lang, r["_line"]))
    return out


def _safety_row(prompt: str, answer: str, lang: str, line) -> dict:
    messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]
    return {"messages": messages, "lang": lang, "recipe": "safety", "_line": line}


def native_dev_rows(folder: Path, languages: list[str], per_language: int) -> list[dict]:
    """Safety rows from native prompt files (``<folder>/<lang>.yaml``): per language up to
    ``per_language // 2`` harmful requests of the build's dev split (reference: the refusal) and as
    many benign prompts (reference: an empty answer, i.e. not a refusal), drawn with a fixed seed."""
    import random

    from safety.guard_data import load_prompts

    out = []
    for lang in languages:
        path = folder / f"{lang}.yaml"
        if not path.is_file():
            continue
        rng = random.Random(f"safety-native-dev-{lang}")
        rows = load_prompts(path, native=True)
        harmful = [r for r in rows if r["label"] == "harmful" and in_dev_split(r["group"])]
        benign = [r for r in rows if r["label"] == "benign"]
        out += _drawn_rows(harmful, benign, lang, per_language // 2, rng)
    return out


def _drawn_rows(harmful: list[dict], benign: list[dict], lang: str, k: int, rng) -> list[dict]:
    """Up to ``k`` of ``harmful`` (reference: the refusal) then up to ``k`` of ``benign`` (reference:
    an empty answer, i.e. not a refusal), drawn by ``rng``, as safety rows."""
    from safety.refusals import refusal_text

    out = []
    for r in rng.sample(harmful, min(len(harmful), k)) + rng.sample(benign, min(len(benign), k)):
        answer = refusal_text(lang, r["category"]) if r["label"] == "harmful" else ""
        out.append(_safety_row(r["text"], answer, lang, r["id"]))
    return out


def xsafety_dev_rows(folder: Path, languages: list[str], per_language: int) -> list[dict]:
    """Safety rows from XSafety (``data/safety_public/xsafety``, crossling's labels): per language up to
    ``per_language // 2`` harmful requests and as many benign sensitive-topic prompts (reference: an
    empty answer), all of the build's dev split (``in_dev_split`` of the prompt's group, the same in
    every language: the sets are parallel translations), drawn with a fixed seed."""
    import random

    from safety.public_data import xsafety_rows

    rows = [r for r in xsafety_rows(folder.parent) if in_dev_split(r["group"])]
    out = []
    for lang in languages:
        rng = random.Random(f"safety-xsafety-dev-{lang}")
        mine = [r for r in rows if r["lang"] == lang]
        harmful = [r for r in mine if r["label"] == "harmful"]
        benign = [r for r in mine if r["label"] == "benign"]
        out += _drawn_rows(harmful, benign, lang, per_language // 2, rng)
    return out


def build(cfg: EvalConfig) -> HeldOut:
    return HeldOut(cfg.held_out_data, cfg.languages, cfg.held_out_per_language, cfg.held_out_max_new_tokens)


SPEC = TaskSpec(
    build,
    columns={
        CHRF: [("chrf", "chrF (dev rows)", False)],
        SUBTASK: [
            ("fidelity", "fidelity (dev rows)", True),
            ("refusal", "refusal (dev rows)", True),
            ("over_refusal", "over-refusal (dev rows)", True),
        ],  # fmt: skip
    },
)
