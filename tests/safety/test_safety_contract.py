"""What the safety area shares with the others: categories, refusals in every language, and the seed file's shape."""

import json
from collections import Counter
from pathlib import Path

import pytest

from crossling import langid
from crossling.languages import LANGUAGES
from safety.categories import CATEGORIES, CATEGORY_IDS, OPENAI_CATEGORIES
from safety.refusals import REFUSALS, refusal_text
from safety.seed import SEED_PATH, SOURCE_DIR, build_seed, load_source

MULTIJAIL_LANGS = {"en", "zh", "it", "vi", "ar", "ko", "th", "bn", "sw", "jv"}


def test_categories_map_to_openai_names() -> None:
    assert len(CATEGORY_IDS) >= 10
    for cat in CATEGORIES.values():
        assert cat.openai and set(cat.openai) <= set(OPENAI_CATEGORIES), cat.id


def test_refusals_cover_every_language() -> None:
    assert set(LANGUAGES) <= set(REFUSALS)
    assert len(REFUSALS) >= 20
    assert refusal_text(None) == REFUSALS["en"][0]
    assert refusal_text("zh-CN") == REFUSALS["zh"][0]
    assert refusal_text("xx") == REFUSALS["en"][0]  # unknown -> English, never an error
    assert refusal_text("sw", "self_harm") == REFUSALS["sw"][1]


@pytest.mark.parametrize("lang", sorted(c for c in REFUSALS if langid.supported(c)))
def test_refusal_is_written_in_its_language(lang: str) -> None:
    for text in REFUSALS[lang]:
        assert langid.is_language(text, lang), (lang, text)


def test_seed_file_matches_sources() -> None:
    rows = [json.loads(line) for line in SEED_PATH.read_text(encoding="utf-8").splitlines()]
    assert rows == build_seed(out=None), "seed.jsonl is stale: run `python -m safety build-seed`"
    langs = Counter(r["lang"] for r in rows)
    assert len(langs) >= 20 and set(langs) >= MULTIJAIL_LANGS
    assert {"yo", "ha", "am", "te"} <= set(langs)
    for row in rows:
        assert set(row) >= {"text", "lang", "label", "category", "response"}
        assert row["label"] in ("harmful", "benign")
        assert (row["response"] == "") == (row["label"] == "harmful"), row["id"]
        assert row["category"] is None or row["category"] in CATEGORIES
    per = Counter((r["lang"], r["category"]) for r in rows if r["label"] == "harmful")
    assert all(per[(lang, c)] >= 20 for lang in langs for c in CATEGORY_IDS)  # breadth per language


def test_source_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "xx.yaml"
    bad.write_text((SOURCE_DIR / "en.yaml").read_text(encoding="utf-8").replace("lang: en", "lang: xx"))
    with pytest.raises(Exception, match="xx.yaml.*unknown language"):
        load_source(bad)


def test_eval_prompts_are_not_training_prompts() -> None:
    from safety.guard_data import written_benign_eval

    seed = {r["text"] for r in build_seed(out=None)}
    evals = {t for kinds in written_benign_eval().values() for texts in kinds.values() for t in texts}
    assert len(evals) >= 3000 and not seed & evals


def test_seed_rows_that_meet_an_eval_prompt_are_dropped() -> None:
    import csv

    from safety.seed import REPO, drop_eval_overlap

    with open(REPO / "data" / "eval" / "multijail_dev.csv", encoding="utf-8", newline="") as f:
        eval_sw = next(csv.DictReader(f))["sw"]  # read here only to prove the overlap check works
    rows = [
        {"id": "x-h", "text": eval_sw, "lang": "sw", "label": "harmful"},
        {
            "id": "x-b",
            "text": "Nieleze jinsi ya kupika wali mtamu kwa nazi.",
            "lang": "sw",
            "label": "benign",
        },
    ]
    assert [r["id"] for r in drop_eval_overlap(rows)] == ["x-b"]
