"""The SFT row every recipe emits (what ``sft`` reads and the data card describes) and the instruction templates recipes phrase it with.

A row is ``{"messages", "recipe", "lang", "src_lang", "tgt_lang", "source", "split"}``. While a build
runs, rows also carry private keys the quality gates read and the writer strips (names start with
``_``): ``_checks`` — the texts of the row with the language each must be in; ``_group`` — rows that
share it (one problem in several languages) land in the same split, so dev never sees a translation
of a training item; ``_answer`` — the final number a math row must state; ``_recipe`` — the label a
user's own row came with (it is mixed as ``user:<file>`` and written back with its own label).

Not here: which rows to make (``data_recipes.recipes``), gates or mixing.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from crossling import languages
from crossling.splits import split_point

TEMPLATES_PATH = Path(__file__).with_name("templates.yaml")
ROLES = ("system", "user", "assistant")
PUBLIC_KEYS = ("messages", "recipe", "lang", "src_lang", "tgt_lang", "source", "split")
TEMPLATE_LANGUAGES = ("en", "de", "fr", "es", "ru", "zh", "ja", "ar", "hi", "bn", "sw")


def sft_row(
    user: str,
    assistant: str,
    *,
    recipe: str,
    lang: str,
    source: str,
    checks: list[tuple[str, str]],
    src_lang: str | None = None,
    tgt_lang: str | None = None,
    group: str | None = None,
    system: str | None = None,
    answer: str | None = None,
) -> dict[str, Any]:
    """One chat example; ``checks`` lists (text, language) pairs the language-ID gate verifies."""
    messages = [{"role": "system", "content": system}] if system else []
    messages += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    row: dict[str, Any] = {
        "messages": messages,
        "recipe": recipe,
        "lang": lang,
        "src_lang": src_lang,
        "tgt_lang": tgt_lang,
        "source": source,
        "split": "train",
        "_checks": [list(c) for c in checks],
        "_group": group or source,
    }
    if answer is not None:
        row["_answer"] = answer
    return row


def public(row: dict[str, Any]) -> dict[str, Any]:
    """The row as written to disk: contract keys only, in contract order (a user row's own label back)."""
    out = {k: row.get(k) for k in PUBLIC_KEYS}
    if row.get("_recipe"):
        out["recipe"] = row["_recipe"]
    return out


def card_label(row: dict[str, Any]) -> str:
    """The row's recipe as the card shows it: a user row's own label with the file it was mixed as."""
    return f"{row['_recipe']} ({row['recipe']})" if row.get("_recipe") else row["recipe"]


def validate_row(row: Any) -> str | None:
    """Why ``row`` breaks the SFT schema (one line), or ``None`` when it is well formed."""
    if not isinstance(row, dict):
        return f"expected an object, got {type(row).__name__}"
    messages = row.get("messages")
    if not isinstance(messages, list) or not messages:
        return "'messages' must be a non-empty list"
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
            return f"messages[{i}] must be {{'role': system|user|assistant, 'content': str}}"
    if messages[-1]["role"] != "assistant":
        return "the last message must be the assistant's"
    for key in ("recipe", "lang", "source"):
        if not isinstance(row.get(key), str) or not row[key]:
            return f"'{key}' must be a non-empty string"
    if row.get("split") not in ("train", "dev"):
        return "'split' must be 'train' or 'dev'"
    return None


def row_text(row: dict[str, Any]) -> str:
    """All message contents joined: what dedup and decontamination look at."""
    return "\n".join(m["content"] for m in row["messages"])


DEV_FRACTION = 0.1  # the build's default share of groups held out for dev


def in_dev_split(group: str, dev_fraction: float = DEV_FRACTION) -> bool:
    """Whether the build sends rows of ``group`` (a problem, document or seed phrase; all its languages
    alike) to dev. Anything else that trains on the same sources (align's safety examples) skips them."""
    return split_point("split", group) < dev_fraction


# --- templates -------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def templates() -> dict[str, Any]:
    return yaml.safe_load(TEMPLATES_PATH.read_text(encoding="utf-8"))


def lang_name(code: str, in_lang: str) -> str:
    """The name of language ``code`` written in language ``in_lang`` ("Deutsch" → "Englisch" ...).

    Falls back to the language's own name (autonym), which every speaker recognises.
    """
    names = templates()["language_names"].get(in_lang, {})
    return names.get(code) or languages.get(code).native


def instruction_language(wanted: str, pool: tuple[str, ...] = TEMPLATE_LANGUAGES) -> str:
    """``wanted`` when we ship templates in it, else English."""
    return wanted if wanted in pool else "en"
