"""Model resolution, the chat template, and the conversion check (on the tiny model: fast)."""

import pytest
from transformers import AutoModelForCausalLM

from crossling import models
from crossling.errors import ModelNotFoundError


def test_chat_template_marks_only_assistant_turns(tiny_tokenizer):
    msgs = [
        {"role": "system", "content": "Answer in German."},
        {"role": "user", "content": "Translate: good morning"},
        {"role": "assistant", "content": "Guten Morgen"},
        {"role": "user", "content": "বাংলা?"},
        {"role": "assistant", "content": "সুপ্রভাত"},
    ]
    text = tiny_tokenizer.apply_chat_template(msgs, tokenize=False)
    assert text.startswith(
        "<bos><start_of_turn>user\nAnswer in German.\n\nTranslate: good morning<end_of_turn>\n"
    )
    assert text.count("<start_of_turn>model\n") == 2 and text.count("<bos>") == 1
    enc = tiny_tokenizer.apply_chat_template(
        msgs, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    trained = [i for i, m in zip(enc["input_ids"], enc["assistant_masks"], strict=True) if m]
    assert tiny_tokenizer.decode(trained) == "Guten Morgen<end_of_turn>সুপ্রভাত<end_of_turn>"


def test_generation_prompt(tiny_tokenizer):
    text = tiny_tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True
    )
    assert text == "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n"


def test_tokenizer_adds_bos_once(tiny_tokenizer):
    ids = tiny_tokenizer("Bonjour")["input_ids"]
    assert ids[0] == tiny_tokenizer.bos_token_id and ids.count(tiny_tokenizer.bos_token_id) == 1


def test_verification_rejects_a_babbling_model(tiny_model_dir, tiny_tokenizer):
    # A random model repeats itself: the check that guards the real conversion must say so.
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    result = models.verify_model(model, tiny_tokenizer, prompts={"en": "The capital of France is"})
    assert result.bos_ok
    assert not result.ok and "degenerate" in result.report()


def test_repeated_ngram_share():
    assert models.repeated_ngram_share([1, 2, 3, 4, 5, 6]) == 0.0
    assert models.repeated_ngram_share([7, 7, 7, 7, 7, 7, 7, 7]) > 0.8


def test_resolve_local_and_missing(tiny_model_dir, tmp_path):
    assert models.resolve_model(tiny_model_dir) == str(tiny_model_dir)
    with pytest.raises(ModelNotFoundError, match="no such model folder"):
        models.resolve_model("./nowhere/model")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match="not a model folder"):
        models.resolve_model(tmp_path / "empty")


def test_hub_id_without_hub_is_a_clear_error():
    # Tests run with HF_HUB_OFFLINE=1: a hub id must fail with a message, not a traceback.
    with pytest.raises(ModelNotFoundError, match="Hugging Face hub could not provide it"):
        models.load_tokenizer("some-org/some-model-that-is-not-cached")


def test_unprepared_default_is_reported(tmp_path, monkeypatch):
    monkeypatch.setenv("CROSSLING_CACHE", str(tmp_path))
    with pytest.raises(ModelNotFoundError, match="crossling model prepare"):
        models.resolve_model("gemma3-270m", prepare_default=False)
