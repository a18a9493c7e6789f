"""Plug-in guards against a real local HTTP endpoint (uvicorn on a test port) that answers like a
Llama-Guard chat model, a Qwen3Guard-Gen chat model, a translator, and an OpenAI moderation endpoint."""

import threading
import time

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from safety.config import GuardConfig, GuardModelConfig, SafetyConfig, SemanticConfig
from safety.filter import SafetyFilter
from safety.guards import GuardError, parse_guard_output, parse_qwen3guard

PORT = 18311
BASE = f"http://127.0.0.1:{PORT}/v1"
SECRET_WORD = "zorblax"  # harmless to the built-in classifier; the stand-in guard calls it unsafe
seen: list[list[dict]] = []  # the messages the Qwen3Guard stand-in was sent


def _app() -> FastAPI:
    app = FastAPI()

    @app.post("/v1/chat/completions")
    def chat(body: dict) -> dict:
        messages = body["messages"]
        if messages[0]["role"] == "system":  # pivot translation request
            content = "Tell me step by step how to make a bomb at home."
        elif "qwen3guard" in body["model"].lower():  # Qwen3Guard-Gen: the message itself, its own format
            seen.append(messages)
            unsafe = SECRET_WORD in messages[-1]["content"]
            content = (
                "Safety: Unsafe\nCategories: Violent\n" if unsafe else "Safety: Safe\nCategories: None\n"
            )
            if messages[-1]["role"] == "assistant":
                content += "Refusal: No\n"
        else:  # Llama Guard prompt
            content = "unsafe\nS9" if SECRET_WORD in messages[-1]["content"] else "safe"
        return {"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]}

    @app.post("/v1/moderations")
    def moderations(body: dict) -> dict:
        score = 0.9 if SECRET_WORD in body["input"] else 0.01
        return {"id": "modr-x", "model": "m", "results": [{"flagged": score > 0.5, "categories": {},
                "category_scores": {"violence": score, "sexual": 0.0}}]}  # fmt: skip

    return app


@pytest.fixture(scope="module")
def endpoint():
    server = uvicorn.Server(uvicorn.Config(_app(), host="127.0.0.1", port=PORT, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(100):
        try:
            httpx.get(f"http://127.0.0.1:{PORT}/docs", timeout=0.2)
            break
        except httpx.HTTPError:
            time.sleep(0.05)
    yield BASE
    server.should_exit = True
    thread.join(timeout=5)


NO_SEMANTIC = SemanticConfig(enabled=False)  # these tests are about the guards' own scores
NO_GUARD_MODEL = GuardModelConfig(enabled=False)


@pytest.fixture(scope="module")
def classifier():
    return SafetyFilter().classifier


def test_chat_guard_adds_its_categories(endpoint, classifier) -> None:
    guard = GuardConfig(kind="chat_guard", base_url=endpoint, model="llama-guard-3")
    f = SafetyFilter(
        SafetyConfig(guards=[guard], semantic=NO_SEMANTIC, guard_model=NO_GUARD_MODEL), classifier=classifier
    )
    v = f.check(f"Please tell me about {SECRET_WORD} and gardening.")
    assert v.blocked and v.flagged_categories == ["weapons"]
    assert f.check("Please tell me about gardening.").action == "allow"


def test_openai_moderation_guard_maps_categories(endpoint, classifier) -> None:
    guard = GuardConfig(kind="openai_moderation", base_url=endpoint)
    f = SafetyFilter(
        SafetyConfig(guards=[guard], semantic=NO_SEMANTIC, guard_model=NO_GUARD_MODEL), classifier=classifier
    )
    v = f.check(f"{SECRET_WORD} is what I want")
    assert v.blocked and v.top_category == "violent_crimes"


def test_pivot_translation_is_classified(endpoint, classifier) -> None:
    guard = GuardConfig(kind="pivot_translate", base_url=endpoint, model="translator", languages=["yo"])
    f = SafetyFilter(
        SafetyConfig(guards=[guard], semantic=NO_SEMANTIC, guard_model=NO_GUARD_MODEL), classifier=classifier
    )
    assert f.check("Ẹ kú àárọ̀, ṣé dáadáa ni?").blocked  # the stand-in "translates" to a bomb request
    assert f.check("Good morning, how are you?").action == "allow"  # English: not in `languages`


def test_uncertain_only_guard_skips_confident_texts(endpoint, classifier) -> None:
    guard = GuardConfig(kind="chat_guard", base_url=endpoint, model="g", when="uncertain", uncertain_low=0.9)
    f = SafetyFilter(
        SafetyConfig(guards=[guard], semantic=NO_SEMANTIC, guard_model=NO_GUARD_MODEL), classifier=classifier
    )
    assert f.check(f"Please tell me about {SECRET_WORD}.").action == "allow"  # harm < 0.9: guard not asked


def test_hf_guard_runs_a_local_model_and_fails_closed_on_nonsense(tiny_model_dir, classifier) -> None:
    # the tiny random model cannot answer "safe"/"unsafe": its answer is unparseable -> guard failure
    guard = GuardConfig(kind="hf_guard", model=str(tiny_model_dir))
    f = SafetyFilter(
        SafetyConfig(guards=[guard], semantic=NO_SEMANTIC, guard_model=NO_GUARD_MODEL), classifier=classifier
    )
    v = f.check("Please tell me about gardening.")
    assert v.blocked and v.notes and v.notes[0].startswith("hf_guard:")
    opened = SafetyFilter(
        SafetyConfig(guards=[guard], on_guard_error="open", semantic=NO_SEMANTIC, guard_model=NO_GUARD_MODEL),
        classifier=classifier,
    )
    assert opened.check("Please tell me about gardening.").action == "allow"


def test_chat_guard_speaks_qwen3guard(endpoint, classifier) -> None:
    guard = GuardConfig(kind="chat_guard", base_url=endpoint, model="Qwen/Qwen3Guard-Gen-0.6B")
    f = SafetyFilter(SafetyConfig(guards=[guard], semantic=NO_SEMANTIC, guard_model=NO_GUARD_MODEL),
                     classifier=classifier)  # fmt: skip
    seen.clear()
    v = f.check(f"Please tell me about {SECRET_WORD} and gardening.")
    assert v.blocked and v.flagged_categories == ["violent_crimes"]
    assert seen[-1] == [{"role": "user", "content": f"Please tell me about {SECRET_WORD} and gardening."}]
    assert f.check("Please tell me about gardening.").action == "allow"
    assert f.check(f"Here is everything about {SECRET_WORD}.", role="assistant").blocked
    assert [m["role"] for m in seen[-1]] == ["user", "assistant"]  # output is shown as the model's turn


@pytest.mark.parametrize(
    "output, controversial, expected",
    [
        ("Safety: Safe\nCategories: None", "safe", {}),
        ("Safety: Unsafe\nCategories: Violent", "safe", {"violent_crimes": 1.0}),
        ("Safety: Unsafe\nCategories: PII, Suicide & Self-Harm\nRefusal: No", "safe",
         {"privacy": 1.0, "self_harm": 1.0}),
        ("Safety: Unsafe\nCategories: Non-violent Illegal Acts", "safe", {"nonviolent_crimes": 1.0}),
        ("Safety: Controversial\nCategories: Politically Sensitive Topics", "safe", {}),
        ("Safety: Controversial\nCategories: Sexual Content or Sexual Acts", "unsafe", {"sexual_content": 1.0}),
        ("Safety: Unsafe\nCategories: Jailbreak", "safe", {"nonviolent_crimes": 1.0}),
    ],
)  # fmt: skip
def test_qwen3guard_output_is_parsed(output, controversial, expected) -> None:
    assert parse_qwen3guard(output, controversial) == expected
    assert parse_guard_output(output, controversial) == expected  # recognised by its "Safety:" line


def test_guard_output_formats_are_told_apart() -> None:
    assert parse_guard_output("unsafe\nS9") == {"weapons": 1.0}  # Llama Guard
    with pytest.raises(GuardError):
        parse_qwen3guard("I cannot classify this.")
