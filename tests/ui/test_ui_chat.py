"""The UI's chat function against a real local OpenAI-compatible HTTP server, through the real
``openai`` client: history -> request, streaming -> incremental updates, errors and safety -> notes."""

from __future__ import annotations

import asyncio
import time

import openai
import pytest
from ui_fake_openai import API_KEY, fake_openai_server

from serve.ui import answer_language
from serve.ui.app import make_client
from serve.ui.chat import (
    ChatSettings,
    build_request,
    history_to_messages,
    is_note,
    list_models,
    parse_safety,
    stream_chat,
)


@pytest.fixture(scope="module")
def fake():
    with fake_openai_server(chunk_delay_s=0.01) as (base_url, state):
        yield base_url, state


async def collect(client, message, history, settings):
    return [u async for u in stream_chat(client, message, history, settings)]


# Gradio 6 hands history over with content as a list of parts and notes carrying metadata.
GRADIO_HISTORY = [
    {"role": "user", "content": [{"type": "text", "text": "Hallo!"}], "metadata": None},
    {
        "role": "assistant",
        "content": [{"type": "text", "text": "Hallo, wie kann ich helfen?"}],
        "metadata": None,
    },
    {"role": "assistant", "content": "details", "metadata": {"title": "🛡️ Blocked by the safety filter"}},
    {"role": "user", "content": "   ", "metadata": None},
]


def test_history_to_messages_keeps_text_turns_and_drops_notes():
    assert history_to_messages(GRADIO_HISTORY) == [
        {"role": "user", "content": "Hallo!"},
        {"role": "assistant", "content": "Hallo, wie kann ich helfen?"},
    ]


def test_build_request_puts_the_instruction_in_the_answer_language():
    settings = ChatSettings(model="m", system_prompt="Be brief.", temperature=0.2, top_p=0.9, max_tokens=64)
    req = build_request("Wie spät ist es?", GRADIO_HISTORY, settings, answer_lang="bn")
    assert req["messages"][0] == {
        "role": "system",
        "content": "Be brief.\n\n" + answer_language.INSTRUCTIONS["bn"],
    }
    assert req["messages"][-1] == {"role": "user", "content": "Wie spät ist es?"}
    assert len(req["messages"]) == 4
    assert (req["temperature"], req["top_p"], req["max_tokens"], req["stream"]) == (0.2, 0.9, 64, True)
    assert req["stream_options"] == {"include_usage": True}
    no_system = build_request("hi", [], ChatSettings(model="m"), answer_lang=None)
    assert no_system["messages"] == [{"role": "user", "content": "hi"}]


def test_every_language_has_an_instruction_and_a_choice():
    from crossling.languages import LANGUAGES

    assert set(answer_language.INSTRUCTIONS) == set(LANGUAGES)
    values = [v for _, v in answer_language.choices()]
    assert values[:2] == [answer_language.AUTO, answer_language.NONE]
    assert set(values[2:]) == set(LANGUAGES)
    scripts = {"Latn", "Cyrl", "Arab", "Deva", "Beng", "Thai", "Hans"}
    example_langs = {"Español": "Latn", "Русский": "Cyrl", "العربية": "Arab", "हिन्दी": "Deva", "বাংলা": "Beng"}
    example_langs |= {"ไทย": "Thai", "中文": "Hans"}
    assert {example_langs.get(label) for label, _ in answer_language.EXAMPLES} >= scripts


async def test_stream_is_incremental_and_request_carries_history_and_settings(fake):
    base_url, state = fake
    client = make_client(base_url, API_KEY)
    settings = ChatSettings(model="echo", answer_language="hi", temperature=0.3, top_p=0.8, max_tokens=32)
    updates = await collect(client, "বাংলায় একটি গল্প বলো", GRADIO_HISTORY[:2], settings)
    replies = [u.reply for u in updates]
    final = "Echo: বাংলায় একটি গল্প বলো"
    assert replies[-1] == final
    growing = [r for r in replies if r]
    assert len(growing) >= 5, "the reply must arrive in several steps, not at once"
    assert all(final.startswith(r) for r in growing)
    assert "7 tokens" in updates[-1].status and "Hindi" in updates[-1].status
    sent = state.requests[-1]
    assert sent["messages"] == [
        {"role": "system", "content": answer_language.INSTRUCTIONS["hi"]},
        {"role": "user", "content": "Hallo!"},
        {"role": "assistant", "content": "Hallo, wie kann ich helfen?"},
        {"role": "user", "content": "বাংলায় একটি গল্প বলো"},
    ]
    assert (sent["temperature"], sent["top_p"], sent["max_tokens"]) == (0.3, 0.8, 32)


async def test_auto_language_follows_the_message_script(fake):
    base_url, state = fake
    client = make_client(base_url, API_KEY)
    await collect(client, "ช่วยแนะนำร้านอาหารหน่อย", [], ChatSettings(model="echo"))
    assert state.requests[-1]["messages"][0]["content"] == answer_language.INSTRUCTIONS["th"]
    await collect(client, "hi", [], ChatSettings(model="echo", answer_language="none"))
    assert state.requests[-1]["messages"] == [{"role": "user", "content": "hi"}]


async def test_closing_the_stream_aborts_the_request_on_the_server(fake):
    base_url, state = fake
    state.disconnected.clear()
    client = make_client(base_url, API_KEY)
    gen = stream_chat(client, "go on forever", [], ChatSettings(model="slow", answer_language="none"))
    seen = []
    async for update in gen:
        seen.append(update.reply)
        if update.reply.count("tok") >= 3:
            break
    await gen.aclose()  # what Gradio's stop button does to the generator
    t0 = time.time()
    while not state.disconnected.is_set() and time.time() - t0 < 5:
        await asyncio.sleep(0.05)
    assert state.disconnected.is_set(), "the server kept generating after stop"
    assert state.slow_chunks_sent < 100
    assert seen[-1].startswith("tok0 tok1 tok2")


@pytest.mark.parametrize(
    ("model", "key", "title_part", "body_part"),
    [
        ("echo", "wrong-key", "401", "--api-key"),
        ("ratelimited", API_KEY, "429", "2 requests per minute"),
        ("no-such-model", API_KEY, "404", "does not exist"),
        ("boom", API_KEY, "500", "engine crashed"),
    ],
)
async def test_api_errors_become_readable_notes(fake, model, key, title_part, body_part):
    base_url, _ = fake
    updates = await collect(
        make_client(base_url, key), "hello", [], ChatSettings(model=model, answer_language="en")
    )
    last = updates[-1].messages[-1]
    assert is_note(last)
    assert title_part in last["metadata"]["title"]
    assert body_part in last["content"]
    assert updates[-1].status == "Request failed."


async def test_server_down_is_a_message_not_a_hang():
    from ui_fake_openai import free_port

    client = make_client(f"http://127.0.0.1:{free_port()}/v1", API_KEY)
    t0 = time.time()
    updates = await collect(client, "hello", [], ChatSettings(model="echo", answer_language="none"))
    assert time.time() - t0 < 10
    note = updates[-1].messages[-1]
    assert "unreachable" in note["metadata"]["title"] and "crossling serve" in note["content"]


async def test_blocked_input_shows_refusal_and_a_safety_note(fake):
    base_url, _ = fake
    updates = await collect(make_client(base_url, API_KEY), "…", [], ChatSettings(model="blocked"))
    final = updates[-1].messages
    assert final[0]["content"].startswith("দুঃখিত")
    title = final[-1]["metadata"]["title"]
    assert "Blocked by the safety filter" in title and "violent crimes" in title and "Bengali (bn)" in title


async def test_cut_output_keeps_the_partial_reply_and_names_category(fake):
    base_url, _ = fake
    updates = await collect(
        make_client(base_url, API_KEY), "tell me", [], ChatSettings(model="cut", answer_language="en")
    )
    final = updates[-1].messages
    assert final[0]["content"] == "Here is the first part "
    title = final[-1]["metadata"]["title"]
    assert "Reply cut" in title and "self harm" in title and "German (de)" in title
    assert "ended by the safety filter" in updates[-1].status


def test_parse_safety_reads_json_and_key_value_headers():
    assert parse_safety('{"flagged_categories": ["hate"], "lang": "ar"}')["category"] == "hate"
    parsed = parse_safety("action=block; category=self_harm; language=ru")
    assert parsed == {"action": "block", "category": "self_harm", "language": "ru", "stage": None}
    assert parse_safety(None) is None and parse_safety("garbage") is None


async def test_models_are_listed_with_adapters_labelled(fake):
    base_url, _ = fake
    models = await list_models(make_client(base_url, API_KEY))
    assert ("echo-lora  (adapter on echo)", "echo-lora") in models
    assert ("echo", "echo") in models
    with pytest.raises(openai.AuthenticationError):
        await list_models(make_client(base_url, "bad"))


async def test_empty_model_falls_back_to_the_first_listed(fake):
    base_url, state = fake
    updates = await collect(
        make_client(base_url, API_KEY), "hi", [], ChatSettings(model="", answer_language="none")
    )
    assert state.requests[-1]["model"] == "echo"
    assert updates[-1].reply == "Echo: hi"
