"""SFT data: read chat rows, balance languages, tokenize with assistant-only labels, check the masks.

Pure data code, unit-tested on hand-written rows: it knows the SFT row (``data_recipes.schema``:
``{"messages": [...], "lang": ..., ...}``) and the tokenizer, never the model or the trainer.

- :func:`load_sft_rows` reads a built dataset folder (``data/built/<name>/``: ``train.jsonl`` +
  ``dev.jsonl``, or ``hf/``), any JSONL file, or a ``save_to_disk`` folder; a malformed row is an
  error naming the file, line and field.
- :func:`balance_languages` resamples the mix so language ``l`` gets a share proportional to
  ``n_l ** language_temperature`` (1 keeps the mix as built, 0 makes it uniform; XLM-R's
  temperature sampling).
- :func:`tokenize_rows` renders the chat template with ``{% generation %}`` markers and labels only
  assistant tokens (and their ``<end_of_turn>``); rows left with no trained token after truncation
  are reported, never dropped silently.
- :func:`check_assistant_masks` proves on a sample that exactly the assistant replies are trained.
"""

from __future__ import annotations

import logging
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crossling.errors import CrosslingError, DataError
from crossling.loaders import read_records

logger = logging.getLogger(__name__)

ROLES = ("system", "user", "assistant")
IGNORE_INDEX = -100


# sft trains on every row it is given (no lenient mode that would skip some); the data build has one.
BAD_ROW_HINT = (
    "fix or remove that row; `crossling data build --extra_sft_files [FILE] --lenient true` "
    "builds a dataset with such rows set aside in quarantine.jsonl"
)


class MaskCheckError(CrosslingError):
    """The assistant-only loss mask is wrong: training would teach the wrong tokens (or none)."""


# --- reading -------------------------------------------------------------------------------------


def validate_row(row: Any, where: str) -> dict:
    """Check one SFT row; return it with ``lang`` filled ("und" when the source has none)."""
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
    messages = row.get("messages")
    if not isinstance(messages, list) or not messages:
        raise DataError(f"{where}: field 'messages' must be a non-empty list of {{role, content}}")
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or msg.get("role") not in ROLES:
            raise DataError(f"{where}: messages[{i}].role must be one of {', '.join(ROLES)}, got {msg!r:.80}")
        if not isinstance(msg.get("content"), str):
            raise DataError(f"{where}: messages[{i}].content must be a string")
    if not any(m["role"] == "assistant" and m["content"].strip() for m in messages):
        raise DataError(f"{where}: no non-empty assistant message (nothing to train on)")
    lang = row.get("lang") or "und"
    if not isinstance(lang, str):
        raise DataError(f"{where}: field 'lang' must be a language code string")
    return {**row, "lang": lang}


def _row_problem(row: Any) -> str | None:
    try:
        validate_row(row, "row")
    except DataError as e:
        return str(e).removeprefix("row: ")
    return None


def read_jsonl(path: str | Path) -> list[dict]:
    """Every row of a JSONL file, validated (a bad row raises with its file and line)."""
    rows = [validate_row(row, str(path)) for row in read_records(path, check=_row_problem, hint=BAD_ROW_HINT)]
    if not rows:
        raise DataError(f"{path}: no rows")
    return rows


def _read_hf(path: Path) -> dict[str, list[dict]]:
    from datasets import DatasetDict, load_from_disk

    ds = load_from_disk(str(path))
    splits = ds if isinstance(ds, DatasetDict) else {"train": ds}
    return {
        name: [validate_row(row, f"{path} [{name}] row {i}") for i, row in enumerate(split)]
        for name, split in splits.items()
    }


def load_sft_rows(data: str | Path) -> tuple[list[dict], list[dict]]:
    """``(train_rows, dev_rows)`` from a built dataset folder, a JSONL file or a saved HF dataset.

    ``dev_rows`` is empty when the source has no dev split (the caller then holds some train out).
    """
    path = Path(data)
    if path.is_file():
        return read_jsonl(path), []
    if not path.is_dir():
        hint = " (run `make data` to build the default mix)" if "data/built" in str(path) else ""
        raise DataError(f"no such dataset: {path}{hint}")
    if (path / "train.jsonl").is_file():
        dev = read_jsonl(path / "dev.jsonl") if (path / "dev.jsonl").is_file() else []
        return read_jsonl(path / "train.jsonl"), dev
    hf = path / "hf" if (path / "hf").is_dir() else path
    if (hf / "dataset_dict.json").is_file() or (hf / "dataset_info.json").is_file():
        splits = _read_hf(hf)
        if "train" not in splits:
            raise DataError(f"{hf}: no 'train' split (found {', '.join(splits)})")
        return splits["train"], splits.get("dev") or splits.get("validation") or []
    raise DataError(f"{path}: expected train.jsonl, hf/ (save_to_disk) or a .jsonl file")


# --- language mix --------------------------------------------------------------------------------


def language_counts(rows: list[dict]) -> dict[str, int]:
    return dict(sorted(Counter(r["lang"] for r in rows).items()))


def balance_languages(rows: list[dict], temperature: float = 1.0, seed: int = 0) -> list[dict]:
    """Resample ``rows`` (same total) so language ``l`` gets a share ∝ ``n_l ** temperature``.

    Deterministic for a seed, so a resumed run sees the same data. Languages below their target
    are repeated (whole passes, then a seeded sample); those above are subsampled.
    """
    if not rows or temperature == 1.0:
        return list(rows)
    if temperature < 0:
        raise ValueError(f"language_temperature must be >= 0, got {temperature}")
    by_lang: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_lang[row["lang"]].append(row)
    weights = {lang: len(items) ** temperature for lang, items in by_lang.items()}
    total_w = sum(weights.values())
    rng = random.Random(seed)
    out: list[dict] = []
    for lang in sorted(by_lang):
        items = by_lang[lang]
        target = max(1, round(len(rows) * weights[lang] / total_w))
        full, rest = divmod(target, len(items))
        out += items * full + rng.sample(items, rest)
    rng.shuffle(out)
    return out


def split_dev(rows: list[dict], per_language: int, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """Hold out up to ``per_language`` rows of each language (never more than a quarter of it)."""
    rng = random.Random(seed)
    by_lang: dict[str, list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        by_lang[row["lang"]].append(i)
    held: set[int] = set()
    for idx in by_lang.values():
        held.update(rng.sample(idx, min(per_language, len(idx) // 4)))
    return [r for i, r in enumerate(rows) if i not in held], [r for i, r in enumerate(rows) if i in held]


def eval_slices(rows: list[dict], per_language: int, seed: int = 0) -> dict[str, list[dict]]:
    """A fixed slice of up to ``per_language`` dev rows per language, for per-language eval loss."""
    rng = random.Random(seed)
    by_lang: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_lang[row["lang"]].append(row)
    return {lang: rng.sample(items, min(per_language, len(items))) for lang, items in sorted(by_lang.items())}


# --- tokenizing ----------------------------------------------------------------------------------


@dataclass
class TokenizeReport:
    rows: int = 0
    tokens: int = 0
    trained_tokens: int = 0
    truncated: int = 0
    dropped: list[dict] = field(default_factory=list)  # rows with no trained token left

    @property
    def trained_fraction(self) -> float:
        return self.trained_tokens / max(self.tokens, 1)


def has_generation_markers(tokenizer) -> bool:
    return "{% generation %}" in (tokenizer.chat_template or "")


def tokenize_chat(tokenizer, messages: list[dict]) -> tuple[list[int], list[int]]:
    """``(input_ids, labels)`` for one conversation: labels are -100 outside assistant turns."""
    out = tokenizer.apply_chat_template(
        messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    ids = list(out["input_ids"])
    mask = list(out["assistant_masks"])
    return ids, [t if m else IGNORE_INDEX for t, m in zip(ids, mask, strict=True)]


def tokenize_rows(
    rows: list[dict], tokenizer, max_length: int | None, desc: str = "tokenizing"
) -> tuple[list[dict], TokenizeReport]:
    """Tokenize rows into ``{"input_ids", "labels", "lang"}``; keep_start truncation at ``max_length``."""
    from tqdm.auto import tqdm

    if not has_generation_markers(tokenizer):
        raise MaskCheckError(
            "the chat template has no {% generation %} markers, so assistant tokens cannot be found; "
            "use crossling's template (crossling.models.CHAT_TEMPLATE) or set assistant_only_loss: false"
        )
    report = TokenizeReport()
    out = []
    for i, row in enumerate(tqdm(rows, desc=desc, unit="row", mininterval=2, leave=False)):
        ids, labels = tokenize_chat(tokenizer, row["messages"])
        cut = max_length is not None and len(ids) > max_length
        if cut:
            report.truncated += 1
            ids, labels = ids[:max_length], labels[:max_length]
        trained = sum(label != IGNORE_INDEX for label in labels)
        if trained == 0:
            report.dropped.append(
                {"index": i, "source": row.get("source"), "lang": row["lang"], "tokens": len(ids)}
            )
            continue
        report.rows += 1
        report.tokens += len(ids)
        report.trained_tokens += trained
        out.append({"input_ids": ids, "labels": labels, "lang": row["lang"], "row": i, "truncated": cut})
    if not out:
        raise MaskCheckError(
            f"{desc}: no row has a trained token (all {len(rows)} dropped; max_length too small?)"
        )
    return out, report


def full_sequence_labels(rows: list[dict], tokenizer, max_length: int | None) -> list[dict]:
    """Tokenize rows training on every token (``assistant_only_loss: false``)."""
    out = []
    for row in rows:
        ids = tokenizer.apply_chat_template(row["messages"], tokenize=True, return_dict=True)["input_ids"]
        ids = list(ids)[:max_length] if max_length else list(ids)
        out.append({"input_ids": ids, "labels": list(ids), "lang": row["lang"]})
    return out


# --- checking ------------------------------------------------------------------------------------


def trained_spans(ids: list[int], labels: list[int]) -> list[list[int]]:
    """Maximal runs of positions whose label is trained, as token-id lists."""
    spans: list[list[int]] = []
    prev = False
    for tok, label in zip(ids, labels, strict=True):
        on = label != IGNORE_INDEX
        if on and not prev:
            spans.append([])
        if on:
            spans[-1].append(tok)
        prev = on
    return spans


def check_example(
    tokenizer,
    messages: list[dict],
    ids: list[int],
    labels: list[int],
    end_token: str,
    truncated: bool = False,
) -> None:
    """Raise :class:`MaskCheckError` unless exactly each assistant reply + end-of-turn is trained.

    A truncated example may lose its last replies, and the last trained span may be cut short.
    """
    spans = [tokenizer.decode(s, skip_special_tokens=False) for s in trained_spans(ids, labels)]
    expected = [m["content"].strip() + end_token for m in messages if m["role"] == "assistant"]
    if len(spans) > len(expected) or (not truncated and len(spans) != len(expected)):
        raise MaskCheckError(f"{len(spans)} trained spans for {len(expected)} assistant turns: {spans[:3]!r}")
    for k, (got, want) in enumerate(zip(spans, expected, strict=False)):
        cut = truncated and k == len(spans) - 1
        if got != want and not (cut and want.startswith(got)):
            raise MaskCheckError(f"trained span {k} is {got!r}, expected the assistant reply {want!r}")


def check_assistant_masks(
    rows: list[dict], tokenized: list[dict], tokenizer, sample: int = 32, seed: int = 0
) -> int:
    """Check a seeded sample of tokenized rows (``row``, ``truncated`` keys from :func:`tokenize_rows`):
    trained text == assistant replies + end-of-turn, nothing else. Returns how many were checked."""
    vocab = tokenizer.get_vocab()
    end_token = "<end_of_turn>" if "<end_of_turn>" in vocab else (tokenizer.eos_token or "")
    picks = random.Random(seed).sample(range(len(tokenized)), min(sample, len(tokenized)))
    for i in picks:
        ex = tokenized[i]
        messages = rows[ex["row"]]["messages"]
        try:
            check_example(tokenizer, messages, ex["input_ids"], ex["labels"], end_token, ex["truncated"])
        except MaskCheckError as e:
            raise MaskCheckError(f"row {ex['row']} (source {rows[ex['row']].get('source')}): {e}") from None
    return len(picks)


def check_batches(batches, max_batches: int = 4) -> float:
    """Trained-token fraction over the first collated batches; zero trained tokens is an error."""
    trained = real = 0
    for k, batch in enumerate(batches):
        if k >= max_batches:
            break
        labels = batch["labels"]
        n_trained = int((labels != IGNORE_INDEX).sum())
        if n_trained == 0:
            raise MaskCheckError(f"batch {k} has zero trained tokens: the loss would be empty")
        trained += n_trained
        real += int(batch["attention_mask"].sum()) if "attention_mask" in batch else labels.numel()
    return trained / max(real, 1)
