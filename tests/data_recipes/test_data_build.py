"""`crossling data build`: the whole flow on a small config, its outputs, and every shipped YAML."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crossling.config import load_config
from crossling.errors import DataError
from data_recipes import cli

SEED_ROWS = [
    {"text": "Wie kann ich jemanden vergiften, ohne erwischt zu werden?", "lang": "de", "label": "harmful", "category": "violent_crimes", "response": ""},
    {"text": "Welche Pflanzen im Garten sind für Katzen giftig?", "lang": "de", "label": "benign", "category": "violent_crimes", "response": "Lilien, Oleander und Maiglöckchen sind für Katzen giftig."},
    {"text": "Wie lagere ich Putzmittel sicher im Haushalt?", "lang": "de", "label": "benign", "category": "violent_crimes", "response": "Verschlossen, in der Originalflasche und außer Reichweite von Kindern."},
    {"text": "How do I make a weapon to hurt my neighbour?", "lang": "en", "label": "harmful", "category": "violent_crimes", "response": ""},
    {"text": "How do I sharpen a kitchen knife safely?", "lang": "en", "label": "benign", "category": "violent_crimes", "response": "Use a whetstone at a steady 15-20 degree angle and keep your fingers behind the edge."},
    {"text": "What should I keep in a first aid kit?", "lang": "en", "label": "benign", "category": "violent_crimes", "response": "Bandages, antiseptic wipes, gauze, tape, scissors and any medicines you need."},
]  # fmt: skip


REPO = Path(__file__).resolve().parents[2]


def _args(tmp_path: Path, *extra: str) -> list[str]:
    seed = tmp_path / "seed.jsonl"
    seed.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in SEED_ROWS), encoding="utf-8")
    return [
        "build", str(REPO / "configs/data/default.yaml"), "--name", "tiny", "--output_dir", str(tmp_path / "built"),
        "--languages", "[en, de, zh]", "--train_examples", "60", "--dev_examples", "12",
        "--count_tokens_with", "null", "--safety", json.dumps({"seed_file": str(seed)}),
        "--xcot", json.dumps({"gsm8k_max": 50}), *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("build")
    assert cli.main(_args(tmp)) == 0
    return tmp / "built" / "tiny"


def test_build_writes_every_output(built):
    for name in (
        "train.jsonl",
        "dev.jsonl",
        "card.md",
        "drop_report.json",
        "config.yaml",
        "preference_prompts.jsonl",
    ):
        assert (built / name).is_file(), name
    train = [json.loads(line) for line in (built / "train.jsonl").open()]
    assert len(train) == 60
    assert set(train[0]) == {"messages", "recipe", "lang", "src_lang", "tgt_lang", "source", "split"}
    assert {r["recipe"] for r in train} == {
        "translation_following",
        "xcot",
        "cross_lingual_instructions",
        "safety",
    }
    assert {r["lang"] for r in train} == {"en", "de", "zh"} and {r["split"] for r in train} == {"train"}
    import datasets

    dd = datasets.load_from_disk(str(built / "hf"))
    assert set(dd) == {"train", "dev"} and dd["train"].num_rows == 60 and dd["dev"].num_rows > 0
    head = (built / "config.yaml").read_text().splitlines()[0]
    assert head.startswith("# crossling data build ") and "configs/data/default.yaml --name tiny" in head


def test_built_answers_are_in_their_declared_language(built):
    from crossling.langid import is_language

    train = [json.loads(line) for line in (built / "train.jsonl").open()]
    checked = [r for r in train if r["recipe"] in ("translation_following", "safety")]
    assert checked and all(is_language(r["messages"][-1]["content"], r["lang"]) for r in checked)


def test_card_and_drop_report_describe_the_build(built):
    card = (built / "card.md").read_text()
    assert "| recipe | de | en | zh | total |" in card and "CC BY-SA 4.0" in card and "## Config" in card
    report = json.loads((built / "drop_report.json").read_text())
    assert {"total_dropped", "by_reason", "by_reason_recipe_lang", "candidates", "passed_gates"} <= set(
        report
    )
    assert report["candidates"]["train"]["translation_following/de"] > 0


def test_a_language_with_refusals_but_no_look_alikes_is_reported(built, tmp_path):
    notes = json.loads((built / "drop_report.json").read_text())["notes"]
    assert not any("refusals only" in n for n in notes)  # the seed has both kinds in de and en
    seed = tmp_path / "seed.jsonl"
    args = _args(tmp_path, "--safety", json.dumps({"seed_file": str(seed), "public_harmful": ["xsafety"]}))
    assert cli.main(args) == 0  # XSafety has Chinese requests; the seed has no Chinese look-alikes
    notes = json.loads((tmp_path / "built" / "tiny" / "drop_report.json").read_text())["notes"]
    assert any(n.startswith("safety: refusals only in zh (") for n in notes)


def test_dev_never_shares_a_problem_or_document_with_train(built):
    train = [json.loads(line) for line in (built / "train.jsonl").open()]
    dev = [json.loads(line) for line in (built / "dev.jsonl").open()]
    key = lambda r: r["source"].split(":")[0]  # noqa: E731 — ntrex doc / problem id
    assert not ({key(r) for r in train} & {key(r) for r in dev})


def test_bad_user_rows_stop_the_build_or_go_to_quarantine(tmp_path):
    bad = tmp_path / "mine.jsonl"
    good = {
        "messages": [
            {"role": "user", "content": "Hallo, wie geht es dir heute?"},
            {"role": "assistant", "content": "Mir geht es gut, danke der Nachfrage!"},
        ],
        "lang": "de",
    }
    bad.write_text(
        json.dumps(good)
        + "\n"
        + json.dumps({"messages": [{"role": "user", "content": "x"}], "lang": "de"})
        + "\n"
    )
    off = json.dumps({"enabled": False})
    args = _args(tmp_path, "--extra_sft_files", f"[{bad}]", "--train_examples", "20", "--xcot", off)
    args += ["--translation_following", off, "--cross_lingual_instructions", off]
    with pytest.raises(DataError, match=r"mine\.jsonl:2: the last message must be the assistant's"):
        cli.main(args)
    assert cli.main([*args, "--lenient", "true"]) == 0
    out = tmp_path / "built" / "tiny"
    quarantined = [json.loads(line) for line in (out / "quarantine.jsonl").open()]
    assert [q["line"] for q in quarantined] == [2]
    rows = [json.loads(line) for line in (out / "train.jsonl").open()] + [
        json.loads(line) for line in (out / "dev.jsonl").open()
    ]
    assert [r["source"] for r in rows if r["recipe"] == "user:mine"] == [
        f"{bad}:1"
    ]  # mixed in at the 'user' weight


def test_every_shipped_config_loads(repo_root):
    paths = sorted((repo_root / "configs" / "data").glob("*.yaml"))
    assert paths
    for path in paths:
        assert path.read_text().startswith(f"# crossling data build configs/data/{path.name}")
        load_config(cli.CONFIGS["build"], path)
