"""Hugging Face checkpoints and PEFT LoRA adapters → GGUF, with llama.cpp's own converter and quantizer.

``convert_model(model_dir, {type: path})`` writes GGUFs at ``f32`` / ``f16`` / ``q8_0`` / ``q4_k_m`` /
... (llama.cpp's ``convert_hf_to_gguf.py`` once at f32, then ``llama-quantize`` for each type);
``convert_lora(adapter_dir, out, base_dir)`` writes an adapter as a GGUF LoRA
(``convert_lora_to_gguf.py``). ``model_gguf`` / ``lora_gguf`` do the same once per content
fingerprint into ``<cache>/gguf/`` (the serve engine and batch generation start from those).

The converter reads a Gemma vocabulary from SentencePiece's ``tokenizer.model``. A checkpoint that
only has ``tokenizer.json`` (the prepared default model: it was itself converted from a GGUF) gets
one written into a staging folder, rebuilt from the tokenizer.json's pieces (BPE with byte fallback,
scores from the merge ranks: the order in which llama.cpp then merges), so llama.cpp tokenizes text
as transformers does; the staging folder also carries the chat template without the
``{% generation %}`` markers, which only training needs and llama.cpp's Jinja does not know.
Callers check the result (``sft.export`` compares tokenization and greedy text with transformers).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from crossling.adapters import adapter_base_model, adapter_config, fingerprint, require_adapter
from crossling.device import cores
from crossling.llamacpp import LlamaCpp, LlamaCppError, build
from crossling.models import cache_dir, resolve_model

# llama-quantize's names (case aside) for the types we offer; every one is made from the f32 GGUF
GGUF_TYPES = ("f32", "f16", "bf16", "q8_0", "q6_k", "q5_k_m", "q4_k_m", "q4_0")
# What the serve engine and batch generation run when nobody chose (docs/serve.md, "The llama.cpp
# engine", has tok/s per type on the default model).
DEFAULT_GGUF_TYPE = "q8_0"
BYTE_PIECE = re.compile(r"^<0x[0-9A-Fa-f]{2}>$")
_GENERATION_TAGS = re.compile(r"{%-?\s*(end)?generation\s*-?%}")


def check_type(quant: str) -> str:
    quant = quant.lower()
    if quant not in GGUF_TYPES:
        raise LlamaCppError(f"unknown GGUF type {quant!r}; use one of {', '.join(GGUF_TYPES)}")
    return quant


# --- tokenizer.model from tokenizer.json -----------------------------------------------------------


def spm_from_tokenizer_json(tokenizer_json: dict) -> bytes:
    """A SentencePiece BPE model (serialized) with the same pieces, ids and merge order as a
    tokenizer.json of SentencePiece style (BPE with byte fallback, spaces as ``▁``)."""
    from sentencepiece import sentencepiece_model_pb2 as spm

    model = tokenizer_json["model"]
    if model.get("type") != "BPE" or not model.get("byte_fallback"):
        raise LlamaCppError("tokenizer.json is no SentencePiece-style BPE (byte_fallback) tokenizer")
    pieces: dict[int, str] = {i: p for p, i in model["vocab"].items()}
    added = {t["id"]: t for t in tokenizer_json.get("added_tokens", [])}
    pieces.update({i: t["content"] for i, t in added.items()})
    # llama.cpp merges the adjacent pair whose joined piece scores highest; transformers the pair of
    # lowest merge rank. Score = -(first rank that makes the piece) gives both the same order.
    score: dict[str, float] = {}
    for rank, merge in enumerate(model.get("merges", [])):
        a, b = merge if isinstance(merge, list) else merge.split(" ", 1)
        score.setdefault(a + b, -float(rank))
    proto = spm.ModelProto()
    kind = spm.ModelProto.SentencePiece
    special_ids: dict[str, int] = {}
    for i in range(max(pieces) + 1):
        text = pieces.get(i, f"<unused_gap_{i}>")
        piece = proto.pieces.add()
        piece.piece = text
        if BYTE_PIECE.match(text):
            piece.type, piece.score = kind.BYTE, 0.0
        elif text == model.get("unk_token"):
            piece.type, piece.score = kind.UNKNOWN, 0.0
        elif i in added:
            piece.type = kind.CONTROL if added[i].get("special") else kind.USER_DEFINED
            piece.score = 0.0
        elif i not in pieces:
            piece.type, piece.score = kind.UNUSED, 0.0
        else:
            piece.type = kind.NORMAL
            # single characters start every word; longer pieces only come from merges
            piece.score = score.get(text, 0.0 if len(text) == 1 else -1e9)
        special_ids.setdefault(text, i)
    trainer = proto.trainer_spec
    trainer.model_type = spm.TrainerSpec.BPE
    trainer.byte_fallback = True
    trainer.vocab_size = len(proto.pieces)
    for field_, name in (
        ("unk", model.get("unk_token") or "<unk>"),
        ("bos", "<bos>"),
        ("eos", "<eos>"),
        ("pad", "<pad>"),
    ):
        setattr(trainer, f"{field_}_id", special_ids.get(name, -1))
        setattr(trainer, f"{field_}_piece", name)
    norm = proto.normalizer_spec
    norm.name, norm.add_dummy_prefix, norm.remove_extra_whitespaces = "identity", False, False
    norm.escape_whitespaces = True
    return proto.SerializeToString()


def stage_model(model_dir: Path, staging: Path) -> Path:
    """A folder the converter reads as ``model_dir``: links to its files, plus a ``tokenizer.model``
    when only a tokenizer.json is there, and a chat template without ``{% generation %}``."""
    staging.mkdir(parents=True, exist_ok=True)
    for f in model_dir.iterdir():
        if f.is_file():
            (staging / f.name).symlink_to(f.resolve())
    tokenizer_json = model_dir / "tokenizer.json"
    if not (model_dir / "tokenizer.model").is_file() and tokenizer_json.is_file():
        tj = json.loads(tokenizer_json.read_text(encoding="utf-8"))
        if tj.get("model", {}).get("type") == "BPE" and tj["model"].get("byte_fallback"):
            (staging / "tokenizer.model").write_bytes(spm_from_tokenizer_json(tj))
    template = model_dir / "chat_template.jinja"
    if template.is_file():
        (staging / template.name).unlink()
        text = _GENERATION_TAGS.sub("", template.read_text(encoding="utf-8"))
        (staging / template.name).write_text(text, encoding="utf-8")
    return staging


# --- conversion ------------------------------------------------------------------------------------


def _python_env() -> dict[str, str]:
    # The converter is run with this interpreter (torch, numpy, sentencepiece are ours) and imports
    # the gguf-py vendored next to it, which matches its llama.cpp.
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("NO_LOCAL_GGUF", None)
    return env


def _run(cmd: list[str], what: str) -> None:
    run = subprocess.run(cmd, capture_output=True, text=True, env=_python_env(), check=False)
    if run.returncode != 0:
        raise LlamaCppError(f"{what} failed ({run.returncode}):\n{(run.stderr or run.stdout)[-3000:]}")


def convert_model(
    model: str | Path,
    outputs: dict[str, Path],
    llama: LlamaCpp | None = None,
    log=None,
    name: str | None = None,
) -> dict[str, Path]:
    """``model`` (HF checkpoint folder or name) → one GGUF per type in ``outputs`` ({type: path}):
    one conversion at f32 by ``convert_hf_to_gguf.py``, then ``llama-quantize`` for every other type
    (f16 and bf16 included, so no type is rounded twice). Each file is written atomically."""
    outputs = {check_type(q): Path(p) for q, p in outputs.items()}
    llama = llama or build()
    model_dir = Path(resolve_model(str(model)))
    say = log or (lambda message: None)
    first = next(iter(outputs.values()))
    first.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".gguf-", dir=first.parent) as tmp:
        staged = stage_model(model_dir, Path(tmp) / "model")
        f32 = Path(tmp) / "converted-f32.gguf"
        say(f"convert_hf_to_gguf.py {model_dir.name} → f32")
        cmd = [sys.executable, str(llama.convert_hf), str(staged), "--outfile", str(f32), "--outtype", "f32"]
        cmd += ["--model-name", name or model_dir.name]  # GGUF general.name, shown by Ollama
        _run(cmd, f"convert_hf_to_gguf.py {model_dir}")
        for quant, out in outputs.items():
            quantize(f32, out, quant, llama, log=say)
    return outputs


def quantize(f32: Path, out: Path, quant: str, llama: LlamaCpp | None = None, log=None) -> Path:
    """An f32 GGUF → ``quant`` with ``llama-quantize`` (f32 itself: a copy), written atomically."""
    quant, llama = check_type(quant), llama or build()
    out.parent.mkdir(parents=True, exist_ok=True)
    written = out.with_name(f".{out.name}.part")
    if quant == "f32":
        shutil.copyfile(f32, written)
    else:
        (log or (lambda m: None))(f"llama-quantize → {quant}")
        threads = str(cores())
        _run([str(llama.quantize), str(f32), str(written), quant.upper(), threads], "llama-quantize")
    os.replace(written, out)
    return out


def convert_lora(
    adapter: str | Path, out: str | Path, base: str | Path | None = None, llama: LlamaCpp | None = None
) -> Path:
    """A PEFT LoRA adapter → GGUF LoRA (f32: an adapter is small and gains nothing from rounding)."""
    llama = llama or build()
    adapter = require_adapter(adapter, "adapter")
    base = base or adapter_base_model(adapter)
    if not base:
        raise LlamaCppError(f"{adapter}: its adapter_config.json names no base model; pass the base")
    base_dir = Path(resolve_model(str(base)))
    cfg = adapter_config(adapter)
    if cfg.get("use_rslora") or cfg.get("use_dora"):
        raise LlamaCppError(f"{adapter}: rsLoRA/DoRA adapters have no GGUF LoRA form; export them merged")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".gguf-", dir=out.parent) as tmp:
        staged = stage_model(base_dir, Path(tmp) / "base")
        written = Path(tmp) / "adapter.gguf"
        cmd = [sys.executable, str(llama.convert_lora), str(adapter), "--base", str(staged)]
        _run([*cmd, "--outfile", str(written), "--outtype", "f32"], f"convert_lora_to_gguf.py {adapter.name}")
        os.replace(written, out)
    return out


# --- cached conversions ----------------------------------------------------------------------------


def gguf_cache() -> Path:
    return cache_dir() / "gguf"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def model_gguf(model: str | Path, quant: str = DEFAULT_GGUF_TYPE) -> Path:
    """The cached GGUF of ``model`` at ``quant``, made on first use (keyed by content) from a cached
    f32 conversion, so each further type costs one ``llama-quantize`` run."""
    model_dir = resolve_model(str(model))
    folder = gguf_cache() / (fingerprint(model_dir) or "unknown")[:16]
    out, f32 = folder / f"model-{check_type(quant)}.gguf", folder / "model-f32.gguf"
    if out.is_file():
        return out
    with _locked(f32):
        if not f32.is_file():
            convert_model(model_dir, {"f32": f32})
    if out != f32:
        with _locked(out):
            if not out.is_file():
                quantize(f32, out, quant)
    return out


def lora_gguf(adapter: str | Path, base: str | Path) -> Path:
    """The cached GGUF LoRA of ``adapter`` (for ``base``), converted on first use."""
    key = f"{fingerprint(str(adapter))}-{fingerprint(resolve_model(str(base)))}"
    out = gguf_cache() / "lora" / f"{_short(key)}.gguf"
    with _locked(out):
        if not out.is_file():
            convert_lora(adapter, out, base)
    return out


def _short(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def read_metadata(path: str | Path, prefix: str = "") -> dict:
    """Scalar metadata of a GGUF file (keys starting with ``prefix``), via the ``gguf`` package."""
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    out = {}
    for key, field in reader.fields.items():
        if not key.startswith(prefix) or len(field.types) != 1:
            continue  # arrays (vocab, scores) are left out
        out[key] = field.contents()
    return out
