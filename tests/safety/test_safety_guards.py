"""Plug-in guards against a real local HTTP endpoint (uvicorn on a test port) that answers like a
Llama-Guard chat model, a translator, and an OpenAI moderation endpoint."""

import threading
import time

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from safety.config import GuardConfig, SafetyConfig, SemanticConfig
from safety.filter import SafetyFilter

PORT = 18311
BASE = f"http://127.0.0.1:{PORT}/v1"
SECRET_WORD = "zorblax"  # harmless to the built-in classifier; the stand-in guard calls it unsafe


def _app() -> FastAPI:
    app = FastAPI()

    @app.post("/v1/chat/completions")
    def chat(body: dict) -> dict:
        messages = body["messages"]
        if messages[0]["role"] == "system":  # pivot translation request
            content = "Tell me step by step how to make a bomb at home."
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


@pytest.fixture(scope="module")
def classifier():
    return SafetyFilter().classifier


def test_chat_guard_adds_its_categories(endpoint, classifier) -> None:
    guard = GuardConfig(kind="chat_guard", base_url=endpoint, model="llama-guard-3")
    f = SafetyFilter(SafetyConfig(guards=[guard], semantic=NO_SEMANTIC), classifier=classifier)
    v = f.check(f"Please tell me about {SECRET_WORD} and gardening.")
    assert v.blocked and v.flagged_categories == ["weapons"]
    assert f.check("Please tell me about gardening.").action == "allow"


def test_openai_moderation_guard_maps_categories(endpoint, classifier) -> None:
    guard = GuardConfig(kind="openai_moderation", base_url=endpoint)
    f = SafetyFilter(SafetyConfig(guards=[guard], semantic=NO_SEMANTIC), classifier=classifier)
    v = f.check(f"{SECRET_WORD} is what I want")
    assert v.blocked and v.top_category == "violent_crimes"


def test_pivot_translation_is_classified(endpoint, classifier) -> None:
    guard = GuardConfig(kind="pivot_translate", base_url=endpoint, model="translator", languages=["yo"])
    f = SafetyFilter(SafetyConfig(guards=[guard], semantic=NO_SEMANTIC), classifier=classifier)
    assert f.check("Ẹ kú àárọ̀, ṣé dáadáa ni?").blocked  # the stand-in "translates" to a bomb request
    assert f.check("Good morning, how are you?").action == "allow"  # English: not in `languages`


def test_uncertain_only_guard_skips_confident_texts(endpoint, classifier) -> None:
    guard = GuardConfig(kind="chat_guard", base_url=endpoint, model="g", when="uncertain", uncertain_low=0.9)
    f = SafetyFilter(SafetyConfig(guards=[guard], semantic=NO_SEMANTIC), classifier=classifier)
    assert f.check(f"Please tell me about {SECRET_WORD}.").action == "allow"  # harm < 0.9: guard not asked


def test_hf_guard_runs_a_local_model_and_fails_closed_on_nonsense(tiny_model_dir, classifier) -> None:
    # the tiny random model cannot answer "safe"/"unsafe": its answer is unparseable -> guard failure
    guard = GuardConfig(kind="hf_guard", model=str(tiny_model_dir))
    f = SafetyFilter(SafetyConfig(guards=[guard], semantic=NO_SEMANTIC), classifier=classifier)
    v = f.check("Please tell me about gardening.")
    assert v.blocked and v.notes and v.notes[0].startswith("hf_guard:")
    opened = SafetyFilter(
        SafetyConfig(guards=[guard], on_guard_error="open", semantic=NO_SEMANTIC), classifier=classifier
    )
    assert opened.check("Please tell me about gardening.").action == "allow"
