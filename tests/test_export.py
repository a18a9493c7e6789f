"""`crossling export gguf`: GGUF files made by llama.cpp's own converter and quantizer, checked in a real
llama-server against transformers; the GGUF LoRA; the Ollama Modelfile; the tokenizer.model rebuilt
from a tokenizer.json. The round trips run on a tiny random Gemma 3 (seconds) and, marked slow, on
the real default model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from llamacpp_fixtures import build_tiny_spm_model, requires_llamacpp

from crossling.config import ConfigError
from crossling.gguf_convert import check_type, read_metadata, spm_from_tokenizer_json
from crossling.llamacpp import LlamaCppError
from sft.export import (
    OLLAMA_TEMPLATE,
    ExportConfig,
    export_gguf,
    gguf_summary,
    matched_prefix,
    modelfile,
)
from sft.export_cli import parse


@pytest.fixture(scope="module")
def tiny_spm(tmp_path_factory) -> Path:
    return build_tiny_spm_model(tmp_path_factory.mktemp("tiny-spm"))


@pytest.fixture(scope="module")
def tiny_lora(tiny_spm, tmp_path_factory) -> str:
    """A random non-zero LoRA (every linear layer), so the adapter visibly changes the output."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(3)
    model = AutoModelForCausalLM.from_pretrained(tiny_spm, dtype=torch.float32)
    config = LoraConfig(r=8, lora_alpha=32, target_modules="all-linear", init_lora_weights=False)
    out = tmp_path_factory.mktemp("tiny-lora") / "adapter"
    get_peft_model(model, config).save_pretrained(out)
    return str(out)


# --- pure parts -------------------------------------------------------------------------------------


def test_spm_rebuilt_from_tokenizer_json_tokenizes_like_transformers(tiny_spm):
    import sentencepiece
    from transformers import AutoTokenizer

    spm = sentencepiece.SentencePieceProcessor(
        model_proto=spm_from_tokenizer_json(json.loads((tiny_spm / "tokenizer.json").read_text()))
    )
    hf = AutoTokenizer.from_pretrained(tiny_spm)
    assert spm.vocab_size() == len(hf)
    assert spm.id_to_piece(2) == "<bos>" and spm.is_control(2)
    for text in ["The capital of France is Paris.", "  Hallo   Welt\nЗдравствуй 🚀 3333", "请翻译。"]:
        assert spm.encode(text) == hf(text, add_special_tokens=False)["input_ids"], text


def test_modelfile_has_gemma_turns_and_stops():
    text = modelfile("m-q4_k_m.gguf", system="Antworte auf Deutsch.", license_text="Gemma Terms")
    lines = text.splitlines()
    assert "FROM ./m-q4_k_m.gguf" in lines
    assert 'PARAMETER stop "<end_of_turn>"' in lines and 'PARAMETER stop "<start_of_turn>"' in lines
    assert 'SYSTEM """Antworte auf Deutsch."""' in lines and 'LICENSE """Gemma Terms"""' in lines
    assert f'TEMPLATE """{OLLAMA_TEMPLATE}"""' in text
    # the turn format of crossling/templates/gemma_chat.jinja; <bos> comes from the GGUF's tokenizer
    for piece in ("<start_of_turn>user\n", "<end_of_turn>\n", "<start_of_turn>model\n", "{{ $system }}\n\n"):
        assert piece in OLLAMA_TEMPLATE
    assert "<bos>" not in OLLAMA_TEMPLATE and OLLAMA_TEMPLATE.endswith("<start_of_turn>model\n")
    assert OLLAMA_TEMPLATE.count("{{ if") + OLLAMA_TEMPLATE.count("{{ range") == OLLAMA_TEMPLATE.count(
        "{{ end }}"
    ), "every Go template block is closed"


def test_export_config_and_cli():
    config = parse(["gguf", "--adapter", "runs/sft-x/adapter", "--quant", "f16,Q4_K_M"]).config
    assert config.quants == ["f16", "q4_k_m"]
    assert config.output_dir() == Path("runs/export/sft-x")
    assert ExportConfig().output_dir() == Path("runs/export/gemma3-270m")
    with pytest.raises(ConfigError, match="unknown GGUF type"):
        parse(["gguf", "--quant", "q3_weird"])
    with pytest.raises(ConfigError, match="modelfile_quant"):
        parse(["gguf", "--quant", "f16", "--modelfile_quant", "q8_0"])
    assert check_type("Q8_0") == "q8_0"
    with pytest.raises(LlamaCppError):
        check_type("int4")


def test_matched_prefix():
    assert matched_prefix([1, 2, 3, 4], [1, 2, 3, 4]) == 4
    assert matched_prefix([1, 2, 3, 4], [1, 2, 9, 4]) == 2  # nothing counts after a difference
    assert matched_prefix([1, 2], []) == 0


# --- round trips through llama.cpp ------------------------------------------------------------------


@requires_llamacpp
def test_export_round_trip_tiny(tiny_spm, tiny_lora, tmp_path):
    out = tmp_path / "export"
    config = ExportConfig(
        model=str(tiny_spm), adapter=tiny_lora, quant="f32,f16,q8_0", output=str(out), name="tiny"
    )
    report = export_gguf(config, log=lambda m: None)
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "Modelfile",
        "export.json",
        "tiny-f16.gguf",
        "tiny-f32.gguf",
        "tiny-lora-f32.gguf",
        "tiny-q8_0.gguf",
    ]
    checks = {c["kind"]: c for c in report["checks"]}
    assert set(checks) == {"f32", "f16", "q8_0", "lora"}
    assert all(c["passed"] and c["bos_added"] and not c["tokenize_mismatches"] for c in checks.values())
    assert checks["f32"]["agreement"] == 1.0 and checks["f16"]["exact_tokens"] == 8
    assert checks["lora"]["exact_tokens"] == 8  # base GGUF + GGUF LoRA = the merged checkpoint
    summary = gguf_summary(out / "tiny-f16.gguf")
    assert summary["general.architecture"] == "gemma3" and summary["tokenizer.ggml.add_bos_token"]
    assert summary["has_chat_template"]  # without the {% generation %} markers llama.cpp cannot parse
    assert "{% generation" not in read_metadata(out / "tiny-f16.gguf")["tokenizer.chat_template"]
    lora_meta = read_metadata(out / "tiny-lora-f32.gguf", "adapter.")
    assert lora_meta["adapter.type"] == "lora" and lora_meta["adapter.lora.alpha"] == 32
    assert "FROM ./tiny-q8_0.gguf" in (out / "Modelfile").read_text()
    assert json.loads((out / "export.json").read_text())["checks"] == report["checks"]


@requires_llamacpp
def test_export_fails_loudly_when_verification_fails(tiny_spm, tmp_path, monkeypatch):
    from crossling.errors import CrosslingError
    from sft import export

    monkeypatch.setitem(export.MIN_AGREEMENT, "q8_0", 1.01)  # a floor no file can reach
    config = ExportConfig(
        model=str(tiny_spm), quant="q8_0", output=str(tmp_path / "x"), verify_tokens=4, exact_tokens=4
    )
    with pytest.raises(CrosslingError, match="verification failed for .*x-q8_0.gguf"):
        export_gguf(config, log=lambda m: None)
    assert not json.loads((tmp_path / "x" / "export.json").read_text())["checks"][0]["passed"]


@pytest.mark.slow
@requires_llamacpp
def test_export_default_model(default_model_dir, tmp_path):
    """The real Gemma 3 270M: its tokenizer.json-only vocabulary survives the trip (multilingual
    tokenization identical, <bos> added), f16 greedy text is transformers' exactly, q8_0 / q4_k_m
    within their floors."""
    config = ExportConfig(quant="f16,q8_0,q4_k_m", output=str(tmp_path / "gemma"))
    report = export_gguf(config, log=print)
    checks = {c["kind"]: c for c in report["checks"]}
    assert all(c["passed"] for c in checks.values()), checks
    assert min(checks["f16"]["matched"].values()) >= 8
    assert 'LICENSE """Gemma' in (tmp_path / "gemma" / "Modelfile").read_text()


def test_llamacpp_pin_matches_pyproject(repo_root):
    """crossling.llamacpp builds from the llama-cpp-python sdist that pyproject's `bench` extra pins."""
    from crossling.llamacpp import LLAMA_CPP_PYTHON

    pyproject = (repo_root / "pyproject.toml").read_text()
    assert f'bench = ["llama-cpp-python[server]=={LLAMA_CPP_PYTHON}"]' in pyproject
