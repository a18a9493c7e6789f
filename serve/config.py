"""The ``crossling serve`` run config: one dataclass per concern, filled from configs/serve/*.yaml.

Only what a person running a server decides lives here (where to listen, which engine and model,
adapters, keys, limits); the engines and the API read it but never parse YAML themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

# vLLM's engine arguments of the same names (vllm.engine.arg_utils.AsyncEngineArgs, vLLM 0.32).
PARALLEL_FIELDS = ("tensor_parallel_size", "pipeline_parallel_size", "data_parallel_size")


@dataclass
class LimitsConfig:
    """Hard limits: every one of them is enforced with an OpenAI-shaped error, never a crash."""

    max_body_bytes: int = field(
        default=1_000_000, metadata={"help": "Largest request body in bytes; larger ones get 413."}
    )
    max_prompt_tokens: int = field(
        default=4096,
        metadata={"help": "Longest prompt (after the chat template) in tokens; longer gets 400."},
    )
    max_completion_tokens: int = field(
        default=1024,
        metadata={
            "help": "Most new tokens one choice may ask for (also the default when a request sets none)."
        },
    )
    max_n: int = field(default=8, metadata={"help": "Most choices (`n`) one request may ask for."})
    max_concurrent_requests: int = field(
        default=16, metadata={"help": "Requests generating at once; more wait in the queue."}
    )
    max_queue: int = field(
        default=64,
        metadata={
            "help": "Requests allowed to wait for a slot; beyond it the server answers 429 + Retry-After."
        },
    )
    retry_after_s: int = field(default=2, metadata={"help": "Seconds sent in Retry-After with a 429."})
    max_moderation_inputs: int = field(
        default=64, metadata={"help": "Most inputs one /v1/moderations request may send (400 beyond)."}
    )
    max_moderation_chars: int = field(
        default=64_000,
        metadata={"help": "Most characters, all inputs together, of one /v1/moderations request."},
    )
    request_timeout_s: float = field(
        default=300.0,
        metadata={
            "help": "Wall-clock limit per request (queue + generation); past it the generation is aborted."
        },
    )

    def __post_init__(self) -> None:
        for name in (
            "max_body_bytes",
            "max_prompt_tokens",
            "max_completion_tokens",
            "max_n",
            "max_moderation_inputs",
            "max_moderation_chars",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"limits.{name} must be >= 1")
        if self.max_concurrent_requests < 1 or self.max_queue < 0:
            raise ValueError("limits.max_concurrent_requests must be >= 1 and limits.max_queue >= 0")


@dataclass
class ServeConfig:
    """`crossling serve CONFIG`: an OpenAI-compatible server on vLLM, llama.cpp or transformers.

    Parallelism (tensor, pipeline and data parallel, Ray across nodes) is vLLM's own: the four fields
    below are passed to its engine arguments as they are; the other engines refuse them (docs/scale.md).
    """

    model: str = field(
        default="gemma3-270m",
        metadata={"help": "Base model: `gemma3-270m` (the embedded default), a local folder or a hub id."},
    )
    served_model_name: str | None = field(
        default=None,
        metadata={"help": "Name clients send as `model` for the base model (default: the `model` value)."},
    )
    adapters: dict[str, str] = field(
        default_factory=dict,
        metadata={
            "help": "LoRA adapters by name: {name: path to a PEFT adapter folder}; clients send the name."
        },
    )
    engine: Literal["auto", "vllm", "llamacpp", "transformers"] = field(
        default="auto",
        metadata={
            "help": "auto = vLLM on CUDA; on CPU llama.cpp when built (`make llamacpp`), else vLLM, "
            "else transformers; vLLM whenever a parallelism field (tensor_parallel_size, ...) is set."
        },
    )
    dtype: str = field(
        default="auto",
        metadata={
            "help": "auto = float32 on CPU (fast there), bf16/fp16 on CUDA; or a dtype name. "
            "llamacpp: the GGUF type (auto = q8_0; f32, f16, bf16, q8_0, q4_k_m, ...)."
        },
    )
    max_model_len: int = field(
        default=4096,
        metadata={"help": "Context length the engine reserves per sequence (prompt + completion)."},
    )
    max_batch_size: int = field(
        default=16,
        metadata={
            "help": "Most sequences decoded together (vLLM max_num_seqs; llama.cpp slots; "
            "transformers batch size)."
        },
    )
    max_lora_rank: int = field(default=64, metadata={"help": "vLLM: the largest LoRA rank of any adapter."})
    kv_cache_gib: float = field(
        default=2.0,
        metadata={
            "help": "vLLM on CPU: GiB reserved for the KV cache (vLLM's kv_cache_memory_bytes; an explicit VLLM_CPU_KVCACHE_SPACE in the environment wins)."
        },
    )
    tensor_parallel_size: int = field(
        default=1,
        metadata={
            "help": "vLLM only: GPUs each model replica is split across (tensor parallel; within one node, "
            "e.g. 8 for a 70B model on 8 GPUs). llamacpp and transformers refuse > 1."
        },
    )
    pipeline_parallel_size: int = field(
        default=1,
        metadata={
            "help": "vLLM only: stages the layers are split into (pipeline parallel; across nodes when a "
            "replica does not fit one node: with distributed_executor_backend: ray)."
        },
    )
    data_parallel_size: int = field(
        default=1,
        metadata={
            "help": "vLLM only: model replicas behind this one server, requests balanced between them "
            "(each uses tensor x pipeline GPUs)."
        },
    )
    distributed_executor_backend: Literal["mp", "ray"] | None = field(
        default=None,
        metadata={
            "help": "vLLM only: how its workers are started: mp = processes on this node, ray = a Ray "
            "cluster (needed across nodes; start it first: `ray start`). None = vLLM's choice (mp on "
            "one node)."
        },
    )
    torch_threads: int | None = field(
        default=None,
        metadata={
            "help": "transformers engine: torch intra-op threads (None = torch's default). 1 is much faster "
            "for tiny models on a busy CPU, where spinning thread pools fight other processes."
        },
    )
    host: str = field(default="127.0.0.1", metadata={"help": "Interface to listen on (0.0.0.0 = all)."})
    port: int = field(default=8000, metadata={"help": "TCP port."})
    api_keys: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Accepted Bearer keys. Better: api_key_file or $CROSSLING_API_KEYS (comma-separated)."
        },
    )
    api_key_file: str | None = field(
        default=None, metadata={"help": "File with one accepted key per line (# comments allowed)."}
    )
    allow_no_auth: bool = field(
        default=False,
        metadata={
            "help": "Serve with no key at all. Off by default: with no key configured, "
            "`crossling serve` makes one for the run and prints it."
        },
    )
    limits: LimitsConfig = field(
        default_factory=LimitsConfig, metadata={"help": "Hard limits (see LimitsConfig)."}
    )
    safety: bool = field(
        default=False,
        metadata={"help": "Run the built-in multilingual safety filter on input and streamed output."},
    )
    safety_config: str | None = field(
        default=None,
        metadata={
            "help": "YAML for the safety filter; None = the shipped policy, configs/safety/default.yaml"
        },
    )
    ui: bool = field(
        default=True, metadata={"help": "Mount the Gradio chat UI at /ui (when serve.ui is installed)."}
    )
    ui_allow_anonymous: bool = field(
        default=False,
        metadata={
            "help": "Let anyone who reaches the port use the UI at /ui without a key (it calls the API "
            "with the server's key). Off: the page asks for an API key first (/ui/login)."
        },
    )
    api_docs: bool = field(
        default=True,
        metadata={
            "help": "Serve the OpenAPI document and its viewers (/openapi.json, /docs, /redoc) without a "
            "key: they describe the API and name no model, key or path. false = not served."
        },
    )
    log_level: str = field(default="info", metadata={"help": "uvicorn / crossling log level."})

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ValueError(f"port must be in 1..65535, got {self.port}")
        if self.max_batch_size < 1 or self.max_model_len < 16:
            raise ValueError("max_batch_size must be >= 1 and max_model_len >= 16")
        for name in PARALLEL_FIELDS:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if self.distributed_executor_backend not in (None, "mp", "ray"):
            raise ValueError(
                f"distributed_executor_backend must be mp, ray or null, got {self.distributed_executor_backend!r}"
            )
        if self.engine != "auto" and (why := self.parallel_refusal(self.engine)):
            raise ValueError(why)

    @property
    def parallel(self) -> str:
        """The parallelism settings asked for, as written in YAML (``"tensor_parallel_size: 2"``);
        empty when the server runs one model in one process (all sizes 1, no executor backend)."""
        asked = [f"{n}: {getattr(self, n)}" for n in PARALLEL_FIELDS if getattr(self, n) > 1]
        if self.distributed_executor_backend is not None:
            asked.append(f"distributed_executor_backend: {self.distributed_executor_backend}")
        return ", ".join(asked)

    def parallel_refusal(self, engine: str) -> str | None:
        """Why ``engine`` cannot run this config's parallelism settings (one line), or None."""
        if engine == "vllm" or not self.parallel:
            return None
        return (
            f"{self.parallel} needs engine: vllm; the {engine} engine runs one model in one process "
            "(set it back to 1 / null, or use engine: vllm)"
        )

    @property
    def model_name(self) -> str:
        """What clients send as ``model`` for the base model."""
        return self.served_model_name or self.model
