"""``crossling.generation.generate(..., backend="llamacpp")``: batch generation through llama-server on a
tiny random Gemma 3 (tests/llamacpp_fixtures.py): greedy text equal to the transformers backend's
(served as an f32 GGUF here), seeded samples reproducible, n per prompt, an adapter as a GGUF LoRA,
and the disk cache shared with the other backends' semantics."""

from __future__ import annotations

import pytest
from llamacpp_fixtures import build_tiny_spm_model, requires_llamacpp

from crossling import generation, gguf_convert
from crossling.generation import choose_backend, generate, release

pytestmark = requires_llamacpp
PROMPTS = [
    [{"role": "user", "content": "Translate into German: The capital of France is Paris."}],
    [{"role": "user", "content": "Janet has 3 apples and buys 5 more. How many?"}],
    [{"role": "system", "content": "Answer in French."}, {"role": "user", "content": "Hello!"}],
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = build_tiny_spm_model(tmp_path_factory.mktemp("tiny-spm"))
    torch.manual_seed(2)
    base = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)
    lora = LoraConfig(r=8, lora_alpha=32, target_modules="all-linear", init_lora_weights=False)
    adapter = tmp_path_factory.mktemp("lora") / "adapter"
    get_peft_model(base, lora).save_pretrained(adapter)
    yield str(model), str(adapter)
    release()


def printable(outs: list[list[str]]) -> list[list[str]]:
    """A random model strings byte-fallback tokens into invalid UTF-8, which transformers decodes to
    U+FFFD and llama.cpp to the raw control bytes: the same tokens, compared without those."""
    return [["".join(c for c in t if c.isprintable() and c != "\ufffd") for t in o] for o in outs]


@pytest.fixture(autouse=True)
def exact_gguf(monkeypatch):
    """f32 GGUFs: greedy text must then be transformers' exactly (the default type is quantized)."""
    monkeypatch.setattr(gguf_convert, "DEFAULT_GGUF_TYPE", "f32")


def test_llamacpp_is_a_backend():
    assert choose_backend("llamacpp") == "llamacpp"
    with pytest.raises(generation.GenerationError, match="llamacpp"):
        choose_backend("nope")


@pytest.mark.parametrize("with_adapter", [False, True], ids=["base", "adapter"])
def test_greedy_matches_transformers(tiny, with_adapter):
    model, adapter = tiny
    adapter = adapter if with_adapter else None
    kw = dict(adapter=adapter, max_new_tokens=12, cache_dir="off", progress=False, n=2)
    ours = generate(model, PROMPTS, backend="llamacpp", **kw)
    theirs = generate(model, PROMPTS, backend="transformers", batch_size=1, **kw)
    assert printable(ours) == printable(theirs)
    assert all(a == b for a, b in ours)  # greedy: n copies of the one answer


def test_adapter_changes_the_answer(tiny):
    model, adapter = tiny
    kw = dict(max_new_tokens=12, cache_dir="off", progress=False, backend="llamacpp")
    assert generate(model, PROMPTS, **kw) != generate(model, PROMPTS, adapter=adapter, **kw)


def test_samples_are_seeded_and_cached(tiny, tmp_path):
    model, _ = tiny
    kw = dict(n=3, temperature=1.0, max_new_tokens=10, progress=False, backend="llamacpp")
    one = generate(model, PROMPTS, seed=5, cache_dir=str(tmp_path), **kw)
    assert [len(o) for o in one] == [3, 3, 3]
    assert any(len(set(o)) > 1 for o in one)  # n samples, not n copies
    assert generate(model, PROMPTS, seed=5, cache_dir="off", **kw) == one  # same seed, same samples
    assert generate(model, PROMPTS, seed=6, cache_dir="off", **kw) != one
    release()  # no server: the cached answers come back without generating
    assert generate(model, PROMPTS, seed=5, cache_dir=str(tmp_path), **kw) == one
    assert "server" not in generation._LLAMA


def test_stop_rule_hangs_up_once_done(tiny, monkeypatch, tmp_path):
    """``until=``: the answer is streamed and the request dropped once the rule is met; the text is the
    start of the answer run to the budget, and the slots go on serving the next prompts."""
    monkeypatch.setitem(generation.STOP_RULES, "six_chars", lambda text: len(text) >= 6)
    model, _ = tiny
    kw = dict(max_new_tokens=24, progress=False, backend="llamacpp")
    full = generate(model, PROMPTS * 4, cache_dir="off", **kw)
    cut = generate(model, PROMPTS * 4, until="six_chars", cache_dir=str(tmp_path), **kw)
    for (f,), (c,) in zip(printable(full), printable(cut), strict=True):
        assert len(c) < len(f) and f.startswith(c)  # cut short: the budget was 24 tokens
    assert generate(model, PROMPTS * 4, cache_dir=str(tmp_path), **kw) == full  # keyed apart
