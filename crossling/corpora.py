"""Loaders for the real corpora shipped in ``data/``: NTREX-128, MGSM and GSM8K train.

Every area (data recipes, the safety classifier's benign text, evaluation, align's prompts) reads the
shipped corpora through these functions, so the
train/dev/test split of NTREX (by *document*, fixed in ``data/ntrex/splits.tsv``) and the rule that MGSM
test problems are evaluation-only live in one place. Rows are plain dicts with BCP-47 language codes.

Not here: the user's own files and hub datasets (``crossling.loaders``), recipes, quality gates.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path

from crossling import languages
from crossling.errors import DataError

DATA_DIR = Path(__file__).resolve().parents[1] / "data"
NTREX_DIR = DATA_DIR / "ntrex"
MGSM_DIR = DATA_DIR / "mgsm"
GSM8K_DIR = DATA_DIR / "gsm8k"

SPLITS = ("train", "dev", "test")
MGSM_LANGUAGES = ("bn", "de", "en", "es", "fr", "ja", "ru", "sw", "te", "th", "zh")

_CALC_MARK = re.compile(r"<<[^>]*>>")
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def normalize_number(text: str) -> str:
    """``"2,125"`` → ``"2125"``; ``"18.0"`` → ``"18"``: the canonical form answers are compared in."""
    s = text.strip().replace(",", "")
    if re.fullmatch(r"-?\d+\.0+", s):
        s = s.split(".")[0]
    return s


def last_number(text: str) -> str | None:
    """The last number written in ``text`` (normalized), or ``None``: how a CoT's final answer is read."""
    found = _NUMBER.findall(text)
    return normalize_number(found[-1]) if found else None


# --- NTREX-128 --------------------------------------------------------------------------------------


def ntrex_languages() -> list[str]:
    """Short codes of every language with an NTREX file shipped (English included)."""
    codes = []
    for path in sorted(NTREX_DIR.glob("ntrex128.*.txt")):
        corpus_code = path.name[len("ntrex128.") : -len(".txt")]
        try:
            codes.append(languages.from_corpus_code(corpus_code))
        except languages.UnknownLanguageError:
            continue
    return codes


@lru_cache(maxsize=64)
def ntrex_sentences(lang: str) -> tuple[str, ...]:
    """All 1,997 sentences of one language, line-aligned with every other language."""
    info = languages.get(lang)
    path = NTREX_DIR / f"ntrex128.{info.ntrex}.txt"
    if info.ntrex is None or not path.is_file():
        raise DataError(f"NTREX has no {info.name} ({lang}) file in {NTREX_DIR}; have: {ntrex_languages()}")
    lines = tuple(line.rstrip("\n").strip() for line in path.open(encoding="utf-8"))
    if len(lines) != len(ntrex_doc_ids()):
        raise DataError(f"{path}: {len(lines)} lines, DOCUMENT_IDS.tsv has {len(ntrex_doc_ids())}")
    return lines


@lru_cache(maxsize=1)
def ntrex_doc_ids() -> tuple[str, ...]:
    """The document id of each NTREX line (from DOCUMENT_IDS.tsv)."""
    path = NTREX_DIR / "DOCUMENT_IDS.tsv"
    return tuple(line.rstrip("\n").split("\t")[0] for line in path.open(encoding="utf-8"))


@lru_cache(maxsize=1)
def ntrex_splits() -> dict[str, str]:
    """Document id → ``train`` | ``dev`` | ``test``, fixed in ``data/ntrex/splits.tsv``.

    The split is by document so that no sentence of a test article leaks into training through its
    neighbours; test documents are evaluation-only.
    """
    path = NTREX_DIR / "splits.tsv"
    out: dict[str, str] = {}
    with path.open(encoding="utf-8") as f:
        next(f)  # header
        for lineno, line in enumerate(f, start=2):
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 2 or parts[1] not in SPLITS:
                raise DataError(f"{path}:{lineno}: expected doc_id<TAB>train|dev|test, got {line!r}")
            out[parts[0]] = parts[1]
    missing = set(ntrex_doc_ids()) - set(out)
    if missing:
        raise DataError(f"{path}: documents without a split: {sorted(missing)[:5]}")
    return out


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")


def ntrex_line_ids(split: str) -> list[int]:
    """0-based NTREX line numbers whose document is in ``split``."""
    _check_split(split)
    splits = ntrex_splits()
    return [i for i, doc in enumerate(ntrex_doc_ids()) if splits[doc] == split]


def ntrex_pairs(src: str, tgt: str, split: str) -> list[dict]:
    """Aligned sentence pairs of one split: ``{"id", "doc_id", "src_lang", "tgt_lang", "src", "tgt"}``.

    ``id`` is ``ntrex-<line>`` (the same for every language pair, so parallel rows can be joined).
    Pairs where either side is empty are left out (NTREX has none; the check guards edited files).
    """
    src, tgt = languages.get(src).code, languages.get(tgt).code
    src_lines, tgt_lines, docs = ntrex_sentences(src), ntrex_sentences(tgt), ntrex_doc_ids()
    rows = []
    for i in ntrex_line_ids(split):
        if src_lines[i] and tgt_lines[i]:
            rows.append(
                {
                    "id": f"ntrex-{i}",
                    "doc_id": docs[i],
                    "src_lang": src,
                    "tgt_lang": tgt,
                    "src": src_lines[i],
                    "tgt": tgt_lines[i],
                }
            )
    return rows


def ntrex_documents(lang: str, split: str) -> dict[str, list[tuple[int, str]]]:
    """Document id → ``[(line, sentence), ...]`` in order, for recipes that need context."""
    lines, docs = ntrex_sentences(languages.get(lang).code), ntrex_doc_ids()
    out: dict[str, list[tuple[int, str]]] = {}
    for i in ntrex_line_ids(split):
        out.setdefault(docs[i], []).append((i, lines[i]))
    return out


# --- MGSM ---------------------------------------------------------------------------------------------


def _mgsm_lang(lang: str) -> str:
    code = languages.get(lang).code
    if code not in MGSM_LANGUAGES:
        raise DataError(f"MGSM has no {languages.name(code)} ({code}); it has {', '.join(MGSM_LANGUAGES)}")
    return code


@lru_cache(maxsize=16)
def _mgsm_test(lang: str) -> tuple[dict, ...]:
    path = MGSM_DIR / f"mgsm_{lang}.tsv"
    rows = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 2:
                raise DataError(f"{path}:{lineno}: expected question<TAB>answer")
            rows.append(
                {
                    "id": f"mgsm-{lineno - 1}",
                    "lang": lang,
                    "question": parts[0].strip(),
                    "answer": normalize_number(parts[1]),
                }
            )
    return tuple(rows)


def mgsm_problems(lang: str, split: str = "test") -> list[dict]:
    """MGSM's 250 test problems in ``lang``: ``{"id", "lang", "question", "answer"}`` (evaluation only).

    ``id`` is ``mgsm-<n>`` in every language (the problems are parallel); ``answer`` is the final
    number without thousands separators (``"2125"``).
    """
    if split != "test":
        raise DataError(f"MGSM has only a 'test' split (evaluation-only), not {split!r}")
    return [dict(r) for r in _mgsm_test(_mgsm_lang(lang))]


@lru_cache(maxsize=1)
def _exemplars_json() -> dict:
    return json.loads((MGSM_DIR / "exemplars.json").read_text(encoding="utf-8"))


def _strip_label(text: str) -> tuple[str, str]:
    """``"Frage: Roger hat..."`` → (``"Frage"``, ``"Roger hat..."``); labels end in ``:`` or ``：``."""
    m = re.match(r"^([^:：]{1,40}?)\s*[:：]\s*", text)
    if not m:
        return "", text.strip()
    return m.group(1).strip(), text[m.end() :].strip()


def mgsm_labels(lang: str) -> tuple[str, str]:
    """The exemplars' own labels in ``lang``: (question label, step-by-step answer label)."""
    ex = _exemplars_json()["exemplars"][_mgsm_lang(lang)]["1"]
    return _strip_label(ex["q"])[0], _strip_label(ex["a"])[0]


def mgsm_exemplars(lang: str) -> list[dict]:
    """The 8 MGSM few-shot exemplars with step-by-step answers: ``{"id", "lang", "question", "cot", "answer"}``.

    Parallel across the 11 languages (``id`` is ``mgsm-exemplar-<k>``); the labels ("Frage:",
    "Schritt-für-Schritt-Antwort:") are stripped, see :func:`mgsm_labels`.
    """
    code = _mgsm_lang(lang)
    data = _exemplars_json()
    rows = []
    for k, ex in sorted(data["exemplars"][code].items(), key=lambda kv: int(kv[0])):
        answer = normalize_number(str(data["number_answers"][int(k) - 1]))
        cot = _strip_label(ex["a"])[1]
        if last_number(cot) != answer:
            raise DataError(f"{MGSM_DIR / 'exemplars.json'}: {code} exemplar {k} does not end in {answer}")
        rows.append(
            {
                "id": f"mgsm-exemplar-{k}",
                "lang": code,
                "question": _strip_label(ex["q"])[1],
                "cot": cot,
                "answer": answer,
            }
        )
    return rows


# --- GSM8K train ------------------------------------------------------------------------------------


def clean_gsm8k_solution(solution: str) -> tuple[str, str]:
    """GSM8K's ``"... <<48/2=24>>24 ...\\n#### 72"`` → (readable CoT ending in the answer, ``"72"``)."""
    body, sep, final = solution.rpartition("####")
    if not sep:
        raise ValueError("no '#### <answer>' line")
    answer = normalize_number(final)
    steps = [_CALC_MARK.sub("", line).strip() for line in body.strip().splitlines() if line.strip()]
    cot = " ".join(steps)
    return f"{cot} The answer is {answer}.", answer


@lru_cache(maxsize=1)
def _gsm8k() -> tuple[dict, ...]:
    path = GSM8K_DIR / "train.jsonl"
    rows = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            try:
                obj = json.loads(line)
                cot, answer = clean_gsm8k_solution(obj["answer"])
            except (json.JSONDecodeError, KeyError, ValueError) as e:
                raise DataError(f"{path}:{lineno}: malformed GSM8K row ({e})") from e
            rows.append(
                {
                    "id": f"gsm8k-train-{lineno - 1}",
                    "lang": "en",
                    "question": obj["question"].strip(),
                    "cot": cot,
                    "answer": answer,
                }
            )
    return tuple(rows)


def gsm8k_train() -> list[dict]:
    """GSM8K's 7,473 English train problems: ``{"id", "lang": "en", "question", "cot", "answer"}``.

    The CoT has the ``<<a=b>>`` calculator marks removed and ends in "The answer is N." (the MGSM
    exemplars' English phrasing), so English and translated CoT look alike.
    """
    return [dict(r) for r in _gsm8k()]
