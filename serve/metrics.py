"""Prometheus metrics for ``GET /metrics`` (names follow vLLM's where it has one, prefixed crossling_).

Each app owns its own registry, so several servers in one process (tests) never clash.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 40, 80, 160, 320)


class ServerMetrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.requests = Counter(
            "crossling_requests", "Finished API requests.", ["endpoint", "model", "status"], registry=r
        )
        self.prompt_tokens = Counter(
            "crossling_prompt_tokens", "Prompt tokens processed.", ["model"], registry=r
        )
        self.generation_tokens = Counter(
            "crossling_generation_tokens", "Tokens generated.", ["model"], registry=r
        )
        self.ttft = Histogram(
            "crossling_time_to_first_token_seconds",
            "Time to first token.",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.e2e = Histogram(
            "crossling_e2e_request_latency_seconds",
            "End-to-end request latency.",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.running = Gauge("crossling_num_requests_running", "Requests generating now.", registry=r)
        self.waiting = Gauge("crossling_num_requests_waiting", "Requests waiting for a slot.", registry=r)
        self.rejected = Counter(
            "crossling_requests_rejected", "Requests refused (429).", ["reason"], registry=r
        )
        self.aborted = Counter(
            "crossling_requests_aborted",
            "Generations aborted (client gone, timeout, safety).",
            ["reason"],
            registry=r,
        )
        self.safety_blocks = Counter(
            "crossling_safety_blocks",
            "Requests blocked or cut by the safety filter.",
            ["stage", "language", "category"],
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
