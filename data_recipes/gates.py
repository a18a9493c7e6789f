"""Quality gates: schema, answer, length, exact/near duplicates, decontamination, language ID.

Every row that fails a gate is counted in a :class:`DropReport` under its reason, recipe and
language (with a few samples), and so are quarantined rows and rows the mix did not need; the build
writes it to ``drop_report.json`` and prints it: nothing is dropped silently. Decontamination is *cross-lingual* (``crossling.decontamination``: every language
version of every evaluation item is in the index).

Not here: building rows (recipes) or choosing among them (``data_recipes.mixing``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from crossling import corpora
from crossling.decontamination import (
    MULTIJAIL_CSV,
    OPEN_PROMPTS,
    EvalIndex,
    IndexSettings,
    hash_parts,
    ngrams,
    normalize,
    shared_index,
    tokens,
)
from crossling.langid import is_language
from data_recipes.schema import row_text, validate_row


@dataclass
class GateConfig:
    schema: bool = field(default=True, metadata={"help": "Check every row against the SFT schema."})
    answer_check: bool = field(default=True, metadata={"help": "Math rows must end in the problem's answer."})
    min_chars: int = field(default=2, metadata={"help": "Drop rows whose assistant reply is shorter."})
    max_chars: int = field(
        default=1600, metadata={"help": "Drop rows whose whole text is longer (keeps SFT short)."}
    )
    langid: bool = field(
        default=True, metadata={"help": "Language-ID every text against its declared language."}
    )
    exact_dedup: bool = field(default=True, metadata={"help": "Drop exact duplicates (normalized text)."})
    near_dedup_threshold: float = field(
        default=0.85,
        metadata={"help": "Drop rows whose MinHash Jaccard with a kept row reaches this; 1 = off."},
    )
    decontaminate: bool = field(default=True, metadata={"help": "Drop rows that overlap an evaluation item."})
    ngram_words: int = field(default=8, metadata={"help": "Word n-gram size for decontamination."})
    min_overlap: float = field(
        default=0.3,
        metadata={"help": "Share of an eval item's n-grams a text must contain to count as a hit."},
    )
    ngram_chars: int = field(default=12, metadata={"help": "Character n-gram size for CJK/Thai text."})
    number_signature: int = field(
        default=4,
        metadata={
            "help": "Also match math eval items by their ordered numbers if they have ≥ this many; 0 = off."
        },
    )
    multijail_csv: str = field(
        default=MULTIJAIL_CSV,
        metadata={"help": "MultiJail CSV, read only to decontaminate (skipped if absent)."},
    )
    open_prompts: str = field(
        default=OPEN_PROMPTS,
        metadata={"help": "The eval's open prompts (JSONL), read only to decontaminate (skipped if absent)."},
    )

    def index_settings(self) -> IndexSettings:
        return IndexSettings(
            self.ngram_words,
            self.ngram_chars,
            self.min_overlap,
            self.number_signature,
            self.multijail_csv,
            self.open_prompts,
        )


QUARANTINED = "quarantined"
# Rows that broke no rule but are not in the dataset because the mix needed fewer: counted too, so the
# headline is every row in minus every row out (a user's 40 rows must not leave 0 and report 2).
SURPLUS_NOT_GATED = "surplus_not_gated"  # beyond oversample × the cell's quota: never sent to the gates
SURPLUS_NOT_PICKED = "surplus_not_picked"  # passed the gates; train leftovers feed the preference prompts
SURPLUS = (SURPLUS_NOT_GATED, SURPLUS_NOT_PICKED)


class DropReport:
    """Counts per reason × recipe × language, plus a few samples per reason.

    Reasons are the gates' (``malformed``, ``wrong_language``, ...), ``quarantined`` (lenient mode) and
    the two surplus reasons above. ``rows_in`` / ``rows_out``, set by the build, make the accounting
    checkable: ``rows_in == rows_out + total()``.
    """

    def __init__(self, samples_per_reason: int = 3) -> None:
        self.counts: dict[str, dict[str, dict[str, int]]] = defaultdict(
            lambda: defaultdict(lambda: defaultdict(int))
        )
        self.samples: dict[str, list[dict]] = defaultdict(list)
        self.k = samples_per_reason
        self.notes: list[str] = []
        self.rows_in: int | None = None
        self.rows_out: int | None = None

    def add(self, reason: str, row: dict, detail: str = "") -> None:
        recipe, lang = str(row.get("recipe", "?")), str(row.get("lang", "?"))
        self.counts[reason][recipe][lang] += 1
        if len(self.samples[reason]) < self.k:
            self.samples[reason].append(
                {"source": row.get("source"), "recipe": recipe, "lang": lang, "detail": detail[:300]}
            )

    def add_count(self, reason: str, recipe: str, lang: str, n: int) -> None:
        """``n`` rows of one cell dropped for ``reason``, without samples (the surplus reasons)."""
        if n > 0:
            self.counts[reason][recipe][lang] += n

    def total(self, reason: str | None = None) -> int:
        reasons = [reason] if reason else list(self.counts)
        return sum(n for r in reasons for per in self.counts.get(r, {}).values() for n in per.values())

    def by_kind(self) -> dict[str, int]:
        """Dropped rows as failed a quality gate / quarantined / surplus to the mix."""
        surplus = sum(self.total(r) for r in SURPLUS)
        quarantined = self.total(QUARANTINED)
        return {"gates": self.total() - surplus - quarantined, "quarantined": quarantined, "surplus": surplus}

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows_in": self.rows_in,
            "rows_out": self.rows_out,
            "total_dropped": self.total(),
            "by_kind": self.by_kind(),
            "by_reason": {r: self.total(r) for r in sorted(self.counts)},
            "by_reason_recipe_lang": {
                r: {k: dict(v) for k, v in per.items()} for r, per in sorted(self.counts.items())
            },
            "samples": dict(self.samples),
            "notes": self.notes,
        }

    def to_text(self) -> str:
        kinds = self.by_kind()
        of = f" of {self.rows_in}" if self.rows_in is not None else ""
        kept = f"; {self.rows_out} kept" if self.rows_out is not None else ""
        lines = [
            f"drop report: {self.total()}{of} rows dropped ({kinds['gates']} failed a quality gate, "
            f"{kinds['quarantined']} quarantined, {kinds['surplus']} surplus to the mix){kept}"
        ]
        for reason in sorted(self.counts):
            if reason in SURPLUS:  # by design for the recipes' large pools: per recipe is enough here
                per_recipe = ", ".join(
                    f"{r} {sum(per.values())}" for r, per in sorted(self.counts[reason].items())
                )
                lines.append(f"  {reason}: {self.total(reason)} ({per_recipe})")
                continue
            lines.append(f"  {reason}: {self.total(reason)}")
            for recipe, per in sorted(self.counts[reason].items()):
                langs = ", ".join(f"{lang}={n}" for lang, n in sorted(per.items()))
                lines.append(f"    {recipe}: {langs}")
        return "\n".join(lines + [f"  note: {n}" for n in self.notes])


# --- near-duplicates (MinHash + LSH) ----------------------------------------------------------------


class NearDuplicates:
    """MinHash signatures (64 permutations) with LSH banding (16 × 4): O(1) expected per row."""

    # Mersenne prime 2^31-1: a·x stays below 2^62 (no uint64 overflow) and the modulus really wraps,
    # which a prime far above a·x would not (then a small x would win every permutation).
    PRIME = np.uint64((1 << 31) - 1)

    def __init__(self, threshold: float, num_perm: int = 64, bands: int = 16, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.a = rng.integers(1, (1 << 31) - 1, num_perm, dtype=np.uint64)
        self.b = rng.integers(0, (1 << 31) - 1, num_perm, dtype=np.uint64)
        self.threshold, self.bands, self.rows = threshold, bands, num_perm // bands
        self.buckets: list[dict[bytes, list[int]]] = [dict() for _ in range(bands)]
        self.signatures: list[np.ndarray] = []

    def signature(self, text: str) -> np.ndarray:
        toks = tokens(text)
        n = 5 if len(toks) >= 5 else max(1, len(toks))
        shingles = np.fromiter((g % ((1 << 31) - 1) for g in ngrams(toks, n)), dtype=np.uint64)
        if shingles.size == 0:
            shingles = np.zeros(1, dtype=np.uint64)
        return ((np.outer(shingles, self.a) + self.b) % self.PRIME).min(axis=0)

    def seen(self, text: str) -> bool:
        """True if ``text`` nearly duplicates an earlier one; otherwise remember it."""
        sig = self.signature(text)
        keys = [sig[i * self.rows : (i + 1) * self.rows].tobytes() for i in range(self.bands)]
        candidates = {j for band, key in enumerate(keys) for j in self.buckets[band].get(key, ())}
        for j in candidates:
            if np.mean(self.signatures[j] == sig) >= self.threshold:
                return True
        idx = len(self.signatures)
        self.signatures.append(sig)
        for band, key in enumerate(keys):
            self.buckets[band].setdefault(key, []).append(idx)
        return False


# --- the gates ---------------------------------------------------------------------------------------


@lru_cache(maxsize=200_000)
def _is_language(text: str, lang: str) -> bool:

    return is_language(text, lang)


def check_answer(row: dict) -> str | None:
    want = row.get("_answer")
    if want is None:
        return None
    got = corpora.last_number(row["messages"][-1]["content"])
    return None if got == want else f"final number {got!r}, expected {want!r}"


class Gates:
    """Stateful gates (dedup memory, eval index) applied row by row in a fixed order."""

    def __init__(self, cfg: GateConfig, report: DropReport, index: EvalIndex | None = None) -> None:
        self.cfg, self.report = cfg, report
        self.exact: set[int] = set()
        self.near = NearDuplicates(cfg.near_dedup_threshold) if cfg.near_dedup_threshold < 1 else None
        self.index = (
            index if index is not None or not cfg.decontaminate else shared_index(cfg.index_settings())
        )

    def reason(self, row: dict) -> tuple[str, str] | None:
        """(reason, detail) for the first gate ``row`` fails, or ``None`` if it passes all."""
        cfg = self.cfg
        if cfg.schema and (why := validate_row(row)):
            return "malformed", why
        if cfg.answer_check and (why := check_answer(row)):
            return "answer_mismatch", why
        text = row_text(row)
        reply = row["messages"][-1]["content"].strip()
        if len(reply) < cfg.min_chars:
            return "too_short", f"{len(reply)} chars"
        if len(text) > cfg.max_chars:
            return "too_long", f"{len(text)} chars"
        if cfg.exact_dedup:
            key = hash_parts([normalize(text)])
            if key in self.exact:
                return "exact_duplicate", ""
        if self.index is not None:
            for chunk, _ in row.get("_checks") or [(text, None)]:
                if hit := self.index.hit(chunk):
                    return "contaminated", hit
        if cfg.langid:
            for chunk, lang in row.get("_checks", []):
                if lang and not _is_language(chunk, lang):
                    return "wrong_language", f"not {lang}: {chunk[:80]!r}"
        if self.near is not None and self.near.seen(f"{row.get('lang')}\n{text}"):
            return "near_duplicate", ""
        if cfg.exact_dedup:
            self.exact.add(hash_parts([normalize(text)]))
        return None

    def filter(self, rows: Iterable[dict]) -> Iterator[dict]:
        for row in rows:
            failed = self.reason(row)
            if failed is None:
                yield row
            else:
                self.report.add(failed[0], row, failed[1])
