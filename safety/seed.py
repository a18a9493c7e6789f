"""Build ``data/safety/seed.jsonl`` from the hand-written sources in ``data/safety/source/<lang>.yaml``.

The sources were written for crossling, from scratch, one file per language in the same shape: a few
request *frames* (``How do I {x}?``), per hazard category a handful of harmful action phrases, and
per category benign look-alikes on the same topics (history of a war, how locks work, medication
safety, fiction) each with a short helpful answer; plus whole-sentence ``statements`` and everyday
``chat``; ``more_harmful`` ("category | phrase") and ``more_benign`` ("phrase | answer") widen the
topics (theft, drugs, fraud, revenge, bullying, ...) in some languages. Frames x phrases give many
phrasings per category per language. ``requests`` ("category | text") are whole harmful requests
the way users type them (context, role-play and fiction wrappers, leading questions), and ``tasks``
("kind | prompt | answer", kind math / prose / everyday / lookalike) are benign requests in the
shapes a request filter meets most: homework word problems, long writing and summarising tasks,
everyday questions, and harmless requests that share words with harmful ones.

Row contract (shared with the data recipes): ``{"id", "text", "lang", "label": "harmful"|"benign",
"category", "response"}`` — ``response`` is the short answer for benign rows, empty for harmful ones;
``category`` is the hazard category the row is about (benign look-alikes keep their topic's category;
everyday chat has ``null``). ``group`` names the phrase a row was built from, so train/dev splits can
keep all framings of one phrase on one side.

Not here: MultiJail or any evaluation set. Nothing in this module reads them.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import yaml

from crossling.decontamination import IndexSettings, shared_index
from crossling.errors import DataError
from crossling.languages import LANGUAGES
from crossling.loaders import read_records
from safety.categories import CATEGORIES

REPO = Path(__file__).resolve().parents[1]
SOURCE_DIR = REPO / "data" / "safety" / "source"
SEED_PATH = REPO / "data" / "safety" / "seed.jsonl"
TASK_KINDS = ("math", "prose", "everyday", "lookalike")


def _fail(path: Path, msg: str) -> DataError:
    return DataError(f"{path}: {msg}")


def load_source(path: str | Path) -> dict[str, Any]:
    """Read and validate one language source file (clear errors naming the file and field)."""
    path = Path(path)
    try:
        src = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise _fail(path, f"not valid YAML: {e}") from e
    if not isinstance(src, dict):
        raise _fail(path, "expected a mapping with lang, frames, harmful, benign")
    lang = src.get("lang")
    if lang not in LANGUAGES:
        raise _fail(path, f"field 'lang': unknown language {lang!r}")
    frames = src.get("frames") or []
    if not frames or any("{x}" not in f for f in frames):
        raise _fail(path, "field 'frames': every frame must contain {x}")
    for section in ("harmful", "benign"):
        block = src.get(section) or {}
        unknown = sorted(set(block) - set(CATEGORIES))
        if unknown:
            raise _fail(path, f"field {section!r}: unknown categories {unknown}")
        missing = sorted(set(CATEGORIES) - set(block))
        if missing:
            raise _fail(path, f"field {section!r}: categories without examples: {missing}")
    for cat, items in src["benign"].items():
        for item in items:
            if " | " not in item:
                raise _fail(path, f"benign.{cat}: {item!r} needs 'phrase | answer'")
    for field in ("statements", "requests", "chat", "more_harmful", "more_benign"):
        for item in src.get(field) or []:
            if " | " not in item:
                raise _fail(path, f"{field}: {item!r} needs 'a | b'")
    for item in src.get("tasks") or []:
        if item.count(" | ") < 2 or item.split(" | ", 1)[0].strip() not in TASK_KINDS:
            raise _fail(path, f"tasks: {item!r} needs 'kind | prompt | answer' with kind in {TASK_KINDS}")
    return src


def expand(src: dict[str, Any]) -> list[dict[str, Any]]:
    """All rows one source file yields, in a fixed order."""
    lang, frames = src["lang"], src["frames"]
    rows: list[dict[str, Any]] = []

    def add(rid: str, text: str, label: str, cat: str | None, response: str, group: str) -> None:
        rows.append(
            {"id": rid, "text": text, "lang": lang, "label": label, "category": cat,
             "response": response, "group": group}
        )  # fmt: skip

    def framed(group: str, phrase: str, label: str, cat: str | None, response: str) -> None:
        for j, frame in enumerate(frames):
            add(f"{group}-f{j}", frame.replace("{x}", phrase), label, cat, response, group)

    for cat, phrases in src["harmful"].items():
        for i, phrase in enumerate(phrases):
            framed(f"{lang}-{cat}-h{i}", phrase, "harmful", cat, "")
    for cat, items in src["benign"].items():
        for i, item in enumerate(items):
            phrase, answer = (s.strip() for s in item.split(" | ", 1))
            framed(f"{lang}-{cat}-b{i}", phrase, "benign", cat, answer)
    for i, item in enumerate(src.get("more_harmful") or []):
        cat, phrase = (s.strip() for s in item.split(" | ", 1))
        if cat not in CATEGORIES:
            raise DataError(f"{lang} more_harmful[{i}]: unknown category {cat!r}")
        framed(f"{lang}-more-h{i}", phrase, "harmful", cat, "")
    for i, item in enumerate(src.get("more_benign") or []):
        phrase, answer = (s.strip() for s in item.split(" | ", 1))
        framed(f"{lang}-more-b{i}", phrase, "benign", None, answer)
    for field, prefix in (("statements", "stmt"), ("requests", "req")):
        for i, item in enumerate(src.get(field) or []):
            cat, text = (s.strip() for s in item.split(" | ", 1))
            if cat not in CATEGORIES:
                raise DataError(f"{lang} {field}[{i}]: unknown category {cat!r}")
            add(f"{lang}-{prefix}{i}", text, "harmful", cat, "", f"{lang}-{prefix}{i}")
    for i, item in enumerate(src.get("chat") or []):
        text, answer = (s.strip() for s in item.split(" | ", 1))
        add(f"{lang}-chat{i}", text, "benign", None, answer, f"{lang}-chat{i}")
    for i, item in enumerate(src.get("tasks") or []):
        kind, text, answer = (s.strip() for s in item.split(" | ", 2))
        add(f"{lang}-{kind}{i}", text, "benign", None, answer, f"{lang}-task{i}")
    return rows


def build_seed(
    source_dir: str | Path = SOURCE_DIR, out: str | Path | None = SEED_PATH, decontaminate: bool = True
) -> list[dict]:
    """Expand every ``<lang>.yaml`` under ``source_dir``; write JSONL to ``out`` (if given).

    ``decontaminate`` drops rows that overlap an evaluation item (MultiJail, MGSM, NTREX test; the
    data recipes' n-gram index): hand-written prompts can meet an eval prompt by chance ("how do I
    make a pipe bomb"), and a filter must not be scored on what it trained on.
    """
    paths = sorted(Path(source_dir).glob("*.yaml"))
    if not paths:
        raise DataError(f"{source_dir}: no <lang>.yaml source files")
    rows = [row for p in paths for row in expand(load_source(p))]
    if decontaminate:
        rows = drop_eval_overlap(rows)
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        with open(out, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return rows


# The seed is checked against MultiJail, MGSM and NTREX test, not (yet) the eval's open prompts: two
# benign rows overlap those (fr-chat25, sw-chat38), and dropping them moves the default SFT mix and so
# every demo figure; the data builder's gates and the guard's training drop them where they would train
# (docs/safety.md). To do with the next demo rerun: remove ``open_prompts=""`` and run build-seed.
SEED_INDEX = IndexSettings(open_prompts="")


def drop_eval_overlap(rows: list[dict]) -> list[dict]:
    index = shared_index(SEED_INDEX)
    kept = []
    for row in rows:
        hit = index.hit(row["text"])
        if hit is None:
            kept.append(row)
        else:
            print(f"build-seed: dropped {row['id']} (overlaps eval item {hit})")
    return kept


def held_out_groups(rows: list[dict], fraction: float, seed: int) -> set[str]:
    """A random ``fraction`` of the rows' phrase groups: a train/dev split that keeps every framing
    of a phrase on one side (the n-gram calibration and the encoder's selection both use it)."""
    groups = sorted({r["group"] for r in rows})
    return set(random.Random(seed).sample(groups, int(len(groups) * fraction)))


def load_seed(path: str | Path = SEED_PATH) -> list[dict]:
    """Read seed.jsonl (the file the classifier and the SFT safety recipe both read)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: not found (build it with `python -m safety build-seed`)")
    return read_records(path, required=("text",), check=_seed_problem)


def _seed_problem(row: dict) -> str | None:
    return None if row.get("label") in ("harmful", "benign") else "needs label harmful|benign"
