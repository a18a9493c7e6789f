"""``crossling.generation.generate`` on real backends: transformers on the tiny random
Gemma 3 (with a real PEFT adapter), and the endpoint backend against a real local HTTP server."""

from __future__ import annotations

import pytest
from fake_openai_server import FakeOpenAIServer

from crossling import generation, testing
from crossling.generation import GenerationError, generate

PROMPTS = [
    [{"role": "user", "content": "Translate into German: Good morning."}],
    [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Was ist 2+2?"}],
    [{"role": "user", "content": "天空为什么是蓝色的？"}],
]


@pytest.fixture
def count_backend_calls(monkeypatch):
    """Spy (not a stand-in): counts how many prompts reach the real backend function."""
    calls = []
    for name, fn in list(generation._BACKENDS.items()):

        def spy(model, prompts, _fn=fn, **kw):
            calls.append(len(prompts))
            return _fn(model, prompts, **kw)

        monkeypatch.setitem(generation._BACKENDS, name, spy)
    return calls


def test_transformers_greedy_is_deterministic_and_cached(tiny_model_dir, tmp_path, count_backend_calls):
    kw = dict(max_new_tokens=6, backend="transformers", cache_dir=str(tmp_path), progress=False)
    first = generate(str(tiny_model_dir), PROMPTS, n=2, **kw)
    assert len(first) == 3 and all(len(outs) == 2 and outs[0] == outs[1] for outs in first)
    assert all(isinstance(outs[0], str) and outs[0] for outs in first)
    generation.release()
    again = generate(str(tiny_model_dir), PROMPTS, n=2, **kw)
    assert again == first and count_backend_calls == [3]  # second call served from the disk cache
    # A prompt set that overlaps the cache only generates the new prompt.
    generate(str(tiny_model_dir), PROMPTS + [[{"role": "user", "content": "Hola"}]], n=2, **kw)
    assert count_backend_calls == [3, 1]


def test_transformers_batching_does_not_change_greedy_output(tiny_model_dir):
    kw = dict(max_new_tokens=6, backend="transformers", cache_dir="off", progress=False)
    batched = generate(str(tiny_model_dir), PROMPTS, batch_size=3, **kw)
    single = generate(str(tiny_model_dir), PROMPTS, batch_size=1, **kw)
    assert batched == single  # left padding works: padding never leaks into the continuation


def test_transformers_sampling_gives_n_completions(tiny_model_dir):
    out = generate(
        str(tiny_model_dir), PROMPTS[:1], n=4, temperature=1.0, max_new_tokens=8, backend="transformers",
        cache_dir="off", progress=False,
    )  # fmt: skip
    assert len(out[0]) == 4 and len(set(out[0])) > 1  # a random model sampled at T=1 varies


def test_transformers_applies_a_peft_adapter(tiny_model_dir, tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    torch.manual_seed(1)
    lora = get_peft_model(base, LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False))
    with torch.no_grad():
        for name, p in lora.named_parameters():
            if "lora_B" in name:
                p.mul_(50)  # a visible change: the adapted model must answer differently
    lora.save_pretrained(tmp_path / "adapter")
    kw = dict(max_new_tokens=8, backend="transformers", cache_dir=str(tmp_path / "cache"), progress=False)
    plain = generate(str(tiny_model_dir), PROMPTS, **kw)
    adapted = generate(str(tiny_model_dir), PROMPTS, adapter=str(tmp_path / "adapter"), **kw)
    assert plain != adapted
    with pytest.raises(GenerationError, match="not a PEFT adapter"):
        generate(str(tiny_model_dir), PROMPTS, adapter=str(tmp_path), **{**kw, "cache_dir": "off"})


def test_endpoint_backend_concurrent_with_n_and_servers_that_ignore_n(tmp_path):
    seen_models = []

    def reply(messages, model):
        seen_models.append(model)
        return f"echo: {messages[-1]['content']}"

    with FakeOpenAIServer(reply, api_key="k", port=testing.free_port(18300, 18349)) as server:
        out = generate(
            "base-model", PROMPTS, adapter="my-lora", n=3, temperature=0.7, base_url=server.base_url, api_key="k",
            cache_dir=str(tmp_path), concurrency=3, progress=False,
        )  # fmt: skip
        assert out == [[f"echo: {p[-1]['content']}"] * 3 for p in PROMPTS]
        assert set(seen_models) == {"my-lora"}  # the adapter is served under its own name
        assert all(
            r["messages"] == p
            for r, p in zip(
                sorted(server.requests, key=lambda r: PROMPTS.index(r["messages"])), PROMPTS, strict=True
            )
        )
        with pytest.raises(GenerationError, match="failed"):
            generate(
                "m", PROMPTS[:1], base_url=server.base_url, api_key="wrong", cache_dir="off", progress=False
            )


def test_endpoint_down_is_a_clear_error():
    url = f"http://127.0.0.1:{testing.free_port(18300, 18349)}/v1"
    with pytest.raises(GenerationError, match="failed"):
        generate("m", PROMPTS[:1], base_url=url, cache_dir="off", progress=False)


def test_choose_backend():
    assert generation.choose_backend("auto", base_url="http://x/v1") == "endpoint"
    assert generation.choose_backend("auto", n_prompts=10) == "transformers"
    with pytest.raises(GenerationError, match="needs base_url"):
        generation.choose_backend("endpoint")
    with pytest.raises(GenerationError, match="unknown backend"):
        generation.choose_backend("llama.cpp")  # type: ignore[arg-type]


def test_bad_prompt_shape_is_rejected():
    with pytest.raises(GenerationError, match="prompt 0"):
        generate("m", ["just a string"], base_url="http://x/v1", cache_dir="off")  # type: ignore[list-item]


# --- early stops (until=) -----------------------------------------------------------------------

FIRST_LINE_CASES = [
    "Guten Morgen.\nTranslate the following text from English to German.\n\nGood",
    "\n\nGuten Morgen.\nmore",
    "German translation:\nGuten Morgen.\nmore",
    "德语翻译：\n早上好。\n更多",
    "Guten Morgen.",  # never completes: runs to the budget, read as it is
    "Label:",
    "Label:\n",
    "Label:\n\nGuten Morgen.",
    "  \n  Guten Morgen.  \n",
    "Guten Morgen.\r\nmore",
    "Label:\u2028Guten Morgen.\nmore",  # a line separator clean_translation splits on too
    "A\u2028B:\nC\n",
]


@pytest.mark.parametrize("text", FIRST_LINE_CASES)
def test_first_line_stop_never_changes_the_translation_read(text):
    """Cut at the first point where the rule says done, the reader takes the same line."""
    from crossling.generation import clean_translation, first_line_done

    cut = next((text[:i] for i in range(len(text) + 1) if first_line_done(text[:i])), text)
    assert clean_translation(cut) == clean_translation(text)
    if cut != text:
        assert len(f"x{cut[-1]}y".splitlines()) == 2  # it stopped on a line break
        assert not first_line_done(cut[:-1])


def test_unknown_stop_rule_is_rejected(tiny_model_dir):
    with pytest.raises(GenerationError, match="unknown stop rule 'nope'.*first_line"):
        generate(str(tiny_model_dir), PROMPTS, until="nope", backend="transformers", cache_dir="off")


@pytest.fixture
def six_chars(monkeypatch):
    """A stop rule any random model reaches: done at 6 characters."""
    monkeypatch.setitem(generation.STOP_RULES, "six_chars", lambda text: len(text) >= 6)
    return "six_chars"


def test_transformers_stops_each_sequence_where_its_rule_says(tiny_model_dir, six_chars, tmp_path):
    kw = dict(max_new_tokens=16, backend="transformers", progress=False, batch_size=3)
    full = generate(str(tiny_model_dir), PROMPTS, cache_dir="off", **kw)
    cut = generate(str(tiny_model_dir), PROMPTS, until=six_chars, cache_dir=str(tmp_path), **kw)
    for (f,), (c,) in zip(full, cut, strict=True):
        assert len(c) < len(f) and f.startswith(c)  # cut short of the budget (16 tokens)
    # the rule is part of the cache key: the cut answers do not answer a request without it
    assert generate(str(tiny_model_dir), PROMPTS, cache_dir=str(tmp_path), **kw) == full
