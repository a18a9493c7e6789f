"""The transformers engine: real token-by-token streaming, PEFT adapters by name, batched decoding.

For machines without vLLM and for fast tests. One worker thread owns the model; requests that
arrive while it is idle or finishing a batch are decoded *together* (left-padded, one forward pass
per step for all rows, finished rows dropped from the KV cache), each with its own sampling
settings, seed and adapter (PEFT's mixed-adapter batches). A request that arrives mid-batch waits
for the next one: this is batching at arrival, not vLLM's continuous batching.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from crossling.device import default_device, resolve_dtype
from crossling.models import load_causal_lm, load_tokenizer, turn_end_ids
from serve.engine.base import (
    Delta,
    EngineDeadError,
    EngineError,
    IncrementalDecoder,
    SamplingSettings,
    StopMatcher,
    check_request,
)
from serve.engine.sampling import RowSampler

log = logging.getLogger("crossling.serve")
BASE = "__base__"  # PEFT's name for "no adapter" in a mixed-adapter batch
_DONE = object()
GATHER_GAP_S = 0.02  # see TransformersEngine._gather
GATHER_MAX_S = 0.1
HEALTH_POLL_S = 1.0  # a waiting request notices a dead worker within this


@dataclass
class _Request:
    request_id: str
    prompt_ids: list[int]
    sampling: SamplingSettings
    adapter: str | None
    loop: asyncio.AbstractEventLoop
    out: asyncio.Queue
    aborted: bool = False
    generated: list[int] = field(default_factory=list)

    def emit(self, item) -> None:
        self.loop.call_soon_threadsafe(self.out.put_nowait, item)


class TransformersEngine:
    """Serves one causal LM (+ PEFT LoRA adapters) with transformers on CPU or CUDA."""

    def __init__(
        self,
        model: str,
        adapters: dict[str, str] | None = None,
        dtype: str = "auto",
        max_model_len: int = 4096,
        max_batch_size: int = 16,
        device: str | None = None,
        torch_threads: int | None = None,
    ) -> None:
        self.model_name = model
        self.adapters = dict(adapters or {})
        self.dtype = dtype
        self.max_model_len = max_model_len
        self.max_batch_size = max_batch_size
        self.device = device
        self.torch_threads = torch_threads
        self.model = None
        self.tokenizer = None
        self._pending: queue.Queue[_Request | None] = queue.Queue()
        self._requests: dict[str, _Request] = {}
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._died: str | None = None  # why the worker thread ended while serving

    # --- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._thread is not None:
            return
        await asyncio.to_thread(self._load)
        self._thread = threading.Thread(
            target=self._worker, name="crossling-transformers-engine", daemon=True
        )
        self._thread.start()

    def _load(self) -> None:
        if self.torch_threads:
            import torch

            torch.set_num_threads(self.torch_threads)

        self.device = self.device or default_device()
        self.tokenizer = load_tokenizer(self.model_name)
        model = load_causal_lm(
            self.model_name, dtype=resolve_dtype(self.dtype, self.device), device=self.device
        )
        if self.adapters:
            from peft import PeftModel

            names = list(self.adapters)
            model = PeftModel.from_pretrained(model, self.adapters[names[0]], adapter_name=names[0])
            for name in names[1:]:
                model.load_adapter(self.adapters[name], adapter_name=name)
        self.model = model.eval()
        eos = model.generation_config.eos_token_id if model.generation_config else None
        self.eos_ids = set(turn_end_ids(self.tokenizer, eos))
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0

    def healthy(self) -> bool:
        """Started, and its worker thread is still running (False once it died)."""
        return self._thread is not None and self._thread.is_alive() and self._died is None

    def _dead_error(self) -> EngineDeadError:
        return EngineDeadError(f"the transformers engine's worker stopped: {self._died or 'not running'}")

    async def shutdown(self) -> None:
        self._stopping = True
        self._pending.put(None)
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 10)
            self._thread = None

    # --- the protocol -----------------------------------------------------------------------------

    async def generate(
        self, prompt_token_ids: list[int], sampling: SamplingSettings, adapter: str | None, request_id: str
    ) -> AsyncIterator[Delta]:
        check_request(self._thread is not None, adapter, self.adapters)
        if not self.healthy():
            raise self._dead_error()
        req = _Request(
            request_id, list(prompt_token_ids), sampling, adapter, asyncio.get_running_loop(), asyncio.Queue()
        )
        self._requests[request_id] = req
        self._pending.put(req)
        finished = False
        try:
            while True:
                try:
                    item = await asyncio.wait_for(req.out.get(), HEALTH_POLL_S)
                except (TimeoutError, asyncio.TimeoutError):
                    if not self.healthy():  # the worker died with this request on it: never hang
                        raise self._dead_error() from None
                    continue
                if item is _DONE:
                    finished = True
                    return
                if isinstance(item, EngineDeadError):
                    finished = True
                    raise item
                if isinstance(item, BaseException):
                    finished = True
                    raise EngineError(f"generation failed: {item}") from item
                finished = item.finish_reason is not None
                yield item
                if finished:
                    return
        finally:
            if not finished:
                req.aborted = True  # client went away: the worker drops the row at its next step
            self._requests.pop(request_id, None)

    async def abort(self, request_id: str) -> None:
        req = self._requests.get(request_id)
        if req is not None:
            req.aborted = True

    # --- worker thread ----------------------------------------------------------------------------

    def _worker(self) -> None:
        try:
            self._serve()
        except BaseException as e:  # the thread ends here: say why, for healthy() and the log
            self._died = f"{type(e).__name__}: {e}"
            log.critical("transformers engine: worker thread died: %s", self._died, exc_info=e)
        finally:
            if not self._stopping:
                self._died = self._died or "worker thread ended"
                for r in list(self._requests.values()):
                    with contextlib.suppress(RuntimeError):  # its event loop is gone: nobody waits
                        r.emit(self._dead_error())

    def _serve(self) -> None:
        while not self._stopping:
            first = self._pending.get()
            if first is None:
                return
            batch = self._gather(first)
            batch = [r for r in batch if not r.aborted]
            if not batch:
                continue
            try:
                self._run_batch(batch)
            except Exception as e:  # a failed batch must fail its requests, never kill the worker
                log.exception("transformers engine: batch failed")
                for r in batch:
                    r.emit(e)

    def _gather(self, first: _Request) -> list[_Request]:
        """Collect the requests that arrive together: until the batch is full, no new request came
        for GATHER_GAP_S, or GATHER_MAX_S passed. Clients whose answers all ended at once send their
        next requests within milliseconds of each other; a too-short window splits them into tiny
        batches that then wait a whole batch each (measured: c=8 fell to single-row batches)."""
        batch = [first]
        start = last = time.monotonic()
        while len(batch) < self.max_batch_size:
            now = time.monotonic()
            if now - last > GATHER_GAP_S or now - start > GATHER_MAX_S:
                break
            try:
                nxt = self._pending.get(timeout=GATHER_GAP_S / 4)
            except queue.Empty:
                continue
            if nxt is None:
                self._stopping = True
                break
            batch.append(nxt)
            last = time.monotonic()
        return batch

    def _run_batch(self, batch: list[_Request]) -> None:
        import torch

        with torch.inference_mode():  # grad mode is per thread: set it here, not at load
            self._decode(batch)

    def _decode(self, batch: list[_Request]) -> None:
        import torch

        dev = self.model.device
        longest = max(len(r.prompt_ids) for r in batch)
        ids = torch.full((len(batch), longest), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), longest), dtype=torch.long)
        for i, r in enumerate(batch):
            ids[i, longest - len(r.prompt_ids) :] = torch.tensor(r.prompt_ids)
            mask[i, longest - len(r.prompt_ids) :] = 1
        ids, mask = ids.to(dev), mask.to(dev)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        rows = [
            _Row(r, RowSampler(r.sampling, self.model.config.vocab_size), IncrementalDecoder(self.tokenizer))
            for r in batch
        ]
        from transformers import DynamicCache

        cache = DynamicCache(config=self.model.config)
        while rows:
            extra = {"adapter_names": [r.req.adapter or BASE for r in rows]} if self.adapters else {}
            out = self.model(
                input_ids=ids,
                attention_mask=mask,
                position_ids=positions,
                past_key_values=cache,
                use_cache=True,
                logits_to_keep=1,
                **extra,
            )
            logits = out.logits[:, -1, :].float()
            keep, next_tokens = [], []
            for i, row in enumerate(rows):
                token = self._step_row(row, logits[i])
                if token is not None:
                    keep.append(i)
                    next_tokens.append(token)
            if not keep:
                break
            if len(keep) < len(rows):
                index = torch.tensor(keep, device=dev)
                cache.batch_select_indices(index)
                mask, positions = mask[index], positions[index]
                rows = [rows[i] for i in keep]
            ids = torch.tensor(next_tokens, device=dev).unsqueeze(1)
            mask = torch.cat([mask, mask.new_ones((len(rows), 1))], dim=1)
            positions = positions[:, -1:] + 1

    def _step_row(self, row: _Row, logits) -> int | None:
        """Sample one token for a row and emit its delta; None when the row is finished."""
        req = row.req
        if req.aborted:
            req.emit(
                Delta(
                    "", [], "abort", prompt_tokens=len(req.prompt_ids), completion_tokens=len(req.generated)
                )
            )
            return None
        if len(req.generated) < req.sampling.min_tokens:
            logits = logits.clone()
            logits[list(self.eos_ids)] = float("-inf")
        token, logprob = row.sampler.sample(logits, req.generated, self.tokenizer)
        req.generated.append(token)
        finish = None
        if token in self.eos_ids and not req.sampling.ignore_eos:
            text, finish = row.stops.feed("", final=True)[0], "stop"
        else:
            text, hit = row.stops.feed(row.decoder.add(token))
            if hit:
                finish = "stop"
            elif (
                len(req.generated) >= req.sampling.max_tokens
                or len(req.prompt_ids) + len(req.generated) >= self.max_model_len
            ):
                text += row.stops.feed("", final=True)[0]
                finish = "length"
        req.emit(
            Delta(
                text,
                [token],
                finish,
                [logprob] if logprob is not None else None,
                prompt_tokens=len(req.prompt_ids),
                completion_tokens=len(req.generated),
            )
        )
        return None if finish else token


@dataclass
class _Row:
    """One sequence of a running batch: its request and its sampling/decoding/stop state."""

    req: _Request
    sampler: object
    decoder: IncrementalDecoder
    stops: StopMatcher = field(init=False)

    def __post_init__(self) -> None:
        self.stops = StopMatcher(self.req.sampling.stop)
