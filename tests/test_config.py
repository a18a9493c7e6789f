"""The YAML -> dataclass loader every area uses."""

from dataclasses import dataclass, field
from typing import Literal

import pytest

from crossling.config import config_help, load_config, parse_overrides, save_config
from crossling.errors import ConfigError


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
    with pytest.raises(ConfigError, match="expected --field value"):
        parse_overrides(["max_steps", "3"])


def test_save_roundtrip_and_help(tmp_path):
    cfg = load_config(_Cfg, None, ["--max_steps", "3"])
    save_config(cfg, tmp_path / "resolved.yaml", command="crossling x y")
    text = (tmp_path / "resolved.yaml").read_text()
    assert text.startswith("# crossling x y\n")
    assert load_config(_Cfg, tmp_path / "resolved.yaml") == cfg
    assert "--learning_rate" in config_help(_Cfg) and "lr" in config_help(_Cfg)
