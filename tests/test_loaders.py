"""User data loaders: formats, errors naming file and line, lenient quarantine."""

from __future__ import annotations

import json

import pytest

from crossling.errors import DataError
from crossling.loaders import read_records


def test_reads_jsonl_csv_tsv_json_parquet(tmp_path):
    rows = [
        {"instruction": "Hallo", "response": "Hi", "lang": "de"},
        {"instruction": "Salut", "response": "Hi", "lang": "fr"},
    ]
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (tmp_path / "a.json").write_text(json.dumps({"data": rows}))
    (tmp_path / "a.csv").write_text("instruction,response,lang\nHallo,Hi,de\nSalut,Hi,fr\n")
    (tmp_path / "a.tsv").write_text("instruction\tresponse\tlang\nHallo\tHi\tde\nSalut\tHi\tfr\n")
    import pandas as pd

    pd.DataFrame(rows).to_parquet(tmp_path / "a.parquet")
    for ext in ("jsonl", "json", "csv", "tsv", "parquet"):
        got = read_records(tmp_path / f"a.{ext}", required=("instruction", "lang"))
        assert [r["lang"] for r in got] == ["de", "fr"], ext
        assert got[1]["_line"] in (2, 3)


def test_malformed_row_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"instruction": "a", "lang": "de"}\n{"instruction": "b"\n{"lang": "fr"}\n')
    with pytest.raises(DataError, match=r"bad\.jsonl:2: not valid JSON"):
        read_records(path, required=("instruction", "lang"))
    quarantine: list = []
    got = read_records(path, required=("instruction", "lang"), lenient=True, quarantine=quarantine)
    assert len(got) == 1
    assert [(q["line"], q["reason"].split(" (")[0]) for q in quarantine] == [
        (2, "not valid JSON"),
        (3, "missing field(s) instruction"),
    ]


def test_missing_file_unknown_format_and_offline_hub(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_records(tmp_path / "nope.jsonl")
    (tmp_path / "x.xml").write_text("<a/>")
    with pytest.raises(DataError, match="unsupported format"):
        read_records(tmp_path / "x.xml")
    with pytest.raises(DataError, match="hub"):
        read_records("hf:crossling/does-not-exist:train")
