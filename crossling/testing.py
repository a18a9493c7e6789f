"""Tiny random models built locally from a config, for tests and benchmarks (no network, < 2 s).

``build_tiny_model(path)`` writes a complete Hugging Face checkpoint folder — a 2-layer Gemma 3
text model with a tiny hidden size, a byte-level BPE tokenizer trained here on a few sentences in
many scripts (so every language tokenizes, with no unknown tokens), crossling's chat template and a
generation config that stops at ``<end_of_turn>`` — shaped like the prepared default model, so every
code path that loads the default model can load it instead. Also the capability markers tests share.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

from crossling.models import CHAT_TEMPLATE

# Special tokens in Gemma's order for the ids that matter (pad 0, eos 1, bos 2, unk 3).
SPECIAL_TOKENS = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"]

# A few sentences per script, so BPE merges exist for each of them.
_SEED_TEXT = [
    "The capital of France is Paris. Translate the sentence into German, please.",
    "Die Hauptstadt von Frankreich ist Paris. Übersetze den Satz bitte ins Englische.",
    "La capitale de la France est Paris. Traduisez la phrase en espagnol.",
    "La capital de Francia es París. Responde en español, por favor.",
    "Столица Франции — Париж. Переведите предложение на русский язык.",
    "法国的首都是巴黎。请把这句话翻译成中文。",
    "フランスの首都はパリです。この文を日本語に翻訳してください。",
    "عاصمة فرنسا هي باريس. ترجم الجملة إلى العربية من فضلك.",
    "फ्रांस की राजधानी पेरिस है। कृपया इस वाक्य का हिंदी में अनुवाद करें।",
    "ফ্রান্সের রাজধানী প্যারিস। অনুগ্রহ করে বাক্যটি বাংলায় অনুবাদ করুন।",
    "Mji mkuu wa Ufaransa ni Paris. Tafadhali tafsiri sentensi hii kwa Kiswahili.",
    "เมืองหลวงของฝรั่งเศสคือปารีส กรุณาแปลประโยคนี้เป็นภาษาไทย",
    "프랑스의 수도는 파리입니다. 이 문장을 한국어로 번역해 주세요.",
    "Janet has 3 apples and buys 5 more. She has 3 + 5 = 8 apples. The answer is 8.",
    "I cannot help with that request, but I can help you stay safe.",
]


def build_tiny_tokenizer(vocab_size: int = 1024):
    """A byte-level BPE tokenizer with Gemma's special tokens, adding ``<bos>`` like the real one."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_SEED_TEXT * 4, trainer=trainer)
    bos_id = tok.token_to_id("<bos>")
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", bos_id)]
    )
    return gemma_fast_tokenizer(tok)


def gemma_fast_tokenizer(tok):
    """A trained ``tokenizers.Tokenizer`` as a transformers tokenizer with Gemma's special tokens and
    crossling's chat template (the tiny BPE above, and tests/llamacpp_fixtures.py's SentencePiece one)."""
    from transformers import PreTrainedTokenizerFast

    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
        additional_special_tokens=["<start_of_turn>", "<end_of_turn>"],
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def tiny_gemma3_config(vocab_size: int, **overrides):
    from transformers import Gemma3TextConfig

    kwargs = dict(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=32,
        sliding_window=64,
        max_position_embeddings=2048,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=2,
        tie_word_embeddings=True,
    )
    kwargs.update(overrides)
    return Gemma3TextConfig(**kwargs)


def build_tiny_model(path: str | Path, seed: int = 0, **config_overrides) -> Path:
    """Write a tiny random Gemma 3 checkpoint (model + tokenizer + chat template) to ``path``."""
    import torch
    from transformers import Gemma3ForCausalLM, GenerationConfig

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tiny_tokenizer()
    torch.manual_seed(seed)
    config = tiny_gemma3_config(len(tokenizer), **config_overrides)
    model = Gemma3ForCausalLM(config).to(torch.float32)
    end_of_turn = tokenizer.convert_tokens_to_ids("<end_of_turn>")
    model.generation_config = GenerationConfig(
        bos_token_id=2, pad_token_id=0, eos_token_id=[1, end_of_turn], do_sample=False
    )
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    (path / "crossling.json").write_text(json.dumps({"kind": "tiny-random", "seed": seed}))
    return path


def make_turn_opener(path: str | Path, token: str = "<start_of_turn>") -> Path:
    """Rewrite the tiny checkpoint at ``path`` so that, whatever the prompt, its greedy next token is
    ``token``: like a base model that opens the next turn instead of closing its own. Every layer's
    output projections are zeroed (the residual stream is the input embedding), the final norm keeps
    only dimension 0, and the tied embeddings put ``token`` 10x above every other token there."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    token_id = AutoTokenizer.from_pretrained(path).convert_tokens_to_ids(token)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.model.norm.weight.fill_(-1.0)  # Gemma's norm scales by (1 + weight)
        model.model.norm.weight[0] = 0.0
        embed = model.model.embed_tokens.weight
        embed[:, 0] = 1.0
        embed[token_id, 0] = 10.0
    model.save_pretrained(path)
    return path


def free_port(lo: int, hi: int) -> int:
    """A localhost port in ``lo..hi`` that nothing listens on now (each test area keeps its own range,
    so servers started by different test files never race for a port)."""
    for port in range(lo, hi + 1):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {lo}-{hi}")
