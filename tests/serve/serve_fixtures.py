"""Helpers for the serve tests: an engine stand-in, a safety stand-in and a real uvicorn server in a thread.

Imported by the tests in this folder (a uniquely named module, not a conftest, so areas never clash).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Iterator

from crossling import testing
from safety.config import SafetyConfig
from safety.verdict import Verdict
from serve.config import ServeConfig
from serve.engine.base import Delta, SamplingSettings, TokenLogprob

PORTS = range(18000, 18100)


def tiny_lora_config(model, adapter: str, key: str, **overrides) -> ServeConfig:
    """The real-engine tests' server: the tiny model served as ``tiny`` with one LoRA as ``tiny-lora``,
    one API key, no UI, 512 tokens of context; ``overrides`` pick the engine, batch and limits."""
    base = dict(model=str(model), served_model_name="tiny", adapters={"tiny-lora": adapter}, api_keys=[key],
                ui=False, max_model_len=512)  # fmt: skip
    return ServeConfig(**(base | overrides))


class StandInEngine:
    """Yields scripted pieces, one token each; records aborts. ``gate`` pauses generation until set."""

    def __init__(
        self, pieces: list[str] | None = None, adapters: dict[str, str] | None = None, delay: float = 0.0
    ):
        self.pieces = pieces or ["Hallo", " Welt", "!", " Wie", " geht", "s?"]
        self.adapters = adapters or {}
        self.max_model_len = 256
        self.tokenizer = _StandInTokenizer()
        self.delay = delay
        self.gate: asyncio.Event | None = None
        self.aborted: list[str] = []
        self.calls: list[tuple[list[int], SamplingSettings, str | None, str]] = []

    async def start(self) -> None:
        pass

    async def shutdown(self) -> None:
        pass

    async def generate(
        self, prompt_token_ids: list[int], sampling: SamplingSettings, adapter: str | None, request_id: str
    ) -> AsyncIterator[Delta]:
        self.calls.append((prompt_token_ids, sampling, adapter, request_id))
        pieces = self.pieces[: sampling.max_tokens]
        for k, piece in enumerate(pieces, start=1):
            if self.gate is not None:
                await self.gate.wait()
            if self.delay:
                await asyncio.sleep(self.delay)
            last = k == len(pieces)
            finish = ("length" if len(self.pieces) > sampling.max_tokens else "stop") if last else None
            lp = [TokenLogprob(piece, k, -0.5, [(piece, k, -0.5)] * (sampling.logprobs or 0))]
            yield Delta(
                piece,
                [k],
                finish,
                lp if sampling.logprobs is not None else None,
                prompt_tokens=len(prompt_token_ids),
                completion_tokens=k,
            )

    async def abort(self, request_id: str) -> None:
        self.aborted.append(request_id)


class _StandInTokenizer:
    """Enough of a tokenizer for the API: one token per character, a trivial chat template."""

    def __len__(self) -> int:
        return 1000

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=True):
        if messages and messages[-1]["role"] == "assistant" and messages[0]["role"] == "assistant":
            raise ValueError("conversation must start with user")
        return "".join(f"<{m['role']}>{m['content']}" for m in messages) + "<model>"

    def __call__(self, text, add_special_tokens=True):
        return {"input_ids": [ord(c) % 1000 for c in text]}

    def decode(self, ids, skip_special_tokens=True):
        return "".join(chr(i) for i in ids)


class StandInSafety:
    """Blocks any text containing a trigger word; the 'language' is guessed from a marker."""

    def __init__(
        self, trigger: str = "BOMB", category: str = "violent_crimes", holdback: int = 6, every: int = 8
    ) -> None:
        self.trigger, self.category = trigger, category
        # the real config type: the server reads its stream hold-back settings from it
        self.config = SafetyConfig(stream_holdback_chars=holdback, stream_check_every_chars=every)
        self.checked: list[tuple[str, str]] = []

    def check(self, text: str, role: str = "user") -> Verdict:
        self.checked.append((text, role))
        hit = self.trigger in text
        lang = "de" if "Hallo" in text or "Bombe" in text else "en"
        return Verdict(
            flagged=hit,
            action="block" if hit else "allow",
            categories={self.category: 0.99 if hit else 0.01},
            language=lang,
            flagged_categories=[self.category] if hit else [],
        )

    def refusal(self, language: str | None, category: str | None = None) -> str:
        return {"de": "Dabei kann ich nicht helfen."}.get(language or "", "I can't help with that.")


def free_port() -> int:
    return testing.free_port(PORTS.start, PORTS.stop - 1)


@contextlib.contextmanager
def running_server(app, port: int, startup_timeout: float = 300.0) -> Iterator[str]:
    """Run ``app`` with uvicorn on 127.0.0.1:port in a thread; yields the base URL (…/v1)."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("server failed to start")
        if time.monotonic() > deadline:
            server.should_exit = True
            raise TimeoutError("server did not start in time")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(60)


def metric_value(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text output (0 when absent)."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        if head.split("{")[0] != name:
            continue
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            total += float(value)
    return total
