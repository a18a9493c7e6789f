"""The page is built with every control the issue asks for, and ``crossling ui`` parses its flags."""

from __future__ import annotations

import pytest

from serve.ui import answer_language
from serve.ui.cli import DEFAULT_BASE_URL, login_required, parse, resolve_api_key


@pytest.fixture(scope="module")
def page_config():
    from serve.ui.app import build_ui

    demo = build_ui("http://127.0.0.1:9/v1", "k")
    return demo.get_config_file()


def test_page_has_the_controls(page_config):
    ids = {c["props"].get("elem_id") for c in page_config["components"]}
    assert {"crossling-chatbot", "crossling-input", "crossling-model", "crossling-answer-lang"} <= ids
    assert {"crossling-status"} <= ids
    labels = {c["props"].get("label") for c in page_config["components"]}
    assert {"System prompt", "Temperature", "Top p", "Max tokens", "Answer in", "Model / adapter"} <= labels
    textbox = next(c for c in page_config["components"] if c["props"].get("elem_id") == "crossling-input")
    chatbot = next(c for c in page_config["components"] if c["props"].get("elem_id") == "crossling-chatbot")
    assert len(chatbot["props"]["examples"]) == len(answer_language.EXAMPLES)
    assert textbox["props"]["placeholder"]
    lang = next(c for c in page_config["components"] if c["props"].get("elem_id") == "crossling-answer-lang")
    assert len(lang["props"]["choices"]) == len(answer_language.choices())


def test_cli_defaults_and_key_from_environment(monkeypatch):
    args = parse([]).config
    assert (args.base_url, args.port, args.host) == (DEFAULT_BASE_URL, 7860, "127.0.0.1")
    monkeypatch.delenv("CROSSLING_API_KEY", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "from-openai")
    assert resolve_api_key(None) == "from-openai"
    monkeypatch.setenv("CROSSLING_API_KEY", "from-crossling")
    assert resolve_api_key(None) == "from-crossling"
    assert resolve_api_key("flag") == "flag"


def test_standalone_ui_beyond_loopback_asks_for_its_key(monkeypatch):
    """``crossling ui --host 0.0.0.0`` with a key: Gradio's login takes that key (any user name) and
    nothing else; on loopback, or without a key to protect, there is no login."""
    import socket

    import gradio as gr
    import httpx

    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home from the test
    assert login_required("127.0.0.1", "k") == {} and login_required("0.0.0.0", None) == {}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with gr.Blocks() as demo:
        gr.Markdown("hi")
    auth = login_required("0.0.0.0", "sk-ui-standalone")  # launched on loopback here, for the test
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **auth)
    try:
        base = demo.local_url
        assert httpx.get(base + "config", timeout=30).status_code == 401
        with httpx.Client(base_url=base, timeout=30) as browser:
            wrong = browser.post("login", data={"username": "anyone", "password": "sk-wrong"})
            assert wrong.status_code == 400 and browser.get("config").status_code == 401
            right = browser.post("login", data={"username": "anyone", "password": "sk-ui-standalone"})
            assert right.status_code == 200 and browser.get("config").status_code == 200
    finally:
        demo.close()


def test_cli_help_through_the_front_door(capsys):
    from crossling.cli import main

    with pytest.raises(SystemExit) as e:
        main(["ui", "--help"])
    assert e.value.code == 0
    assert "--base-url" in capsys.readouterr().out


def test_install_browser_script_is_a_no_op_once_installed(repo_root):
    import shutil
    import subprocess

    script = repo_root / "scripts" / "install_browser.sh"
    assert subprocess.run(["bash", "-n", str(script)], check=False).returncode == 0
    if not shutil.which("chromium"):
        pytest.skip("chromium not installed here: the script would run apt-get")
    done = subprocess.run([str(script)], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "already installed" in done.stdout
