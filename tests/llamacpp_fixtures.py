"""Helpers for the llama.cpp tests: a tiny random Gemma 3 whose tokenizer is SentencePiece-style.

llama.cpp's converter reads a Gemma vocabulary as SentencePiece BPE (byte fallback, ``▁`` for
spaces), like the real Gemma tokenizer; ``crossling.testing``'s tiny tokenizer is GPT-2-style
byte-level BPE, whose pre-tokenizer the converter refuses ("BPE pre-tokenizer was not recognized").
So these tests build the same tiny model with a tokenizer shaped like Gemma's: the path the default
model takes through ``crossling.gguf_convert`` is the one tested. Also ``llamacpp_built``, the
marker that skips what needs the llama.cpp build.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crossling import llamacpp
from crossling.testing import _SEED_TEXT, SPECIAL_TOKENS, gemma_fast_tokenizer, tiny_gemma3_config

requires_llamacpp = pytest.mark.skipif(
    llamacpp.installed() is None, reason="llama.cpp is not built (`make llamacpp`)"
)


def build_tiny_spm_tokenizer(vocab_size: int = 800):
    """BPE with byte fallback over ``▁``-joined text, Gemma's special tokens first, ``<bos>`` added."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    byte_pieces = [f"<0x{b:02X}>" for b in range(256)]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS + byte_pieces, show_progress=False
    )
    draft = Tokenizer(models.BPE(unk_token="<unk>"))
    draft.normalizer = normalizers.Replace(" ", "▁")
    # merges stay inside words (as SentencePiece's do): every word but the first starts with ▁
    draft.pre_tokenizer = pre_tokenizers.Split("▁", behavior="merged_with_next")
    draft.train_from_iterator(_SEED_TEXT * 4, trainer=trainer)
    trained = json.loads(draft.to_str())["model"]
    # Rebuilt so the byte pieces are plain vocabulary (decoded by ByteFallback), not added tokens.
    tok = Tokenizer(
        models.BPE(
            vocab=trained["vocab"],
            merges=[tuple(m) for m in trained["merges"]],
            unk_token="<unk>",
            byte_fallback=True,
            fuse_unk=True,
        )
    )
    tok.add_special_tokens(SPECIAL_TOKENS)
    tok.normalizer = normalizers.Replace(" ", "▁")
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    bos = tok.token_to_id("<bos>")
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A <bos> $B", special_tokens=[("<bos>", bos)]
    )
    return gemma_fast_tokenizer(tok)


def build_tiny_spm_model(path: str | Path, seed: int = 0) -> Path:
    """``crossling.testing.build_tiny_model``'s 2-layer Gemma 3 with the tokenizer above.

    ``query_pre_attn_scalar`` = head_dim: llama.cpp scales attention by the head size (as in the real
    Gemma 3 270M, where both are 256), transformers by this field."""
    import torch
    from transformers import Gemma3ForCausalLM, GenerationConfig

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tiny_spm_tokenizer()
    torch.manual_seed(seed)
    model = Gemma3ForCausalLM(tiny_gemma3_config(len(tokenizer), query_pre_attn_scalar=32)).float()
    end_of_turn = tokenizer.convert_tokens_to_ids("<end_of_turn>")
    model.generation_config = GenerationConfig(
        bos_token_id=2, pad_token_id=0, eos_token_id=[1, end_of_turn], do_sample=False
    )
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    (path / "crossling.json").write_text(json.dumps({"kind": "tiny-random-spm", "seed": seed}))
    return path
