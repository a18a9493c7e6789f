"""The real server on the llama.cpp engine (crossling in front of a llama-server subprocess), driven by the
official ``openai`` SDK: chat, streaming, stop strings, seeds, logprobs, usage, an adapter by name
(a GGUF LoRA picked per request), client disconnects aborting llama-server's sequence, the safety
filter cutting a stream, /health following the subprocess, and ``engine: auto``.

The model is a tiny random Gemma 3 with a SentencePiece-style tokenizer (tests/llamacpp_fixtures.py),
served as an f32 GGUF so its greedy text must be transformers' exactly."""

from __future__ import annotations

import asyncio
import time

import httpx
import openai
import pytest
from llamacpp_fixtures import build_tiny_spm_model, requires_llamacpp
from serve_fixtures import StandInSafety, metric_value, running_server, tiny_lora_config

from crossling import llamacpp, testing
from serve.app import create_app
from serve.config import ServeConfig
from serve.engine import auto_engine, build_engine
from serve.engine.base import render_chat
from serve.engine.llamacpp_engine import LlamaCppEngine, gguf_type

pytestmark = requires_llamacpp
KEY = "sk-crossling-llamacpp"
CHAT = [
    {"role": "user", "content": "Übersetze bitte ins Englische: Die Hauptstadt von Frankreich ist Paris."}
]


def free_port() -> int:
    return testing.free_port(18300, 18399)


def make_lora(model_dir, out_dir) -> str:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    config = LoraConfig(
        r=8, lora_alpha=64, target_modules=["q_proj", "v_proj", "o_proj"], init_lora_weights=False
    )
    get_peft_model(model, config).save_pretrained(out_dir)
    return str(out_dir)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    model = build_tiny_spm_model(tmp_path_factory.mktemp("tiny-spm"))
    return model, make_lora(model, tmp_path_factory.mktemp("lora") / "adapter")


@pytest.fixture(scope="module")
def server(tiny):
    model, adapter = tiny
    safety = StandInSafety(trigger="\x00never\x00")  # a trigger set per test (see the safety test)
    config = tiny_lora_config(model, adapter, KEY, engine="llamacpp", dtype="f32", max_batch_size=4)
    app = create_app(config, safety=safety)
    with running_server(app, free_port()) as base_url:
        yield base_url, app, safety


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=server[0], api_key=KEY, max_retries=0)


def engine_of(server) -> LlamaCppEngine:
    return server[1].state.serving.engine


def hf_greedy(model_dir, adapter: str | None, prompt_ids: list[int], n: int) -> str:
    """transformers' greedy continuation (the adapter merged), decoded: what llama.cpp must say."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    ids = torch.tensor([prompt_ids])
    with torch.inference_mode():
        out = model.generate(
            ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n, do_sample=False
        )
    return AutoTokenizer.from_pretrained(model_dir).decode(
        out[0, len(prompt_ids) :], skip_special_tokens=True
    )


def chat(client, model="tiny", **kw):
    kw.setdefault("max_tokens", 12)
    kw.setdefault("temperature", 0)
    kw.setdefault("extra_body", {"ignore_eos": True})
    return client.chat.completions.create(model=model, messages=CHAT, **kw)


def test_chat_is_transformers_greedy_text(server, client, tiny):
    resp = chat(client)
    engine = engine_of(server)
    prompt = render_chat(engine.tokenizer, CHAT)
    assert resp.choices[0].message.content == hf_greedy(tiny[0], None, prompt, 12).strip() or (
        resp.choices[0].message.content == hf_greedy(tiny[0], None, prompt, 12)
    )
    assert resp.usage.prompt_tokens == len(prompt) and resp.usage.completion_tokens == 12
    assert resp.choices[0].finish_reason == "length"


def test_stream_matches_full_answer_and_reports_usage(client):
    full = chat(client).choices[0].message.content
    stream = chat(client, stream=True, stream_options={"include_usage": True})
    pieces, usage, finish = [], None, None
    for chunk in stream:
        if chunk.choices:
            pieces.append(chunk.choices[0].delta.content or "")
            finish = chunk.choices[0].finish_reason or finish
        if chunk.usage:
            usage = chunk.usage
    assert "".join(pieces) == full
    assert finish == "length" and usage.completion_tokens == 12
    # several text chunks, not one at the end (the safety filter releases checked text in windows)
    assert len([p for p in pieces if p]) > 1


def test_stop_string_cuts_without_leaking(client):
    full = chat(client, max_tokens=24).choices[0].message.content
    stop = full[8:11]
    assert stop.strip(), full
    resp = chat(client, max_tokens=24, stop=[stop])
    assert resp.choices[0].message.content == full[: full.index(stop)]
    assert resp.choices[0].finish_reason == "stop"


def test_seed_reproduces_a_sample(client):
    one = chat(client, temperature=1.0, seed=7, max_tokens=16).choices[0].message.content
    two = chat(client, temperature=1.0, seed=7, max_tokens=16).choices[0].message.content
    other = [chat(client, temperature=1.0, seed=s, max_tokens=16).choices[0].message.content for s in (8, 9)]
    assert one == two
    assert any(o != one for o in other)


def test_logprobs(client):
    resp = chat(client, logprobs=True, top_logprobs=3, max_tokens=5)
    content = resp.choices[0].logprobs.content
    assert len(content) == 5
    for item in content:
        assert item.logprob <= 0 and len(item.top_logprobs) == 3
        # greedy: the chosen token is the most likely one
        assert item.top_logprobs[0].logprob == pytest.approx(item.logprob, abs=1e-4)


def test_completions_with_token_ids_and_n(client, server):
    engine = engine_of(server)
    ids = engine.tokenizer("The capital of France is")["input_ids"]
    resp = client.completions.create(model="tiny", prompt=ids, max_tokens=6, temperature=0.8, n=2, seed=1)
    assert len(resp.choices) == 2 and resp.usage.prompt_tokens == len(ids)


def test_adapter_by_name_is_the_merged_model(server, client, tiny):
    assert "tiny-lora" in [m.id for m in client.models.list().data]
    base = chat(client).choices[0].message.content
    tuned = chat(client, model="tiny-lora").choices[0].message.content
    prompt = render_chat(engine_of(server).tokenizer, CHAT)
    assert tuned != base
    assert tuned == hf_greedy(tiny[0], tiny[1], prompt, 12).strip() or tuned == hf_greedy(
        tiny[0], tiny[1], prompt, 12
    )
    # the base is itself again after an adapter request on the same slot (no stale LoRA KV cache)
    assert chat(client).choices[0].message.content == base


def _busy_slots(engine: LlamaCppEngine) -> int:
    slots = httpx.get(f"{engine.server.base_url}/slots", timeout=5).json()
    return sum(bool(s.get("is_processing")) for s in slots)


def test_client_disconnect_aborts_llama_server_sequence(server):
    base_url, app, _ = server
    engine = engine_of(server)

    async def go() -> None:
        aclient = openai.AsyncOpenAI(base_url=base_url, api_key=KEY, max_retries=0)
        stream = await aclient.chat.completions.create(
            model="tiny", messages=CHAT, max_tokens=400, stream=True, extra_body={"ignore_eos": True}
        )
        n = 0
        async for _ in stream:
            n += 1
            if n == 3:
                break
        await stream.close()
        await aclient.close()

    asyncio.run(go())
    deadline = time.monotonic() + 10
    while _busy_slots(engine) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _busy_slots(engine) == 0
    metrics = httpx.get(base_url.removesuffix("/v1") + "/metrics").text
    assert metric_value(metrics, "crossling_requests_aborted_total", reason="client_or_timeout") >= 1


def test_safety_filter_cuts_a_stream(server, client):
    _, _, safety = server
    text = chat(client, max_tokens=40).choices[0].message.content
    safety.trigger = text[20:26]  # appears in the greedy answer, not in the prompt
    try:
        chunks = list(chat(client, max_tokens=40, stream=True))
    finally:
        safety.trigger = "\x00never\x00"
    shown = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[-1].choices[0].finish_reason == "content_filter"
    assert text[20:26] not in shown and text.startswith(shown)
    assert _busy_slots(engine_of(server)) == 0 or time.sleep(1) or _busy_slots(engine_of(server)) == 0


def test_health_follows_the_subprocess(server):
    base_url, app, _ = server
    health = base_url.removesuffix("/v1") + "/health"
    assert httpx.get(health).status_code == 200
    engine = engine_of(server)
    engine.server.proc.kill()  # last test of the module: the server is torn down after it
    engine.server.proc.wait()
    resp = httpx.get(health)
    assert resp.status_code == 503 and resp.json()["status"] == "engine down"
    with pytest.raises(openai.APIError):
        chat(openai.OpenAI(base_url=base_url, api_key=KEY, max_retries=0))


# --- engine: auto -----------------------------------------------------------------------------------


def test_auto_picks_llamacpp_on_cpu_once_built(tiny, monkeypatch):
    import torch

    if torch.cuda.is_available():
        pytest.skip("on CUDA auto is vLLM")
    assert llamacpp.installed() is not None and auto_engine() == "llamacpp"
    engine = build_engine(ServeConfig(model=str(tiny[0]), engine="auto"))
    assert isinstance(engine, LlamaCppEngine) and engine.quant == "q8_0"
    monkeypatch.setattr(llamacpp, "installed", lambda *a: None)
    assert auto_engine() in ("vllm", "transformers")


def test_auto_server_answers(tiny):
    config = ServeConfig(
        model=str(tiny[0]), engine="auto", dtype="f32", allow_no_auth=True, ui=False, max_batch_size=2
    )
    app = create_app(config)
    assert isinstance(app.state.serving.engine, LlamaCppEngine)
    with running_server(app, free_port()) as base_url:
        resp = openai.OpenAI(base_url=base_url, api_key="x", max_retries=0).chat.completions.create(
            model=str(tiny[0]), messages=CHAT, max_tokens=4, temperature=0
        )
    assert resp.choices[0].message.content is not None and resp.usage.completion_tokens >= 1


def test_gguf_type_names():
    assert gguf_type("auto") == "q8_0" and gguf_type("float32") == "f32" and gguf_type("Q4_K_M") == "q4_k_m"
