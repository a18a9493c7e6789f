"""Pure parts of align: pair construction, best/worst pairs with a margin, KTO labels, configs, CLI."""

from __future__ import annotations

import json
import random

import pytest

from align import preference_data, scoring, win_rate
from align.cli import CONFIGS
from crossling.config import load_config
from crossling.errors import ConfigError, DataError


def _scored(rewards: list[float], lang: str = "de", texts: list[str] | None = None, i: int = 0) -> dict:
    texts = texts or [f"answer {k}" for k in range(len(rewards))]
    return {"id": f"p{i}", "lang": lang, "prompt": [{"role": "user", "content": f"q{i}"}],
            "completions": texts, "rewards": rewards}  # fmt: skip


def test_dpo_pairs_pick_best_and_worst():
    pairs, stats = scoring.dpo_pairs([_scored([0.1, 2.0, -1.5, 0.3])], min_margin=0.5)
    assert len(pairs) == 1
    assert pairs[0]["chosen"][0]["content"] == "answer 1"
    assert pairs[0]["rejected"][0]["content"] == "answer 2"
    assert pairs[0]["margin"] == pytest.approx(3.5)
    assert stats == {"prompts": 1, "pairs": 1, "margin_below_min": 0, "identical_samples": 0}


def test_reference_examples_anchor_each_prompt_on_its_reference():
    rows = [{**_scored([0.4, -2.0, 1.0], i=0), "reference": " Guten Tag. "},
            {**_scored([0.0, 3.0, -1.0], lang="fr", i=1), "reference": "Bonjour."}]  # fmt: skip
    kto = scoring.reference_examples(rows, "kto")
    assert [(r["completion"][0]["content"], r["label"], r["lang"]) for r in kto] == [
        ("Guten Tag.", True, "de"), ("Bonjour.", True, "fr")]  # fmt: skip
    assert all(r["source"] == "reference" and r["prompt"] for r in kto)
    dpo = scoring.reference_examples(rows, "dpo")
    assert [(r["chosen"][0]["content"], r["rejected"][0]["content"]) for r in dpo] == [
        ("Guten Tag.", "answer 1"), ("Bonjour.", "answer 2")]  # the lowest-rewarded sample  # fmt: skip
    with pytest.raises(DataError, match="p1"):
        scoring.reference_examples([rows[0], {**rows[1], "reference": " "}], "kto")


def test_safety_kto_rows_teach_refusal_and_penalise_over_refusal_on_train_phrases_only():
    from data_recipes.schema import in_dev_split

    seed = [
        {"text": f"{label} {g} frame {f}", "lang": lang, "label": label, "category": "weapons",
         "response": "" if label == "harmful" else f"answer {g}", "group": f"{lang}-{label}-{g}", "id": f"{g}{f}"}
        for lang in ("de", "sw") for label in ("harmful", "benign") for g in range(40) for f in range(3)
    ]  # fmt: skip
    refuse = lambda lang, cat: f"no ({lang})"  # noqa: E731
    rows = preference_data.safety_kto_rows(seed, refuse, ["de", "sw", "ja"], per_language=5)
    for lang in ("de", "sw"):
        mine = [r for r in rows if r["lang"] == lang]
        harmful = [r for r in mine if r["prompt"][0]["content"].startswith("harmful")]
        benign = [r for r in mine if r["prompt"][0]["content"].startswith("benign")]
        assert len(harmful) == 5 and all(
            r["label"] and r["completion"][0]["content"] == f"no ({lang})" for r in harmful
        )
        assert len(benign) == 10  # each benign phrase: its answer desirable, a refusal undesirable
        assert {(r["completion"][0]["content"].startswith("answer"), r["label"]) for r in benign} == {
            (True, True),
            (False, False),
        }
        assert (
            len({r["prompt"][0]["content"].split(" frame")[0] for r in harmful}) == 5
        )  # one framing per phrase
    groups = {f"{r['lang']}-{'-'.join(r['prompt'][0]['content'].split()[:2])}" for r in rows}
    assert any(in_dev_split(row["group"]) for row in seed)  # the seed has dev phrases ...
    assert not any(in_dev_split(g) for g in groups)  # ... and none of them is used
    assert not [r for r in rows if r["lang"] == "ja"]  # no seeds in ja: no rows, no error


def test_dpo_pairs_respect_the_margin_and_count_what_they_drop():
    rows = [
        _scored([0.0, 0.4], i=0),
        _scored([0.0, 0.6], i=1),
        _scored([1.0, 5.0], texts=["same", "same "], i=2),
    ]
    pairs, stats = scoring.dpo_pairs(rows, min_margin=0.5)
    assert [p["source"] for p in pairs] == ["p1"]
    assert stats["margin_below_min"] == 1 and stats["identical_samples"] == 1


def test_kto_labels_follow_the_threshold():
    rows, stats = scoring.kto_examples([_scored([-1.0, 0.2, 0.5, 3.0])], threshold=0.3)
    assert [r["label"] for r in rows] == [False, False, True, True]
    assert stats["desirable"] == 2 and stats["undesirable"] == 2 and stats["left_out_middle"] == 0


def test_kto_quantiles_are_per_language_and_leave_the_middle_out():
    rows = [_scored([0.0, 1.0, 2.0, 3.0, 4.0], "de"), _scored([10.0, 11.0, 12.0, 13.0, 14.0], "zh", i=1)]
    out, stats = scoring.kto_examples(rows, None, desirable_quantile=0.75, undesirable_quantile=0.25)
    by_lang = {lang: [(r["reward"], r["label"]) for r in out if r["lang"] == lang] for lang in ("de", "zh")}
    assert by_lang["de"] == [(0.0, False), (1.0, False), (3.0, True), (4.0, True)]
    assert by_lang["zh"] == [
        (10.0, False),
        (11.0, False),
        (13.0, True),
        (14.0, True),
    ]  # own scale per language
    assert stats["left_out_middle"] == 2


def test_reference_weight_adds_agreement_with_the_reference_per_language():
    ref_de, ref_fr = "Der Hund schläft heute im Garten.", "Le chien dort aujourd'hui dans le jardin."
    rows = [
        # the RM prefers the fluent sentence on another subject; the reference says the faithful one
        {
            **_scored([2.0, 0.0], texts=["Ich habe meine Entscheidung gesagt.", ref_de], i=0),
            "reference": ref_de,
        },
        {**_scored([50.0, 10.0], lang="fr", texts=["Il pleut à Paris.", ref_fr], i=1), "reference": ref_fr},
    ]
    assert scoring.with_reference(rows, 0.0) is rows  # weight 0: the paper's setting, untouched
    mixed = scoring.with_reference(rows, 2.0)
    for row, before in zip(mixed, rows, strict=True):
        assert row["rm_rewards"] == before["rewards"]
        assert row["reference_scores"][1] == pytest.approx(100.0) and row["reference_scores"][0] < 30
        assert row["rewards"][1] > row["rewards"][0]  # the faithful translation wins now
        # standardised within the language: the French RM's 40-point gap counts as much as the German 2
        assert row["rewards"] == pytest.approx([1 + 2 * -1, -1 + 2 * 1], abs=1e-3)  # z(RM) + 2 z(ref)
    labels, _ = scoring.kto_examples(mixed)
    assert {e["completion"][0]["content"] for e in labels if e["label"]} == {ref_de, ref_fr}
    with pytest.raises(DataError, match="reference_weight=1.0 needs a reference.*p0"):
        scoring.with_reference([_scored([1.0, 0.0])], 1.0)


def test_best_of_n_returns_the_highest_reward_sample():
    best = scoring.best_of_n([_scored([0.2, 0.9, 0.1])])
    assert best[0]["completion"] == "answer 1" and best[0]["reward"] == 0.9


def test_quantile_matches_linear_interpolation():
    assert scoring.quantile([4.0, 1.0, 3.0, 2.0], 0.5) == pytest.approx(2.5)
    assert scoring.quantile([1.0], 0.9) == 1.0


def test_translation_pairs_same_construction_in_every_language():
    rows = [
        {"id": f"ntrex-{i}", "src_lang": "en", "tgt_lang": "de", "src": f"The house number {i} is red and old.",
         "tgt": f"Das Haus Nummer {i} ist rot und alt."}
        for i in range(2 * len(preference_data.KINDS))
    ]  # fmt: skip
    pairs = preference_data.translation_pairs(rows, "de", "train")
    assert [p["kind"] for p in pairs] == list(preference_data.KINDS) * 2
    for p, row in zip(pairs, rows, strict=True):
        assert p["chosen"][0]["content"] == row["tgt"]
        assert p["rejected"][0]["content"] != row["tgt"]
        assert row["src"] in p["prompt"][0]["content"] and p["lang"] == "de"
    wrong = pairs[0]["rejected"][0]["content"]
    assert wrong == rows[0]["src"]  # the untranslated source
    assert rows[1]["tgt"].startswith(pairs[1]["rejected"][0]["content"])  # truncated
    run_on = pairs[4]["rejected"][0]["content"]
    assert run_on.startswith(rows[4]["tgt"] + " ") and len(run_on) > len(rows[4]["tgt"]) + 10


def test_truncate_and_shuffle_change_the_text():
    rng = random.Random(0)
    assert len(preference_data.truncate("eins zwei drei vier fünf sechs", rng)) < 25
    assert preference_data.shuffle_words("一二三四五六七八", rng) != "一二三四五六七八"


def test_shipped_pairs_cover_languages_and_keep_splits_apart():
    from align.config import PreferenceDataConfig

    cfg = PreferenceDataConfig(languages=["en", "sw"], max_pairs_per_language=6, safety_seed="/nonexistent")
    built = preference_data.build(cfg)
    assert {p["lang"] for p in built["train"]} == {"en", "sw"}
    train_ids = {p["source"] for p in built["train"]}
    assert not train_ids & {p["source"] for p in built["test"]}
    from crossling.langid import detect

    full = preference_data.build(PreferenceDataConfig(languages=["en", "sw"], max_pairs_per_language=0,
                                                      safety_seed="/nonexistent"))["train"]  # fmt: skip
    en_wrong = [p for p in full if p["lang"] == "en" and p["kind"] == "wrong_language"]
    rejected = [detect(p["rejected"][0]["content"]) for p in en_wrong]
    # English answers are translated from German (German rejected) ...
    assert "de" in rejected
    # ... and English prompts that ask for Swahili prefer Swahili over the English source, so the
    # English-only RM cannot learn "English is good" in place of "the requested language is good"
    asked = [p for p, lang in zip(en_wrong, rejected, strict=True) if lang == "en"]
    assert asked and all(detect(p["chosen"][0]["content"]) == "sw" for p in asked)
    assert all(detect(p["prompt"][0]["content"]) == "en" for p in asked[:5])
    assert 0.5 < len(asked) / (len(en_wrong) - len(asked)) < 2  # the two directions balance


def test_load_pairs_names_file_and_line(tmp_path):
    path = tmp_path / "prefs.jsonl"
    good = {"prompt": [{"role": "user", "content": "hi"}], "chosen": "a", "rejected": "b"}
    path.write_text(json.dumps(good) + "\n" + json.dumps({"chosen": "a"}) + "\n")
    with pytest.raises(DataError, match=r"prefs.jsonl:2: missing field\(s\) rejected"):
        preference_data.load_pairs(path, default_lang="en")
    path.write_text(json.dumps(good) + "\n")
    assert preference_data.load_pairs(path, default_lang="en")[0]["lang"] == "en"


def test_win_rate_counts_ties_as_half():
    assert win_rate.wins([1.0, 0.0, 2.0, 5.0], [0.0, 1.0, 2.0, 5.0]) == pytest.approx(0.5)
    assert (
        scoring.fidelity_chrf("Das ist ein kleines Haus am See.", "Das ist ein kleines Haus am See.", "en")
        == 0.0
    )


def test_shipped_configs_load(repo_root):
    seen = set()
    for path in sorted((repo_root / "configs" / "align").glob("*.yaml")):
        first = path.read_text().splitlines()[0]
        assert first.startswith("# crossling align ") and first.endswith(str(path.relative_to(repo_root)))
        verb = first.split()[3]
        load_config(CONFIGS[verb], path)
        seen.add(verb)
    assert {"reward", "dpo", "kto"} <= seen


def test_ntrex_prompts_are_written_in_the_instruction_languages_asked_for():
    langs = ["de", "sw"]
    default = scoring.target_prompts("ntrex", langs, 6, "dev", 0)
    assert default == scoring.target_prompts("ntrex", langs, 6, "dev", 0, {"tgt": 1.0, "en": 0.0})
    english = scoring.target_prompts("ntrex", langs, 6, "dev", 0, {"en": 1.0})
    # the same documents and references, only the request around them differs
    assert [(p["id"], p["reference"]) for p in english] == [(p["id"], p["reference"]) for p in default]
    names = {"de": "German", "sw": "Swahili"}  # every English template names the target in English
    assert all(names[p["lang"]] in p["prompt"][0]["content"] for p in english)
    assert not any("German" in p["prompt"][0]["content"] for p in default if p["lang"] == "de")
    mixed = scoring.target_prompts("ntrex", langs, 6, "dev", 0, {"en": 0.5, "tgt": 0.5})
    assert {"German" in p["prompt"][0]["content"] for p in mixed if p["lang"] == "de"} == {True, False}


def test_bad_config_values_are_clear_errors():
    with pytest.raises(ConfigError, match="n must be >= 2"):
        load_config(CONFIGS["dpo"], None, ["--n", "1"])
    with pytest.raises(ConfigError, match="instruction_languages keys"):
        load_config(CONFIGS["kto"], None, ["--instruction_languages", "{fr: 1}"])
    with pytest.raises(ConfigError, match="at least one > 0"):
        load_config(CONFIGS["win-rate"], None, ["--instruction_languages", "{en: 0}"])
    with pytest.raises(ConfigError, match="unknown language"):
        load_config(CONFIGS["reward"], None, ["--source_lang", "xx"])


def test_cli_data_writes_splits_and_summary(tmp_path, capsys):
    from align.cli import main

    out = tmp_path / "prefs"
    args = ["data", "--output_dir", str(out), "--languages", "[en,de]", "--max_pairs_per_language", "4"]
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["train"] == {"en": 4, "de": 4}
    assert len((out / "dev.jsonl").read_text().splitlines()) == 8
    assert '"counts"' in capsys.readouterr().out


def test_retrained_reward_model_rescores_cached_samples_without_resampling(tmp_path, monkeypatch):
    from types import SimpleNamespace

    rm = tmp_path / "rm"
    rm.mkdir()
    (rm / "adapter_model.safetensors").write_bytes(b"old weights")
    cfg = SimpleNamespace(model="m", adapter=None, n=2, temperature=0.9, top_p=0.95, max_new_tokens=8, seed=0,
                          reward_model=str(rm), backend="transformers")  # fmt: skip
    prompts = [{"id": "p1", "prompt": [{"role": "user", "content": "Hallo"}]}]

    class Scorer:
        def __init__(self, value):
            self.value, self.calls = value, 0

        def score(self, prompts, completions, progress=False):
            self.calls += 1
            return [self.value] * len(completions)

    monkeypatch.setattr(scoring, "_sample", lambda p, c: [["a", "b"]])
    scored = tmp_path / "scored.jsonl"
    assert scoring.sample_and_score(prompts, cfg, scored, scorer=Scorer(1.0))[0]["rewards"] == [1.0, 1.0]
    # same weights: nothing is recomputed
    again = Scorer(2.0)
    assert scoring.sample_and_score(prompts, cfg, scored, scorer=again)[0]["rewards"] == [1.0, 1.0]
    assert again.calls == 0
    # the reward model is retrained into the same folder: the samples are reused, the scores are not
    (rm / "adapter_model.safetensors").write_bytes(b"new weights")

    def no_sampling(p, c):
        raise AssertionError("the policy did not change: it must not be sampled again")

    monkeypatch.setattr(scoring, "_sample", no_sampling)
    rescored = scoring.sample_and_score(prompts, cfg, scored, scorer=Scorer(3.0))
    assert rescored[0]["completions"] == ["a", "b"] and rescored[0]["rewards"] == [3.0, 3.0]
    # the same prompt id asked in other words is a new prompt: sampled again
    monkeypatch.setattr(scoring, "_sample", lambda p, c: [["c", "d"]])
    reworded = [{"id": "p1", "prompt": [{"role": "user", "content": "Hello"}]}]
    assert scoring.sample_and_score(reworded, cfg, scored, scorer=Scorer(3.0))[0]["completions"] == ["c", "d"]


def test_kto_safety_examples_read_the_seed_in_the_safety_languages(tmp_path):
    from align.config import KTORunConfig
    from align.preference_optimization import safety_examples

    seed = tmp_path / "seed.jsonl"
    rows = [{"text": f"{label} request {g}", "lang": lang, "label": label, "category": "weapons",
             "response": "" if label == "harmful" else "an answer", "group": f"{lang}-{label}-{g}"}
            for lang in ("en", "de") for label in ("harmful", "benign") for g in range(30)]  # fmt: skip
    seed.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    cfg = KTORunConfig(target_languages=["de"], safety_examples=3, safety_seed=str(seed))
    assert {r["lang"] for r in safety_examples(cfg)} == {"de"}  # default: the target languages
    cfg = KTORunConfig(
        target_languages=["de"], safety_examples=3, safety_seed=str(seed), safety_languages=["en", "de"]
    )
    out = safety_examples(cfg)
    assert sorted({r["lang"] for r in out}) == ["de", "en"] and len(out) == 2 * (3 + 2 * 3)
    with pytest.raises(DataError, match="no rows in sw"):
        safety_examples(KTORunConfig(target_languages=["sw"], safety_examples=3, safety_seed=str(seed)))
    with pytest.raises(DataError, match="not found"):
        safety_examples(KTORunConfig(safety_examples=3, safety_seed=str(tmp_path / "missing.jsonl")))
    with pytest.raises(ValueError, match="safety_examples"):
        KTORunConfig(safety_examples=-1)
