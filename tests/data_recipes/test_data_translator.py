"""Translator against a real OpenAI-compatible HTTP server started here (no client mocks), and the
local transformers backend on the tiny model; both cached so a second call costs nothing."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from crossling import corpora
from data_recipes.translator import Translator, TranslatorConfig, translate_problems


def _free_port() -> int:
    for port in range(18500, 18600):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise RuntimeError("no free port in 18500-18599")


@pytest.fixture(scope="module")
def stub_server():
    """A few lines of FastAPI: /v1/chat/completions answers '[<target>] <text>' and counts calls."""
    import uvicorn
    from fastapi import FastAPI

    app, calls = FastAPI(), []

    @app.post("/v1/chat/completions")
    def chat(body: dict):
        prompt = body["messages"][-1]["content"]
        head, _, text = prompt.partition("\n\n")
        target = head.split(" to ")[1].split(".")[0]
        calls.append(text)
        return {
            "id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": f"[{target}] {text}"}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }  # fmt: skip

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/v1", calls
    server.should_exit = True
    thread.join(timeout=5)


def test_endpoint_backend_translates_in_order_and_caches(stub_server, tmp_path):
    url, calls = stub_server
    cfg = TranslatorConfig(
        backend="endpoint", model="stub", base_url=url, cache_path=str(tmp_path / "c.sqlite"), batch_size=4
    )
    tr = Translator(cfg)
    texts = ["one apple", "two pears", "one apple", "three plums", "four figs", "five limes"]
    out = tr.translate(texts, "en", "de", progress=False)
    assert out == [f"[German] {t}" for t in texts]
    assert tr.calls == 5 and len(calls) == 5  # the duplicate was sent once
    again = Translator(cfg)  # a new process would see the same cache file: resumable
    assert again.translate(texts + ["six kiwis"], "en", "de", progress=False)[-1] == "[German] six kiwis"
    assert again.calls == 1 and len(calls) == 6
    assert tr.translate(["one apple"], "en", "fr", progress=False) == ["[French] one apple"]  # key has tgt


def test_translated_problems_feed_xcot(stub_server, tmp_path):
    from data_recipes.recipes import xcot

    url, _ = stub_server
    tr = Translator(TranslatorConfig(model="stub", base_url=url, cache_path=str(tmp_path / "c.sqlite")))
    problems = corpora.gsm8k_train()[:2]
    extra = translate_problems(tr, problems, ["en", "sw"])
    assert extra[problems[0]["id"]]["sw"]["question"].startswith("[Swahili] ")
    rows = xcot.build(xcot.XcotConfig(use_mgsm_exemplars=False, gsm8k_max=0), ["en", "sw"], extra=extra)
    assert {r["lang"] for r in rows} == {"en", "sw"}
    assert all(corpora.last_number(r["messages"][-1]["content"]) == r["_answer"] for r in rows)


def test_endpoint_down_is_a_clear_error(tmp_path):
    from crossling.errors import CrosslingError

    cfg = TranslatorConfig(
        model="m", base_url="http://127.0.0.1:18599/v1", cache_path=str(tmp_path / "c.sqlite"), timeout_s=2
    )
    with pytest.raises(CrosslingError, match="translator endpoint"):
        Translator(cfg).translate(["hello"], "en", "de", progress=False)


def test_transformers_backend_runs_locally_and_caches(tiny_model_dir, tmp_path):
    cfg = TranslatorConfig(
        backend="transformers",
        model=str(tiny_model_dir),
        cache_path=str(tmp_path / "c.sqlite"),
        max_new_tokens=4,
        batch_size=2,
    )
    tr = Translator(cfg)
    out = tr.translate(["Hello world", "Good morning", "Hello world"], "en", "de", progress=False)
    assert len(out) == 3 and out[0] == out[2] and tr.calls == 2
    assert Translator(cfg).translate(["Good morning"], "en", "de", progress=False) == [out[1]]
