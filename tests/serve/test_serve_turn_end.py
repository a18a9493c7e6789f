"""A model that opens the next chat turn inside its answer has finished the answer: every engine stops
there (``crossling.models.turn_end_ids``) instead of running on to max_tokens.

The model is a tiny Gemma 3 rewritten so that its greedy next token is always ``<start_of_turn>``
(``crossling.testing.make_turn_opener``); served for real and called with the ``openai`` SDK."""

from __future__ import annotations

import openai
import pytest
from llamacpp_fixtures import build_tiny_spm_model, requires_llamacpp
from serve_fixtures import free_port, running_server

from crossling.models import turn_end_ids
from crossling.testing import build_tiny_tokenizer, make_turn_opener
from serve.app import create_app
from serve.config import ServeConfig

KEY = "sk-crossling-turn-end"
CHAT = [{"role": "user", "content": "Die Hauptstadt von Frankreich ist Paris."}]


def test_turn_end_ids_are_the_eos_ids_and_the_turn_opener():
    tok = build_tiny_tokenizer()
    vocab = tok.get_vocab()
    ids = turn_end_ids(tok, [1, vocab["<end_of_turn>"]])
    assert ids == [1, vocab["<end_of_turn>"], vocab["<start_of_turn>"]]
    assert turn_end_ids(tok, 1) == [1, vocab["<start_of_turn>"]]  # one id, and the tokenizer's eos once
    assert turn_end_ids(tok) == [1, vocab["<start_of_turn>"]]


@pytest.fixture(scope="module")
def opener(tmp_path_factory):
    return make_turn_opener(build_tiny_spm_model(tmp_path_factory.mktemp("opener")))


ENGINES = {
    "transformers": {"dtype": "float32"},
    "llamacpp": {"dtype": "f32"},
    "vllm": {"dtype": "float32", "kv_cache_gib": 1},
}


@pytest.mark.parametrize(
    "engine",
    [
        "transformers",
        pytest.param("llamacpp", marks=requires_llamacpp),
        pytest.param("vllm", marks=pytest.mark.vllm),
    ],
)
def test_every_engine_stops_where_the_model_opens_a_new_turn(opener, engine):
    config = ServeConfig(model=str(opener), served_model_name="tiny", api_keys=[KEY], ui=False, max_model_len=512,
                         engine=engine, **ENGINES[engine])  # fmt: skip
    with running_server(create_app(config), free_port(), startup_timeout=600) as base_url:
        client = openai.OpenAI(base_url=base_url, api_key=KEY, max_retries=0)
        resp = client.chat.completions.create(model="tiny", messages=CHAT, max_tokens=12, temperature=0)
        assert resp.choices[0].finish_reason == "stop"
        assert resp.usage.completion_tokens == 1 and resp.choices[0].message.content == ""
        # ignore_eos (benchmarks) still runs to the budget
        resp = client.chat.completions.create(
            model="tiny", messages=CHAT, max_tokens=12, temperature=0, extra_body={"ignore_eos": True}
        )
        assert resp.choices[0].finish_reason == "length" and resp.usage.completion_tokens == 12
