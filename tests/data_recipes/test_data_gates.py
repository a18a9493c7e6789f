"""Quality gates: cross-lingual decontamination, dedup, language ID, answers, the drop report."""

from __future__ import annotations

import pytest

from crossling import corpora
from crossling.decontamination import OPEN_PROMPTS, IndexSettings, shared_index
from crossling.loaders import read_records
from data_recipes.gates import DropReport, GateConfig, Gates, NearDuplicates
from data_recipes.schema import sft_row


@pytest.fixture(scope="module")
def index():
    return shared_index()


def _row(user, assistant, lang="de", **kw):
    return sft_row(
        user,
        assistant,
        recipe="test",
        lang=lang,
        source=kw.pop("source", user[:20]),
        checks=kw.pop("checks", [(user, lang), (assistant, lang)]),
        **kw,
    )


def test_decontamination_catches_a_translated_eval_item(index):
    # the English MGSM test problem 3, "translated" to German: the German version is in the index
    en = corpora.mgsm_problems("en")[3]["question"]
    de = corpora.mgsm_problems("de")[3]["question"]
    assert index.hit(de).startswith("mgsm-3:de")
    assert index.hit(f"Bitte löse: {de}") is not None
    assert en != de


def test_decontamination_catches_a_translation_into_an_unindexed_language(index):
    # no Hindi MGSM in the index: a Hindi rendering keeps the problem's numbers, in order
    numbers, item = next((n, i) for n, i in index.numbers.items() if len(n) == 4)
    hindi = "राम के पास {} सेब थे। उसने {} और खरीदे, {} बाँट दिए और {} खा लिए। अब उसके पास कितने सेब हैं?"
    assert index.hit(hindi.format(*numbers)) == f"{item} (numbers)"
    assert index.hit(hindi.format(1234567, 7654321, 1111111, 2222222)) is None


def test_a_stock_phrase_is_not_contamination(index):
    # MGSM has "What was the original price of the book?"; sharing that phrase is not a leak
    assert index.hit("Venny spent $15000 on a used car. What was the original price of the car?") is None
    assert index.hit(corpora.gsm8k_train()[0]["question"]) is None


def test_decontamination_catches_ntrex_test_sentences_in_any_language(index):
    i = corpora.ntrex_line_ids("test")[5]
    for lang in ("en", "sw", "zh", "bn"):
        assert index.hit(corpora.ntrex_sentences(lang)[i]) is not None, lang
    j = corpora.ntrex_line_ids("train")[5]
    assert index.hit(corpora.ntrex_sentences("de")[j]) is None


def test_decontamination_catches_the_fidelity_evals_open_prompts(index):
    # the report's fidelity and benign-safety prompts are an eval set too: a row that answers one is out
    fr = next(r for r in read_records(OPEN_PROMPTS) if r["id"] == "open-fr-23")["prompt"]
    assert index.hit(f"{fr}\nFrottez avec du bicarbonate.") == "open-fr-23"
    assert index.hit("Comment enlever une tache de café sur un tapis en laine ?") is None
    without = shared_index(IndexSettings(open_prompts="/nonexistent"))
    assert without.hit(fr) is None and without.n_items == index.n_items - len(read_records(OPEN_PROMPTS))


def test_gates_report_every_drop_by_reason_recipe_language(index):
    report = DropReport()
    gates = Gates(GateConfig(), report, index=index)
    de_eval = corpora.mgsm_problems("de")[7]["question"]
    rows = [
        _row("Wie spät ist es in Berlin gerade?", "Es ist gerade drei Uhr nachmittags in Berlin."),
        _row(
            "Wie spät ist es in Berlin gerade?", "Es ist gerade drei Uhr nachmittags in Berlin.", source="dup"
        ),
        _row(de_eval, "Die Antwort ist 3."),
        _row(
            "What time is it in Berlin right now?", "It is three in the afternoon in Berlin."
        ),  # declared de
        _row("Wie viel ist zwei plus zwei?", "Zwei plus zwei ist fünf.", answer="4"),
        _row("Hallo?", "x" * 3000),
        {
            "messages": [{"role": "user", "content": "hi"}],
            "recipe": "test",
            "lang": "de",
            "source": "s",
            "split": "train",
        },
    ]
    kept = list(gates.filter(rows))
    assert len(kept) == 1
    d = report.to_dict()
    assert d["by_reason"] == {
        "exact_duplicate": 1, "contaminated": 1, "wrong_language": 1, "answer_mismatch": 1, "too_long": 1, "malformed": 1,
    }  # fmt: skip
    assert d["by_reason_recipe_lang"]["wrong_language"] == {"test": {"de": 1}}
    assert "wrong_language" in report.to_text() and d["samples"]["contaminated"][0]["detail"].startswith(
        "mgsm-7:de"
    )


def test_near_duplicates_are_found_and_distinct_texts_kept():
    nd = NearDuplicates(0.8)
    base = " ".join(f"word{i}" for i in range(60))
    assert not nd.seen(base)
    assert nd.seen(base.replace("word30", "other"))
    assert not nd.seen(" ".join(f"token{i}" for i in range(60)))
