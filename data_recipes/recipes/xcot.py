"""xcot (xCoT, Chai et al. 2024): cross-lingual chain-of-thought instruction data.

Input is *parallel* CoT: the same problem with a step-by-step answer in several languages — the MGSM
exemplars (8 problems × 11 languages, shipped), GSM8K train (English), and any problems a
``Translator`` turned into more languages (``parallel_extra``). Five variants, as the paper describes:

- ``parallel``: question and CoT in X.
- ``cross``: question in X with an "answer in Y" directive written in X; CoT in Y (Y ≠ X, ≠ en).
- ``xicl``: few-shot demonstrations in X in which random sentences are replaced by their translation
  in another language (code-switching), then the question in X; CoT in X.
- ``translate_then_answer``: the answer restates the question in English, reasons in English, then
  states the final answer in X.
- ``distill``: question in X asking for English reasoning; the English CoT of the same problem.

The final number of every variant is checked against the problem's answer (``_answer``; the gates
drop a mismatch as ``answer_mismatch``). Pure functions: no I/O beyond ``crossling.corpora``.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

from crossling import corpora
from data_recipes.schema import instruction_language, lang_name, sft_row, templates

RECIPE = "xcot"
VARIANTS = ("parallel", "cross", "xicl", "translate_then_answer", "distill")
_SENTENCE_END = re.compile(r"(?<=[.!?。！？।])\s*")


@dataclass
class XcotConfig:
    enabled: bool = field(default=True, metadata={"help": "Build this recipe."})
    variants: dict[str, float] = field(
        default_factory=lambda: {
            "parallel": 0.3, "cross": 0.2, "xicl": 0.15, "translate_then_answer": 0.15, "distill": 0.2
        },
        metadata={"help": f"Relative weight of each variant ({', '.join(VARIANTS)}); 0 turns one off."},
    )  # fmt: skip
    use_mgsm_exemplars: bool = field(default=True, metadata={"help": "Use the 8 parallel MGSM exemplars."})
    gsm8k_max: int = field(
        default=1500, metadata={"help": "How many GSM8K train problems (English CoT) to offer; 0 = none."}
    )
    max_cot_chars: int = field(default=450, metadata={"help": "Skip GSM8K problems with a longer CoT."})
    xicl_shots: int = field(default=2, metadata={"help": "Demonstrations per xICL prompt."})
    xicl_switch_prob: float = field(
        default=0.5, metadata={"help": "Chance that each demonstration sentence is code-switched."}
    )
    variants_per_problem: int = field(
        default=3,
        metadata={"help": "Examples drawn per (problem, language): keeps 8 exemplars from repeating."},
    )

    def __post_init__(self) -> None:
        unknown = set(self.variants) - set(VARIANTS)
        if unknown:
            raise ValueError(f"unknown xcot variants {sorted(unknown)}; known: {', '.join(VARIANTS)}")
        if not 0.0 <= self.xicl_switch_prob <= 1.0:
            raise ValueError("xicl_switch_prob must be in [0, 1]")


def split_sentences(text: str) -> list[str]:
    return [s for s in _SENTENCE_END.split(text.strip()) if s]


def strip_final_answer(cot: str) -> str:
    """The CoT without its last sentence ("The answer is 11."): the reasoning only."""
    sents = split_sentences(cot)
    return " ".join(sents[:-1]) if len(sents) > 1 else cot


def answer_sentence(lang: str, answer: str) -> str:
    return templates()["answer_is"].get(lang, templates()["answer_is"]["en"]).format(n=answer)


def solve_prompt(
    question: str, lang: str, answer_lang: str | None = None, rng: random.Random | None = None
) -> str:
    """The question, then "solve step by step" (and "answer in <answer_lang>") written in ``lang``."""
    t = templates()
    inst = lang if lang in t["solve_step_by_step"] else "en"
    parts = [question, t["solve_step_by_step"][inst]]
    if answer_lang and answer_lang != lang:
        il = instruction_language(lang)
        directive = (rng or random).choice(t["answer_in"][il])
        parts.append(directive.format(lang=lang_name(answer_lang, il)))
    return "\n\n".join(parts[:1]) + "\n\n" + " ".join(parts[1:])


def code_switch(
    versions: dict[str, dict], lang: str, rng: random.Random, prob: float
) -> tuple[str, str, set[str]]:
    """One demonstration (question, CoT) in ``lang`` with sentences swapped for another language's.

    Sentences are swapped one for one when both versions split into the same number of sentences
    (parallel CoT usually does); otherwise the whole question or answer is swapped. Returns the texts
    and the set of languages actually used.
    """
    others = [code for code in versions if code != lang]
    used = {lang}
    out = []
    for key in ("question", "cot"):
        mine = split_sentences(versions[lang][key])
        if not others:
            out.append(" ".join(mine))
            continue
        for i in range(len(mine)):
            if rng.random() < prob:
                other = rng.choice(others)
                theirs = split_sentences(versions[other][key])
                if len(theirs) == len(mine):
                    mine[i] = theirs[i]
                    used.add(other)
        out.append(" ".join(mine))
    if len(used) == 1 and others:  # guarantee the mix the variant promises
        other = rng.choice(others)
        out[0] = versions[other]["question"]
        used.add(other)
    return out[0], out[1], used


def _row(variant: str, pid: str, user: str, assistant: str, lang: str, checks, answer: str, **kw) -> dict:
    return sft_row(
        user,
        assistant,
        recipe=RECIPE,
        lang=lang,
        source=f"{pid}:{variant}:{kw.pop('tag', lang)}",
        group=pid,
        checks=checks,
        answer=answer,
        **kw,
    )


def variant_rows(
    pid: str, versions: dict[str, dict], demos: list[dict[str, dict]], cfg: XcotConfig, rng
) -> list[dict]:
    """Every variant for one problem given its ``{lang: {"question", "cot", "answer"}}`` versions."""
    rows: list[dict] = []
    answer = next(iter(versions.values()))["answer"]
    en = versions.get("en")
    for x, vx in versions.items():
        q = vx["question"]
        if cfg.variants.get("parallel", 0) > 0:
            rows.append(
                _row("parallel", pid, solve_prompt(q, x), vx["cot"], x, [(q, x), (vx["cot"], x)], answer)
            )
        if cfg.variants.get("cross", 0) > 0:
            for y, vy in versions.items():
                if y not in (x, "en"):
                    user = solve_prompt(q, x, answer_lang=y, rng=rng)
                    checks = [(q, x), (vy["cot"], y)]
                    rows.append(
                        _row(
                            "cross",
                            pid,
                            user,
                            vy["cot"],
                            y,
                            checks,
                            answer,
                            src_lang=x,
                            tgt_lang=y,
                            tag=f"{x}-{y}",
                        )
                    )
        if x == "en" or en is None:
            continue
        if cfg.variants.get("distill", 0) > 0:
            user = solve_prompt(q, x, answer_lang="en", rng=rng)
            rows.append(
                _row(
                    "distill",
                    pid,
                    user,
                    en["cot"],
                    "en",
                    [(q, x), (en["cot"], "en")],
                    answer,
                    src_lang=x,
                    tgt_lang="en",
                    tag=x,
                )
            )
        if cfg.variants.get("translate_then_answer", 0) > 0:
            restate = templates()["restate_in_english"].format(text=en["question"])
            reasoning = strip_final_answer(en["cot"])
            final = answer_sentence(x, answer)
            checks = [(q, x), (en["question"], "en"), (final, x)]
            rows.append(
                _row(
                    "translate_then_answer",
                    pid,
                    solve_prompt(q, x),
                    f"{restate}\n{reasoning}\n{final}",
                    x,
                    checks,
                    answer,
                    src_lang=x,
                    tgt_lang=x,
                )
            )
        if cfg.variants.get("xicl", 0) > 0 and demos:
            rows.append(_xicl_row(pid, x, vx, demos, cfg, rng, answer))
    return rows


def _xicl_row(
    pid: str, x: str, vx: dict, demos: list[dict[str, dict]], cfg: XcotConfig, rng, answer: str
) -> dict:
    shots = [d for d in demos if x in d]
    shots = rng.sample(shots, min(cfg.xicl_shots, len(shots)))
    parts, used = [], {x}
    for demo in shots:
        dq, da, langs = code_switch(demo, x, rng, cfg.xicl_switch_prob)
        used |= langs
        parts.append(f"{dq}\n{da}")
    parts.append(solve_prompt(vx["question"], x))
    row = _row("xicl", pid, "\n\n".join(parts), vx["cot"], x, [(vx["question"], x), (vx["cot"], x)], answer)
    row["_mixed_langs"] = sorted(used)
    return row


def parallel_problems(
    cfg: XcotConfig, langs: list[str], seed: int, extra: dict[str, dict[str, dict]] | None = None
) -> dict[str, dict[str, dict]]:
    """Problem id → {lang: {"question", "cot", "answer"}} from the exemplars, GSM8K and ``extra``."""
    problems: dict[str, dict[str, dict]] = {}
    if cfg.use_mgsm_exemplars:
        for lang in corpora.MGSM_LANGUAGES:
            if lang in langs:
                for ex in corpora.mgsm_exemplars(lang):
                    problems.setdefault(ex["id"], {})[lang] = ex
    if cfg.gsm8k_max > 0 and "en" in langs:
        pool = [r for r in corpora.gsm8k_train() if len(r["cot"]) <= cfg.max_cot_chars]
        for r in random.Random(f"{RECIPE}-gsm8k-{seed}").sample(pool, min(cfg.gsm8k_max, len(pool))):
            problems.setdefault(r["id"], {})["en"] = r
    for pid, versions in (extra or {}).items():
        problems.setdefault(pid, {}).update({k: v for k, v in versions.items() if k in langs})
    return problems


def build(
    cfg: XcotConfig, langs: list[str], seed: int = 0, extra: dict[str, dict[str, dict]] | None = None
) -> list[dict]:
    """Rows of all enabled variants; each (problem, language) yields at most ``variants_per_problem``."""
    rng = random.Random(f"{RECIPE}-{seed}")
    problems = parallel_problems(cfg, langs, seed, extra)
    # demonstrations for xICL: problems that exist in 2+ languages (they can be code-switched)
    multi = {pid: v for pid, v in problems.items() if len(v) > 1}
    rows = []
    for pid, versions in problems.items():
        demos = [v for other, v in multi.items() if other != pid]
        candidates = variant_rows(pid, versions, demos, cfg, rng)
        by_lang: dict[str, list[dict]] = {}
        for row in candidates:
            by_lang.setdefault(row["lang"], []).append(row)
        for lang_rows in by_lang.values():
            weights = [cfg.variants.get(r["source"].split(":")[1], 0.0) for r in lang_rows]
            rows += _weighted_sample(lang_rows, weights, cfg.variants_per_problem, rng)
    return rows


def _weighted_sample(rows: list[dict], weights: list[float], k: int, rng: random.Random) -> list[dict]:
    """Up to ``k`` distinct rows, drawn without replacement with probability ∝ weight."""
    keyed = [(rng.random() ** (1.0 / w), i) for i, w in enumerate(weights) if w > 0]  # Efraimidis–Spirakis
    return [rows[i] for _, i in sorted(keyed, reverse=True)[:k]]
