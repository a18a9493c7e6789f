"""Windowed safety check of streamed output, with a hold-back so unsafe text never leaves early.

The server feeds each generated delta to :meth:`StreamGuard.push` and sends only what it gets back.
A delta is released only after a check has covered it *and* it ends more than ``holdback_chars``
behind the newest text: a harmful phrase split across two deltas ("…make a bo" + "mb…") is still
held when the delta that completes it arrives and is checked. Deltas are released whole, so each
one's payload (token ids, logprobs) leaves with its text. On a block nothing more is released; the
server aborts generation and ends the stream with ``finish_reason: "content_filter"``.
No web code here: ``serve/openai/serving.py`` wires it into every response (see docs/safety.md).
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from safety.verdict import SafetyFilterProtocol, Verdict


@dataclass
class StreamStep:
    text: str  # safe to send now (may be empty)
    verdict: Verdict | None = None  # set when this step blocked the stream
    payloads: list[Any] = field(default_factory=list)  # what came with the released deltas, in order

    @property
    def blocked(self) -> bool:
        return self.verdict is not None and self.verdict.blocked


class StreamGuard:
    """Per-response state: push deltas, send what comes back; call :meth:`finish` at the end."""

    def __init__(
        self,
        safety: SafetyFilterProtocol,
        holdback_chars: int = 48,
        check_every_chars: int = 64,
        window_chars: int = 400,
    ):
        self.safety = safety
        self.holdback = max(0, holdback_chars)
        self.every = max(1, check_every_chars)
        self.window = max(window_chars, self.holdback + self.every)
        self.text = ""
        self.sent = 0  # characters of self.text already released
        self.checked = 0  # characters of self.text covered by a passed check
        self.held: deque[tuple[int, Any]] = deque()  # (end offset, payload) of unreleased deltas
        self.verdict: Verdict | None = None  # the blocking verdict, once blocked
        self.checks = 0

    @classmethod
    def from_config(cls, safety: SafetyFilterProtocol, config=None) -> StreamGuard:
        """Settings from a ``SafetyConfig`` (or the filter's own ``config``; defaults without one)."""
        config = config if config is not None else getattr(safety, "config", None)
        if config is None:
            return cls(safety)
        return cls(safety, config.stream_holdback_chars, config.stream_check_every_chars, config.window_chars)

    @property
    def blocked(self) -> bool:
        return self.verdict is not None

    def check_due(self, delta: str = "") -> bool:
        """Whether pushing ``delta`` runs a safety check (callers may then push off the event loop)."""
        return not self.blocked and len(self.text) + len(delta) - self.checked >= self.every

    def _check(self) -> Verdict | None:
        # the window reaches back past everything not yet released, so released text was always checked
        start = max(0, min(self.sent, len(self.text) - self.window))
        verdict = self.safety.check(self.text[start:], role="assistant")
        self.checks += 1
        if verdict.blocked:
            self.verdict = verdict
            return verdict
        self.checked = len(self.text)
        return None

    def _release(self, upto: int) -> StreamStep:
        payloads, end = [], self.sent
        while self.held and self.held[0][0] <= upto:
            end, payload = self.held.popleft()
            payloads.append(payload)
        out, self.sent = self.text[self.sent : end], end
        return StreamStep(out, payloads=payloads)

    def push(self, delta: str, payload: Any = None) -> StreamStep:
        if self.blocked:
            return StreamStep("", self.verdict)
        self.text += delta
        self.held.append((len(self.text), payload))
        if self.check_due():
            verdict = self._check()
            if verdict is not None:
                return StreamStep("", verdict)
        return self._release(self.checked - self.holdback)

    def feed(self, delta: str, payload: Any = None, final: bool = False) -> StreamStep:
        """:meth:`push`, then :meth:`finish` when ``final`` (the engine's last delta of a choice)."""
        step = self.push(delta, payload)
        if not final or step.blocked:
            return step
        end = self.finish()
        return StreamStep(step.text + end.text, end.verdict, step.payloads + end.payloads)

    def finish(self) -> StreamStep:
        """End of generation: check what is still held and release it (or block)."""
        if self.blocked:
            return StreamStep("", self.verdict)
        if self.checked < len(self.text):
            verdict = self._check()
            if verdict is not None:
                return StreamStep("", verdict)
        return self._release(len(self.text))


async def guarded(deltas: AsyncIterator[str], guard: StreamGuard) -> AsyncIterator[StreamStep]:
    """Wrap an async stream of text deltas; stops pulling from ``deltas`` as soon as one blocks.

    The caller aborts the engine request when it sees a blocked step (the generator only stops
    *reading*; aborting is the engine's business).
    """
    async for delta in deltas:
        step = guard.push(delta)
        if step.text or step.blocked:
            yield step
        if step.blocked:
            return
    yield guard.finish()
