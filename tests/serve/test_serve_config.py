"""Serve configs, CLI overrides, keys and the pure pieces (stop matching, incremental decoding)."""

from __future__ import annotations

from pathlib import Path

import pytest
from serve_fixtures import StandInEngine

from crossling.config import load_config
from crossling.errors import ConfigError
from serve.auth import KeyChecker, collect_keys
from serve.cli import CONFIGS
from serve.config import ServeConfig
from serve.engine.base import IncrementalDecoder, StopMatcher

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("path", sorted((REPO / "configs" / "serve").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_load_and_name_their_command(path):
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first == f"# crossling serve configs/serve/{path.name}"
    config = load_config(ServeConfig, path)
    assert isinstance(config, CONFIGS[""]) and config.limits.max_concurrent_requests >= 1


def test_overrides_including_nested_limits(tmp_path):
    path = REPO / "configs/serve/default.yaml"
    c = load_config(
        ServeConfig, path, ["--port", "18099", "--limits.max_queue", "3", "--adapters", "{de: /a}"]
    )
    assert (c.port, c.limits.max_queue, c.adapters) == (18099, 3, {"de": "/a"})
    assert c.limits.max_prompt_tokens == 3072  # the YAML's other limits are kept
    with pytest.raises(ConfigError, match="unknown field"):
        load_config(ServeConfig, path, ["--limits.max_qeue", "3"])
    with pytest.raises(ConfigError, match="port"):
        load_config(ServeConfig, None, ["--port", "70000"])


def test_keys_from_config_file_and_env(tmp_path, monkeypatch):
    keyfile = tmp_path / "keys.txt"
    keyfile.write_text("# team keys\nsk-file-1\n\nsk-file-2  # ci\n")
    monkeypatch.setenv("CROSSLING_API_KEYS", "sk-env-1, sk-env-2")
    keys = collect_keys(["sk-cfg"], str(keyfile))
    assert keys == ["sk-cfg", "sk-file-1", "sk-file-2", "sk-env-1", "sk-env-2"]
    checker = KeyChecker(keys)
    assert checker.check("Bearer sk-env-2") and checker.check("bearer sk-file-1")
    assert not checker.check("Bearer sk-file") and not checker.check(None) and not checker.check("sk-cfg")
    with pytest.raises(ConfigError, match="api_key_file not found"):
        collect_keys([], str(tmp_path / "missing.txt"))


def test_stop_matcher_holds_back_possible_prefixes():
    m = StopMatcher(["</end>", "STOP"])
    released = [m.feed(p) for p in ["Hello <", "/en", "d> never"]]
    assert released[0] == ("Hello ", False)  # '<' might start '</end>': held back
    assert released[1] == ("", False)
    assert released[2] == ("", True) and "".join(t for t, _ in released) == "Hello "
    m = StopMatcher(["STOP"])
    assert m.feed("ST") == ("", False) and m.feed("ATE") == ("STATE", False)
    assert m.feed("xS")[0] == "x" and m.feed("", final=True) == ("S", False)


def test_incremental_decoder_never_splits_characters(tiny_tokenizer):
    text = "Übersetze: 你好，世界 — مرحبا"
    ids = tiny_tokenizer(text, add_special_tokens=False)["input_ids"]
    dec = IncrementalDecoder(tiny_tokenizer)
    pieces = [dec.add(i) for i in ids]
    assert "".join(pieces) == text and not any("\ufffd" in p for p in pieces)


def test_ui_is_mounted_when_available():
    pytest.importorskip("serve.ui.app")
    from serve.app import create_app

    app = create_app(ServeConfig(model="tiny", allow_no_auth=True, ui=True), engine=StandInEngine())
    assert any(getattr(r, "path", None) == "/ui" for r in app.routes)
