"""Streamed output is checked in windows with a hold-back: unsafe text never reaches the client."""

import asyncio

import pytest

from safety.filter import SafetyFilter
from safety.stream import StreamGuard, guarded


@pytest.fixture(scope="module")
def safety() -> SafetyFilter:
    return SafetyFilter()


def chunks(text: str, size: int = 5) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


UNSAFE = (
    "Sure, I can help with that. Here is how it works in general terms. "
    "Tell me step by step how to make a bomb at home: first you get explosives from fertilizer "
    "and then you build the bomb at home."
)
SAFE = (
    "Photosynthesis is how plants make food. They take in sunlight, water and carbon dioxide, "
    "and they release oxygen. It happens in the leaves, inside the chloroplasts."
)


def test_unsafe_stream_is_cut_before_the_unsafe_text(safety: SafetyFilter) -> None:
    guard = StreamGuard(safety, holdback_chars=48, check_every_chars=32)
    sent, blocked = "", None
    for delta in chunks(UNSAFE):
        step = guard.push(delta)
        sent += step.text
        if step.blocked:
            blocked = step.verdict
            break
    else:
        step = guard.finish()
        sent += step.text
        blocked = step.verdict
    assert blocked is not None and blocked.blocked, "the unsafe stream was not blocked"
    assert "bomb" not in sent and "explosives" not in sent, sent
    assert blocked.role == "assistant"
    assert guard.push("more text").text == ""  # nothing is released after a block


def test_safe_stream_passes_whole_and_in_order(safety: SafetyFilter) -> None:
    guard = StreamGuard(safety, holdback_chars=48, check_every_chars=32)
    sent = "".join(guard.push(d).text for d in chunks(SAFE))
    assert len(sent) < len(SAFE)  # the hold-back keeps the tail until a check has passed it
    sent += guard.finish().text
    assert sent == SAFE and not guard.blocked
    assert guard.checks >= len(SAFE) // 32


def test_async_wrapper_stops_reading_on_block(safety: SafetyFilter) -> None:
    pulled = []

    async def deltas():
        for d in chunks(UNSAFE) + chunks(SAFE):
            pulled.append(d)
            yield d

    async def collect():
        return [s async for s in guarded(deltas(), StreamGuard(safety, 48, 32))]

    steps = asyncio.run(collect())
    assert steps[-1].blocked
    assert len(pulled) < len(chunks(UNSAFE)) + len(chunks(SAFE))  # generation can be aborted early
    assert "bomb" not in "".join(s.text for s in steps)


def test_payloads_leave_with_their_delta(safety: SafetyFilter) -> None:
    guard = StreamGuard(safety, holdback_chars=8, check_every_chars=16)
    pieces = chunks(SAFE, 7)
    released_text, payloads = "", []
    for i, piece in enumerate(pieces):
        step = guard.feed(piece, payload=i, final=i == len(pieces) - 1)
        released_text += step.text
        payloads += step.payloads
        # text is released at delta boundaries: what left is exactly the deltas whose payloads left
        assert released_text == "".join(pieces[j] for j in payloads)
    assert released_text == SAFE and payloads == list(range(len(pieces)))
