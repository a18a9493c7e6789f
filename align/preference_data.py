"""The shipped preference pairs: one construction, applied the same way in every language.

For a language L the pairs are (TRL's conversational pairwise format, the shape DPO/KTO and the
reward model read)
``{"prompt": messages, "chosen": messages, "rejected": messages, "lang": L, "kind", "source", "split"}``:

- translation (NTREX, document splits from ``crossling.corpora``): the request "translate this
  into L" (phrased with the data_recipes templates, in L), chosen = the human reference in L,
  rejected = one of ``wrong_language`` (the untranslated source: the commonest failure of small
  models), ``truncated`` (the first 30-60 % of the reference), ``mismatched`` (the reference of another
  sentence: fluent, right language, wrong content), ``shuffled`` (the reference's words shuffled) or
  ``run_on`` (the reference, then a sentence in another language, the source text or another
  sentence: a small model's sampled answers often translate and then keep going, drifting into other
  languages and scripts).
  The kinds rotate by row, so every language gets the same mix.
- safety (``data/safety/seed.jsonl`` + ``safety.refusals``, when both exist): a benign request
  → its helpful answer over a refusal (over-refusal is a failure); a harmful request → a refusal in L
  over the same refusal in another language.

The text to translate is in ``pivot_lang`` (English), or German for pairs whose answer is English.
The pivot language also gets prompts *in the pivot* that ask for another language (chosen = that
language, rejected = the untranslated pivot text): otherwise every pivot pair prefers the pivot
language and an RM trained on them transfers "English is good" (measured: 0-20 % on wrong-language
pairs in de/es/bn/sw). Those pairs are the only target-language text the source RM sees: answers, never
prompts (``pivot_asks_other_languages: false`` turns them off).
Because rejected answers are built, not sampled, per-language RM accuracy measures the same skills in
every language — which is what the transfer report compares. Not here: training (``align.reward``).

Why this lives in align and not in ``data_recipes``: these pairs are the reward model's test bench as
much as its training data. Their rejected answers are *constructed* to probe one skill each, the same
way in every language, and the transfer report reads its per-kind, per-language accuracy off the
``test`` split — change the construction and the report means something else. ``data_recipes`` builds
SFT rows (and ``recipes.preference_prompts``, the prompts DPO/KTO sample on); this module reuses its
phrasing (``translation_prompt``) and the safety recipe's seed reader, and applies none of the build's
row gates, for reasons that hold by construction: NTREX pairs come split by *document*
(``crossling.corpora.ntrex_pairs``; test documents only ever reach the ``test`` split, which trains
nothing), lengths are capped by ``max_chars``, the safety seed was decontaminated against every eval
set when it was built (``crossling safety build-seed``), and references are human translations, so
language ID would only re-check NTREX.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import defaultdict
from pathlib import Path

from tqdm.auto import tqdm

from align.config import PreferenceDataConfig
from crossling import corpora
from crossling.errors import DataError
from crossling.loaders import read_records
from data_recipes.recipes.safety import draw_phrases, read_seed
from data_recipes.recipes.translation_following import translation_prompt
from safety.refusals import refusal_text

KINDS = ("wrong_language", "truncated", "mismatched", "shuffled", "run_on")
SPLITS = ("train", "dev", "test")


# --- pure constructions (unit-tested on hand-written inputs) ----------------------------------------


def truncate(text: str, rng: random.Random) -> str:
    """The first 30-60 % of ``text``, cut at a word boundary when the script has spaces."""
    keep = max(1, int(len(text) * rng.uniform(0.3, 0.6)))
    cut = text[:keep]
    if " " in cut.strip():
        cut = cut[: cut.rstrip().rfind(" ")]
    return cut.strip() or text[:keep]


def shuffle_words(text: str, rng: random.Random) -> str:
    """Words (or, for scripts without spaces, 2-character chunks) in a different order."""
    parts = text.split() if " " in text.strip() else [text[i : i + 2] for i in range(0, len(text), 2)]
    if len(parts) < 2:
        return text[::-1]
    for _ in range(5):
        shuffled = parts[:]
        rng.shuffle(shuffled)
        if shuffled != parts:
            break
    return (" " if " " in text.strip() else "").join(shuffled)


def rejected_for(
    kind: str,
    *,
    source_text: str,
    reference: str,
    other_reference: str,
    rng: random.Random,
    foreign_text: str = "",
) -> str:
    if kind == "wrong_language":
        return source_text
    if kind == "truncated":
        return truncate(reference, rng)
    if kind == "mismatched":
        return other_reference
    if kind == "shuffled":
        return shuffle_words(reference, rng)
    if kind == "run_on":
        # what sampled answers do after the translation: drift into another language (often another
        # script), repeat the source, or carry on with something else
        tails = [t for t in (foreign_text, source_text, other_reference) if t]
        return f"{reference} {rng.choice(tails)}"
    raise ValueError(f"unknown rejection kind {kind!r}; known: {', '.join(KINDS)}")


def pair(prompt: str, chosen: str, rejected: str, *, lang: str, kind: str, source: str, split: str) -> dict:
    return {
        "prompt": [{"role": "user", "content": prompt}],
        "chosen": [{"role": "assistant", "content": chosen}],
        "rejected": [{"role": "assistant", "content": rejected}],
        "lang": lang,
        "kind": kind,
        "source": source,
        "split": split,
    }


def translation_pairs(
    rows: list[dict], lang: str, split: str, seed: int = 0, foreign: list[str] | None = None
) -> list[dict]:
    """Pairs for NTREX rows ``{"id", "src_lang", "tgt_lang", "src", "tgt"}`` whose target is ``lang``;
    ``foreign``: sentences in other languages that ``run_on`` answers may drift into."""

    rng = random.Random(f"align-pref-{lang}-{split}-{seed}")
    out = []
    for i, row in enumerate(rows):
        kind = KINDS[i % len(KINDS)]
        other = (
            rows[(i + 1 + rng.randrange(max(1, len(rows) - 1))) % len(rows)]["tgt"] if len(rows) > 1 else ""
        )
        if kind == "mismatched" and (not other or other == row["tgt"]):
            kind = "truncated"
        rejected = rejected_for(
            kind, source_text=row["src"], reference=row["tgt"], other_reference=other, rng=rng,
            foreign_text=rng.choice(foreign) if foreign else "",
        )  # fmt: skip
        if rejected.strip() == row["tgt"].strip():
            continue  # a one-word reference cannot be corrupted; such a pair would teach nothing
        prompt = translation_prompt(row["src"], row["src_lang"], lang, lang, rng)
        out.append(
            pair(prompt, row["tgt"], rejected, lang=lang, kind=kind, source=f"ntrex:{row['id']}", split=split)
        )
    return out


def safety_pairs(seed_rows: list[dict], refusal, lang: str) -> list[dict]:
    """benign → helpful answer > refusal; harmful → refusal in ``lang`` > refusal in another language."""
    out = []
    for row in seed_rows:
        if row["lang"] != lang:
            continue
        split = _hash_split(row["text"])
        source = f"safety_seed:{row.get('_line', '?')}"
        if row["label"] == "benign":
            chosen, rejected, kind = row["response"], refusal(lang, None), "over_refusal"
        else:
            other = "de" if lang == "en" else "en"
            chosen, rejected, kind = (
                refusal(lang, row.get("category")),
                refusal(other, row.get("category")),
                "refusal_language",
            )
        out.append(pair(row["text"], chosen, rejected, lang=lang, kind=kind, source=source, split=split))
    return out


def safety_kto_rows(
    seed_rows: list[dict],
    refusal,
    languages: list[str],
    per_language: int,
    seed: int = 0,
) -> list[dict]:
    """Self-Defence rows for KTO, per language: ``per_language`` harmful requests → their refusal in
    the language (desirable), and as many benign look-alikes → their answer (desirable) and a refusal
    (undesirable: over-refusal). One framing per seed phrase; phrases the data build sends to dev
    (``in_dev_split``) are never used, so the SFT set's held-out safety rows stay unseen."""
    out = []
    for lang in languages:
        rng = random.Random(f"align-safety-{lang}-{seed}")
        for row in draw_phrases(seed_rows, lang, dev=False, per_label=per_language, rng=rng):
            common = {
                "prompt": [{"role": "user", "content": row["text"]}],
                "lang": lang,
                "reward": None,
                "source": f"safety_seed:{row.get('id')}",
            }
            no = [{"role": "assistant", "content": refusal(lang, row.get("category"))}]
            if row["label"] == "harmful":
                out.append({**common, "completion": no, "label": True})
            else:
                yes = [{"role": "assistant", "content": str(row["response"]).strip()}]
                out += [
                    {**common, "completion": yes, "label": True},
                    {**common, "completion": no, "label": False},
                ]
    return out


def _hash_split(text: str) -> str:
    """A fixed split for rows with no document: 80/10/10 by a stable hash of the text."""
    bucket = int(hashlib.sha256(text.encode("utf-8")).hexdigest(), 16) % 10
    return "test" if bucket == 0 else "dev" if bucket == 1 else "train"


# --- building the shipped set ----------------------------------------------------------------------


def asks_other_language_pairs(rows: list[dict], prompt_lang: str, split: str, seed: int = 0) -> list[dict]:
    """``wrong_language`` pairs whose *prompt* is in ``prompt_lang`` but asks for the row's target:
    chosen = the reference in the target language, rejected = the untranslated source (in
    ``prompt_lang``). Without them every pivot-language pair prefers the pivot language, and an RM
    trained on them learns "English is good" instead of "the requested language is good"."""

    rng = random.Random(f"align-pref-ask-{prompt_lang}-{split}-{seed}")
    return [
        pair(translation_prompt(row["src"], row["src_lang"], row["tgt_lang"], prompt_lang, rng), row["tgt"],
             row["src"], lang=prompt_lang, kind="wrong_language", source=f"ntrex:{row['id']}", split=split)
        for row in rows
        if row["src"].strip() != row["tgt"].strip()
    ]  # fmt: skip


def pivot_for(lang: str, pivot: str) -> str:
    return "de" if lang == pivot else pivot


def build(cfg: PreferenceDataConfig) -> dict[str, list[dict]]:
    """All pairs by split, capped per language and split (sampled, not the first N: documents vary)."""

    by_split: dict[str, list[dict]] = defaultdict(list)
    seed_rows, refusal = _safety_inputs(cfg.safety_seed)
    ntrex = {
        (lang, split): corpora.ntrex_pairs(pivot_for(lang, cfg.pivot_lang), lang, split)
        for lang in cfg.languages
        for split in SPLITS
    }
    for lang in tqdm(cfg.languages, desc="preference pairs", unit="lang"):
        for split in SPLITS:
            # a few sentences of every other language, for answers that drift into another language
            foreign = [
                r["tgt"]
                for (other, sp), rows in ntrex.items()
                if other != lang and sp == split
                for r in rows[:40]
            ]
            rows = [r for r in ntrex[lang, split] if _short(r, cfg.max_chars)]
            rng = random.Random(f"{lang}-{split}-{cfg.seed}")
            rng.shuffle(rows)
            pairs = translation_pairs(rows, lang, split, cfg.seed, foreign=foreign)
            if lang == cfg.pivot_lang and cfg.pivot_asks_other_languages:
                # a quarter as many as the pivot's own translation pairs, spread over the others
                others = [other for other in cfg.languages if other != lang]
                per_other = max(1, len(pairs) // 4 // max(1, len(others)))
                for other in others:
                    asked = [r for r in corpora.ntrex_pairs(lang, other, split) if _short(r, cfg.max_chars)]
                    rng.shuffle(asked)
                    pairs += asks_other_language_pairs(asked[:per_other], lang, split, cfg.seed)
            if refusal is not None:
                pairs += [p for p in safety_pairs(seed_rows, refusal, lang) if p["split"] == split]
            rng.shuffle(pairs)
            if cfg.max_pairs_per_language:
                pairs = pairs[: cfg.max_pairs_per_language]
            by_split[split].extend(pairs)
    return dict(by_split)


def _short(row: dict, max_chars: int) -> bool:
    return len(row["src"]) <= max_chars and len(row["tgt"]) <= max_chars


def _safety_inputs(path: str):
    """(seed rows, refusal_text); ([], None) when the seed file is absent (a user's own data dir)."""
    if not Path(path).is_file():
        return [], None
    return read_seed(path), refusal_text


def write(pairs_by_split: dict[str, list[dict]], output_dir: str | Path, cfg: PreferenceDataConfig) -> Path:
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    counts: dict[str, dict[str, int]] = {}
    for split, rows in pairs_by_split.items():
        with (out / f"{split}.jsonl").open("w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        for row in rows:
            counts.setdefault(split, {}).setdefault(row["lang"], 0)
            counts[split][row["lang"]] += 1
    (out / "summary.json").write_text(
        json.dumps({"counts": counts, "kinds": list(KINDS), "pivot_lang": cfg.pivot_lang}, indent=2)
    )
    return out


def ensure_built(folder: str | Path, languages: list[str]) -> Path:
    """The shipped pairs folder, built on first use with the default construction."""
    folder = Path(folder)
    if not (folder / "train.jsonl").is_file():
        cfg = PreferenceDataConfig(output_dir=str(folder), languages=sorted(set(languages)))
        write(build(cfg), folder, cfg)
    return folder


# --- reading any pairwise file ----------------------------------------------------------------------


def _check_pairwise(rec: dict) -> str | None:
    for key in ("chosen", "rejected"):
        value = rec[key]
        if isinstance(value, list):
            if not all(isinstance(m, dict) and "role" in m and "content" in m for m in value):
                return f"field {key!r}: expected a list of {{role, content}} messages"
        elif not isinstance(value, str):
            return f"field {key!r}: expected a string or a list of messages"
    return None


def load_pairs(path: str | Path, default_lang: str | None = None) -> list[dict]:
    """Pairwise preferences from JSONL/JSON/Parquet (or ``hf:NAME:SPLIT``), validated row by row.

    Rows need ``chosen`` and ``rejected`` (``prompt`` optional: TRL's implicit-prompt format); ``lang``
    defaults to ``default_lang``. A bad row is an error naming the file and line.
    """

    rows = read_records(path, required=("chosen", "rejected"), check=_check_pairwise)
    if not rows:
        raise DataError(f"{path}: no preference pairs")
    for row in rows:
        row.setdefault("lang", default_lang)
        if row["lang"] is None:
            raise DataError(f"{path}:{row['_line']}: no 'lang' field (set it, or set source_lang)")
    return rows


def per_language(rows: list[dict], languages: list[str], limit: int, seed: int = 0) -> dict[str, list[dict]]:
    """Up to ``limit`` rows per language, in a seeded order (all rows when ``limit`` is 0)."""
    grouped: dict[str, list[dict]] = {lang: [] for lang in languages}
    for row in rows:
        if row["lang"] in grouped:
            grouped[row["lang"]].append(row)
    rng = random.Random(seed)
    for lang, items in grouped.items():
        rng.shuffle(items)
        if limit:
            grouped[lang] = items[:limit]
    return grouped
