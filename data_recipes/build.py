"""``crossling data build``: recipes → splits → quality gates → mixing → dataset on disk.

The flow, in bounded memory: recipe rows (and the user's own SFT files, streamed) are collected
into per-(recipe, language) reservoirs of at most ``oversample × train_examples`` rows; each cell is
cut to ``oversample ×`` its mixing quota; the gates run on what is left (dev after train, sharing
dedup memory, so dev never repeats train); the mix draws the final rows; leftovers that passed the
gates become the preference prompts. Outputs are written by ``data_recipes.card``.
"""

from __future__ import annotations

import math
import random
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from crossling import languages
from crossling.corpora import DATA_DIR, gsm8k_train
from crossling.errors import ConfigError, DataError
from crossling.langid import detect
from crossling.loaders import iter_records
from data_recipes import mixing
from data_recipes.gates import (
    QUARANTINED,
    SURPLUS_NOT_GATED,
    SURPLUS_NOT_PICKED,
    DropReport,
    GateConfig,
    Gates,
)
from data_recipes.recipes import cross_lingual_instructions as cli_recipe
from data_recipes.recipes import safety as safety_recipe
from data_recipes.recipes import translation_following as tf_recipe
from data_recipes.recipes import xcot as xcot_recipe
from data_recipes.recipes.preference_prompts import PreferencePromptsConfig, from_rows
from data_recipes.schema import stable_hash, validate_row
from data_recipes.translator import Translator, TranslatorConfig, translate_problems

DEFAULT_LANGUAGES = ["en", "de", "fr", "es", "ru", "zh", "ja", "ar", "hi", "bn", "sw"]
LENIENT_HINT = "fix that row, or set lenient: true (--lenient true) to set bad rows aside in quarantine.jsonl"


@dataclass
class BuildConfig:
    """One dataset build. Defaults make the default mix (``configs/data/default.yaml``)."""

    name: str = field(
        default="default", metadata={"help": "Dataset name: output goes to <output_dir>/<name>/."}
    )
    output_dir: str = field(default="data/built", metadata={"help": "Parent folder of built datasets."})
    languages: list[str] = field(
        default_factory=lambda: list(DEFAULT_LANGUAGES), metadata={"help": "BCP-47 codes to build for."}
    )
    seed: int = field(default=0, metadata={"help": "Seed for every random choice: same seed, same dataset."})
    train_examples: int = field(
        default=800, metadata={"help": "Rows in the train split (fewer if not available)."}
    )
    dev_examples: int = field(default=80, metadata={"help": "Rows in the dev split."})
    dev_fraction: float = field(
        default=0.1, metadata={"help": "Share of problem groups sent to dev where the source has no split."}
    )
    mixing: str = field(default="temperature", metadata={"help": "'temperature' (p ∝ n^alpha) or 'weights'."})
    alpha: float = field(default=0.3, metadata={"help": "Temperature exponent: 1 = by size, 0 = uniform."})
    recipe_weights: dict[str, float] = field(
        default_factory=lambda: {
            "translation_following": 0.3, "xcot": 0.3, "cross_lingual_instructions": 0.25, "safety": 0.15,
            "user": 0.25,
        },
        metadata={
            "help": "Fixed recipe shares when mixing: weights (languages inside still use alpha); 'user' is the "
            "share of extra_sft_files. Weights of recipes that made no rows are ignored."
        },
    )  # fmt: skip
    oversample: float = field(
        default=3.0, metadata={"help": "Rows per cell sent through the gates, as a multiple of its quota."}
    )
    lenient: bool = field(
        default=False,
        metadata={"help": "Malformed input rows go to quarantine.jsonl instead of stopping the build."},
    )
    extra_sft_files: list[str] = field(
        default_factory=list,
        metadata={
            "help": "The user's own rows in the SFT schema (JSONL/JSON/CSV/TSV/Parquet or hf:NAME:SPLIT)."
        },
    )
    count_tokens_with: str | None = field(
        default="gemma3-270m",
        metadata={"help": "Tokenizer used to report token counts in the card (null: skip)."},
    )
    num_proc: int = field(
        default=1, metadata={"help": "Processes for writing the HF dataset (save_to_disk)."}
    )
    translation_following: tf_recipe.TranslationFollowingConfig = field(
        default_factory=tf_recipe.TranslationFollowingConfig,
        metadata={"help": "Recipe 1: translate X→Y instructions from NTREX pairs."},
    )
    xcot: xcot_recipe.XcotConfig = field(
        default_factory=xcot_recipe.XcotConfig, metadata={"help": "Recipe 2: cross-lingual CoT."}
    )
    cross_lingual_instructions: cli_recipe.CrossLingualInstructionsConfig = field(
        default_factory=cli_recipe.CrossLingualInstructionsConfig,
        metadata={"help": "Recipe 3: instruction in A, answer in B."},
    )
    safety: safety_recipe.SafetyConfig = field(
        default_factory=safety_recipe.SafetyConfig, metadata={"help": "Recipe 4: refusals."}
    )
    preference_prompts: PreferencePromptsConfig = field(
        default_factory=PreferencePromptsConfig, metadata={"help": "Recipe 5: prompts for DPO/KTO."}
    )
    gates: GateConfig = field(default_factory=GateConfig, metadata={"help": "Quality gates."})
    translator: TranslatorConfig | None = field(
        default=None, metadata={"help": "Translator for texts the corpus lacks (null: shipped data only)."}
    )
    translate_gsm8k: int = field(
        default=0,
        metadata={"help": "GSM8K problems the translator turns into every language for xcot (0: none)."},
    )

    def __post_init__(self) -> None:
        for code in self.languages:
            try:
                languages.get(code)
            except languages.UnknownLanguageError as e:
                raise ValueError(f"languages: {e}") from e
        self.languages = [languages.get(c).code for c in self.languages]
        if self.mixing not in ("temperature", "weights"):
            raise ValueError(f"mixing must be 'temperature' or 'weights', got {self.mixing!r}")
        if not 0.0 <= self.dev_fraction < 1.0:
            raise ValueError("dev_fraction must be in [0, 1)")
        if self.oversample < 1.0:
            raise ValueError("oversample must be >= 1")
        for name, least in (
            ("train_examples", 1),
            ("dev_examples", 0),
            ("num_proc", 1),
            ("translate_gsm8k", 0),
        ):
            if getattr(self, name) < least:
                raise ValueError(f"{name} must be >= {least}, got {getattr(self, name)}")
        if self.alpha < 0 or any(w < 0 for w in self.recipe_weights.values()):
            raise ValueError(
                f"alpha and recipe_weights must be >= 0, got {self.alpha} and {self.recipe_weights}"
            )
        user_weight = mixing.recipe_weight(self.recipe_weights, "user:")
        if self.extra_sft_files and self.mixing == "weights" and user_weight <= 0:
            raise ValueError(
                f"extra_sft_files {self.extra_sft_files}: recipe_weights.user is {user_weight}, so none of "
                "their rows would be mixed in; set recipe_weights.user > 0 (e.g. 0.25)"
            )


@dataclass
class BuildResult:
    train: list[dict]
    dev: list[dict]
    prompts: list[dict]
    report: DropReport
    available: dict[str, dict[tuple[str, str], int]]  # split -> cell -> rows that passed the gates
    candidates: dict[str, dict[tuple[str, str], int]]  # split -> cell -> rows the recipes made
    quarantine: list[dict] = field(default_factory=list)
    seconds: float = 0.0


# --- stages ---------------------------------------------------------------------------------------------


def recipe_rows(cfg: BuildConfig, report: DropReport) -> Iterator[dict]:
    """Rows of every enabled recipe (pure builders), with a progress bar over recipes."""
    builders = [
        ("translation_following", cfg.translation_following, lambda: tf_recipe.build(cfg.translation_following, cfg.languages, cfg.seed)),
        ("xcot", cfg.xcot, lambda: xcot_recipe.build(cfg.xcot, cfg.languages, cfg.seed, extra=_translated(cfg))),
        ("cross_lingual_instructions", cfg.cross_lingual_instructions, lambda: cli_recipe.build(cfg.cross_lingual_instructions, cfg.languages, cfg.seed)),
        ("safety", cfg.safety, lambda: _safety_rows(cfg, report)),
    ]  # fmt: skip
    enabled = [(name, fn) for name, sub, fn in builders if sub.enabled]
    for name, fn in tqdm(enabled, desc="recipes", unit="recipe"):
        rows = fn()
        if not rows:
            report.notes.append(f"recipe {name} made no rows for languages {cfg.languages}")
        yield from rows


def _translated(cfg: BuildConfig) -> dict[str, dict[str, dict]] | None:
    """GSM8K problems translated into every build language (parallel CoT for xcot), if asked for."""
    if cfg.translate_gsm8k <= 0:
        return None
    if cfg.translator is None:
        raise ConfigError("translate_gsm8k needs a translator: block (backend, model, base_url)")

    pool = [r for r in gsm8k_train() if len(r["cot"]) <= cfg.xcot.max_cot_chars]
    problems = random.Random(f"translate-{cfg.seed}").sample(pool, min(cfg.translate_gsm8k, len(pool)))
    return translate_problems(Translator(cfg.translator), problems, cfg.languages)


def _safety_rows(cfg: BuildConfig, report: DropReport) -> list[dict]:
    path = Path(cfg.safety.seed_file)
    if not path.is_file() and not path.is_absolute() and (DATA_DIR.parent / path).is_file():
        path = DATA_DIR.parent / path  # the shipped seed file, when run from outside the repo
    if not path.is_file():
        if cfg.safety.required:
            raise DataError(f"safety seed file not found: {path}")
        report.notes.append(f"safety recipe skipped: {path} not found (set safety.required: true to fail)")
        print(f"warning: safety recipe skipped: {path} not found")
        return []
    quarantine: list[dict] = []
    seed_rows = safety_recipe.read_seed(path, lenient=cfg.lenient, quarantine=quarantine, hint=LENIENT_HINT)
    for q in quarantine:
        report.add(
            QUARANTINED, {"recipe": "safety", "lang": "?", "source": f"{q['file']}:{q['line']}"}, q["reason"]
        )
    return safety_recipe.build(cfg.safety, cfg.languages, cfg.seed, seed_rows=seed_rows)


def user_rows(cfg: BuildConfig, quarantine: list[dict]) -> Iterator[dict]:
    """The user's SFT-schema files, streamed; each row is validated where it is read.

    Every row of a file is mixed as ``user:<file stem>`` (the ``user`` weight), whatever ``recipe`` it
    carries: rows copied from another build say ``recipe: xcot`` or a name of the user's own, and
    mixing them under that name gave them that recipe's weight, or none (0 rows out, exit 0). Their
    own label is kept (``_recipe``) and written back to disk.
    """
    for path in cfg.extra_sft_files:
        records = iter_records(
            path, check=_user_row_problem, lenient=cfg.lenient, quarantine=quarantine, hint=LENIENT_HINT
        )
        for rec in records:
            if rec.get("recipe"):
                rec["_recipe"] = rec["recipe"]
            rec["recipe"] = user_recipe(path)
            rec.setdefault("source", f"{path}:{rec['_line']}")
            rec.setdefault("src_lang", None)
            rec.setdefault("tgt_lang", None)
            rec["split"] = rec.get("split") or "train"
            # `lang` is the language of the answer; the instruction may be in any language (a
            # translation request quotes its source), so only assistant turns are language-checked.
            # Every turn is still decontaminated.
            rec["_checks"] = [
                (m["content"], rec["lang"] if m["role"] == "assistant" else None)
                for m in rec["messages"]
                if m["role"] != "system"
            ]
            yield rec


def user_recipe(path: str) -> str:
    """The mixing name of a user file's rows: ``user:<file stem>`` (``user:hf:NAME:SPLIT`` from the hub)."""
    return f"user:{path if path.startswith('hf:') else Path(path).stem}"


def _user_row_problem(rec: dict) -> str | None:
    rec = {"recipe": "user", "source": "user", "split": "train", **rec}
    return validate_row(rec)


def assign_split(row: dict, dev_fraction: float) -> dict:
    """Rows without a fixed split go to dev by a hash of their group (all languages of a problem alike)."""
    if not row.get("_fixed_split") and row.get("split", "train") == "train":
        u = stable_hash("split", row.get("_group") or row["source"]) / 2**64
        row["split"] = "dev" if u < dev_fraction else "train"
    return row


def collect(rows: Iterable[dict], cap: int, seed: int) -> tuple[dict[str, dict], dict[str, dict]]:
    """Per split and (recipe, lang) cell: a uniform reservoir of ≤ ``cap`` rows and the true count."""
    rngs: dict = {}
    pools: dict[str, dict] = {"train": defaultdict(list), "dev": defaultdict(list)}
    sizes: dict[str, dict] = {"train": defaultdict(int), "dev": defaultdict(int)}
    for row in tqdm(rows, desc="collecting rows", unit="row", mininterval=1.0):
        split, cell = row["split"], (row["recipe"], row["lang"])
        sizes[split][cell] += 1
        seen = sizes[split][cell]
        if seen <= cap:
            pools[split][cell].append(row)
        elif (j := _cell_rng(rngs, seed, split, cell).randrange(seen)) < cap:  # reservoir (Algorithm R)
            pools[split][cell][j] = row
    return {k: dict(v) for k, v in pools.items()}, {k: dict(v) for k, v in sizes.items()}


def _cell_rng(rngs: dict, seed: int, split: str, cell: tuple[str, str]) -> random.Random:
    key = (split, cell)
    if key not in rngs:
        rngs[key] = random.Random(f"collect-{seed}-{split}-{cell[0]}-{cell[1]}")
    return rngs[key]


def gate_split(pools: dict, sizes: dict, want: int, cfg: BuildConfig, gates: Gates, desc: str) -> dict:
    """Cut each cell to ``oversample ×`` its quota, then run the gates over it.

    Rows of a cell that are not gated (beyond the reservoir or the cut) are counted as surplus.
    """
    shares = mixing.cell_shares(sizes, cfg.alpha, cfg.recipe_weights if cfg.mixing == "weights" else None)
    quota = mixing.quotas(sizes, want, shares)
    todo = []
    for cell in sorted(pools):
        k = math.ceil(cfg.oversample * quota.get(cell, 0)) + 2
        rng = random.Random(f"presample-{cfg.seed}-{desc}-{cell[0]}-{cell[1]}")  # per cell: see mixing.mix
        sample = rng.sample(pools[cell], min(k, len(pools[cell])))
        gates.report.add_count(SURPLUS_NOT_GATED, cell[0], cell[1], sizes[cell] - len(sample))
        todo += sample
    passed: dict = defaultdict(list)
    for row in gates.filter(tqdm(todo, desc=f"quality gates ({desc})", unit="row", mininterval=1.0)):
        passed[(row["recipe"], row["lang"])].append(row)
    return dict(passed)


def run(cfg: BuildConfig) -> BuildResult:
    """Build the dataset in memory (no files written): see :func:`data_recipes.card.write`."""
    start = time.perf_counter()
    report, quarantine = DropReport(), []
    made = list(recipe_rows(cfg, report))  # small: materialized so progress bars do not interleave
    rows = (assign_split(r, cfg.dev_fraction) for src in (made, user_rows(cfg, quarantine)) for r in src)
    cap = max(1, math.ceil(cfg.oversample * cfg.train_examples))
    pools, sizes = collect(rows, cap, cfg.seed)
    for q in quarantine:
        where = {"recipe": user_recipe(q["file"]), "lang": "?", "source": f"{q['file']}:{q['line']}"}
        report.add(QUARANTINED, where, q["reason"])
    _note_missing_languages(cfg, sizes["train"], report)
    if not any(sizes["train"].values()):
        raise DataError(f"no rows were made for languages {cfg.languages}: check the recipes' settings")
    if cfg.gates.langid:
        print("loading the language-ID models (lingua) and the decontamination index ...", flush=True)
        detect("warm up the detector")
    gates = Gates(cfg.gates, report)
    weights = cfg.recipe_weights if cfg.mixing == "weights" else None
    out, available = {}, {}
    for split, want in (("train", cfg.train_examples), ("dev", cfg.dev_examples)):
        passed = gate_split(pools[split], sizes[split], want, cfg, gates, split)
        available[split] = {c: len(v) for c, v in passed.items()}
        chosen, rest = mixing.mix(passed, want, cfg.alpha, cfg.seed, weights)
        for row in rest:
            report.add_count(SURPLUS_NOT_PICKED, row["recipe"], row["lang"], 1)
        out[split] = (chosen, rest)
    report.rows_in = sum(n for cells in sizes.values() for n in cells.values()) + report.total(QUARANTINED)
    report.rows_out = len(out["train"][0]) + len(out["dev"][0])
    prompts = (
        from_rows(cfg.preference_prompts, out["train"][1], cfg.seed) if cfg.preference_prompts.enabled else []
    )
    return BuildResult(
        train=out["train"][0],
        dev=out["dev"][0],
        prompts=prompts,
        report=report,
        available=available,
        candidates=sizes,
        quarantine=quarantine,
        seconds=time.perf_counter() - start,
    )


WHY_MISSING = {
    "xcot": "MGSM exemplars cover bn de en es fr ja ru sw te th zh; set translate_gsm8k + translator for others",
    "safety": "the seed file has no prompts in them",
    "cross_lingual_instructions": "no NTREX text, or no template language among the build's languages",
}


def _note_missing_languages(cfg: BuildConfig, sizes: dict, report: DropReport) -> None:
    """Say which enabled recipe made no rows in which language (and why), and which will not be mixed."""
    for recipe in ("translation_following", "xcot", "cross_lingual_instructions", "safety"):
        if not getattr(cfg, recipe).enabled:
            continue
        missing = [lang for lang in cfg.languages if not sizes.get((recipe, lang))]
        if missing and len(missing) < len(cfg.languages):
            why = WHY_MISSING.get(recipe, "no source rows in them")
            report.notes.append(f"{recipe}: no rows in {', '.join(missing)} ({why})")
    if cfg.mixing == "weights":
        for recipe in sorted({r for r, _ in sizes}):
            if mixing.recipe_weight(cfg.recipe_weights, recipe) <= 0:
                report.notes.append(f"{recipe}: weight 0 in recipe_weights, so none of its rows are mixed in")


def check_output_dir(cfg: BuildConfig) -> Path:
    out = Path(cfg.output_dir) / cfg.name
    if not cfg.name or "/" in cfg.name:
        raise ConfigError(f"name must be a plain folder name, got {cfg.name!r}")
    return out
