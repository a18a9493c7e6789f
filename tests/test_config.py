"""The YAML -> dataclass loader every area uses."""

from dataclasses import dataclass, field
from typing import Literal

import pytest

from crossling.config import Verb, config_help, load_config, parse_cli, parse_overrides, save_config
from crossling.errors import ConfigError


@dataclass
class _Inner:
    depth: int = field(default=2, metadata={"help": "two levels down"})
    note: str = field(default="", metadata={"help": "text"})


@dataclass
class _Block:
    size: int = field(default=1, metadata={"help": "size"})
    inner: _Inner = field(default_factory=_Inner, metadata={"help": "a block in a block"})


@dataclass
class _Cfg:
    model: str = field(default="gemma3-270m", metadata={"help": "model id or path"})
    max_steps: int = field(default=10, metadata={"help": "steps"})
    learning_rate: float = field(default=1e-4, metadata={"help": "lr"})
    packing: bool = field(default=False, metadata={"help": "pack"})
    languages: list[str] = field(default_factory=lambda: ["de"], metadata={"help": "langs"})
    weights: dict[str, float] = field(default_factory=dict, metadata={"help": "mix weights"})
    engine: Literal["vllm", "transformers"] = field(default="vllm", metadata={"help": "engine"})
    adapter: str | None = field(default=None, metadata={"help": "adapter"})
    block: _Block = field(default_factory=_Block, metadata={"help": "a nested block"})
    optional: _Block | None = field(default=None, metadata={"help": "an optional block"})

    def __post_init__(self):
        if self.max_steps <= 0:
            raise ValueError("max_steps must be positive")


def test_yaml_then_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("# crossling x y c.yaml\nmax_steps: 5\nlearning_rate: 2e-4\nlanguages: [fr, sw]\n")
    cfg = load_config(
        _Cfg, p, ["--max_steps", "7", "--packing", "--weights", "{de: 0.5}", "--engine=transformers"]
    )
    assert cfg.max_steps == 7 and cfg.learning_rate == 2e-4 and cfg.packing is True
    assert cfg.languages == ["fr", "sw"] and cfg.weights == {"de": 0.5} and cfg.engine == "transformers"
    assert cfg.adapter is None


def test_comma_list_override():
    assert load_config(_Cfg, None, ["--languages", "de,fr,bn"]).languages == ["de", "fr", "bn"]


@pytest.mark.parametrize(
    "text, message",
    [
        ("max_stepz: 3\n", r"unknown field\(s\) max_stepz"),
        ("max_steps: many\n", "expected an integer"),
        ("engine: llama\n", "is not one of"),
        ("max_steps: -1\n", "max_steps must be positive"),
        ("- a\n- b\n", "expected a mapping"),
    ],
)
def test_bad_configs_name_file_and_field(tmp_path, text, message):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=message) as e:
        load_config(_Cfg, p)
    assert "bad.yaml" in str(e.value)


def test_missing_file_is_clear(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(_Cfg, tmp_path / "nope.yaml")


def test_override_syntax_errors():
    with pytest.raises(ConfigError, match="command line: expected --field value"):
        parse_overrides(["max_steps", "3"])


def test_save_roundtrip_and_help(tmp_path):
    cfg = load_config(_Cfg, None, ["--max_steps", "3"])
    save_config(cfg, tmp_path / "resolved.yaml", command="crossling x y")
    text = (tmp_path / "resolved.yaml").read_text()
    assert text.startswith("# crossling x y\n")
    assert load_config(_Cfg, tmp_path / "resolved.yaml") == cfg
    assert "--learning_rate" in config_help(_Cfg) and "lr" in config_help(_Cfg)


def test_dotted_overrides_at_any_depth_keep_the_yamls_other_keys(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("block:\n  size: 5\n  inner: {depth: 7, note: from yaml}\n")
    cfg = load_config(_Cfg, p, ["--block.inner.depth", "9", "--optional.inner.note=x", "--max-steps", "4"])
    assert (cfg.block.size, cfg.block.inner.depth, cfg.block.inner.note) == (5, 9, "from yaml")
    assert cfg.optional == _Block(inner=_Inner(note="x")) and cfg.max_steps == 4
    with pytest.raises(
        ConfigError,
        match=r"^command line: unknown field --block\.inner\.nope for _Inner; known: depth, note$",
    ):
        load_config(_Cfg, p, ["--block.inner.nope", "1"])
    with pytest.raises(ConfigError, match=r"^command line: --block\.inner\.depth: expected an integer"):
        load_config(_Cfg, p, ["--block.inner.depth", "deep"])
    p.write_text("block: 3\n")
    with pytest.raises(ConfigError, match="c.yaml: block is not a mapping"):
        load_config(_Cfg, p, ["--block.size", "2"])


def test_a_mapping_for_a_block_sets_the_fields_it_names_and_keeps_the_yamls_others(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("block:\n  size: 5\n  inner: {depth: 7, note: from yaml}\n")
    cfg = load_config(_Cfg, p, ["--block", "{inner: {depth: 9}}"])
    assert (cfg.block.size, cfg.block.inner.depth, cfg.block.inner.note) == (5, 9, "from yaml")
    assert load_config(_Cfg, p, ["--block", "{size: 2}"]).block == _Block(
        size=2, inner=_Inner(7, "from yaml")
    )
    with pytest.raises(ConfigError, match=r"--block: field .inner.: unknown field\(s\) nope for _Inner"):
        load_config(_Cfg, p, ["--block", "{inner: {nope: 1}}"])
    assert load_config(_Cfg, p, ["--optional", "null"]).optional is None  # not a mapping: replaced


def test_unknown_override_names_the_command_line_and_a_bad_yaml_key_the_file(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("max_steps: 3\n")
    with pytest.raises(
        ConfigError, match=r"^command line: unknown field --max_stepz for _Cfg; known: adapter, "
    ):
        load_config(_Cfg, p, ["--max_stepz", "1"])
    p.write_text("max_stepz: 3\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: unknown field\(s\) max_stepz for _Cfg"):
        load_config(_Cfg, p, ["--max_steps", "1"])
    # a value check fails on the merged values: both places are named (here the flag is the culprit)
    p.write_text("max_steps: 3\n")
    with pytest.raises(ConfigError, match=r"c\.yaml \+ command line: max_steps must be positive"):
        load_config(_Cfg, p, ["--max_steps", "-3"])
    with pytest.raises(ConfigError, match=r"^command line: max_steps must be positive"):
        load_config(_Cfg, None, ["--max_steps", "-3"])


def test_text_fields_keep_the_text_as_typed():
    cfg = load_config(_Cfg, None, ["--model", "0123", "--adapter", "1_000"])
    assert (cfg.model, cfg.adapter) == ("0123", "1_000")
    assert load_config(_Cfg, None, ["--adapter", "null"]).adapter is None
    assert parse_overrides(["--model", "0x1F"]) == {"model": 31}  # no config: plain YAML
    assert load_config(_Cfg, None, ["--model", "[not: yaml"]).model == "[not: yaml"
    with pytest.raises(ConfigError, match=r"^command line: --languages: '\[de' is not valid YAML \("):
        load_config(_Cfg, None, ["--languages", "[de"])


def test_parse_cli_verbs_config_path_args_and_help(tmp_path, capsys):
    verbs = {
        "go": Verb(_Cfg, "run it"),
        "show": Verb(None, "show a folder", args="DIR"),
        "say": Verb(_Cfg, "say texts", args="TEXT..."),
    }
    p = tmp_path / "c.yaml"
    p.write_text("max_steps: 3\n")
    cli = parse_cli("x", verbs, ["go", str(p), "--packing", "--max_steps=5"])
    assert (cli.verb, cli.path, cli.config.max_steps, cli.config.packing, cli.args) == (
        "go",
        str(p),
        5,
        True,
        [],
    )
    assert cli.command == f"x go {p} --packing --max_steps=5"
    assert parse_cli("x", verbs, ["--max_steps", "3"], default_verb="go").config.max_steps == 3
    assert parse_cli("x", verbs, ["show", "d"]).args == ["d"]
    assert parse_cli("x", verbs, ["say", str(p), "a", "b", "--packing"]).args == ["a", "b"]
    assert parse_cli("x", {"": Verb(_Cfg, "one")}, ["--max_steps", "2"]).config.max_steps == 2
    with pytest.raises(SystemExit) as e:
        parse_cli("x", verbs, ["go", "--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0 and "usage: x go [CONFIG] [--field value ...]" in out
    assert (
        "--block.inner.depth (int, default 2)" in out
        and "--optional.FIELD (_Block block, default None)" in out
    )
    for argv in ([], ["nope"], ["say", str(p)], ["show"], ["show", "d", "--max_steps", "1"]):
        with pytest.raises(SystemExit) as e:
            parse_cli("x", verbs, argv)
        assert e.value.code == 2 and "usage: x" in capsys.readouterr().err
