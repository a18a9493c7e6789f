"""The `crossling` front door, and the one command-line parser (``parse_cli``) every area CLI uses."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from align import cli as align_cli
from crossling import model_cli
from crossling.cli import AREAS, main
from crossling.errors import ConfigError
from data_recipes import cli as data_cli
from evaluation import cli as eval_cli
from safety import cli as safety_cli
from serve import cli as serve_cli
from serve.ui import cli as ui_cli
from sft import cli as sft_cli
from sft import export_cli

REPO = Path(__file__).resolve().parents[1]


def test_help_lists_every_area(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(area in out for area in AREAS)


def test_unknown_area_is_an_error(capsys):
    assert main(["frobnicate"]) == 2
    assert "unknown area" in capsys.readouterr().err


def test_user_errors_print_one_line_not_a_traceback(tmp_path):
    # `python -m crossling` reaches the same entry point as the console script.
    proc = subprocess.run(
        [sys.executable, "-m", "crossling", "model", "path", "--cache", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1 and str(tmp_path) in proc.stdout
    assert "Traceback" not in proc.stderr


# --- every area CLI parses `VERB [CONFIG] [ARGS] [--field value ...]` with crossling.config.parse_cli ---

AREA_CLIS = {
    "data": data_cli,
    "sft": sft_cli,
    "align": align_cli,
    "eval": eval_cli,
    "safety": safety_cli,
    "serve": serve_cli,
    "ui": ui_cli,
    "model": model_cli,
    "export": export_cli,
}

# (area, argv, field): an int field given right after the verb is a field, not the config path
INT_OVERRIDES = [
    ("data", ["build", "--seed", "3"], "seed"),
    ("sft", ["train", "--seed", "3"], "seed"),
    ("sft", ["average", "--last", "3", "--run", "runs/x", "--output", "runs/avg"], "last"),
    *[("align", [verb, "--seed", "3"], "seed") for verb in ("data", "reward", "transfer", "dpo", "kto", "win-rate")],
    ("eval", ["run", "--seed", "3"], "seed"),
    ("eval", ["--seed", "3"], "seed"),  # `run` is eval's default verb
    ("safety", ["train", "--epochs", "3"], "epochs"),
    ("safety", ["train-semantic", "--seed", "3"], "seed"),
    ("safety", ["train-guard", "--n_layers", "3"], "n_layers"),
    ("safety", ["compare-guards", "--bootstrap", "3"], "bootstrap"),
    ("export", ["gguf", "--exact_tokens", "3"], "exact_tokens"),
    ("serve", ["--port", "3"], "port"),
    ("ui", ["--port", "3"], "port"),
]  # fmt: skip


def test_every_verb_with_a_config_is_covered():
    covered = {(area, argv[0] if argv[0] in AREA_CLIS[area].VERBS else "") for area, argv, _ in INT_OVERRIDES}
    covered |= {("safety", "check"), ("sft", "merge")}  # check: the nested test; merge: no int field
    covered |= {("model", verb) for verb in model_cli.VERBS}  # no int field: test_model_flags
    wanted = {(a, v) for a, m in AREA_CLIS.items() for v, spec in m.VERBS.items() if spec.config is not None}
    assert wanted <= covered


@pytest.mark.parametrize(
    "area, argv, name", INT_OVERRIDES, ids=[f"{a}-{argv[0]}" for a, argv, _ in INT_OVERRIDES]
)
def test_int_field_after_the_verb_is_not_the_config_path(area, argv, name):
    cli = AREA_CLIS[area].parse(argv)
    assert cli.path is None and getattr(cli.config, name) == 3
    assert cli.command.endswith(" ".join(argv[1:] if argv[0] == cli.verb else argv))


def test_eval_default_verb_and_the_recorded_command():
    cli = eval_cli.parse(["--seed", "3", "--name=x"])
    assert (cli.verb, cli.config.seed, cli.config.name) == ("run", 3, "x")
    assert cli.command == "crossling eval run --seed 3 --name=x"


NESTED = [
    ("serve", [f"{REPO}/configs/serve/default.yaml"], "limits", "max_n", "4", 4, "max_prompt_tokens", 3072),
    ("safety", ["check", f"{REPO}/configs/safety/semantic.yaml", "ein Text", "zwei"], "semantic", "threshold",
     "0.8", 0.8, "model", "gemma3-270m"),
    ("data", ["build", f"{REPO}/configs/data/default.yaml"], "gates", "min_chars", "5", 5, "max_chars", 1200),
]  # fmt: skip


@pytest.mark.parametrize(
    "area, argv, block, name, raw, value, kept, kept_value", NESTED, ids=[n[0] for n in NESTED]
)
def test_dotted_override_is_merged_into_the_yaml_block(area, argv, block, name, raw, value, kept, kept_value):
    cli = AREA_CLIS[area].parse([*argv, f"--{block}.{name}", raw])
    nested = getattr(cli.config, block)
    assert getattr(nested, name) == value
    assert getattr(nested, kept) == kept_value  # the YAML's other keys of the block are kept
    if area == "safety":  # `check` needs its CONFIG; the texts follow it
        assert cli.args == ["ein Text", "zwei"]
    else:  # no YAML: the block is built from its defaults and the override
        verb = argv[:1] if area == "data" else []
        no_yaml = AREA_CLIS[area].parse([*verb, f"--{block}.{name}={raw}"])
        assert getattr(getattr(no_yaml.config, block), name) == value
    with pytest.raises(
        ConfigError, match=rf"^command line: unknown field --{block}\.nope for \w+; known: .*{name}"
    ):
        AREA_CLIS[area].parse([*argv, f"--{block}.nope", "1"])


def test_dotted_override_of_a_non_block_and_into_an_optional_block():
    with pytest.raises(ConfigError, match=r"command line: --port\.x: port is int, not a block of fields"):
        serve_cli.parse(["--port.x", "1"])
    cfg = data_cli.parse(["build", "--translator.model", "m", "--translator.backend", "transformers"]).config
    assert (cfg.translator.model, cfg.translator.backend) == ("m", "transformers")


def test_unknown_flag_is_blamed_on_the_command_line_not_the_yaml(tmp_path):
    yaml_path = f"{REPO}/configs/sft/gemma3-270m_qlora.yaml"
    with pytest.raises(ConfigError) as e:
        sft_cli.parse(["train", yaml_path, "--no_such_flag", "1"])
    assert str(e.value).startswith("command line: unknown field --no_such_flag for SFTRunConfig; known: ")
    assert "yaml" not in str(e.value)
    with pytest.raises(ConfigError, match=r"^command line: --seed: expected an integer, got 'many'"):
        sft_cli.parse(["train", yaml_path, "--seed", "many"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("no_such_key: 1\n")
    with pytest.raises(
        ConfigError, match=rf"^{re.escape(str(bad))}: unknown field\(s\) no_such_key for SFTRunConfig"
    ):
        sft_cli.parse(["train", str(bad), "--seed", "3"])
    bad.write_text("limits: {max_qeue: 3}\n")
    with pytest.raises(
        ConfigError,
        match=rf"^{re.escape(str(bad))}: field 'limits': unknown field\(s\) max_qeue for LimitsConfig",
    ):
        serve_cli.parse([str(bad), "--limits.max_n", "4"])


def test_model_flags():
    cli = model_cli.parse(["prepare", "--no-verify", "--cache", "0123"])
    assert (cli.config.no_verify, cli.config.force, cli.config.cache) == (True, False, "0123")
    assert model_cli.parse(["path"]).config.cache is None


def test_positional_words_and_verbs_without_a_config(capsys):
    cli = eval_cli.parse(["report", "results/x"])
    assert (cli.verb, cli.config, cli.args) == ("report", None, ["results/x"])
    assert safety_cli.parse(["build-seed"]).config is None
    for module, argv in [
        (eval_cli, ["report"]),  # RESULTS_DIR missing
        (eval_cli, ["report", "a", "b"]),
        (safety_cli, ["check", f"{REPO}/configs/safety/default.yaml"]),  # TEXT... missing
        (safety_cli, ["build-seed", "--seed", "3"]),
        (model_cli, ["path", "somewhere"]),
    ]:
        with pytest.raises(SystemExit) as e:
            module.parse(argv)
        assert e.value.code == 2
        assert "usage: " in capsys.readouterr().err


def test_help_lists_verbs_then_every_field_and_unknown_verbs_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        main(["safety", "--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0 and all(verb in out for verb in safety_cli.VERBS)
    with pytest.raises(SystemExit) as e:
        main(["safety", "check", "-h"])
    out = capsys.readouterr().out
    assert e.value.code == 0 and "usage: crossling safety check CONFIG TEXT..." in out
    assert "--semantic.threshold (float | None, default None)" in out and "--window_chars" in out
    with pytest.raises(SystemExit) as e:
        serve_cli.parse(["--help"])
    assert e.value.code == 0 and "--limits.max_queue (int" in capsys.readouterr().out
    for area in ("sft", "data", "align", "model"):
        with pytest.raises(SystemExit) as e:
            main([area, "frobnicate"])
        err = capsys.readouterr().err
        assert e.value.code == 2 and "unknown verb 'frobnicate'" in err and f"usage: crossling {area}" in err


def test_front_door_prints_config_errors_as_one_line(capsys):
    assert main(["data", "build", "--gates.min_charz", "5"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        "crossling data: error: command line: unknown field --gates.min_charz for GateConfig"
    )
