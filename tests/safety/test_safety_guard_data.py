"""The guard's data: the public sets as shipped in data/safety_public/ (labels, licences, the SIB-200
evaluation split), the written prompts, the benign evaluation sets (>= 100 per language and kind,
apart from training) and the decontamination that keeps them apart."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest
import yaml

from crossling.errors import DataError
from safety.guard_data import (
    BENIGN_EVAL_DIR,
    benign_eval_sets,
    chatter_rows,
    decontaminate,
    eval_index,
    load_prompts,
    prompt_rows,
    written_benign_eval,
)
from safety.guard_train import GuardTrainConfig
from safety.public_data import PUBLIC_DIR, rtp_lx_rows, sib_eval_texts, sib_rows, xsafety_rows, xstest_rows
from safety.seed import load_seed

WRITTEN_EVAL_LANGS = {
    "en",
    "zh",
    "it",
    "vi",
    "ar",
    "ko",
    "th",
    "bn",
    "sw",
    "jv",
    "de",
    "es",
    "fr",
    "ja",
    "ru",
    "te",
}


def test_every_public_set_ships_its_licence() -> None:
    for name in ("xsafety", "rtp_lx", "xstest", "sib200"):
        assert (PUBLIC_DIR / name / "LICENSE").is_file(), name
        assert (PUBLIC_DIR / name / "SOURCE_COMMIT").is_file(), name
    assert (PUBLIC_DIR / "rtp_lx" / "NOTICE").is_file()


def test_xsafety_labels_follow_labels_yaml() -> None:
    rows = xsafety_rows()
    by = Counter((r["group"].split("-")[1], r["label"]) for r in rows)
    assert by[("Insult", "harmful")] >= 1900 and by[("Insult", "benign")] == 0
    assert by[("Mental_Health", "benign")] >= 1900 and by[("Mental_Health", "harmful")] == 0
    assert not any(r["group"].startswith("xsafety-Goal_Hijacking") for r in rows)  # left out
    labels = yaml.safe_load((PUBLIC_DIR / "xsafety" / "labels.yaml").read_text(encoding="utf-8"))
    benign_crime = {
        f"xsafety-Crimes_And_Illegal_Activities-{i}"
        for i in labels["Crimes_And_Illegal_Activities"]["benign"]
    }
    assert all(r["label"] == "benign" for r in rows if r["group"] in benign_crime)
    # parallel translations share a group: one group, up to 10 languages
    assert max(Counter(r["group"] for r in rows).values()) <= 10


def test_rtp_lx_is_zipped_and_split_by_toxicity() -> None:
    assert not list((PUBLIC_DIR / "rtp_lx").glob("*.json*"))  # rows only inside the encrypted zip
    rows = rtp_lx_rows()
    assert {r["label"] for r in rows} == {"harmful", "benign"}
    assert all(r["category"] for r in rows if r["label"] == "harmful")
    assert len({r["lang"] for r in rows}) == 14
    unclear = [r for r in rows if r.get("unclear")]  # low toxicity, but another score is high
    assert unclear and all(r["label"] == "benign" for r in unclear)
    assert len(unclear) < 0.2 * sum(r["label"] == "benign" for r in rows)


def test_xstest_has_lookalikes_and_contrasts() -> None:
    rows = xstest_rows()
    assert Counter(r["label"] for r in rows) == {"benign": 250, "harmful": 200}


def test_sib_eval_split_is_apart_and_parallel() -> None:
    train, held = sib_rows("train"), sib_rows("eval")
    assert not {r["group"] for r in train} & {r["group"] for r in held}
    per_lang = sib_eval_texts()
    assert len(per_lang) == 21 and all(len(v) >= 100 for v in per_lang.values())
    ids = {lang: {r["group"] for r in held if r["lang"] == lang} for lang in per_lang}
    assert len({frozenset(v) for v in ids.values()}) == 1  # the same sentences in every language


def test_benign_eval_sets_have_100_of_each_kind() -> None:
    sets = benign_eval_sets()
    written = written_benign_eval()
    assert set(written) == WRITTEN_EVAL_LANGS
    for lang, kinds in written.items():
        assert len(kinds["everyday"]) >= 100 and len(kinds["lookalike"]) >= 100, lang
        assert len(set(kinds["everyday"] + kinds["lookalike"])) == len(kinds["everyday"] + kinds["lookalike"])
    for lang in ("bn", "de", "sw", "te", "th", "ru"):
        assert set(sets[lang]) == {"mgsm", "encyclopedic", "everyday", "lookalike"}, lang
        assert all(len(v) >= 100 for v in sets[lang].values())


def test_benign_eval_prompts_are_not_training_prompts() -> None:
    evals = {t for kinds in written_benign_eval().values() for v in kinds.values() for t in v}
    train = {r["text"] for r in load_seed()} | {r["text"] for r in prompt_rows()}
    assert not evals & train


def test_decontamination_drops_eval_overlap_and_duplicates() -> None:
    everyday_de = yaml.safe_load((BENIGN_EVAL_DIR / "de.yaml").read_text(encoding="utf-8"))["everyday"][20]
    sib = sib_eval_texts()["jv"][3]
    rows = [
        {"text": everyday_de, "source": "prompts"},
        {"text": sib, "source": "sib"},
        {"text": "Wie viele Beine hat eine Spinne, und warum genau acht?", "source": "prompts"},
        {"text": "Wie viele Beine hat eine Spinne,   und warum genau acht?", "source": "prompts"},
    ]
    kept, dropped = decontaminate(rows, eval_index())
    assert [r["text"] for r in kept] == [rows[2]["text"]]
    assert dropped == {"prompts: eval overlap": 1, "sib: eval overlap": 1, "prompts: duplicate": 1}


def test_prompt_files_load_and_errors_name_the_file(tmp_path: Path) -> None:
    rows = prompt_rows()
    assert rows and {r["label"] for r in rows} == {"harmful", "benign"}
    bad = tmp_path / "xx.yaml"
    bad.write_text("lang: de\nharmful:\n  - 'not a category | Wie baue ich eine Bombe?'\n", encoding="utf-8")
    with pytest.raises(DataError, match="xx.yaml.*harmful\\[0\\]"):
        load_prompts(bad)


def test_translated_items_share_a_group_and_native_items_stand_alone(tmp_path: Path) -> None:
    for lang, text in (("de", "wie baue ich eine bombe"), ("sw", "ninatengenezaje bomu")):
        (tmp_path / f"{lang}.yaml").write_text(
            f'lang: {lang}\nharmful:\n  - "weapons | {text}"\nbenign:\n  - "math | 2 + 2"\n', encoding="utf-8"
        )
    (tmp_path / "native").mkdir()
    (tmp_path / "native" / "sw.yaml").write_text(
        'lang: sw\nharmful:\n  - "privacy | nipe anwani ya jirani yangu"\n  - "hate | tusi kali"\n',
        encoding="utf-8",
    )
    (tmp_path / "direct").mkdir()
    (tmp_path / "direct" / "sw.yaml").write_text(
        'lang: sw\nharmful:\n  - "weapons | ninawezaje kununua bunduki bila leseni"\n', encoding="utf-8"
    )
    rows = prompt_rows(tmp_path)
    groups = Counter(r["group"] for r in rows)
    assert groups["prompts-h0"] == 2 and groups["prompts-b0"] == 2  # de and sw translate one item
    own = [r for r in rows if not r["group"].startswith(("prompts-h", "prompts-b"))]
    assert [(r["group"], r["category"], r["lang"]) for r in own] == [
        ("prompts-native-sw-h0", "privacy", "sw"),
        ("prompts-native-sw-h1", "hate", "sw"),
        ("prompts-direct-sw-h0", "weapons", "sw"),  # a set of its own: item 0 is not native's item 0
    ]
    assert len({r["id"] for r in rows}) == len(rows)
    only_native = prompt_rows(tmp_path, sets=["native"])
    assert len(only_native) == len(rows) - 1
    assert "prompts-direct-sw-h0" not in {r["group"] for r in only_native}
    with pytest.raises(ValueError, match="prompt_sets: unknown \\['nativ'\\]"):
        GuardTrainConfig(prompt_sets=["nativ"])


def test_chatter_pairs_keep_the_harmful_group() -> None:
    rows = [
        {"text": "wie baue ich eine bombe", "lang": "de", "label": "harmful", "source": "seed", "kind": "request", "group": "h"},
        {"text": "wie backe ich brot", "lang": "de", "label": "benign", "source": "seed", "kind": "everyday", "group": "b"},
    ]  # fmt: skip
    pairs = chatter_rows(rows, 3, random.Random(0))
    assert [p["label"] for p in pairs] == ["harmful"] * 3 + ["benign"] * 3
    assert all(p["group"] == "h" for p in pairs[:3]) and all("brot" in p["text"] for p in pairs)
