"""The guard model's data: training rows from every source, and the benign evaluation sets kept apart.

Training and calibration rows (``training_rows``), each ``{id, text, lang, label, category, group,
source, kind}``:

- ``seed``: ``data/safety/seed.jsonl`` (written for crossling), ``frames_per_group`` framings of each
  phrase group;
- ``prompts``: ``data/safety/prompts/<lang>.yaml``, whole prompts written for crossling for the guard
  (harmful requests as users type them; benign prompts of every style the filter meets), the same
  items in every language; and ``data/safety/prompts/native/<lang>.yaml``, 100 harmful requests and
  ~72 benign prompts (37 look-alikes) written in each of 16 languages itself (local scams, slang,
  code-switching, false friends such as Swahili *nazi*, coconut); ``data/safety/prompts/direct/<lang>.yaml``,
  120 short plain one-line harmful requests (12 per category) and 100 benign prompts of the same form
  (60 look-alikes) written in each of the 10 MultiJail languages, when ``prompt_sets`` names it (tried,
  not adopted: off in ``configs/safety/guard_train.yaml``);
- the public sets (``safety.public_data``): XSafety, RTP-LX, XSTest, SIB-200 train sentences;
- ``extra``: GSM8K train questions, MGSM's 8 train exemplars per language and NTREX *train* sentences
  (benign math and news);
- ``chatter``: a harmful row joined to a benign one of its language (harmful), and benign pairs, so a
  request inside small talk does not pool to harmless.

Benign evaluation sets (``benign_eval_sets``; ``bench/safety_eval.py`` reads them, training never
does): MGSM test questions, the SIB-200 evaluation sentences, and ``data/safety/benign_eval/<lang>.yaml``
(everyday prompts and look-alikes, written for crossling separately from the training prompts).
Every training row is checked against all of them and against every eval set crossling reports on
(``crossling.decontamination``); a row that overlaps one is dropped and counted.
"""

from __future__ import annotations

import json
import logging
import random
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import yaml

from crossling import corpora
from crossling.decontamination import EvalIndex, IndexSettings, eval_items
from crossling.errors import DataError
from crossling.languages import LANGUAGES
from safety.categories import CATEGORIES
from safety.public_data import public_training_rows, sib_eval_texts
from safety.seed import REPO, load_seed

log = logging.getLogger(__name__)

PROMPTS_DIR = REPO / "data" / "safety" / "prompts"
NATIVE = "native"  # PROMPTS_DIR/native/<lang>.yaml: prompts written in the language, not translated
# Sets written in each language (one group per item): native/ (requests with context, slang, role-play
# wrappers; 2026-12-05) and direct/ (short plain one-line requests and look-alikes; 2026-12-06)
OWN_LANGUAGE_SETS = (NATIVE, "direct")
BENIGN_EVAL_DIR = REPO / "data" / "safety" / "benign_eval"
BENIGN_EVAL_KINDS = ("mgsm", "encyclopedic", "everyday", "lookalike")
PROMPT_KINDS = ("math", "prose", "code", "everyday", "lookalike", "sensitive_topic")


def load_prompts(path: str | Path, native: bool = False, set_name: str = NATIVE) -> list[dict]:
    """One ``data/safety/prompts/<lang>.yaml``: ``harmful: ["category | text"]``,
    ``benign: ["kind | text"]``.

    Those files translate ``en.yaml`` item by item, so item ``i`` is one group across languages.
    ``native=True`` reads a file of one of the ``OWN_LANGUAGE_SETS`` (``set_name``, e.g.
    ``data/safety/prompts/native/<lang>.yaml``): prompts written in the language itself, not
    translations, so each item is a group of its own (``prompts-<set_name>-<lang>-h<i>``)."""
    path = Path(path)
    src = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    lang = src.get("lang")
    if lang not in LANGUAGES:
        raise DataError(f"{path}: field 'lang': unknown language {lang!r}")
    rows = []
    for label, allowed in (("harmful", CATEGORIES), ("benign", PROMPT_KINDS)):
        for i, item in enumerate(src.get(label) or []):
            head, sep, text = (s.strip() for s in str(item).partition(" | "))
            if not sep or head not in allowed or not text:
                raise DataError(
                    f"{path}: {label}[{i}] {item!r} needs '<{'category' if label == 'harmful' else 'kind'}>"
                    " | text'"
                )
            # translated files: one group per item across languages, so a held-out split never
            # trains on the translation of what it holds out; native files: one group per item
            group = f"prompts-{set_name}-{lang}-{label[0]}{i}" if native else f"prompts-{label[0]}{i}"
            rows.append({"id": group if native else f"prompts-{lang}-{label[0]}{i}", "text": text,
                         "lang": lang, "label": label, "category": head if label == "harmful" else None,
                         "group": group, "source": "prompts",
                         "kind": "request" if label == "harmful" else head})  # fmt: skip
    return rows


def prompt_rows(root: Path = PROMPTS_DIR, sets: Sequence[str] = OWN_LANGUAGE_SETS) -> list[dict]:
    """The translated prompt files (``<root>/<lang>.yaml``) and those written in each language
    (``<root>/<set>/<lang>.yaml`` for each of ``sets``)."""
    rows = [r for p in sorted(root.glob("*.yaml")) for r in load_prompts(p)]
    for name in sets:
        rows += [r for p in sorted((root / name).glob("*.yaml")) for r in load_prompts(p, True, name)]
    return rows


def seed_rows(path: str | Path, frames_per_group: int, rng: random.Random) -> list[dict]:
    """``frames_per_group`` framings of each seed phrase group (all framings of a phrase are near-twins)."""
    by_group: dict[str, list[dict]] = {}
    for r in load_seed(path):
        by_group.setdefault(r["group"], []).append(r)
    out = []
    for g in sorted(by_group):
        for r in rng.sample(by_group[g], min(frames_per_group, len(by_group[g]))):
            kind = (
                "request" if r["label"] == "harmful" else ("lookalike" if r.get("category") else "everyday")
            )
            out.append({"id": f"seed-{r['id']}", "text": r["text"], "lang": r["lang"], "label": r["label"],
                        "category": r.get("category"), "group": f"seed-{g}", "source": "seed",
                        "kind": kind})  # fmt: skip
    return out


def extra_rows(gsm8k: int, ntrex_per_language: int, rng: random.Random) -> list[dict]:
    """Benign math (GSM8K train, MGSM train exemplars) and news (NTREX train documents)."""
    out = []
    gsm = corpora.gsm8k_train()
    for i, r in enumerate(rng.sample(gsm, min(gsm8k, len(gsm)))):
        out.append(_extra(f"gsm8k-{i}", r["question"], "en", "math"))
    for lang in corpora.MGSM_LANGUAGES:
        for r in corpora.mgsm_exemplars(lang):
            out.append(_extra(r["id"], r["question"], lang, "math"))
    train_ids = corpora.ntrex_line_ids("train")
    picked = rng.sample(train_ids, min(ntrex_per_language, len(train_ids)))
    for lang in corpora.ntrex_languages():
        lines = corpora.ntrex_sentences(lang)
        out += [_extra(f"ntrex-{i}", lines[i], lang, "news") for i in picked]
    return out


def _extra(key: str, text: str, lang: str, kind: str) -> dict:
    return {"id": f"extra-{key}:{lang}", "text": text, "lang": lang, "label": "benign", "category": None,
            "group": f"extra-{key}", "source": "extra", "kind": kind}  # fmt: skip


def chatter_rows(rows: list[dict], n: int, rng: random.Random) -> list[dict]:
    """``n`` harmful rows joined (before or after) to a benign prompt of their language (harmful), and
    ``n`` benign pairs. A pair keeps its harmful (or first) row's group, so held-out splits stay clean."""
    benign: dict[str, list[dict]] = {}
    for r in rows:
        if r["label"] == "benign" and r["source"] in ("seed", "prompts"):
            benign.setdefault(r["lang"], []).append(r)
    harmful = [r for r in rows if r["label"] == "harmful" and r["lang"] in benign and r["kind"] == "request"]
    if not harmful or not benign:
        return []
    out = []
    for i in range(2 * n):
        a = rng.choice(harmful) if i < n else rng.choice(rng.choice(list(benign.values())))
        b = rng.choice(benign[a["lang"]])
        text = f"{a['text']} {b['text']}" if rng.random() < 0.5 else f"{b['text']} {a['text']}"
        out.append({**a, "id": f"chatter-{i}", "text": text, "source": "chatter"})
    return out


# --- benign evaluation sets (never trained on) --------------------------------------------------------
def written_benign_eval(root: Path = BENIGN_EVAL_DIR) -> dict[str, dict[str, list[str]]]:
    """lang -> {"everyday": [...], "lookalike": [...]} from ``data/safety/benign_eval/<lang>.yaml``."""
    out = {}
    for path in sorted(root.glob("*.yaml")):
        src = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if src.get("lang") not in LANGUAGES:
            raise DataError(f"{path}: field 'lang': unknown language {src.get('lang')!r}")
        out[src["lang"]] = {k: [str(t) for t in src.get(k) or []] for k in ("everyday", "lookalike")}
    return out


def benign_eval_sets(mgsm_n: int = 250) -> dict[str, dict[str, list[str]]]:
    """lang -> kind -> benign evaluation texts, kinds ``BENIGN_EVAL_KINDS`` (missing kinds absent)."""
    out: dict[str, dict[str, list[str]]] = {}
    for lang in corpora.MGSM_LANGUAGES:
        out.setdefault(lang, {})["mgsm"] = [p["question"] for p in corpora.mgsm_problems(lang)][:mgsm_n]
    for lang, texts in sib_eval_texts().items():
        out.setdefault(lang, {})["encyclopedic"] = texts
    for lang, kinds in written_benign_eval().items():
        for kind, texts in kinds.items():
            if texts:
                out.setdefault(lang, {})[kind] = texts
    return out


def eval_index() -> EvalIndex:
    """Every eval set crossling reports on (MultiJail, MGSM test, NTREX test, the open prompts) + the
    benign eval sets."""
    settings = IndexSettings()
    items = list(eval_items(settings))
    for lang, kinds in written_benign_eval().items():
        for kind, texts in kinds.items():
            items += [(f"benign-eval-{kind}-{i}:{lang}", t, "text") for i, t in enumerate(texts)]
    for lang, texts in sib_eval_texts().items():
        items += [(f"sib-eval-{i}:{lang}", t, "text") for i, t in enumerate(texts)]
    return EvalIndex(settings, items)


def decontaminate(rows: list[dict], index: EvalIndex | None = None) -> tuple[list[dict], Counter]:
    """Drop rows overlapping an eval item and exact duplicate texts; count the drops by source."""
    index = index or eval_index()
    kept, dropped, seen = [], Counter(), set()
    for r in rows:
        key = " ".join(r["text"].split()).casefold()
        if key in seen:
            dropped[f"{r['source']}: duplicate"] += 1
            continue
        seen.add(key)
        if index.hit(r["text"]) is not None:
            dropped[f"{r['source']}: eval overlap"] += 1
            continue
        kept.append(r)
    return kept, dropped


def training_rows(
    seed_path: str | Path, frames_per_group: int, gsm8k: int, ntrex_per_language: int, chatter: int,
    seed: int = 0, public: bool = True, sib_per_language: int | None = None,
    prompt_sets: Sequence[str] = (NATIVE,),
) -> tuple[list[dict], Counter]:  # fmt: skip
    """Every training/calibration row, decontaminated; and the drop counts. ``prompt_sets``: which of
    the ``OWN_LANGUAGE_SETS`` join the translated prompts."""
    rng = random.Random(seed)
    rows = seed_rows(seed_path, frames_per_group, rng) + prompt_rows(sets=prompt_sets)
    if public:
        rows += public_training_rows(sib_per_language=sib_per_language)
    rows += extra_rows(gsm8k, ntrex_per_language, rng)
    rows, dropped = decontaminate(rows)
    return rows + chatter_rows(rows, chatter, rng), dropped


def write_rows(rows: list[dict], path: str | Path) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
