"""``crossling data build``: recipes → splits → quality gates → mixing → dataset on disk.

The flow, in bounded memory: recipe rows (and the user's own SFT files, streamed) are collected
into per-(recipe, language) reservoirs of at most ``oversample × train_examples`` rows; each cell is
cut to ``oversample ×`` its mixing quota; the gates run on what is left (dev after train, sharing
dedup memory, so dev never repeats train); the mix draws the final rows; leftovers that passed the
gates become the preference prompts. Outputs are written by ``data_recipes.card``.

With ``num_proc`` > 1, worker processes read the user's JSONL files (in byte-range shards) and run
the gates that do not depend on order; whatever does (reservoirs, dedup, the report) stays here, so
the dataset is the same for any ``num_proc`` (docs/scale.md).
"""

from __future__ import annotations

import dataclasses
import io
import itertools
import math
import multiprocessing
import pickle
import random
import time
from collections import defaultdict, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from crossling import languages
from crossling.corpora import DATA_DIR, gsm8k_train
from crossling.decontamination import hash_parts, normalize
from crossling.errors import ConfigError, DataError
from crossling.langid import detect
from crossling.loaders import clip_record, iter_records, jsonl_records
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
from data_recipes.schema import DEV_FRACTION, in_dev_split, row_text, validate_row
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
        default=DEV_FRACTION,
        metadata={"help": "Share of problem groups sent to dev where the source has no split."},
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
    language_weights: dict[str, float] = field(
        default_factory=dict,
        metadata={
            "help": "Train split only: multiply a language's share inside every recipe ({hi: 2}: about twice "
            "the Hindi rows, taken from the others); unnamed languages 1. Dev keeps the plain mix."
        },
    )
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
        default=1,
        metadata={
            "help": "Processes for the per-row work: reading + validating extra_sft_files (.jsonl, in "
            "~4 MB shards) and the quality gates (language ID, decontamination). The dataset is the "
            "same, byte for byte, for any value."
        },
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
        if any(w < 0 for w in self.language_weights.values()):
            raise ValueError(f"language_weights must be >= 0, got {self.language_weights}")
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
    rows = safety_recipe.build(cfg.safety, cfg.languages, cfg.seed, seed_rows=seed_rows)
    with_benign = {r["lang"] for r in rows if r["_safety"]["label"] == "benign"}
    refusals_only = sorted({r["lang"] for r in rows} - with_benign)
    if refusals_only:  # e.g. public_harmful in a language the seed has no look-alikes for
        report.notes.append(
            f"safety: refusals only in {', '.join(refusals_only)} (no benign seed rows there, so "
            "harmful_fraction cannot hold; a model may learn to refuse by language)"
        )
    return rows


def user_rows(cfg: BuildConfig, quarantine: list[dict], paths: list[str] | None = None) -> Iterator[dict]:
    """The user's SFT-schema files, streamed; each row is validated where it is read.

    Every row of a file is mixed as ``user:<file stem>`` (the ``user`` weight), whatever ``recipe`` it
    carries: rows copied from another build say ``recipe: xcot`` or a name of the user's own, and
    mixing them under that name gave them that recipe's weight, or none (0 rows out, exit 0). Their
    own label is kept (``_recipe``) and written back to disk.
    """
    for path in cfg.extra_sft_files if paths is None else paths:
        records = iter_records(
            path, check=_user_row_problem, lenient=cfg.lenient, quarantine=quarantine, hint=LENIENT_HINT
        )
        for rec in records:
            yield as_user_row(rec, path)


def as_user_row(rec: dict, path: str) -> dict:
    """A validated record of a user file as a build row (in place): see :func:`user_rows`."""
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
    return rec


def user_recipe(path: str) -> str:
    """The mixing name of a user file's rows: ``user:<file stem>`` (``user:hf:NAME:SPLIT`` from the hub)."""
    return f"user:{path if path.startswith('hf:') else Path(path).stem}"


def _user_row_problem(rec: dict) -> str | None:
    rec = {"recipe": "user", "source": "user", "split": "train", **rec}
    return validate_row(rec)


def assign_split(row: dict, dev_fraction: float) -> dict:
    """Rows without a fixed split go to dev by a hash of their group (all languages of a problem alike)."""
    if not row.get("_fixed_split") and row.get("split", "train") == "train":
        row["split"] = "dev" if in_dev_split(row.get("_group") or row["source"], dev_fraction) else "train"
    return row


def collect(rows: Iterable[dict], cap: int, seed: int) -> tuple[dict[str, dict], dict[str, dict]]:
    """Per split and (recipe, lang) cell: a uniform reservoir of ≤ ``cap`` rows and the true count."""
    return collect_keyed(((r["split"], (r["recipe"], r["lang"]), r) for r in rows), cap, seed)


def collect_keyed(
    entries: Iterable[tuple[str, tuple[str, str], Any]], cap: int, seed: int
) -> tuple[dict[str, dict], dict[str, dict]]:
    """:func:`collect` over ``(split, cell, row)``; a row may be a pickled dict (from a worker
    process): kept as such (compact), unpickled by :func:`gate_split` if it is sampled for the gates."""
    rngs: dict = {}
    pools: dict[str, dict] = {"train": defaultdict(list), "dev": defaultdict(list)}
    sizes: dict[str, dict] = {"train": defaultdict(int), "dev": defaultdict(int)}
    for split, cell, row in tqdm(entries, desc="collecting rows", unit="row", mininterval=1.0):
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


def split_language_weights(cfg: BuildConfig, split: str) -> dict[str, float] | None:
    """``language_weights`` for the train split; dev keeps the plain mix, so builds stay comparable."""
    return cfg.language_weights or None if split == "train" else None


def gate_split(pools: dict, sizes: dict, want: int, cfg: BuildConfig, gates: Gates, desc: str) -> dict:
    """Cut each cell to ``oversample ×`` its quota, then run the gates over it.

    Rows of a cell that are not gated (beyond the reservoir or the cut) are counted as surplus.
    """
    shares = mixing.cell_shares(
        sizes,
        cfg.alpha,
        cfg.recipe_weights if cfg.mixing == "weights" else None,
        split_language_weights(cfg, desc),
    )
    quota = mixing.quotas(sizes, want, shares)
    todo = []
    for cell in sorted(pools):
        k = math.ceil(cfg.oversample * quota.get(cell, 0)) + 2
        rng = random.Random(f"presample-{cfg.seed}-{desc}-{cell[0]}-{cell[1]}")  # per cell: see mixing.mix
        sample = rng.sample(pools[cell], min(k, len(pools[cell])))
        gates.report.add_count(SURPLUS_NOT_GATED, cell[0], cell[1], sizes[cell] - len(sample))
        todo += [pickle.loads(r) if isinstance(r, bytes) else r for r in sample]
    passed: dict = defaultdict(list)
    bar = tqdm(todo, desc=f"quality gates ({desc})", unit="row", mininterval=1.0)
    kept = gates.filter(bar) if cfg.num_proc == 1 else parallel_gates(gates, bar, cfg.num_proc)
    for row in kept:
        passed[(row["recipe"], row["lang"])].append(row)
    return dict(passed)


def run(cfg: BuildConfig) -> BuildResult:
    """Build the dataset in memory (no files written): see :func:`data_recipes.card.write`."""
    start = time.perf_counter()
    report, quarantine = DropReport(), []
    made = list(recipe_rows(cfg, report))  # small: materialized so progress bars do not interleave
    cap = max(1, math.ceil(cfg.oversample * cfg.train_examples))
    if cfg.num_proc == 1:
        rows = (assign_split(r, cfg.dev_fraction) for src in (made, user_rows(cfg, quarantine)) for r in src)
        pools, sizes = collect(rows, cap, cfg.seed)
    else:
        made = (assign_split(r, cfg.dev_fraction) for r in made)
        entries = itertools.chain(
            ((r["split"], (r["recipe"], r["lang"]), r) for r in made),
            sharded_user_rows(cfg, quarantine),
        )
        pools, sizes = collect_keyed(entries, cap, cfg.seed)
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
        chosen, rest = mixing.mix(
            passed, want, cfg.alpha, cfg.seed, weights, split_language_weights(cfg, split)
        )
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


# --- the per-row work in worker processes (num_proc > 1) -------------------------------------------
#
# Rows are read, validated and gated by workers; everything that depends on order (the reservoirs,
# dedup memory, the drop report, the quarantine list, the first error) stays in this process and
# sees the rows in file order, so the dataset is the same, byte for byte, as with one process.

SHARD_BYTES = 1 << 22  # JSONL bytes per task (~10k rows of chat text)
GATE_CHUNK = 512  # rows per gate task
# The gates that come before the exact-dedup check in Gates.reason: a worker's verdict among them
# stands; a later one (contaminated, wrong_language) only if the row is not an exact duplicate.
EARLY_GATES = ("malformed", "answer_mismatch", "too_short", "too_long")


def _pool(num_proc: int, initializer=None, initargs: tuple = ()):
    """Worker processes: forked where the platform allows (they inherit the loaded language-ID models
    and decontamination index), spawned elsewhere (they load them again)."""
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if "fork" in methods else None)
    return ctx.Pool(num_proc, initializer, initargs)


def _ordered(pool, fn, tasks: Iterable[tuple], ahead: int) -> Iterator:
    """``fn(*task)`` for each task on ``pool``, results in task order, at most ``ahead`` in flight
    (``Pool.imap`` would read the whole source ahead of the workers: unbounded memory)."""
    pending: deque = deque()
    for task in tasks:
        pending.append(pool.apply_async(fn, task))
        if len(pending) >= ahead:
            yield pending.popleft().get()
    while pending:
        yield pending.popleft().get()


def jsonl_shards(path: str, shard_bytes: int | None = None) -> Iterator[tuple[str, int, int, int]]:
    """``(path, offset, length, first line number)`` of consecutive whole-line byte ranges of about
    ``shard_bytes`` (default :data:`SHARD_BYTES`) of a JSONL file; lines end at ``\n`` only, as the
    loader reads them."""
    shard_bytes = shard_bytes or SHARD_BYTES
    offset, lineno = 0, 1
    with open(path, "rb") as f:
        while block := f.read(shard_bytes):
            end = block.rfind(b"\n")
            while end < 0:  # one line longer than a shard: extend to its end
                more = f.read(shard_bytes)
                if not more:
                    end = len(block) - 1
                    break
                block += more
                end = block.rfind(b"\n")
            length = end + 1
            f.seek(offset + length)
            yield path, offset, length, lineno
            offset, lineno = offset + length, lineno + block.count(b"\n", 0, length)


class _LinesFile:
    """What ``crossling.loaders`` reads a JSONL path with (``.open("rb")``), over lines in memory."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def open(self, mode: str) -> io.BytesIO:
        return io.BytesIO(self.data)


def _user_shard(
    path: str, offset: int, length: int, first: int, lenient: bool, dev_fraction: float
) -> list[tuple]:
    """One byte range of a user's JSONL file read as :func:`user_rows` would (same checks, same line
    numbers), in order: ``("row", split, cell, pickled row)``, ``("quarantine", entry)`` or
    ``("error", message)`` (raised by the main process when it gets there)."""
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read(length)
    # The loader drops a BOM on line 1 only: after the first shard, a blank line (skipped) takes
    # that place so that the shard's first line is read as any other line.
    shift = 0 if first == 1 else 1
    raw = jsonl_records(_LinesFile(b"\n" * shift + data))  # type: ignore[arg-type]
    out: list[tuple] = []
    for lineno, rec, problem in raw:
        lineno += first - 1 - shift
        if problem is None:
            problem = _user_row_problem(rec)
        if problem is not None:
            if not lenient:
                out.append(("error", f"{path}:{lineno}: {problem} ({LENIENT_HINT})"))
                break
            out.append(
                ("quarantine", {"file": path, "line": lineno, "reason": problem, "raw": clip_record(rec)})
            )
            continue
        rec["_line"] = lineno
        row = assign_split(as_user_row(rec, path), dev_fraction)
        out.append(("row", row["split"], (row["recipe"], row["lang"]), pickle.dumps(row, protocol=5)))
    return out


def sharded_user_rows(cfg: BuildConfig, quarantine: list[dict]) -> Iterator[tuple[str, tuple[str, str], Any]]:
    """:func:`user_rows` (+ :func:`assign_split`) as ``(split, cell, row)`` entries: local ``.jsonl``
    files are read in byte-range shards by ``cfg.num_proc`` workers, other sources here."""
    with _pool(cfg.num_proc) as pool:
        for path in cfg.extra_sft_files:
            if path.startswith("hf:") or Path(path).suffix.lower() != ".jsonl" or not Path(path).is_file():
                for row in user_rows(cfg, quarantine, [path]):
                    row = assign_split(row, cfg.dev_fraction)
                    yield row["split"], (row["recipe"], row["lang"]), row
                continue
            tasks = ((*shard, cfg.lenient, cfg.dev_fraction) for shard in jsonl_shards(path))
            for results in _ordered(pool, _user_shard, tasks, ahead=2 * cfg.num_proc):
                for item in results:
                    if item[0] == "row":
                        yield item[1], item[2], item[3]
                    elif item[0] == "quarantine":
                        quarantine.append(item[1])
                    else:
                        raise DataError(item[1])


_WORKER_GATES: Gates | None = None


def _gate_worker_init(cfg: GateConfig) -> None:
    """A worker's gates: the order-free ones only (no dedup memory; the main process keeps that)."""
    global _WORKER_GATES
    order_free = dataclasses.replace(cfg, exact_dedup=False, near_dedup_threshold=1.0)
    _WORKER_GATES = Gates(order_free, DropReport())


def _gate_verdicts(rows: list[dict]) -> list[tuple[str, str] | None]:
    assert _WORKER_GATES is not None
    return [_WORKER_GATES.reason(row) for row in rows]


def parallel_gates(gates: Gates, rows: Iterable[dict], num_proc: int) -> Iterator[dict]:
    """``gates.filter(rows)`` with the order-free gates (schema, answer, length, decontamination,
    language ID) in ``num_proc`` workers and the order-bound ones (exact and near dedup) here, in
    order, exactly as :meth:`Gates.reason` applies them."""
    chunks = _chunks(rows, GATE_CHUNK)
    with _pool(num_proc, _gate_worker_init, (gates.cfg,)) as pool:
        pending: deque = deque()

        def drain(chunk_and_result):
            chunk, result = chunk_and_result
            for row, verdict in zip(chunk, result.get(), strict=True):
                failed = _ordered_gates(gates, row, verdict)
                if failed is None:
                    yield row
                else:
                    gates.report.add(failed[0], row, failed[1])

        for chunk in chunks:
            pending.append((chunk, pool.apply_async(_gate_verdicts, (chunk,))))
            if len(pending) >= 2 * num_proc:
                yield from drain(pending.popleft())
        while pending:
            yield from drain(pending.popleft())


def _ordered_gates(gates: Gates, row: dict, verdict: tuple[str, str] | None) -> tuple[str, str] | None:
    """The rest of :meth:`Gates.reason` for a row whose order-free verdict a worker gave."""
    if verdict is not None and verdict[0] in EARLY_GATES:
        return verdict
    cfg, text = gates.cfg, row_text(row)
    key = hash_parts([normalize(text)]) if cfg.exact_dedup else None
    if key is not None and key in gates.exact:
        return "exact_duplicate", ""
    if verdict is not None:
        return verdict
    if gates.near is not None and gates.near.seen(f"{row.get('lang')}\n{text}"):
        return "near_duplicate", ""
    if key is not None:
        gates.exact.add(key)
    return None


def _chunks(rows: Iterable[dict], n: int) -> Iterator[list[dict]]:
    chunk: list[dict] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == n:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


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
