"""The vLLM engine: vLLM's ``AsyncLLM`` (continuous batching, paged KV cache) behind our protocol.

LoRA adapters are served as ``LoRARequest`` s by name (vLLM's CPU backend runs LoRA too). The engine
arguments are ``crossling.vllm.engine_args``'s, shared with offline generation: on CPU eager mode
with float32 (measured: fp32 48 tok/s vs bf16 14 tok/s at batch 8 on the default model, 2 cores
without native bf16) and a KV cache of ``kv_cache_gib`` (``kv_cache_memory_bytes``; an explicit
``VLLM_CPU_KVCACHE_SPACE`` in the environment still wins).
Prompts arrive as token ids, rendered by the API with the model's chat template, so usage counts
and limits are the same whichever engine runs. Not here: anything HTTP.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from crossling.models import load_tokenizer, resolve_model
from crossling.vllm import engine_args
from serve.engine.base import Delta, SamplingSettings, TokenLogprob, check_request

log = logging.getLogger("crossling.serve")


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
        self._lora_requests: dict = {}

    async def start(self) -> None:
        if self.llm is not None:
            return
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.lora.request import LoRARequest
        from vllm.v1.engine.async_llm import AsyncLLM

        path = resolve_model(self.model_name)
        self.tokenizer = load_tokenizer(path)
        # All adapters are known now: LoRA slots for exactly these, ranked from them (max_lora_rank
        # is the floor), and the server's batch size as vLLM's max_num_seqs.
        args = engine_args(
            path,
            dtype=self.dtype,
            max_model_len=self.max_model_len,
            max_num_seqs=self.max_batch_size,
            adapters=self.adapters.values(),
            lora_rank_floor=self.max_lora_rank,
            kv_cache_gib=self.kv_cache_gib,
        )
        args.update(self.extra_engine_args)
        self.llm = AsyncLLM.from_engine_args(AsyncEngineArgs(**args))
        self._lora_requests = {
            name: LoRARequest(lora_name=name, lora_int_id=i, lora_path=str(p))
            for i, (name, p) in enumerate(self.adapters.items(), start=1)
        }

    async def shutdown(self) -> None:
        if self.llm is not None:
            self.llm.shutdown()
            self.llm = None

    async def generate(
        self, prompt_token_ids: list[int], sampling: SamplingSettings, adapter: str | None, request_id: str
    ) -> AsyncIterator[Delta]:
        from vllm.inputs import TokensPrompt

        check_request(self.llm is not None, adapter, self._lora_requests)
        n_prompt, n_done = len(prompt_token_ids), 0
        stream = self.llm.generate(
            TokensPrompt(prompt_token_ids=list(prompt_token_ids)),
            self._params(sampling),
            request_id,
            lora_request=self._lora_requests.get(adapter) if adapter else None,
        )
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

    async def abort(self, request_id: str) -> None:
        if self.llm is not None:
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
