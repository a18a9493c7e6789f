"""Shipped eval configs load and validate; config mistakes are clear one-line errors; the CLI's
`report` verb re-renders from results.json; tasks build their prompts from the shipped data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crossling.cli import main as crossling_main
from crossling.config import load_config
from crossling.errors import ConfigError
from evaluation.cli import CONFIGS
from evaluation.config import TASK_NAMES, EvalConfig
from evaluation.runner import build_all, build_tasks, check_models
from evaluation.tasks import TASKS, ReportTask, Task

REPO = Path(__file__).resolve().parents[2]
SHIPPED = sorted((REPO / "configs/eval").glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_configs_load_and_name_their_command(path):
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first == f"# crossling eval run configs/eval/{path.name}"
    cfg = load_config(CONFIGS["run"], path)
    assert cfg.models and cfg.tasks


def test_default_config_builds_every_task_from_shipped_data(monkeypatch):
    monkeypatch.chdir(REPO)
    cfg = load_config(EvalConfig, REPO / "configs/eval/default.yaml")
    items = {t.name: t.items() for t in build_tasks(cfg)}
    assert len(items["language_fidelity"]) == 10 * (12 + 4)
    assert len(items["translation"]) == 10 * 16  # the win-rate prompts: >= 160
    assert len(items["mgsm"]) == 8 * 8  # MGSM has no ar or hi
    assert {i.max_new_tokens for i in items["mgsm"]} == {cfg.mgsm_direct_max_new_tokens} == {16}
    assert len(items["safety"]) == 5 * (48 + 20)  # mean intervals of about ±5 points
    ids = [i.id for i in items["translation"]]
    assert len(ids) == len(set(ids))
    # NTREX test documents only: no translation prompt uses a train or dev sentence.
    from crossling.corpora import ntrex_line_ids

    test_lines = {f"ntrex-{i}" for i in ntrex_line_ids("test")}
    assert {i.split(":")[0] for i in ids} <= test_lines


def test_registry_holds_every_task_the_config_accepts():
    assert tuple(TASKS) == TASK_NAMES
    cfg = EvalConfig()  # every reporting task by default; held_out (dev rows, for choosing) on request
    assert cfg.tasks == [t for t in TASK_NAMES if t != "held_out"]
    cfg.tasks = list(TASK_NAMES)
    generating, reports = build_all(cfg)
    built = {t.name: t for t in [*generating, *reports]}
    assert list(built) == list(TASKS)  # each builder makes the task its registry name says
    assert all(isinstance(t, Task) for t in generating) and [t.name for t in reports] == ["reward"]
    assert isinstance(built["reward"], ReportTask) and not isinstance(built["reward"], Task)
    only = build_all(EvalConfig(tasks=["mgsm", "language_fidelity"]))
    assert [t.name for t in only[0]] == ["language_fidelity", "mgsm"] and only[1] == []  # registry order
    from evaluation.report import HEADLINE

    assert {prefix for spec in TASKS.values() for prefix in spec.columns} == set(HEADLINE)


def test_reward_task_reads_the_report_once_into_top_level_results(tmp_path):
    from evaluation.tasks.reward_transfer import RewardTransfer

    missing = tmp_path / "absent.json"
    assert RewardTransfer(str(missing)).results() == {
        "reward_model": None,
        "reward_model_missing": f"{missing} not found (run the align reward stage)",
    }
    assert RewardTransfer(None).results() == {}
    path = tmp_path / "transfer.json"
    path.write_text(json.dumps({"de": 0.5}))
    assert RewardTransfer(str(path)).results()["reward_model"]["reward_transfer"]["mean"] == {"accuracy": 0.5}


class StubFilter:
    def check(self, text: str, role: str = "user"): ...


def test_safety_filter_spec():
    from evaluation.tasks import safety as safety_task

    # `auto` is crossling's own filter with the shipped policy (what `make serve` runs): the guard
    # model decides user input, not SafetyConfig()'s bare defaults (the frozen-encoder stage)
    auto = safety_task.load_filter("auto")
    assert auto.guard_model is not None and auto.semantic is None
    assert safety_task.load_filter("none") is None and safety_task.load_filter(None) is None
    assert type(safety_task.load_filter(f"{__name__}:StubFilter")).__name__ == "StubFilter"  # a user's own
    with pytest.raises(ConfigError, match="module:attr"):
        safety_task.load_filter("SafetyFilter")
    with pytest.raises(ConfigError, match="cannot be imported"):
        safety_task.load_filter("no_such_module_here:Filter")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (["--tasks", "[fidelity]"], "unknown task"),
        (["--languages", "[xx]"], "unknown language"),
        (["--models", "[{name: a}, {name: a}]"], "distinct names"),
        (["--batch_size", "many"], "expected an integer"),
        (["--mgsm_variants", "[cot]"], None),  # checked when tasks are built
    ],
)
def test_config_errors_are_clear(override, message):
    if message is None:
        cfg = load_config(EvalConfig, None, override)
        with pytest.raises(ConfigError, match="unknown variant"):
            build_tasks(cfg)
        return
    with pytest.raises(ConfigError, match=message):
        load_config(EvalConfig, None, override)


def test_missing_adapter_fails_or_is_reported(tmp_path):
    models = "[{name: base}, {name: sft, adapter: " + str(tmp_path / "nope") + "}]"
    cfg = load_config(EvalConfig, None, ["--models", models])
    with pytest.raises(ConfigError, match="does not exist"):
        check_models(cfg)
    cfg = load_config(EvalConfig, None, ["--models", models, "--skip_missing_adapters", "true"])
    run, skipped = check_models(cfg)
    assert [m.name for m in run] == ["base"] and "sft" in skipped


def test_cli_report_rerenders_and_errors_are_one_line(tmp_path, capsys):
    results = {
        "name": "t", "created": "now", "languages": ["de"], "models": [], "skipped_models": {}, "lm_eval": {},
        "timing_s": {"a": 1.0, "b": 2.0},
        "scores": {
            "a": {"language_fidelity": {"per_language": {"de": {"fidelity": 0.5, "n": 2}}, "mean": {"fidelity": 0.5}}},
            "b": {"language_fidelity": {"per_language": {"de": {"fidelity": 1.0, "n": 2}}, "mean": {"fidelity": 1.0}}},
        },
    }  # fmt: skip
    (tmp_path / "results.json").write_text(json.dumps(results))
    assert crossling_main(["eval", "report", str(tmp_path)]) == 0
    report = (tmp_path / "report.md").read_text()
    assert "| language_fidelity fidelity % | 50.0 | 100.0 |" in report
    assert "b: language fidelity 100.0 % (target ≥ 95 %): met" in report
    assert (tmp_path / "summary.png").read_bytes()[:4] == b"\x89PNG"
    assert crossling_main(["eval", str(tmp_path / "missing.yaml")]) == 2
    assert "config file not found" in capsys.readouterr().err


def test_reward_report_reads_aligns_transfer_json(tmp_path):
    from evaluation.tasks.reward_transfer import read_reward_report

    assert read_reward_report(tmp_path / "absent.json") is None
    path = tmp_path / "transfer.json"
    path.write_text(
        json.dumps(
            {
                "source_lang": "en",
                "languages": {
                    "en": {"n": 4, "accuracy": 0.75, "mean_margin": 0.3, "by_kind": {}},
                    "de": {"n": 4, "accuracy": 0.5, "mean_margin": 0.1, "by_kind": {}},
                },
            }
        )
    )
    scores = read_reward_report(path)["reward_transfer"]
    assert scores["per_language"] == {"en": {"accuracy": 0.75, "n": 4}, "de": {"accuracy": 0.5, "n": 4}}
    assert scores["mean"] == {"accuracy": 0.625}


def test_bad_prompt_file_names_file_and_line(tmp_path):
    from crossling.errors import DataError
    from evaluation.tasks.language_fidelity import LanguageFidelity

    path = tmp_path / "prompts.jsonl"
    path.write_text(
        '{"id": "a", "kind": "native", "lang": "de", "target_lang": "de", "prompt": "Hallo"}\n{"id": "b"}\n'
    )
    with pytest.raises(
        DataError, match=r"prompts.jsonl:2: missing field\(s\) kind, lang, prompt, target_lang"
    ):
        LanguageFidelity(str(path), ["de"]).items()
    path.write_text('{"id": "a", "kind": "native", "lang": "de", "target_lang": "de", "prompt": "Hallo"}\n')
    with pytest.raises(DataError, match="fewer than 3 native prompt"):
        LanguageFidelity(str(path), ["de"], native_per_language=3).items()


def test_target_check_reports_every_bar_with_its_interval():
    from evaluation.report import target_check

    def sub(key, value, ci=None, per=None):
        return {"mean": {key: value}, "per_language": per or {}, **({"ci": {key: ci}} if ci else {})}

    results = {
        "scores": {
            "base": {"ntrex_en-xx_0shot": sub("chrf", 5.0, per={"de": {"chrf": 5.0}, "sw": {"chrf": 9.0}})},
            "kto": {
                "language_fidelity": sub("fidelity", 0.94, [0.90, 0.97]),
                "ntrex_en-xx_0shot": sub("chrf", 21.0, per={"de": {"chrf": 30.0}, "sw": {"chrf": 8.0}}),
                "multijail": sub("refusal", 0.6, [0.5, 0.7]),
                "benign": sub("over_refusal", 0.04, [0.0, 0.1]),
            },
        },
        "win_rates": {"kto:sft": {"prompts": 160, "fidelity_chrf": {"win_rate": 0.58, "ci": [0.51, 0.65]}}},
    }
    checks = "\n".join(target_check(results))
    assert "kto: language fidelity 94.0 % [90.0, 97.0] (target ≥ 95 %): NOT met" in checks
    assert "not above base in sw): NOT met" in checks  # 21 >= 20, but sw fell below base
    assert "refusal without the filter 60.0 % [50.0, 70.0], benign over-refusal 4.0 % [0.0, 10.0]" in checks
    assert "(targets ≥ 50 % and ≤ 5 %): met" in checks
    assert (
        "kto over sft: win rate 58.0 % [51.0, 65.0] on 160 prompts, fidelity_chrf judge (target > 55 %): met"
        in checks
    )
