"""safety (Self-Defence, Deng et al. 2023): harmful requests → refusals in the user's language;
benign look-alikes → helpful answers.

Reads the seed prompts written for crossling (``data/safety/seed.jsonl``, built by the safety area; rows
``{"text", "lang", "label": "harmful"|"benign", "category", "response"}``) and the harmful requests
written in each language itself (``data/safety/prompts/native/<lang>.yaml``: local scams, slang, typos,
code-switching, role-play wrappers, the way users type them; the seed's are templated framings of
~220 phrases) when ``native_dir`` names them: native requests are taken first, the seed's fill the
rest. Or the real prompts of the public sets (``public_harmful: [xsafety]``, crossling's labels of
XSafety). Both off by default: on held-out rows they did not teach the 270M model which requests to
refuse, only to refuse more in some languages (docs/data_recipes.md). Refusals come from
``safety.refusals.refusal_text(lang, category)`` so the served filter and the tuned model say the
same thing. The unsafe:benign ratio is set by ``harmful_fraction`` (the paper found ~3:7 keeps the
model useful). Never reads MultiJail: that set is evaluation-only.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from crossling.errors import DataError
from crossling.loaders import read_records
from data_recipes.schema import in_dev_split, sft_row
from safety import public_data
from safety.refusals import refusal_text

RECIPE = "safety"
DEFAULT_SEED = "data/safety/seed.jsonl"
# the sets of data/safety_public with harmful requests, and their readers
PUBLIC_SETS = {"xsafety": public_data.xsafety_rows, "xstest": public_data.xstest_rows}


@dataclass
class SafetyConfig:
    enabled: bool = field(default=True, metadata={"help": "Build this recipe."})
    seed_file: str = field(
        default=DEFAULT_SEED,
        metadata={"help": "Seed prompts (JSONL: text, lang, label, category, response)."},
    )
    harmful_fraction: float = field(
        default=0.3, metadata={"help": "Share of harmful→refusal rows among safety rows (paper: ~0.3)."}
    )
    framings_per_phrase: int | None = field(
        default=None,
        metadata={
            "help": "Seed framings kept per phrase (its framings are near-twins: 'How do I X?', 'Tell me step "
            "by step how I X.'); null: all."
        },
    )
    native_dir: str | None = field(
        default=None,
        metadata={
            "help": "Harmful requests written in each language (<dir>/<lang>.yaml, e.g. "
            "data/safety/prompts/native; safety.guard_data.load_prompts(native=True)); they join the "
            "harmful rows before the seed's. null: the seed's only."
        },
    )
    public_harmful: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Harmful requests of the public sets in data/safety_public that join the harmful rows "
            "first (after native ones): `xsafety` (10 languages, real prompts, crossling's labels.yaml), "
            "`xstest` (English unsafe contrasts). The build's split and gates apply as to seed rows "
            "(one group per prompt across its parallel languages); []: none."
        },
    )
    required: bool = field(
        default=False,
        metadata={"help": "Fail when seed_file is missing (false: build without safety rows and say so)."},
    )

    def __post_init__(self) -> None:
        if not 0.0 < self.harmful_fraction < 1.0:
            raise ValueError("harmful_fraction must be in (0, 1)")
        unknown = sorted(set(self.public_harmful) - set(PUBLIC_SETS))
        if unknown:
            raise ValueError(f"public_harmful: unknown set(s) {unknown}; known: {sorted(PUBLIC_SETS)}")
        if self.framings_per_phrase is not None and self.framings_per_phrase < 1:
            raise ValueError("framings_per_phrase must be >= 1 (or null for all)")


def default_refusal() -> Callable[[str, str | None], str]:
    """``safety.refusal_text``: the server's own refusals, so the tuned model says no in its words."""
    return refusal_text


def read_seed(
    path: str | Path, lenient: bool = False, quarantine: list | None = None, hint: str = ""
) -> list[dict]:
    return read_records(
        path,
        required=("text", "lang", "label"),
        check=_check_seed_row,
        lenient=lenient,
        quarantine=quarantine,
        hint=hint,
    )


def phrase_groups(seed_rows: list[dict], lang: str, dev: bool) -> dict[tuple[str, str], list[dict]]:
    """``{(label, phrase group): its framings}`` of ``lang``, from the phrases the data build sends to
    dev (``dev=True``: for choosing) or keeps for training (``dev=False``), in seed order."""
    out: dict[tuple[str, str], list[dict]] = {}
    for row in seed_rows:
        group = row.get("group") or row["text"]
        if row["lang"] == lang and in_dev_split(group) == dev:
            out.setdefault((row["label"], group), []).append(row)
    return out


def draw_phrases(
    seed_rows: list[dict], lang: str, dev: bool, per_label: int, rng: random.Random
) -> list[dict]:
    """Up to ``per_label`` harmful phrases of ``lang``, then as many benign ones, from the dev or the
    train side of the split (:func:`phrase_groups`), one framing each, drawn by ``rng``: the safety
    dev eval rows and align's ``safety_examples``."""
    by_group = phrase_groups(seed_rows, lang, dev=dev)
    out = []
    for label in ("harmful", "benign"):
        groups = sorted(g for g in by_group if g[0] == label)
        rng.shuffle(groups)
        out += [rng.choice(by_group[key]) for key in groups[:per_label]]
    return out


def native_harmful(native_dir: str | Path | None, langs: list[str]) -> list[dict]:
    """The harmful requests of ``<native_dir>/<lang>.yaml`` for ``langs`` (seed-shaped rows, one group
    per request, so the build's dev split holds out whole requests); none when the folder is absent."""
    from safety.guard_data import load_prompts

    if not native_dir or not Path(native_dir).is_dir():
        return []
    paths = [Path(native_dir) / f"{lang}.yaml" for lang in langs]
    return [r for p in paths if p.is_file() for r in load_prompts(p, native=True) if r["label"] == "harmful"]


def public_harmful(names: list[str], langs: list[str]) -> list[dict]:
    """The harmful rows of the public sets ``names`` (``safety.public_data``) in ``langs``. A set that
    is asked for but not there is an error, not a build without it."""
    if not names:
        return []
    missing = [n for n in names if not (public_data.PUBLIC_DIR / n).is_dir()]
    if missing:
        raise DataError(
            f"safety.public_harmful: {', '.join(missing)} not found under {public_data.PUBLIC_DIR} "
            "(copy the public sets with `crossling safety import-public`, or set public_harmful: [])"
        )
    rows = (r for n in names for r in PUBLIC_SETS[n](public_data.PUBLIC_DIR))
    return [r for r in rows if r["label"] == "harmful" and r["lang"] in langs]


def _check_seed_row(rec: dict) -> str | None:
    if rec["label"] not in ("harmful", "benign"):
        return f"label must be 'harmful' or 'benign', got {rec['label']!r}"
    if rec["label"] == "harmful" and not rec.get("category"):
        return "harmful rows need a 'category'"
    if rec["label"] == "benign" and not str(rec.get("response") or "").strip():
        return "benign rows need a non-empty 'response'"
    return None


def build(
    cfg: SafetyConfig,
    langs: list[str],
    seed: int = 0,
    refusal: Callable[[str, str | None], str] | None = None,
    seed_rows: list[dict] | None = None,
) -> list[dict]:
    """Refusal and helpful rows for the seed prompts (and native requests) in ``langs``, at
    ``harmful_fraction``.

    Every benign row is kept; harmful rows are subsampled, native requests first (or benign ones, if
    harmful are scarce) to reach the ratio, so the ratio holds in every language that has both kinds.
    """
    rows_in = seed_rows if seed_rows is not None else read_seed(cfg.seed_file)
    natives = native_harmful(cfg.native_dir, langs) + public_harmful(cfg.public_harmful, langs)
    refusal = refusal or default_refusal()
    out = []
    for lang in langs:
        rng = random.Random(f"{RECIPE}-{seed}-{lang}")  # per language: adding seeds in one changes no other
        mine = _framings([r for r in rows_in if r["lang"] == lang], cfg.framings_per_phrase, rng)
        harmful = [r for r in mine if r["label"] == "harmful"]
        benign = [r for r in mine if r["label"] == "benign"]
        first = [r for r in natives if r["lang"] == lang]
        harmful, benign = _balance(harmful, benign, cfg.harmful_fraction, rng, first)
        for r in harmful:
            text = refusal(lang, r["category"])
            out.append(_row(r, text, lang, "refusal"))
        for r in benign:
            out.append(_row(r, str(r["response"]).strip(), lang, "helpful"))
    return out


def _framings(rows: list[dict], k: int | None, rng: random.Random) -> list[dict]:
    """Up to ``k`` framings of each phrase group (rows without a group are their own), in seed order."""
    if k is None:
        return rows
    by_group: dict[str, list[dict]] = {}
    for r in rows:
        by_group.setdefault(r.get("group") or r["text"], []).append(r)
    keep = {
        id(r) for group in by_group.values() for r in (group if len(group) <= k else rng.sample(group, k))
    }
    return [r for r in rows if id(r) in keep]


def _balance(
    harmful: list, benign: list, frac: float, rng: random.Random, first: list = ()
) -> tuple[list, list]:
    """Harmful and benign rows at ``frac``; the ``first`` harmful rows are kept before ``harmful``'s."""
    first = list(first)
    if not benign:
        return first + harmful, benign
    if not harmful and not first:
        return harmful, benign
    want_harmful = round(len(benign) * frac / (1 - frac))
    if want_harmful <= len(first):
        return rng.sample(first, want_harmful), benign
    if want_harmful <= len(first) + len(harmful):
        return first + rng.sample(harmful, want_harmful - len(first)), benign
    harmful = first + harmful
    want_benign = round(len(harmful) * (1 - frac) / frac)
    return harmful, rng.sample(benign, min(want_benign, len(benign)))


def _row(r: dict, answer: str, lang: str, kind: str) -> dict:
    src = r.get("source")
    origin = "native" if src == "prompts" else src if src in PUBLIC_SETS else "seed"
    source = f"safety-{origin}:{r.get('id') or r.get('_line', '?')}:{kind}"
    row = sft_row(
        r["text"],
        answer,
        recipe=RECIPE,
        lang=lang,
        source=source,
        group=r.get("group"),  # the frames of one seed phrase stay in one split
        checks=[(r["text"], lang), (answer, lang)],
    )
    row["_safety"] = {"label": r["label"], "category": r.get("category")}
    return row
