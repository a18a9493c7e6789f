"""Windowed safety check of streamed output, with a hold-back so unsafe text never leaves early.

The server feeds each generated delta to :meth:`StreamGuard.push` and sends only the text it gets
back. Text is released only after a check has covered it *and* it lies more than
``holdback_chars`` behind the newest text: a harmful phrase split across two deltas ("…make a bo" +
"mb…") is still held when the delta that completes it arrives and is checked. On a block the server
stops sending, aborts generation, and ends the stream with ``finish_reason: "content_filter"``.
No web code here: the server wires it (see docs/safety.md).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from serve.safety.verdict import SafetyFilterProtocol, Verdict


@dataclass
class StreamStep:
    text: str  # safe to send now (may be empty)
    verdict: Verdict | None = None  # set when this step blocked the stream

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
        self.holdback = holdback_chars
        self.every = max(1, check_every_chars)
        self.window = max(window_chars, holdback_chars + check_every_chars)
        self.text = ""
        self.sent = 0  # characters of self.text already released
        self.checked = 0  # characters of self.text covered by a passed check
        self.verdict: Verdict | None = None  # the blocking verdict, once blocked
        self.checks = 0

    @classmethod
    def from_config(cls, safety: SafetyFilterProtocol, config) -> StreamGuard:
        return cls(safety, config.stream_holdback_chars, config.stream_check_every_chars, config.window_chars)

    @property
    def blocked(self) -> bool:
        return self.verdict is not None

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

    def push(self, delta: str) -> StreamStep:
        if self.blocked:
            return StreamStep("", self.verdict)
        self.text += delta
        if len(self.text) - self.checked >= self.every:
            verdict = self._check()
            if verdict is not None:
                return StreamStep("", verdict)
        release_to = max(self.sent, self.checked - self.holdback)
        out, self.sent = self.text[self.sent : release_to], release_to
        return StreamStep(out)

    def finish(self) -> StreamStep:
        """End of generation: check what is still held and release it (or block)."""
        if self.blocked:
            return StreamStep("", self.verdict)
        if self.checked < len(self.text):
            verdict = self._check()
            if verdict is not None:
                return StreamStep("", verdict)
        out, self.sent = self.text[self.sent :], len(self.text)
        return StreamStep(out)


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
