"""Fixtures for the sft tests: hand-written chat rows in the SFT row shape of ``data_recipes.schema``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

# (lang, user prompt, assistant reply): short, so the tiny model trains on them in seconds.
PAIRS = [
    (
        "de",
        "Translate into German: The capital of France is Paris.",
        "Die Hauptstadt von Frankreich ist Paris.",
    ),
    ("de", "Translate into German: Please translate the sentence.", "Übersetze den Satz bitte."),
    ("fr", "Translate into French: The capital of France is Paris.", "La capitale de la France est Paris."),
    ("fr", "Translate into French: Translate the sentence into Spanish.", "Traduisez la phrase en espagnol."),
    ("es", "Translate into Spanish: The capital of France is Paris.", "La capital de Francia es París."),
    ("es", "Answer in Spanish, please.", "Responde en español, por favor."),
    ("sw", "Translate into Swahili: The capital of France is Paris.", "Mji mkuu wa Ufaransa ni Paris."),
    ("zh", "Translate into Chinese: The capital of France is Paris.", "法国的首都是巴黎。"),
    ("ru", "Translate into Russian: The capital of France is Paris.", "Столица Франции — Париж."),
    ("en", "Janet has 3 apples and buys 5 more. How many?", "She has 3 + 5 = 8 apples. The answer is 8."),
]


def make_rows(n_per_pair: int = 4, split: str = "train") -> list[dict]:
    rows = []
    for k in range(n_per_pair):
        for i, (lang, prompt, reply) in enumerate(PAIRS):
            messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": reply}]
            if k % 2:
                messages.insert(0, {"role": "system", "content": "You are a careful translator."})
            rows.append(
                {
                    "messages": messages,
                    "recipe": "fixture",
                    "lang": lang,
                    "src_lang": "en",
                    "tgt_lang": lang,
                    "source": f"fixture:{i}:{k}",
                    "split": split,
                }
            )
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture()
def built_dataset(tmp_path) -> Path:
    """A folder shaped like ``data/built/<name>/`` (train.jsonl + dev.jsonl)."""
    folder = tmp_path / "built"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", make_rows(4))
    write_jsonl(folder / "dev.jsonl", make_rows(1, split="dev"))
    return folder
