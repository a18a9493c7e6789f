"""cross_lingual_instructions: an instruction in language A with "answer in B" written in A; response in B.

Tasks whose answers are real text, taken from parallel NTREX documents (train/dev only), so the
response in B is a human translation, not a model's guess:

- ``continue_story``: the opening sentences of a news story → the sentence that comes next.
- ``headline``: two body sentences → the story's headline.
- ``which_language``: a sentence in any language → "This text is written in <language>.", in B.

Each task is made monolingual (A = B) and cross-lingual (A ≠ B, directive in A), in proportion
``cross_fraction``. A user file of ``{"instruction", "response", "lang"}`` rows (``instructions_file``)
adds monolingual examples in its own languages.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from crossling import corpora
from crossling.loaders import read_records
from data_recipes.schema import TEMPLATE_LANGUAGES, lang_name, sft_row, templates

RECIPE = "cross_lingual_instructions"
TASKS = ("continue_story", "headline", "which_language")


@dataclass
class CrossLingualInstructionsConfig:
    enabled: bool = field(default=True, metadata={"help": "Build this recipe."})
    tasks: list[str] = field(
        default_factory=lambda: list(TASKS), metadata={"help": f"Tasks: {', '.join(TASKS)}."}
    )
    cross_fraction: float = field(
        default=0.6,
        metadata={"help": "Share of examples whose answer language B differs from the instruction's A."},
    )
    context_sentences: int = field(
        default=2, metadata={"help": "Sentences of story shown for continue/headline."}
    )
    max_chars: int = field(default=500, metadata={"help": "Skip examples whose prompt text is longer."})
    instructions_file: str | None = field(
        default=None,
        metadata={
            "help": "Optional JSONL/CSV/... of {instruction, response, lang} rows to add (monolingual)."
        },
    )

    def __post_init__(self) -> None:
        unknown = set(self.tasks) - set(TASKS)
        if unknown:
            raise ValueError(f"unknown tasks {sorted(unknown)}; known: {', '.join(TASKS)}")
        if not 0.0 <= self.cross_fraction <= 1.0:
            raise ValueError("cross_fraction must be in [0, 1]")


def with_directive(prompt: str, a: str, b: str, rng: random.Random) -> str:
    """``prompt`` (in A) followed by "answer in B" written in A, when B differs from A."""
    if a == b:
        return prompt
    directive = rng.choice(templates()["answer_in"][a]).format(lang=lang_name(b, a))
    return f"{prompt}\n\n{directive}"


def _doc_items(langs: list[str], split: str, context: int):
    """(doc_id, lines) for each NTREX document of ``split`` with enough sentences for the tasks."""
    docs = corpora.ntrex_documents("en", split)
    for doc_id, lines in docs.items():
        if len(lines) >= context + 2:
            yield doc_id, [i for i, _ in lines]


def _task_rows(task: str, doc_id: str, ids: list[int], a: str, b: str, cfg, rng) -> dict | None:
    sa, sb = corpora.ntrex_sentences(a), corpora.ntrex_sentences(b)
    t = templates()
    if task == "continue_story":
        start = rng.randrange(0, len(ids) - cfg.context_sentences)
        ctx = " ".join(sa[i] for i in ids[start : start + cfg.context_sentences])
        target = sb[ids[start + cfg.context_sentences]]
        user, checks = t["continue_story"][a].format(text=ctx), [(ctx, a), (target, b)]
    elif task == "headline":
        ctx = " ".join(sa[i] for i in ids[1 : 1 + cfg.context_sentences])
        target = sb[ids[0]]
        user, checks = t["headline"][a].format(text=ctx), [(ctx, a), (target, b)]
    else:  # which_language: the text may be in any language of the build
        shown = rng.choice(sorted(set(t["which_language"]) | {a}))
        text = corpora.ntrex_sentences(shown)[rng.choice(ids)]
        question, answer = t["which_language"][a][0], t["which_language"][b][1]
        user = question.format(text=text)
        target = answer.format(lang=lang_name(shown, b))
        checks = [(target, b)]
    if len(user) > cfg.max_chars:
        return None
    return sft_row(
        with_directive(user, a, b, rng),
        target,
        recipe=RECIPE,
        lang=b,
        src_lang=a,
        tgt_lang=b,
        source=f"ntrex-doc-{doc_id}:{task}:{a}-{b}",
        group=doc_id,
        checks=checks,
    )


def build(cfg: CrossLingualInstructionsConfig, langs: list[str], seed: int = 0) -> list[dict]:
    """For every document × task × instruction language A: one monolingual or cross-lingual row."""
    rng = random.Random(f"{RECIPE}-{seed}")
    ntrex = corpora.ntrex_languages()
    usable = [lang for lang in langs if lang in TEMPLATE_LANGUAGES and lang in ntrex]
    # languages we have text in but no templates for: asked in a template language, answered in them
    answer_only = [lang for lang in langs if lang not in TEMPLATE_LANGUAGES and lang in ntrex]
    rows = []
    for split in ("train", "dev"):
        for doc_id, ids in _doc_items(usable, split, cfg.context_sentences):
            for task in cfg.tasks:
                pairs = []
                for a in usable:
                    b = a
                    if len(usable) > 1 and rng.random() < cfg.cross_fraction:
                        b = rng.choice([lang for lang in usable if lang != a])
                    pairs.append((a, b))
                if usable and task != "which_language":  # its answer needs a template in B
                    pairs += [(rng.choice(usable), b) for b in answer_only]
                for a, b in pairs:
                    row = _task_rows(task, doc_id, ids, a, b, cfg, rng)
                    if row is not None:
                        row["split"], row["_fixed_split"] = split, True
                        rows.append(row)
    if cfg.instructions_file:
        rows += _user_rows(cfg.instructions_file, langs)
    return rows


def _user_rows(path: str, langs: list[str]) -> list[dict]:

    rows = []
    for rec in read_records(path, required=("instruction", "response", "lang")):
        if rec["lang"] not in langs:
            continue
        rows.append(
            sft_row(
                rec["instruction"],
                rec["response"],
                recipe=RECIPE,
                lang=rec["lang"],
                source=f"{path}:{rec['_line']}",
                checks=[(rec["instruction"], rec["lang"]), (rec["response"], rec["lang"])],
            )
        )
    return rows
