"""Assistant-only masks, reading, language balancing: pure data code on hand-written rows."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import torch

from crossling.errors import DataError
from sft import data as sft_data
from sft.data import MaskCheckError

CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Translate: Hello"},
    {"role": "assistant", "content": "Hallo"},
    {"role": "user", "content": "Again"},
    {"role": "assistant", "content": "Bonjour"},
]


def test_exact_trained_positions_on_a_hand_built_conversation(tiny_tokenizer):
    ids, labels = sft_data.tokenize_chat(tiny_tokenizer, CONVERSATION)
    trained = [i for i, label in enumerate(labels) if label != -100]
    # <bos> <start_of_turn> user \n Be brief. \n\n Translate: Hello <end_of_turn> \n <start_of_turn> model \n
    # → positions 33-37 = "Hallo<end_of_turn>", 56-61 = "Bonjour<end_of_turn>"; the "\n" after each turn,
    # every user/system token and the "model\n" header stay untrained.
    assert trained == [33, 34, 35, 36, 37, 56, 57, 58, 59, 60, 61]
    end_of_turn = tiny_tokenizer.convert_tokens_to_ids("<end_of_turn>")
    assert ids[37] == ids[61] == end_of_turn
    assert labels[38] == labels[62] == -100 and tiny_tokenizer.decode([ids[38]]) == "\n"
    assert tiny_tokenizer.decode(ids[27:33]) == "<start_of_turn>model\n"  # header: untrained
    assert labels[25] == -100 and ids[25] == end_of_turn  # the user's end-of-turn is not trained
    assert [t for t in labels if t != -100] == [ids[i] for i in trained]  # labels are the ids themselves
    spans = [tiny_tokenizer.decode(s) for s in sft_data.trained_spans(ids, labels)]
    assert spans == ["Hallo<end_of_turn>", "Bonjour<end_of_turn>"]


def test_mask_check_accepts_right_masks_and_rejects_wrong_ones(tiny_tokenizer):
    ids, labels = sft_data.tokenize_chat(tiny_tokenizer, CONVERSATION)
    sft_data.check_example(tiny_tokenizer, CONVERSATION, ids, labels, "<end_of_turn>")
    shifted = [-100] + labels[:-1]  # off by one: the header's "\n" trained, the end-of-turn not
    with pytest.raises(MaskCheckError, match="trained span 0"):
        sft_data.check_example(tiny_tokenizer, CONVERSATION, ids, shifted, "<end_of_turn>")
    prompt_trained = list(labels)
    prompt_trained[20] = ids[20]  # a user token leaks into the loss
    with pytest.raises(MaskCheckError, match="3 trained spans for 2"):
        sft_data.check_example(tiny_tokenizer, CONVERSATION, ids, prompt_trained, "<end_of_turn>")
    everything = list(ids)  # full-sequence loss is not assistant-only
    with pytest.raises(MaskCheckError):
        sft_data.check_example(tiny_tokenizer, CONVERSATION, ids, everything, "<end_of_turn>")


def test_truncated_reply_passes_and_rows_without_trained_tokens_are_reported(tiny_tokenizer):
    rows = [{"messages": CONVERSATION, "lang": "de"}, {"messages": CONVERSATION[:3], "lang": "fr"}]
    tokenized, report = sft_data.tokenize_rows(rows, tiny_tokenizer, max_length=35)
    assert report.truncated == 2 and report.dropped == []
    assert all(ex["truncated"] for ex in tokenized)
    assert sft_data.check_assistant_masks(rows, tokenized, tiny_tokenizer, sample=8) == 2
    _, report = sft_data.tokenize_rows(rows + [{"messages": CONVERSATION, "lang": "de"}], tiny_tokenizer, 40)
    assert report.rows == 3 and report.trained_tokens == 3 * 5  # "Hallo<end_of_turn>" is 5 tokens
    with pytest.raises(MaskCheckError, match="no row has a trained token"):
        sft_data.tokenize_rows(rows, tiny_tokenizer, max_length=20)
    short = [
        {"messages": CONVERSATION, "lang": "de"},
        {
            "messages": [{"role": "user", "content": "x " * 40}, {"role": "assistant", "content": "y"}],
            "lang": "en",
        },
    ]
    tokenized, report = sft_data.tokenize_rows(short, tiny_tokenizer, max_length=40)
    assert len(tokenized) == 1 and report.dropped[0]["index"] == 1 and report.dropped[0]["lang"] == "en"


def test_template_without_generation_markers_fails_loudly(tiny_tokenizer):
    import copy

    tok = copy.deepcopy(tiny_tokenizer)
    tok.chat_template = tok.chat_template.replace("{% generation %}", "").replace("{% endgeneration %}", "")
    with pytest.raises(MaskCheckError, match="generation"):
        sft_data.tokenize_rows([{"messages": CONVERSATION, "lang": "de"}], tok, 64)


def test_batch_with_zero_trained_tokens_is_an_error():
    good = {"labels": torch.tensor([[-100, 5, 6], [-100, -100, 7]]), "attention_mask": torch.ones(2, 3)}
    assert sft_data.check_batches([good]) == pytest.approx(3 / 6)
    bad = {"labels": torch.full((2, 3), -100), "attention_mask": torch.ones(2, 3)}
    with pytest.raises(MaskCheckError, match="zero trained tokens"):
        sft_data.check_batches([good, bad])


def test_reading_errors_name_file_line_and_field(tmp_path, built_dataset):
    train, dev = sft_data.load_sft_rows(built_dataset)
    assert len(train) == 40 and len(dev) == 10 and train[0]["lang"] == "de"
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n")
    with pytest.raises(DataError, match=r"bad.jsonl:1: no non-empty assistant"):
        sft_data.load_sft_rows(bad)
    bad.write_text(
        '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\n{oops\n'
    )
    with pytest.raises(DataError, match=r"bad.jsonl:2: not valid JSON"):
        sft_data.load_sft_rows(bad)
    bad.write_text(json.dumps({"messages": [{"role": "bot", "content": "hi"}]}) + "\n")
    with pytest.raises(DataError, match=r"bad.jsonl:1: messages\[0\].role"):
        sft_data.load_sft_rows(bad)
    with pytest.raises(DataError, match="make data"):
        sft_data.load_sft_rows("data/built/does-not-exist")


def test_language_balancing_is_deterministic_and_follows_the_temperature():
    rows = [{"lang": "en", "i": i} for i in range(80)] + [{"lang": "sw", "i": i} for i in range(20)]
    assert sft_data.balance_languages(rows, 1.0) == rows  # as built
    uniform = sft_data.balance_languages(rows, 0.0, seed=1)
    assert Counter(r["lang"] for r in uniform) == {"en": 50, "sw": 50}
    assert uniform == sft_data.balance_languages(rows, 0.0, seed=1)
    half = Counter(r["lang"] for r in sft_data.balance_languages(rows, 0.5))
    assert half == {"en": 67, "sw": 33}  # 100 * sqrt(80) / (sqrt(80) + sqrt(20))
    train, dev = sft_data.split_dev(rows, per_language=10)
    assert Counter(r["lang"] for r in dev) == {"en": 10, "sw": 5} and len(train) == 85
