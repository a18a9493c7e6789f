"""Shipped corpora (crossling.corpora): NTREX split by document, MGSM answers, GSM8K cleaning."""

from __future__ import annotations

import pytest

from crossling import corpora
from crossling.errors import DataError


def test_ntrex_split_is_by_document_and_fixed():
    splits = corpora.ntrex_splits()
    assert set(splits.values()) == {"train", "dev", "test"}
    ids = {s: set(corpora.ntrex_line_ids(s)) for s in corpora.SPLITS}
    assert not (ids["train"] & ids["test"]) and not (ids["dev"] & ids["test"])
    assert sum(len(v) for v in ids.values()) == len(corpora.ntrex_doc_ids())
    test_docs = {corpora.ntrex_doc_ids()[i] for i in ids["test"]}
    train_docs = {corpora.ntrex_doc_ids()[i] for i in ids["train"]}
    assert test_docs and not (test_docs & train_docs)


def test_ntrex_pairs_are_aligned_rows():
    pairs = corpora.ntrex_pairs("en", "de", "train")
    assert pairs[0].keys() == {"id", "doc_id", "src_lang", "tgt_lang", "src", "tgt"}
    assert all(corpora.ntrex_splits()[p["doc_id"]] == "train" for p in pairs)
    back = {p["id"]: p for p in corpora.ntrex_pairs("de", "en", "train")}
    assert back[pairs[0]["id"]]["tgt"] == pairs[0]["src"]


def test_ntrex_unknown_language_and_split_are_clear_errors():
    with pytest.raises(DataError, match="unknown split"):
        corpora.ntrex_pairs("en", "de", "validation")
    with pytest.raises(DataError, match="NTREX has no"):
        corpora.ntrex_pairs("en", "yo", "train")


def test_mgsm_problems_are_parallel_with_plain_numbers():
    en, de = corpora.mgsm_problems("en"), corpora.mgsm_problems("de")
    assert len(en) == len(de) == 250
    assert [p["answer"] for p in en] == [p["answer"] for p in de]
    assert all("," not in p["answer"] for p in en)
    with pytest.raises(DataError, match="only a 'test' split"):
        corpora.mgsm_problems("en", "train")


def test_mgsm_exemplars_have_labels_stripped_and_answers():
    for lang in corpora.MGSM_LANGUAGES:
        rows = corpora.mgsm_exemplars(lang)
        assert len(rows) == 8
        assert all(corpora.last_number(r["cot"]) == r["answer"] for r in rows)
    assert corpora.mgsm_exemplars("de")[0]["question"].startswith("Roger hat")


def test_gsm8k_cot_is_cleaned():
    cot, answer = corpora.clean_gsm8k_solution("She has 2*3 = <<2*3=6>>6 eggs.\n#### 1,006")
    assert answer == "1006" and "<<" not in cot and cot.endswith("The answer is 1006.")
    rows = corpora.gsm8k_train()
    assert len(rows) == 7473 and all(corpora.last_number(r["cot"]) == r["answer"] for r in rows[:500])
