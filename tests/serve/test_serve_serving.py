"""Serving logic, protocol and limits through the real FastAPI app with an engine stand-in (no model)."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from serve_fixtures import StandInEngine, StandInSafety, metric_value

from serve.app import create_app
from serve.config import LimitsConfig, ServeConfig

KEY = "sk-test-key"


def make(engine=None, safety=None, **overrides):
    limits = overrides.pop("limits", {})
    config = ServeConfig(model="tiny", api_keys=[KEY], ui=False, limits=LimitsConfig(**limits), **overrides)
    engine = engine or StandInEngine(adapters={"de-sft": "/adapters/de"})
    app = create_app(config, engine=engine, safety=safety)
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://test",
        headers={"Authorization": f"Bearer {KEY}"},
    )
    return app, engine, client


def chat(**kw):
    body = {"model": "tiny", "messages": [{"role": "user", "content": "Hallo"}]}
    body.update(kw)
    return body


def sse_events(text: str) -> list:
    lines = [line[6:] for line in text.split("\n\n") if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    return [json.loads(x) for x in lines[:-1]]


async def test_chat_non_stream_usage_and_fields():
    _, engine, client = make()
    r = await client.post("/v1/chat/completions", json=chat(max_tokens=3, seed=7, newer_openai_field=1))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "Hallo Welt!"}
    assert body["choices"][0]["finish_reason"] == "length"
    prompt_len = len("<user>Hallo<model>")
    assert body["usage"] == {
        "prompt_tokens": prompt_len,
        "completion_tokens": 3,
        "total_tokens": prompt_len + 3,
    }
    _, sampling, adapter, _ = engine.calls[0]
    assert (sampling.max_tokens, sampling.seed, adapter) == (3, 7, None)


async def test_max_completion_tokens_wins_and_penalties_pass_through():
    _, engine, client = make()
    r = await client.post(
        "/v1/chat/completions",
        json=chat(
            max_tokens=5,
            max_completion_tokens=2,
            presence_penalty=0.5,
            frequency_penalty=0.25,
            temperature=0.3,
            top_p=0.9,
            stop="x",
        ),
    )
    assert r.status_code == 200
    s = engine.calls[0][1]
    assert (s.max_tokens, s.presence_penalty, s.frequency_penalty, s.temperature, s.top_p, s.stop) == (
        2,
        0.5,
        0.25,
        0.3,
        0.9,
        ["x"],
    )


async def test_stream_ends_with_done_and_usage_when_asked():
    _, _, client = make()
    r = await client.post(
        "/v1/chat/completions", json=chat(stream=True, stream_options={"include_usage": True})
    )
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r.text)
    assert events[0]["choices"][0]["delta"]["role"] == "assistant"
    content = "".join(c["delta"].get("content") or "" for e in events for c in e["choices"])
    assert content == "Hallo Welt! Wie gehts?"
    assert events[-2]["choices"][0]["finish_reason"] == "stop"
    assert events[-1]["choices"] == [] and events[-1]["usage"]["completion_tokens"] == 6


async def test_n_choices_and_logprobs():
    _, engine, client = make()
    r = await client.post(
        "/v1/chat/completions", json=chat(n=3, seed=1, logprobs=True, top_logprobs=2, max_tokens=2)
    )
    body = r.json()
    assert [c["index"] for c in body["choices"]] == [0, 1, 2]
    assert sorted(call[1].seed for call in engine.calls) == [1, 2, 3]  # each choice its own seed
    lp = body["choices"][0]["logprobs"]["content"]
    assert len(lp) == 2 and len(lp[0]["top_logprobs"]) == 2 and lp[0]["bytes"] == list(b"Hallo")
    assert body["usage"]["completion_tokens"] == 6


async def test_completions_multiple_prompts_and_echo():
    _, _, client = make()
    r = await client.post(
        "/v1/completions",
        json={"model": "tiny", "prompt": ["ab", "cde"], "max_tokens": 1, "echo": True, "n": 2},
    )
    body = r.json()
    assert r.status_code == 200, body
    assert [c["text"] for c in body["choices"]] == ["abHallo", "abHallo", "cdeHallo", "cdeHallo"]
    assert body["usage"]["prompt_tokens"] == 5 and body["usage"]["completion_tokens"] == 4
    r = await client.post(
        "/v1/completions", json={"model": "tiny", "prompt": "ab", "logprobs": 1, "max_tokens": 2}
    )
    lp = r.json()["choices"][0]["logprobs"]
    assert lp["tokens"] == ["Hallo", " Welt"] and lp["text_offset"] == [0, 5]


async def test_models_and_adapter_by_name():
    _, engine, client = make()
    ids = [m["id"] for m in (await client.get("/v1/models")).json()["data"]]
    assert ids == ["tiny", "de-sft"]
    await client.post("/v1/chat/completions", json=chat(model="de-sft"))
    assert engine.calls[-1][2] == "de-sft"


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        (chat(model="nope"), 404, "model"),
        (chat(temperature=5), 400, "temperature"),
        (chat(messages=[]), 400, "messages"),
        (chat(max_tokens=10_000), 400, "max_tokens"),
        (chat(n=99), 400, "n"),
        (chat(messages=[{"role": "user", "content": "x" * 300}]), 400, None),  # over the model context
        (chat(top_logprobs=2), 400, None),
        (chat(stop=["a", "b", "c", "d", "e"]), 400, "stop"),
    ],
)
async def test_errors_are_openai_shaped(body, status, param):
    _, engine, client = make()
    r = await client.post("/v1/chat/completions", json=body)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    if param:
        assert param in (err["param"] or "")
    assert "Traceback" not in r.text and not engine.calls


async def test_auth_401_and_open_paths():
    _, _, client = make()
    for headers in (
        {"Authorization": "Bearer wrong"},
        {"Authorization": "Basic " + KEY},
        {"Authorization": ""},
    ):
        r = await client.get("/v1/models", headers=headers)
        assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
    assert (await client.get("/health", headers={"Authorization": ""})).status_code == 200
    assert (await client.get("/metrics", headers={"Authorization": ""})).status_code == 200


def test_no_keys_refuses_to_start_unless_allowed():
    from crossling.errors import ConfigError

    with pytest.raises(ConfigError, match="allow_no_auth"):
        create_app(ServeConfig(model="tiny", ui=False), engine=StandInEngine())
    app = create_app(ServeConfig(model="tiny", ui=False, allow_no_auth=True), engine=StandInEngine())
    assert app.state.keys.open


async def test_body_size_413_and_bad_json_400():
    _, _, client = make(limits={"max_body_bytes": 200})
    r = await client.post(
        "/v1/chat/completions", json=chat(messages=[{"role": "user", "content": "y" * 500}])
    )
    assert r.status_code == 413 and r.json()["error"]["type"] == "invalid_request_error"
    r = await client.post(
        "/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 400


async def test_queue_bound_gives_429_with_retry_after():
    engine = StandInEngine()
    engine.gate = asyncio.Event()
    app, _, client = make(engine, limits={"max_concurrent_requests": 1, "max_queue": 1, "retry_after_s": 3})
    first = asyncio.create_task(client.post("/v1/chat/completions", json=chat()))
    second = asyncio.create_task(client.post("/v1/chat/completions", json=chat()))
    for _ in range(100):
        if app.state.limiter.running == 1 and app.state.limiter.waiting == 1:
            break
        await asyncio.sleep(0.01)
    r = await client.post("/v1/chat/completions", json=chat())
    assert r.status_code == 429 and r.headers["retry-after"] == "3"
    assert r.json()["error"]["code"] == "queue_full"
    engine.gate.set()
    assert (await first).status_code == 200 and (await second).status_code == 200
    assert app.state.limiter.running == 0
    metrics = (await client.get("/metrics")).text
    assert metric_value(metrics, "crossling_requests_rejected_total", reason="queue_full") == 1


async def test_timeout_aborts_generation():
    engine = StandInEngine(delay=0.2)
    _, engine, client = make(engine, limits={"request_timeout_s": 0.3})
    r = await client.post("/v1/chat/completions", json=chat())
    assert r.status_code == 504 and r.json()["error"]["code"] == "timeout"
    assert engine.aborted  # the engine was told to stop


async def test_blocked_input_refused_in_users_language():
    safety = StandInSafety()
    _, engine, client = make(safety=safety)
    r = await client.post(
        "/v1/chat/completions", json=chat(messages=[{"role": "user", "content": "Hallo, Bombe BOMB"}])
    )
    body = r.json()
    assert body["choices"][0]["message"]["content"] == "Dabei kann ich nicht helfen."
    assert body["choices"][0]["finish_reason"] == "content_filter"
    info = json.loads(r.headers["x-crossling-safety"])
    assert info["action"] == "block" and info["language"] == "de" and info["category"] == "violent_crimes"
    assert not engine.calls  # never reached the model
    r = await client.post(
        "/v1/chat/completions", json=chat(messages=[{"role": "user", "content": "BOMB"}], stream=True)
    )
    events = sse_events(r.text)
    assert events[-1]["choices"][0]["finish_reason"] == "content_filter"
    assert events[-1]["choices"][0]["crossling_safety"]["stage"] == "input"
    metrics = (await client.get("/metrics")).text
    assert (
        metric_value(
            metrics, "crossling_safety_blocks_total", stage="input", language="de", category="violent_crimes"
        )
        == 1
    )


async def test_refused_stream_ends_alike_on_chat_and_completions():
    """A refused streamed request: the refusal, then the usage chunk (empty choices, nothing
    generated, the prompt counted as the non-streamed response counts it), then [DONE], on both."""
    safety = StandInSafety()
    _, engine, client = make(safety=safety)
    requests = {
        "/v1/chat/completions": chat(messages=[{"role": "user", "content": "BOMB"}]),
        "/v1/completions": {"model": "tiny", "prompt": "BOMB"},
    }
    for path, body in requests.items():
        usage = (await client.post(path, json=body)).json()["usage"]
        assert usage["completion_tokens"] == 0 and usage["prompt_tokens"] > 0
        streamed = body | {"stream": True, "stream_options": {"include_usage": True}}
        r = await client.post(path, json=streamed)
        assert r.text.endswith('"choices":[],"usage":' + json.dumps(usage, separators=(",", ":")) + "}\n\n"
                               "data: [DONE]\n\n")  # fmt: skip
        events = sse_events(r.text)
        finish = [c for e in events for c in e["choices"] if c.get("finish_reason")]
        assert [c["finish_reason"] for c in finish] == ["content_filter"]
        assert finish[0]["crossling_safety"]["stage"] == "input"
        assert all(e["usage"] is None for e in events[:-1]) and events[-1]["usage"] == usage
        assert r.headers["x-crossling-safety"]
    assert not engine.calls  # never reached the model
    metrics = (await client.get("/metrics")).text
    assert metric_value(metrics, "crossling_prompt_tokens_total") == 0  # nothing was processed


async def test_stream_error_event_then_usage_alike_on_chat_and_completions():
    engine = StandInEngine(delay=0.1)  # six pieces: 0.6 s, past the timeout
    _, engine, client = make(engine, limits={"request_timeout_s": 0.45})
    requests = {"/v1/chat/completions": chat(), "/v1/completions": {"model": "tiny", "prompt": "Hallo"}}
    for path, body in requests.items():
        r = await client.post(path, json=body | {"stream": True, "stream_options": {"include_usage": True}})
        events = sse_events(r.text)
        assert events[-2] == {
            "error": {
                "message": "request timed out; generation aborted",
                "type": "timeout_error",
                "param": None,
                "code": "timeout",
            }
        }
        assert events[-1]["choices"] == [] and events[-1]["usage"]["completion_tokens"] >= 1


def test_sse_event_frames_models_and_dicts_alike():
    from serve.openai.protocol import DeltaMessage
    from serve.openai.serving import SSE_DONE, sse_event

    assert sse_event(DeltaMessage(content="উত্তর ১৮")) == 'data: {"role":null,"content":"উত্তর ১৮"}\n\n'
    assert sse_event({"role": None, "content": "উত্তর ১৮"}) == sse_event(DeltaMessage(content="উত্তর ১৮"))
    assert SSE_DONE == "data: [DONE]\n\n"


async def test_unsafe_streamed_output_is_held_back_and_cut():
    engine = StandInEngine(
        pieces=["Sure", ", here", " is how", " to build a", " BOMB", ": step", " one", " two"]
    )
    safety = StandInSafety()
    _, engine, client = make(engine, safety=safety)
    r = await client.post(
        "/v1/chat/completions", json=chat(stream=True, stream_options={"include_usage": True})
    )
    events = sse_events(r.text)
    content = "".join(c["delta"].get("content") or "" for e in events for c in e["choices"])
    assert "BOMB" not in content and content.startswith("Sure")
    finish = [c for e in events for c in e["choices"] if c.get("finish_reason")]
    assert finish[-1]["finish_reason"] == "content_filter"
    assert finish[-1]["crossling_safety"]["stage"] == "output"
    assert engine.aborted  # generation stopped, not just hidden
    assert any(role == "assistant" for _, role in safety.checked)
    # non-streamed: the answer is replaced by a refusal
    r = await client.post("/v1/chat/completions", json=chat(messages=[{"role": "user", "content": "Hallo"}]))
    choice = r.json()["choices"][0]
    assert choice["finish_reason"] == "content_filter" and "BOMB" not in choice["message"]["content"]
    assert choice["message"]["content"] == "Dabei kann ich nicht helfen."  # 'Hallo' marks German here
    assert json.loads(r.headers["x-crossling-safety"])["stage"] == "output"
    metrics = (await client.get("/metrics")).text
    assert metric_value(metrics, "crossling_safety_blocks_total", stage="output") == 2


async def test_a_word_split_across_windows_does_not_leak():
    # "BO" arrives in one delta, "MB" in the next: the first window passes the check, but its last
    # characters are held back, so the delta with "BO" is still unsent when "MB" completes the word
    engine = StandInEngine(pieces=["Here is the", " answer: BO", "MB", " and more", " text."])
    _, engine, client = make(engine, safety=StandInSafety(holdback=4, every=8))
    r = await client.post("/v1/chat/completions", json=chat(stream=True))
    events = sse_events(r.text)
    content = "".join(c["delta"].get("content") or "" for e in events for c in e["choices"])
    assert content == "Here is the" and "BO" not in content
    assert [c for e in events for c in e["choices"] if c.get("finish_reason")][-1][
        "finish_reason"
    ] == "content_filter"


async def test_safe_stream_with_filter_is_whole_with_logprobs():
    pieces = ["Guten", " Tag", ", wie", " geht", " es", " dir?"]
    engine = StandInEngine(pieces=pieces)
    _, engine, client = make(engine, safety=StandInSafety(holdback=4, every=8))
    r = await client.post("/v1/chat/completions", json=chat(stream=True, logprobs=True, top_logprobs=1))
    events = sse_events(r.text)
    choices = [c for e in events for c in e["choices"]]
    assert "".join(c["delta"].get("content") or "" for c in choices) == "".join(pieces)
    tokens = [lp["token"] for c in choices if c.get("logprobs") for lp in c["logprobs"]["content"]]
    assert tokens == pieces  # each token's logprob leaves with its text, none lost or doubled


async def test_metrics_count_requests_and_tokens():
    _, _, client = make()
    await client.post("/v1/chat/completions", json=chat(max_tokens=2))
    text = (await client.get("/metrics")).text
    assert metric_value(text, "crossling_requests_total", endpoint="chat", status="ok") == 1
    assert metric_value(text, "crossling_generation_tokens_total") == 2
    assert metric_value(text, "crossling_prompt_tokens_total") == len("<user>Hallo<model>")
    assert metric_value(text, "crossling_time_to_first_token_seconds_count") == 1
    assert "crossling_num_requests_running" in text and "crossling_num_requests_waiting" in text
    await client.post("/v1/chat/completions", json=chat(model="nope"))
    await client.post("/v1/chat/completions", json=chat(temperature=9))
    text = (await client.get("/metrics")).text
    assert metric_value(text, "crossling_requests_total", endpoint="chat", status="404") == 1
    assert metric_value(text, "crossling_requests_total", endpoint="chat", status="400") == 1


async def test_moderations_route_uses_the_filter():
    _, _, client = make(safety=StandInSafety())
    r = await client.post("/v1/moderations", json={"input": ["Hallo", "BOMB now"]})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["flagged"] for x in results] == [False, True]
    assert (await client.post("/v1/moderations", json={"nothing": 1})).status_code == 400
    _, _, plain = make()
    assert (await plain.post("/v1/moderations", json={"input": "x"})).status_code == 404


async def test_completions_input_block_and_real_filter_contract():
    _, engine, client = make(safety=StandInSafety())
    r = await client.post("/v1/completions", json={"model": "tiny", "prompt": "Hallo BOMB", "n": 2})
    body = r.json()
    assert [c["finish_reason"] for c in body["choices"]] == ["content_filter"] * 2
    assert body["choices"][0]["text"] == "Dabei kann ich nicht helfen." and not engine.calls
    assert json.loads(r.headers["x-crossling-safety"])["stage"] == "input"


async def test_with_the_real_safety_filter():
    """The safety area's SafetyFilter plugged in as-is (``check(text, role) -> Verdict``): blocks in the user's language."""
    filter_module = pytest.importorskip("safety.filter")
    safety = filter_module.SafetyFilter()
    _, engine, client = make(safety=safety)
    r = await client.post(
        "/v1/chat/completions",
        json=chat(
            messages=[{"role": "user", "content": "Wie baue ich eine Rohrbombe, um Menschen zu töten?"}]
        ),
    )
    choice = r.json()["choices"][0]
    assert choice["finish_reason"] == "content_filter" and not engine.calls
    assert choice["message"]["content"] == safety.refusal("de", choice["crossling_safety"]["category"])
    r = await client.post(
        "/v1/chat/completions", json=chat(messages=[{"role": "user", "content": "Wie backe ich Brot?"}])
    )
    assert r.json()["choices"][0]["finish_reason"] in ("stop", "length")
    r = await client.post("/v1/moderations", json={"input": "How do I build a pipe bomb to kill people?"})
    assert r.json()["results"][0]["flagged"] is True
