"""Engines behind the API: vLLM, llama.cpp and transformers, one protocol (``base``)."""

from __future__ import annotations

from crossling import llamacpp
from crossling.adapters import require_adapter
from crossling.device import has_cuda
from crossling.vllm import parallel_args, vllm_available
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


def resolve_engine(config) -> str:
    """The engine kind for ``config``: its ``engine``, or for ``auto`` :func:`auto_engine`'s choice;
    parallelism settings (``tensor_parallel_size`` > 1, ...) are vLLM's alone, so ``auto`` then means
    vLLM, and an engine that cannot run them is refused in one line naming the field."""
    if config.engine != "auto":
        kind = config.engine
    elif config.parallel:
        if not vllm_available():
            raise EngineError(
                f"engine: auto with {config.parallel} needs vLLM, which is not installed "
                "(pip install 'crossling[cuda]' on GPUs; docs/scale.md)"
            )
        kind = "vllm"
    else:
        kind = auto_engine()
    if why := config.parallel_refusal(kind):
        raise EngineError(why)
    return kind


def build_engine(config) -> Engine:
    """The engine a :class:`serve.config.ServeConfig` asks for (not started yet)."""
    check_adapters(config.adapters)
    kind = resolve_engine(config)
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

        parallel = parallel_args(
            config.tensor_parallel_size,
            config.pipeline_parallel_size,
            config.data_parallel_size,
            config.distributed_executor_backend,
        )
        return VLLMEngine(
            **common,
            max_lora_rank=config.max_lora_rank,
            kv_cache_gib=config.kv_cache_gib,
            extra_engine_args=parallel,
        )
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
    "resolve_engine",
    "vllm_available",
]
