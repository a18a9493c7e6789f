"""Cross-lingual decontamination: an index of every language version of every evaluation item.

The index holds MGSM test in 11 languages, the NTREX test documents in every shipped language,
MultiJail in 10 and the open prompts of the report's fidelity and benign safety tasks
(``data/eval_prompts/open_prompts.jsonl``), so a training text that is a translation of an eval item
hits the version in its own language; a math problem translated into a language the index lacks is
still caught by its sequence of numbers (``number_signature``). The data builder's gates, the guard's
training data and the safety seed build use it (the seed build, for now, without the open prompts:
``safety.seed.SEED_INDEX``): evaluation sets measure, they never train.

Also here: the text normalisation and hashed n-grams both use (the data builder's near-duplicate
gate reuses them).
"""

from __future__ import annotations

import csv
import re
import unicodedata
import zlib
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from crossling import corpora
from crossling.loaders import read_records

MULTIJAIL_CSV = str(corpora.DATA_DIR / "eval" / "multijail_dev.csv")  # shipped copy, eval only
OPEN_PROMPTS = str(corpora.DATA_DIR / "eval_prompts" / "open_prompts.jsonl")  # fidelity + benign safety eval


@dataclass(frozen=True)
class IndexSettings:
    """How texts are matched against eval items (the data builder's ``gates`` fields of the same names)."""

    ngram_words: int = 8
    ngram_chars: int = 12
    min_overlap: float = 0.3
    number_signature: int = 4
    multijail_csv: str = MULTIJAIL_CSV
    open_prompts: str = OPEN_PROMPTS


# --- text normalization + n-grams ---------------------------------------------------------------------

# Han, kana, Thai: scripts written without spaces between words (a regex is ~50x faster than naming
# every character with unicodedata, and this runs on every text the gates see).
_NO_SPACE_CHARS = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u0e00-\u0e7f]")
_LETTER = re.compile(r"[^\W\d_]")


def _no_space(text: str) -> bool:
    """True when most letters of ``text`` are in a script written without spaces."""
    return len(_NO_SPACE_CHARS.findall(text)) * 2 > len(_LETTER.findall(text))


def normalize(text: str) -> str:
    """Lowercase, punctuation/symbols → space, whitespace collapsed.

    Not ``\\w+``: Python's ``\\w`` excludes combining vowel signs, which would cut Bengali or Hindi
    words into fragments (and fragments make spurious n-gram hits).
    """
    text = unicodedata.normalize("NFKC", text).lower()
    return " ".join("".join(" " if unicodedata.category(ch)[0] in "PSZC" else ch for ch in text).split())


def tokens(text: str) -> list[str]:
    """Words, or characters for scripts written without spaces."""
    norm = normalize(text)
    return list(norm.replace(" ", "")) if _no_space(text) else norm.split()


def hash_parts(parts: list[str]) -> int:
    """Fast 64-bit hash, stable across processes (crc32 ⊕ adler32 run in C; blake2b was the bottleneck)."""
    raw = "\x1f".join(parts).encode("utf-8")
    return (zlib.crc32(raw) << 32) | zlib.adler32(raw)


def ngrams(toks: list[str], n: int) -> Iterator[int]:
    for i in range(len(toks) - n + 1):
        yield hash_parts(toks[i : i + n])


def number_tuple(text: str) -> tuple[str, ...]:
    return tuple(corpora.normalize_number(m) for m in re.findall(r"\d[\d,]*(?:\.\d+)?", text))


# --- decontamination index -----------------------------------------------------------------------------


class EvalIndex:
    """N-grams (and number signatures) of every language version of every evaluation item."""

    def __init__(self, settings: IndexSettings, items: Iterable[tuple[str, str, str]] | None = None) -> None:
        self.settings = settings
        self.grams: dict[int, str] = {}
        self.short: dict[int, set[int]] = defaultdict(set)  # whole short items, by length
        self.numbers: dict[tuple[str, ...], str] = {}
        self.item_grams: dict[str, int] = {}  # n-grams per item: overlap is measured against it
        self.n_items = 0
        for item_id, text, kind in items if items is not None else eval_items(settings):
            self.add(item_id, text, kind)

    def _tokens(self, text: str) -> tuple[list[str], int]:
        """Tokens and the n-gram size that goes with them (characters for CJK/Thai, else words)."""
        norm = normalize(text)
        if _no_space(text):
            return list(norm.replace(" ", "")), self.settings.ngram_chars
        return norm.split(), self.settings.ngram_words

    def add(self, item_id: str, text: str, kind: str = "text") -> None:
        toks, n = self._tokens(text)
        self.n_items += 1
        if len(toks) >= n:
            grams = set(ngrams(toks, n))
            self.item_grams[item_id] = len(grams)
            for g in grams:
                self.grams.setdefault(g, item_id)
        elif len(toks) >= max(4, n // 2):
            self.short[len(toks)].add(hash_parts(toks))
            self.grams.setdefault(hash_parts(toks), item_id)
        nums = number_tuple(text)
        if kind == "math" and self.settings.number_signature and len(nums) >= self.settings.number_signature:
            self.numbers.setdefault(nums, item_id)

    def hit(self, text: str) -> str | None:
        """The id of an eval item ``text`` overlaps, or ``None``."""
        toks, n = self._tokens(text)
        # A hit needs a real share of one item's n-grams, not one stock phrase ("what was the
        # original price of the") that math problems or news share by chance.
        counts: dict[str, int] = defaultdict(int)
        for g in set(ngrams(toks, n)):
            if (item := self.grams.get(g)) is not None and item in self.item_grams:
                counts[item] += 1
        for item, c in counts.items():
            if c >= max(1, self.settings.min_overlap * self.item_grams[item]):
                return item
        for length, hashes in self.short.items():
            for g in ngrams(toks, length):
                if g in hashes:
                    return self.grams[g]
        if self.numbers:
            nums = number_tuple(text)
            if nums in self.numbers:
                return self.numbers[nums] + " (numbers)"
        return None


@lru_cache(maxsize=4)
def shared_index(settings: IndexSettings = IndexSettings()) -> EvalIndex:
    """The eval index for these settings, built once per process (read-only after)."""
    return EvalIndex(settings)


def eval_items(settings: IndexSettings) -> Iterator[tuple[str, str, str]]:
    """(id, text, kind) of every language version of the evaluation sets crossling reports on."""
    for lang in corpora.MGSM_LANGUAGES:
        for p in corpora.mgsm_problems(lang):
            yield f"{p['id']}:{lang}", p["question"], "math"
    for lang in corpora.ntrex_languages():
        lines = corpora.ntrex_sentences(lang)
        for i in corpora.ntrex_line_ids("test"):
            yield f"ntrex-test-{i}:{lang}", lines[i], "text"
    path = Path(settings.multijail_csv)
    if path.is_file():
        with path.open(encoding="utf-8", newline="") as f:
            for rec in csv.DictReader(f):
                for col, text in rec.items():
                    if col not in ("id", "source", "tags") and text:
                        yield f"multijail-{rec['id']}:{col}", text, "text"
    if Path(settings.open_prompts).is_file():
        for rec in read_records(settings.open_prompts, required=("id", "prompt")):
            yield rec["id"], rec["prompt"], "text"
