"""Loopback load generator for the crossling server: how many requests were answered, refused,
failed, lost or hung under a steady concurrency, and how long the answered ones took.

    .venv/bin/python bench/load.py                                    # transformers engine, default model
    .venv/bin/python bench/load.py --engine vllm --concurrency 16 --duration 60
    .venv/bin/python bench/load.py --base_url http://127.0.0.1:8000/v1 --api_key KEY --model gemma3-270m

With ``--engine`` it starts ``crossling serve`` on 127.0.0.1 itself (and stops it); with
``--base_url`` it drives a server that runs already, which must be on this machine (127.0.0.1 /
localhost / ::1: this script sends no traffic anywhere else). ``--concurrency`` clients send
streamed chat requests back to back for ``--duration`` seconds (both bounded), then it prints

    sent / 2xx / 429 / other 4xx / 5xx / lost / hung, latency p50 / p90 / p99, output tokens/s

where *lost* is a request whose connection broke or whose stream ended without ``data: [DONE]``,
and *hung* one with no complete answer within ``--timeout`` seconds. A script, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
LOOPBACK = ("127.0.0.1", "localhost", "::1")
KEY = "sk-crossling-bench-load"
PROMPTS = [
    "Erkläre in zwei Sätzen, warum der Himmel blau ist.",
    "Escribe un breve poema sobre el mar.",
    "请用三句话介绍一下长城。",
    "ما هي فوائد شرب الماء؟",
    "भारत की राजधानी के बारे में कुछ बताइए।",
    "Eleza kwa ufupi jinsi ya kupika wali.",
]


@dataclass
class Tally:
    """What happened to every request sent."""

    sent: int = 0
    ok: int = 0
    busy: int = 0  # 429
    client_error: int = 0  # other 4xx
    server_error: int = 0  # 5xx, or an error event inside a 200 stream
    lost: int = 0
    hung: int = 0
    tokens: int = 0
    latencies: list[float] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)

    def count(self, outcome: str) -> None:
        self.statuses[outcome] = self.statuses.get(outcome, 0) + 1

    def report(self, wall: float) -> str:
        def pct(q: float) -> str:
            xs = sorted(self.latencies)
            return f"{xs[min(len(xs) - 1, int(q * len(xs)))]:.2f}" if xs else "-"

        return (
            f"sent {self.sent} | 2xx {self.ok} | 429 {self.busy} | other 4xx {self.client_error} | "
            f"5xx {self.server_error} | lost {self.lost} | hung {self.hung} | latency s p50 {pct(0.5)} "
            f"p90 {pct(0.9)} p99 {pct(0.99)} | {self.tokens / wall:.1f} output tok/s over {wall:.0f} s"
        )


async def one_request(
    client: httpx.AsyncClient, model: str, prompt: str, max_tokens: int, tally: Tally
) -> None:
    """One streamed chat request, classified by how it ended."""
    body = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    tally.sent += 1
    started = time.monotonic()
    try:
        async with client.stream("POST", "/chat/completions", json=body) as r:
            if r.status_code != 200:
                await r.aread()
                tally.count(str(r.status_code))
                if r.status_code == 429:
                    tally.busy += 1
                elif r.status_code >= 500:
                    tally.server_error += 1
                else:
                    tally.client_error += 1
                return
            done, failed, tokens = await _read_stream(r)
    except httpx.TimeoutException:
        tally.hung += 1
        tally.count("hung")
        return
    except httpx.HTTPError as e:
        tally.lost += 1
        tally.count(f"lost: {type(e).__name__}")
        return
    if failed:
        tally.server_error += 1
        tally.count("error event")
    elif not done:
        tally.lost += 1
        tally.count("no [DONE]")
    else:
        tally.ok += 1
        tally.tokens += tokens
        tally.latencies.append(time.monotonic() - started)


async def _read_stream(r: httpx.Response) -> tuple[bool, bool, int]:
    """(ended with [DONE], carried an error event, completion tokens from the usage chunk)."""
    done = failed = False
    tokens = 0
    async for line in r.aiter_lines():
        if not line.startswith("data: "):
            continue
        data = line[6:]
        if data == "[DONE]":
            done = True
            continue
        event = json.loads(data)
        failed = failed or "error" in event
        tokens = (event.get("usage") or {}).get("completion_tokens", tokens)
    return done, failed, tokens


async def drive(
    base_url: str,
    api_key: str,
    model: str,
    concurrency: int,
    duration: float,
    max_tokens: int,
    timeout: float,
) -> tuple[Tally, float]:
    """``concurrency`` clients sending back to back until ``duration`` is over; the last requests
    still get ``timeout`` to finish."""
    tally = Tally()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"Authorization": f"Bearer {api_key}"}
    async with httpx.AsyncClient(
        base_url=base_url, headers=headers, timeout=timeout, limits=limits
    ) as client:
        stop_at = time.monotonic() + duration

        async def worker(w: int) -> None:
            i = w
            while time.monotonic() < stop_at:
                await one_request(client, model, PROMPTS[i % len(PROMPTS)], max_tokens, tally)
                i += concurrency

        started = time.monotonic()
        await asyncio.gather(*[worker(w) for w in range(concurrency)])
        return tally, time.monotonic() - started


def require_loopback(url: str) -> None:
    host = urlsplit(url).hostname or ""
    if host not in LOOPBACK:
        raise SystemExit(f"--base_url must point at this machine ({', '.join(LOOPBACK)}), not {host!r}")


def free_port(lo: int = 18400, hi: int = 18499) -> int:
    from crossling.testing import free_port as first_free

    return first_free(lo, hi)


def start_server(
    engine: str, model: str, extra: list[str], timeout: float = 600
) -> tuple[subprocess.Popen, str]:
    """``crossling serve`` on 127.0.0.1 with this script's key; returns the process and its /v1 URL."""
    port = free_port()
    cmd = [PY, "-m", "crossling.cli", "serve", "configs/serve/default.yaml", "--model", model]
    cmd += ["--engine", engine, "--served_model_name", "bench", "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--ui", "false", "--log_level", "warning", *extra]
    if engine == "transformers":
        cmd += ["--torch_threads", "1"]  # the fast setting on a shared CPU (docs/serve.md)
    log_path = Path(f"/tmp/bench-load-{port}.log")
    env = dict(os.environ, CROSSLING_API_KEYS=KEY, TOKENIZERS_PARALLELISM="false")
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    base = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited ({proc.returncode}); see {log_path}")
        try:
            if httpx.get(base.removesuffix("/v1") + "/health", timeout=2).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        time.sleep(1)
    stop_server(proc)
    raise TimeoutError(f"server did not come up in {timeout} s; see {log_path}")


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def bounded(lo: float, hi: float, kind=int):
    def parse(text: str):
        value = kind(text)
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"must be in {lo}..{hi}")
        return value

    return parse


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = p.add_mutually_exclusive_group()
    where.add_argument("--engine", choices=["transformers", "vllm"], default="transformers")
    where.add_argument("--base_url", help="a running server on this machine, e.g. http://127.0.0.1:8000/v1")
    p.add_argument(
        "--model", default="gemma3-270m", help="model to serve (--engine) or its served name (--base_url)"
    )
    p.add_argument("--api_key", default=os.environ.get("CROSSLING_API_KEY", ""), help="key for --base_url")
    p.add_argument("--concurrency", type=bounded(1, 64), default=8)
    p.add_argument("--duration", type=bounded(1, 600, float), default=20.0, help="seconds of sending")
    p.add_argument("--max_tokens", type=bounded(1, 256), default=32)
    p.add_argument("--timeout", type=bounded(1, 600, float), default=120.0, help="a request past it is hung")
    p.add_argument(
        "--max_concurrent_requests", type=bounded(1, 256), default=None, help="server limit (--engine)"
    )
    p.add_argument("--max_queue", type=bounded(0, 1024), default=None, help="server limit (--engine)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    proc = None
    if args.base_url:
        require_loopback(args.base_url)
        base, key, model = args.base_url, args.api_key, args.model
    else:
        extra = []
        if args.max_concurrent_requests:
            extra += ["--limits.max_concurrent_requests", str(args.max_concurrent_requests)]
        if args.max_queue is not None:
            extra += ["--limits.max_queue", str(args.max_queue)]
        print(f"starting crossling serve ({args.engine}, {args.model}) on 127.0.0.1 ...", flush=True)
        proc, base = start_server(args.engine, args.model, extra)
        key, model = KEY, "bench"
    try:
        tally, wall = asyncio.run(
            drive(base, key, model, args.concurrency, args.duration, args.max_tokens, args.timeout)
        )
    finally:
        if proc is not None:
            stop_server(proc)
    print(
        f"{args.engine if proc else base}: concurrency {args.concurrency}, {args.max_tokens} tokens/request"
    )
    print(tally.report(wall))
    if tally.statuses:
        print("not 2xx:", ", ".join(f"{k} x{v}" for k, v in sorted(tally.statuses.items())))
    ok = tally.server_error == tally.lost == tally.hung == 0
    if tally.latencies:
        print(f"mean latency {statistics.mean(tally.latencies):.2f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
