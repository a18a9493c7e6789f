"""The user's own files: no row vanishes from a build, and every error points at the right line and column.

Regression tests of issue 16: 40 user rows carrying a ``recipe`` field went in and 0 came out (exit 0,
"weight 0" note); English answers to German instructions were dropped as ``wrong_language``; the drop
report's headline left out quarantined and surplus rows; JSONL error columns did not point at the error.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crossling.corpora import ntrex_pairs
from crossling.errors import ConfigError, DataError
from crossling.langid import is_language
from crossling.loaders import read_records
from data_recipes import cli

REPO = Path(__file__).resolve().parents[2]
OFF = json.dumps({"enabled": False})


def _english_answers_to_german_instructions(n: int) -> list[dict]:
    """Translation rows: the instruction quotes German, the answer (the row's ``lang``) is English."""
    pairs = [
        p
        for p in ntrex_pairs("de", "en", "train")
        if 40 < len(p["tgt"]) < 160 and is_language(p["tgt"], "en") and is_language(p["src"], "de")
    ][:n]
    assert len(pairs) == n
    return [
        {
            "messages": [
                {"role": "user", "content": f"Übersetze ins Englische: {p['src']}"},
                {"role": "assistant", "content": p["tgt"]},
            ],
            "lang": "en",
            "recipe": "my_translations" if i % 2 else "xcot",  # a name of the user's own, and ours
            "source": f"mine:{p['id']}",
        }
        for i, p in enumerate(pairs)
    ]


def _write(path: Path, rows: list[dict], extra_lines: tuple[str, ...] = ()) -> Path:
    lines = [json.dumps(r, ensure_ascii=False) for r in rows] + list(extra_lines)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _build(tmp_path: Path, user_file: Path, *extra: str) -> Path:
    args = [
        "build", str(REPO / "configs/data/default.yaml"), "--name", "mine", "--output_dir", str(tmp_path / "built"),
        "--count_tokens_with", "null", "--extra_sft_files", f"[{user_file}]", "--train_examples", "100",
        "--dev_examples", "10", "--translation_following", OFF, "--xcot", OFF,
        "--cross_lingual_instructions", OFF, "--safety", OFF, *extra,
    ]  # fmt: skip
    assert cli.main(args) == 0
    return tmp_path / "built" / "mine"


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_user_rows_with_a_recipe_field_and_foreign_instructions_all_come_out(tmp_path):
    rows = _english_answers_to_german_instructions(40)
    out = _build(tmp_path, _write(tmp_path / "mine.jsonl", rows))
    built = _rows(out / "train.jsonl") + _rows(out / "dev.jsonl")
    # before: 0 rows out (my_translations had weight 0), and German instructions failed the English check
    assert sorted(r["source"] for r in built) == sorted(r["source"] for r in rows)
    assert {r["recipe"] for r in built} == {"my_translations", "xcot"}  # the user's own labels, kept
    report = json.loads((out / "drop_report.json").read_text())
    assert report["total_dropped"] == 0 and report["rows_in"] == report["rows_out"] == 40
    card = (out / "card.md").read_text()
    assert "| my_translations (user:mine) |" in card and "| xcot (user:mine) |" in card


def test_drop_report_headline_counts_every_row_that_did_not_come_out(tmp_path):
    rows = _english_answers_to_german_instructions(30)
    rows[0]["messages"][-1]["content"] = "A"  # too_short: a gate drop
    user_file = _write(tmp_path / "mine.jsonl", rows, extra_lines=('{"messages": [}',))  # quarantined
    out = _build(tmp_path, user_file, "--train_examples", "10", "--dev_examples", "2", "--lenient", "true")
    kept = len(_rows(out / "train.jsonl")) + len(_rows(out / "dev.jsonl"))
    report = json.loads((out / "drop_report.json").read_text())
    assert report["rows_in"] == 31 and report["rows_out"] == kept
    # before: the headline counted the gates only (1 here), not the quarantined or surplus rows
    assert report["total_dropped"] == 31 - kept
    assert report["by_kind"]["gates"] == 1 and report["by_kind"]["quarantined"] == 1
    assert report["by_kind"]["surplus"] == 31 - kept - 2 > 0
    headline = (out / "card.md").read_text().split("```\n", 2)[1].splitlines()[0]
    assert headline.startswith(
        f"drop report: {31 - kept} of 31 rows dropped (1 failed a quality gate, 1 quarantined"
    )


def test_user_files_with_no_user_weight_are_an_error_not_an_empty_mix(tmp_path):
    user_file = _write(tmp_path / "mine.jsonl", _english_answers_to_german_instructions(2))
    weights = json.dumps({"translation_following": 1.0, "user": 0})
    with pytest.raises(ConfigError, match=r"extra_sft_files .*mine\.jsonl.*recipe_weights\.user is 0"):
        _build(tmp_path, user_file, "--recipe_weights", weights)


def test_jsonl_errors_point_at_the_line_and_column_of_the_error(tmp_path):
    path = tmp_path / "bad.jsonl"
    # The file starts with a BOM; line 2 has a stray \r between tokens (valid JSON whitespace, but a text
    # reader splits the line there and shifts every later line number); line 3 is broken after CJK text,
    # where character and byte columns differ.
    broken = '{"lang": "ja", "text": "日本語です",, "x": 1}'
    path.write_bytes(
        b'\xef\xbb\xbf{"lang": "en"}\n{"lang": "en",\r"note": "ab"}\r\n' + broken.encode() + b"\n"
    )
    with pytest.raises(DataError) as e:
        read_records(path)
    message = str(e.value)
    # before: line 1 failed ("Unexpected UTF-8 BOM ... at column 1"), then line 2 was split in two
    assert message.startswith(f"{path}:3: not valid JSON (Expecting property name enclosed in double quotes")
    column = broken.index(",,") + 2
    assert f"at column {column} (byte {len(broken[: column - 1].encode()) + 1}):" in message
    assert 'です",⟨here⟩, "x"' in message
    assert "lenient" not in message  # no advice naming a field the caller may not have
    quarantine: list = []
    kept = read_records(path, lenient=True, quarantine=quarantine)
    assert [r["_line"] for r in kept] == [1, 2]
    (bad,) = quarantine
    assert bad["line"] == 3 and bad["raw"] == broken and broken[column - 1] == ","  # the raw line, unstripped


def test_bad_user_row_names_a_real_field_to_set(tmp_path):
    user_file = _write(tmp_path / "mine.jsonl", [], extra_lines=('{"messages": [}',))
    with pytest.raises(
        DataError, match=r"mine\.jsonl:1: not valid JSON .*set lenient: true \(--lenient true\)"
    ):
        _build(tmp_path, user_file)
