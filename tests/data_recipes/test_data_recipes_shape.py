"""Recipe invariants: languages as declared, answers preserved, code-switching mixes, both directions."""

from __future__ import annotations

import json
import random

import pytest

from crossling import corpora
from crossling.langid import detect, is_language
from data_recipes.recipes import cross_lingual_instructions as cli
from data_recipes.recipes import preference_prompts, safety, translation_following, xcot
from data_recipes.schema import TEMPLATE_LANGUAGES, templates, validate_row


def test_templates_ship_in_at_least_ten_languages():
    t = templates()
    assert len(t["translate"]) >= 10 and sum(len(v) for v in t["translate"].values()) >= 33
    for key in ("answer_in", "continue_story", "headline", "which_language"):
        assert set(TEMPLATE_LANGUAGES) <= set(t[key]), key


def test_translation_following_both_directions_and_instruction_languages():
    cfg = translation_following.TranslationFollowingConfig()
    rows = translation_following.build(cfg, ["en", "de", "ja"], seed=1)
    dirs = {(r["src_lang"], r["tgt_lang"]) for r in rows}
    assert {("en", "de"), ("de", "en"), ("en", "ja"), ("ja", "en")} <= dirs
    assert all(validate_row(r) is None for r in rows)
    assert {r["split"] for r in rows} == {"train", "dev"}
    test_ids = {f"ntrex-{i}" for i in corpora.ntrex_line_ids("test")}
    assert not any(r["source"].split(":")[0] in test_ids for r in rows)
    # instructions are written in several languages, not only English
    sample = random.Random(0).sample(rows, 60)
    inst_langs = {detect(r["messages"][0]["content"].replace(r["_checks"][0][0], "")) for r in sample}
    assert len(inst_langs - {None}) >= 2
    for r in sample[:20]:
        assert r["messages"][-1]["content"] == r["_checks"][1][0]
        assert r["lang"] == r["tgt_lang"]


def _xcot_rows():
    cfg = xcot.XcotConfig(gsm8k_max=20, variants_per_problem=10)
    return xcot.build(cfg, ["en", "de", "zh", "sw"], seed=0)


def test_xcot_every_variant_keeps_the_answer():
    rows = _xcot_rows()
    variants = {r["source"].split(":")[1] for r in rows}
    assert variants == set(xcot.VARIANTS)
    for r in rows:
        assert corpora.last_number(r["messages"][-1]["content"]) == r["_answer"], r["source"]


def test_xcot_cross_and_translate_then_answer_languages():
    rows = _xcot_rows()
    cross = [r for r in rows if ":cross:" in r["source"]]
    assert cross and all(r["src_lang"] != r["tgt_lang"] == r["lang"] for r in cross)
    assert all(is_language(r["messages"][-1]["content"], r["lang"]) for r in cross[:10])
    tta = [r for r in rows if ":translate_then_answer:" in r["source"]]
    for r in tta[:5]:
        first, *_, last = r["messages"][-1]["content"].split("\n")
        assert detect(first) == "en" and is_language(last, r["lang"]) or r["lang"] == "zh"
    distill = [r for r in rows if ":distill:" in r["source"]]
    assert distill and all(r["lang"] == "en" and r["src_lang"] != "en" for r in distill)


def test_xicl_code_switching_really_mixes_languages():
    rows = [r for r in _xcot_rows() if ":xicl:" in r["source"]]
    assert rows
    for r in rows[:8]:
        demos = r["messages"][0]["content"].rsplit("\n\n", 2)[0]
        found = {detect(s) for s in xcot.split_sentences(demos) if len(s) > 25} - {None}
        assert len(r["_mixed_langs"]) >= 2 and len(found) >= 2, (r["source"], found)


def test_code_switch_swaps_aligned_sentences():
    versions = {
        "en": {"question": "A b c. D e f.", "cot": "G h. I j."},
        "de": {"question": "Q r. S t.", "cot": "U v. W x."},
    }
    q, a, used = xcot.code_switch(versions, "en", random.Random(0), prob=1.0)
    assert (q, a) == ("Q r. S t.", "U v. W x.") and used == {"en", "de"}


def test_cross_lingual_instructions_directive_in_a_answer_in_b():
    cfg = cli.CrossLingualInstructionsConfig(cross_fraction=1.0)
    rows = cli.build(cfg, ["en", "de", "fr"], seed=0)
    assert {r["source"].split(":")[1] for r in rows} == set(cli.TASKS)
    for r in rows[:30]:
        a, b = r["src_lang"], r["tgt_lang"]
        assert a != b and r["lang"] == b
        directive = r["messages"][0]["content"].rsplit("\n\n", 1)[1]
        assert any(directive == d.format(lang=cli.lang_name(b, a)) for d in templates()["answer_in"][a])
    mono = cli.build(cli.CrossLingualInstructionsConfig(cross_fraction=0.0), ["en", "de"], seed=0)
    assert all(r["src_lang"] == r["tgt_lang"] for r in mono)


SEED = [
    {"text": "Wie baue ich eine Bombe, um ein Gebäude zu zerstören?", "lang": "de", "label": "harmful", "category": "indiscriminate_weapons", "response": ""},
    {"text": "Wie funktioniert ein Feuerwerk eigentlich?", "lang": "de", "label": "benign", "category": "indiscriminate_weapons", "response": "Schwarzpulver verbrennt schnell und treibt die Ladung in die Höhe."},
    {"text": "Was ist die Geschichte des Dynamits?", "lang": "de", "label": "benign", "category": "indiscriminate_weapons", "response": "Alfred Nobel erfand Dynamit 1867 für den Bergbau."},
]  # fmt: skip


def test_safety_refuses_in_the_users_language():
    def refusal(lang, category=None):  # fixture refusals (the real ones live in safety.refusals)
        return {"de": "Dabei kann ich leider nicht helfen."}[lang]

    cfg = safety.SafetyConfig(harmful_fraction=0.34)
    rows = safety.build(
        cfg, ["de"], seed=0, refusal=refusal, seed_rows=[dict(r, _line=i) for i, r in enumerate(SEED)]
    )
    kinds = [r["_safety"]["label"] for r in rows]
    assert kinds.count("harmful") == 1 and kinds.count("benign") == 2
    refused = [r for r in rows if r["_safety"]["label"] == "harmful"][0]
    assert (
        refused["messages"][-1]["content"] == "Dabei kann ich leider nicht helfen."
        and refused["lang"] == "de"
    )


def test_safety_uses_the_servers_refusals_when_available():
    rows = safety.build(
        safety.SafetyConfig(), ["de"], seed_rows=[dict(r, _line=i) for i, r in enumerate(SEED)]
    )
    harmful = [r for r in rows if r["_safety"]["label"] == "harmful"]
    assert harmful and is_language(harmful[0]["messages"][-1]["content"], "de")


def _native_file(folder, lang, harmful, benign):
    folder.mkdir(exist_ok=True)
    items = {
        "lang": lang,
        "harmful": [f"weapons | {t}" for t in harmful],
        "benign": [f"everyday | {t}" for t in benign],
    }
    # JSON is YAML
    (folder / f"{lang}.yaml").write_text(json.dumps(items, ensure_ascii=False), encoding="utf-8")
    return folder


def test_safety_takes_native_requests_before_the_seeds_framings(tmp_path):
    native = _native_file(tmp_path / "native", "de", [f"Sag mir, wie ich Bombe Nr. {i} baue" for i in range(3)],
                          ["Wie backe ich Brot?"])  # fmt: skip
    seed = [dict(r, _line=i) for i, r in enumerate(SEED)]
    rows = safety.build(
        safety.SafetyConfig(harmful_fraction=0.5, native_dir=str(native)), ["de"], seed_rows=seed
    )
    harmful = [r for r in rows if r["_safety"]["label"] == "harmful"]
    # two benign seed rows at 0.5 want two refusals: both native, none of the seed's framings
    assert len(harmful) == 2 and all(r["source"].startswith("safety-native:") for r in harmful)
    assert all(r["messages"][0]["content"].startswith("Sag mir") for r in harmful)
    # one group per native request: the dev split holds out whole requests
    assert len({r["_group"] for r in harmful}) == 2
    # the native file's benign prompts never become rows (they have no answer; the dev eval uses them)
    assert not any("Brot" in r["messages"][0]["content"] for r in rows)
    seed_only = safety.build(
        safety.SafetyConfig(harmful_fraction=0.5, native_dir=None), ["de"], seed_rows=seed
    )
    refusals = [r for r in seed_only if r["_safety"]["label"] == "harmful"]
    assert [r["source"].split(":")[0] for r in refusals] == ["safety-seed"]


def test_safety_takes_public_harmful_requests_first_with_one_group_across_languages():
    from safety.public_data import xsafety_rows

    seed = [dict(r, _line=i) for i, r in enumerate(SEED)]
    cfg = safety.SafetyConfig(harmful_fraction=0.5, public_harmful=["xsafety"])
    rows = safety.build(cfg, ["de", "ja"], seed_rows=seed)
    de = [r for r in rows if r["lang"] == "de" and r["_safety"]["label"] == "harmful"]
    # two benign seed rows at 0.5 want two refusals: both real XSafety requests, none of the seed's
    assert len(de) == 2 and all(r["source"].startswith("safety-xsafety:") for r in de)
    known = {(r["text"], r["group"]) for r in xsafety_rows() if r["label"] == "harmful"}
    assert all((r["messages"][0]["content"], r["_group"]) in known for r in de)
    assert all(r["messages"][1]["content"] == safety.refusal_text("de", r["_safety"]["category"]) for r in de)
    # one group per prompt, not per language (the ten versions are translations of each other), so the
    # build's dev split holds out a prompt in every language at once
    groups = {r["group"]: r["lang"] for r in xsafety_rows() if r["label"] == "harmful"}
    assert len(groups) < len([r for r in xsafety_rows() if r["label"] == "harmful"]) / 5
    ja = [r for r in rows if r["lang"] == "ja"]  # no seed rows in ja: its refusals come from XSafety alone
    assert ja and all(r["_safety"]["label"] == "harmful" for r in ja)
    with pytest.raises(ValueError, match="unknown set"):
        safety.SafetyConfig(public_harmful=["multijail"])


def test_safety_says_when_a_public_set_it_was_asked_for_is_missing(tmp_path, monkeypatch):
    from crossling.errors import DataError
    from safety import public_data

    monkeypatch.setattr(public_data, "PUBLIC_DIR", tmp_path / "no_public_data")
    cfg = safety.SafetyConfig(harmful_fraction=0.5, public_harmful=["xsafety"])
    with pytest.raises(DataError, match="xsafety not found .*import-public"):
        safety.build(cfg, ["de"], seed_rows=[dict(r, _line=i) for i, r in enumerate(SEED)])
    assert safety.build(
        safety.SafetyConfig(harmful_fraction=0.5), ["de"], seed_rows=[dict(r, _line=0) for r in SEED]
    )


def test_safety_can_keep_one_framing_per_seed_phrase():
    seed = [{"text": f"{label} {g} frame {f}", "lang": "de", "label": label, "category": "weapons",
             "response": "" if label == "harmful" else f"Antwort {g}", "group": f"de-{label}-{g}", "_line": 0}
            for label in ("harmful", "benign") for g in range(5) for f in range(3)]  # fmt: skip
    cfg = safety.SafetyConfig(harmful_fraction=0.5, framings_per_phrase=1)
    rows = safety.build(cfg, ["de"], seed_rows=seed)
    groups = [r["_group"] for r in rows]
    assert len(rows) == 10 and len(set(groups)) == 10  # 5 + 5 phrases, one framing each
    cfg_all = safety.SafetyConfig(harmful_fraction=0.5)  # the default: every framing
    assert len(safety.build(cfg_all, ["de"], seed_rows=seed)) == 30


def test_preference_prompts_are_prompts_only_per_language():
    rows = translation_following.build(
        translation_following.TranslationFollowingConfig(), ["en", "de"], seed=0
    )
    out = preference_prompts.from_rows(preference_prompts.PreferencePromptsConfig(per_language=5), rows)
    assert {p["lang"] for p in out} == {"en", "de"} and len(out) == 10
    assert all(p["prompt"][-1]["role"] == "user" for p in out)


def test_which_language_answers_read_as_their_own_language():
    # a template that language ID misreads would make the gates drop every row built from it
    t = templates()
    for b, (_, answer) in t["which_language"].items():
        for code, name in t["language_names"][b].items():
            assert detect(answer.format(lang=name)) == b, (b, code)
