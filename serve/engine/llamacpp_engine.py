"""The llama.cpp engine: llama.cpp's ``llama-server`` as a private subprocess behind our protocol.

``start`` converts the model (and each adapter, as a GGUF LoRA) once into the GGUF cache, then runs
``llama-server`` on a free 127.0.0.1 port with ``max_batch_size`` parallel slots and continuous
batching (``crossling.llamacpp.LlamaServer``); every adapter is loaded at start and each request
sets every adapter's scale through ``/completion``'s ``lora`` field (1 for its own, 0 for the rest;
requests with the same scales are batched together). Prompts arrive as token ids,
rendered by the API with the model's chat template, and go to ``/completion`` as a token list with
``cache_prompt``, so usage counts and limits are the same whichever engine runs.

Text comes from llama.cpp's own detokenizer: it holds back the bytes of a character split across
tokens and sends the character whole, with the last token's id (the earlier ids of that character,
and their logprobs, are not sent; counts are). Stop strings are matched here with the same
:class:`StopMatcher` as the transformers engine, never by llama-server, so both engines hold back
and cut alike; closing the HTTP stream (stop string, abort, client gone) makes llama-server drop the
sequence at its next token. Sampling follows vLLM's semantics: temperature then top-p, no top-k /
min-p / repeat penalty unless asked, temperature 0 greedy, logprobs of the raw distribution; one
difference: presence / frequency penalties count the prompt's tokens too (llama.cpp's sampler sees
the whole context), where vLLM counts generated tokens only.
Not here: anything HTTP toward clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx

from crossling.gguf_convert import DEFAULT_GGUF_TYPE, lora_gguf, model_gguf
from crossling.llamacpp import LlamaServer, build, stream_chunk
from crossling.models import load_tokenizer, resolve_model, turn_end_ids
from serve.engine.base import (
    Delta,
    EngineError,
    SamplingSettings,
    StopMatcher,
    TokenLogprob,
    check_request,
)

log = logging.getLogger("crossling.serve")
_DTYPE_NAMES = {"float32": "f32", "fp32": "f32", "float16": "f16", "fp16": "f16", "bfloat16": "bf16"}


def gguf_type(dtype: str) -> str:
    """ServeConfig.dtype → a GGUF type: ``auto`` → the measured default, torch names → f32/f16/bf16."""
    dtype = dtype.lower()
    return DEFAULT_GGUF_TYPE if dtype == "auto" else _DTYPE_NAMES.get(dtype, dtype)


class LlamaCppEngine:
    """Serves one GGUF (+ GGUF LoRA adapters) through a llama-server subprocess."""

    def __init__(
        self,
        model: str,
        adapters: dict[str, str] | None = None,
        dtype: str = "auto",
        max_model_len: int = 4096,
        max_batch_size: int = 8,
        threads: int | None = None,
    ) -> None:
        self.model_name = model
        self.adapters = dict(adapters or {})
        self.quant = gguf_type(dtype)
        self.max_model_len = max_model_len
        self.max_batch_size = max_batch_size
        self.threads = threads
        self.tokenizer = None
        self.stop_ids: set[int] = set()
        self.server: LlamaServer | None = None
        self._client = None
        self._lora_ids = {name: i for i, name in enumerate(self.adapters)}
        self._aborted: set[str] = set()

    # --- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        if self.server is not None:
            return
        self.server = await asyncio.to_thread(self._launch)
        # one connection per running request; no timeout: a long generation is no error
        limits = httpx.Limits(max_connections=self.max_batch_size * 4 + 8)
        self._client = httpx.AsyncClient(base_url=self.server.base_url, timeout=None, limits=limits)

    def _launch(self) -> LlamaServer:
        build()  # once per machine; a built cache returns at once
        path = resolve_model(self.model_name)
        self.tokenizer = load_tokenizer(path)
        # llama.cpp ends on the GGUF's end-of-generation tokens; a turn opener we end on ourselves
        self.stop_ids = set(turn_end_ids(self.tokenizer))
        gguf = model_gguf(path, self.quant)
        loras = [lora_gguf(adapter, path) for adapter in self.adapters.values()]
        log.info(
            "llama.cpp: %s (%s), %d adapters, %d slots", gguf, self.quant, len(loras), self.max_batch_size
        )
        server = LlamaServer(
            gguf, loras, slots=self.max_batch_size, ctx_per_slot=self.max_model_len, threads=self.threads
        )
        return server.start()

    async def shutdown(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        if self.server is not None:
            await asyncio.to_thread(self.server.stop)
            self.server = None

    def healthy(self) -> bool:
        """False once the llama-server process has died (the API's /health reports it)."""
        return self.server is not None and self.server.alive()

    # --- the protocol -----------------------------------------------------------------------------

    async def generate(
        self, prompt_token_ids: list[int], sampling: SamplingSettings, adapter: str | None, request_id: str
    ) -> AsyncIterator[Delta]:
        check_request(self.server is not None, adapter, self.adapters)
        if not self.server.alive():
            raise EngineError(f"llama-server is not running (exit {self.server.proc.returncode})")
        self._aborted.discard(request_id)
        n_prompt = len(prompt_token_ids)
        budget = min(sampling.max_tokens, self.max_model_len - n_prompt)
        # vLLM's min_tokens: a first part that cannot end (ignore_eos), then the rest, continuing from
        # the same KV cache (cache_prompt).
        first = min(sampling.min_tokens, budget)
        parts = [(first, True, first == budget), (budget, sampling.ignore_eos, True)]
        state = _Progress(list(prompt_token_ids), StopMatcher(sampling.stop), n_prompt)
        try:
            for upto, ignore_eos, last in parts:
                if upto <= state.done:
                    continue
                payload = self._payload(state, sampling, adapter, upto - state.done, ignore_eos)
                stream = self._stream(payload, state, sampling.logprobs, last)
                async with contextlib.aclosing(stream) as deltas:
                    async for delta in deltas:
                        yield delta
                        if delta.finish_reason is not None:
                            return
                        if request_id in self._aborted:
                            yield Delta("", [], "abort", prompt_tokens=n_prompt, completion_tokens=state.done)
                            return
        finally:
            self._aborted.discard(request_id)

    async def abort(self, request_id: str) -> None:
        self._aborted.add(request_id)  # generate() closes its stream at the next token

    # --- llama-server's /completion ---------------------------------------------------------------

    def _payload(
        self, state: _Progress, s: SamplingSettings, adapter: str | None, n_predict: int, ignore_eos: bool
    ) -> dict[str, Any]:
        penalties = ["penalties"] if s.presence_penalty or s.frequency_penalty else []
        payload: dict[str, Any] = {
            "prompt": state.tokens,
            "n_predict": n_predict,
            "stream": True,
            "cache_prompt": True,
            "return_tokens": True,
            "temperature": max(s.temperature, 0.0),
            "top_p": s.top_p,
            "top_k": 0,
            "min_p": 0.0,
            "typical_p": 1.0,
            "repeat_penalty": 1.0,
            "presence_penalty": s.presence_penalty,
            "frequency_penalty": s.frequency_penalty,
            # penalties look at the whole context (llama.cpp counts prompt tokens too; vLLM only generated)
            "repeat_last_n": self.max_model_len,
            # vLLM's order: top-p on the tempered distribution
            "samplers": [*penalties, "temperature", "top_p"],
            "ignore_eos": ignore_eos,
            # every adapter's scale, always: an adapter left out keeps llama-server's global scale
            # (1.0 even with --lora-init-without-apply, measured)
            "lora": [{"id": i, "scale": float(name == adapter)} for name, i in self._lora_ids.items()],
        }
        if s.seed is not None:
            payload["seed"] = (s.seed + state.done) % (2**32)  # a continued part gets its own, fixed seed
        if s.logprobs is not None:
            payload["n_probs"] = max(s.logprobs, 1)  # 0 would mean "none"; extra alternatives are cut
        return payload

    async def _stream(
        self, payload: dict, state: _Progress, k: int | None, last: bool
    ) -> AsyncIterator[Delta]:
        """One /completion call as deltas; a part that is not ``last`` ends without a finish reason
        when it runs out of budget (the next part continues it)."""
        done_before = state.done
        try:
            # closed at once when our consumer stops (client gone): that closes the HTTP stream
            async with contextlib.aclosing(self._chunks(payload, state, k, last, done_before)) as chunks:
                async for delta in chunks:
                    yield delta
        except httpx.HTTPError as e:  # llama-server died or dropped the connection mid-request
            raise EngineError(f"llama-server failed: {type(e).__name__}: {e}") from e

    async def _chunks(
        self, payload: dict, state: _Progress, k: int | None, last: bool, done_before: int
    ) -> AsyncIterator[Delta]:
        async with self._client.stream("POST", "/completion", json=payload) as resp:
            if resp.status_code != 200:
                body = (await resp.aread()).decode(errors="replace")
                raise EngineError(f"llama-server answered {resp.status_code}: {body[:500]}")
            async for line in resp.aiter_lines():
                chunk = stream_chunk(line, EngineError)
                if chunk is None:
                    continue
                state.done = done_before + int(chunk.get("tokens_predicted") or 0)
                ids = list(chunk.get("tokens") or [])
                content = chunk.get("content", "")
                turn_end = (
                    None
                    if payload["ignore_eos"]
                    else next((k for k, t in enumerate(ids) if t in self.stop_ids), None)
                )
                if turn_end is not None:  # e.g. a base model opening the next turn: its answer is over
                    ids, content = (
                        ids[: turn_end + 1],
                        self.tokenizer.decode(ids[:turn_end], skip_special_tokens=True),
                    )
                state.tokens += ids
                ended = bool(chunk.get("stop")) or turn_end is not None
                finish = "stop" if turn_end is not None else _finish(chunk) if ended else None
                if finish == "length" and not last:
                    finish = None
                text, hit = state.stops.feed(content, final=finish is not None)
                yield Delta(
                    text,
                    ids,
                    "stop" if hit else finish,
                    self._logprobs(chunk.get("completion_probabilities"), k),
                    prompt_tokens=state.n_prompt,
                    completion_tokens=state.done,
                )
                if hit or ended:
                    return

    def _logprobs(self, probs: list[dict] | None, k: int | None) -> list[TokenLogprob] | None:
        if k is None:
            return None
        out = []
        for p in probs or []:
            top = [(t["token"], t["id"], t["logprob"]) for t in p.get("top_logprobs", [])[:k]]
            out.append(TokenLogprob(p["token"], p["id"], p["logprob"], top))
        return out


@dataclass
class _Progress:
    """One request across its /completion parts: the tokens so far (prompt + generated), the stop
    matcher, and the tokens generated."""

    tokens: list[int]
    stops: StopMatcher
    n_prompt: int
    done: int = 0


def _finish(chunk: dict) -> str:
    """llama-server's stop_type → ours: eos / word → stop, limit (budget or context) → length."""
    return "length" if chunk.get("stop_type") == "limit" else "stop"
