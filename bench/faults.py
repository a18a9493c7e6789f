"""Server faults on purpose, on 127.0.0.1 only: a storm of clients that hang up mid-stream, then the
engine dying while requests run. Prints what every client saw and how the server recovered.

    .venv/bin/python bench/faults.py                              # transformers engine, default model
    .venv/bin/python bench/faults.py --engine vllm --model /path/to/model
    .venv/bin/python bench/faults.py --scenario disconnects --storm 400 --concurrency 32

- ``disconnects``: ``--storm`` streamed requests, ``--concurrency`` at a time, each closed after 0 to
  3 chunks. Reported: how many the server counted as aborted, seconds until nothing runs any more,
  slots still held, and whether a normal request is answered right after.
- ``engine-death``: ``--in_flight`` long streamed requests, then the engine dies: with vLLM its
  engine-core process gets SIGKILL; with transformers (one process, no engine process to kill) the
  worker thread is made to die by an injected fatal error at its next token. Reported: how each
  running stream ended (503 error event + ``[DONE]``, lost, hung), what ``/health`` says, and how
  fast new requests get their 503 (streamed or not).

The server is started here (``--engine``), on 127.0.0.1, so the script can kill its engine; counts
and times are bounded (``--storm`` <= 2000, ``--concurrency`` <= 64, every request has a timeout).
A script, not a test: ``tests/serve/test_serve_reliability.py`` holds the assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import threading
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
# Run as a script, bench/ comes first on sys.path and bench/serve.py would hide the `serve`
# package: the repository root goes first, bench/ stays (for `load`).
sys.path.insert(0, str(REPO))

from load import KEY, bounded, free_port, start_server, stop_server  # noqa: E402

TIMEOUT_S = 30.0
CHAT = [{"role": "user", "content": "Erzähl mir eine lange Geschichte über das Meer."}]


def metric(text: str, name: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and line.split("{")[0].split(" ")[0] == name
    )


async def storm(base: str, model: str, total: int, concurrency: int) -> dict:
    """``total`` streams opened and dropped after 0..3 chunks; then: does the server let go of them?"""
    root = base.removesuffix("/v1")
    before = metric(httpx.get(root + "/metrics").text, "crossling_requests_aborted_total")
    sem = asyncio.Semaphore(concurrency)
    body = {"model": model, "messages": CHAT, "max_tokens": 200, "stream": True, "ignore_eos": True}
    errors: dict[str, int] = {}

    async def hang_up(client: httpx.AsyncClient, i: int) -> None:
        async with sem:
            try:
                async with client.stream("POST", "/chat/completions", json=body) as r:
                    if r.status_code != 200:
                        errors[str(r.status_code)] = errors.get(str(r.status_code), 0) + 1
                        return
                    chunks = 0
                    async for line in r.aiter_lines():
                        chunks += line.startswith("data: ")
                        if chunks > i % 4:
                            break  # closing the response here drops the connection mid-stream
            except httpx.HTTPError as e:
                errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1

    headers = {"Authorization": f"Bearer {KEY}"}
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=TIMEOUT_S) as client:
        await asyncio.gather(*[hang_up(client, i) for i in range(total)])
    sent_s = time.monotonic() - started
    idle_s = await _until_idle(root, started=time.monotonic())
    text = httpx.get(root + "/metrics").text
    after = httpx.post(base + "/chat/completions", headers=headers, timeout=TIMEOUT_S, json=_small(model))
    return {
        "streams dropped": total,
        "seconds to drop them": round(sent_s, 1),
        "aborted by the server": int(metric(text, "crossling_requests_aborted_total") - before),
        "seconds until idle": idle_s,
        "still running": int(metric(text, "crossling_num_requests_running")),
        "refused or failed on the way": errors,
        "next request": after.status_code,
    }


async def _until_idle(root: str, started: float, limit: float = 60.0) -> float | None:
    while time.monotonic() - started < limit:
        if metric(httpx.get(root + "/metrics").text, "crossling_num_requests_running") == 0:
            return round(time.monotonic() - started, 2)
        await asyncio.sleep(0.1)
    return None


def _small(model: str, stream: bool = False) -> dict:
    return {"model": model, "messages": CHAT, "max_tokens": 4, "stream": stream}


async def engine_death(base: str, model: str, in_flight: int, kill) -> dict:
    """Streams running when ``kill()`` takes the engine down: how does each end, what follows?"""
    headers = {"Authorization": f"Bearer {KEY}"}
    body = {"model": model, "messages": CHAT, "max_tokens": 400, "stream": True, "ignore_eos": True}
    first_chunk = asyncio.Event()
    endings: dict[str, int] = {}

    async def running(client: httpx.AsyncClient) -> None:
        try:
            async with client.stream("POST", "/chat/completions", json=body) as r:
                ending = f"status {r.status_code}"
                async for line in r.aiter_lines():
                    if line.startswith("data: {"):
                        first_chunk.set()
                        event = json.loads(line[6:])
                        if "error" in event:
                            ending = f"error event {event['error']['code']}"
                    elif line == "data: [DONE]":
                        ending += " + [DONE]"
        except httpx.TimeoutException:
            ending = "hung"
        except httpx.HTTPError as e:
            ending = f"lost ({type(e).__name__})"
        endings[ending] = endings.get(ending, 0) + 1

    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=TIMEOUT_S) as client:
        streams = [asyncio.create_task(running(client)) for _ in range(in_flight)]
        await asyncio.wait_for(first_chunk.wait(), TIMEOUT_S)
        await asyncio.sleep(0.5)
        killed_at = time.monotonic()
        await asyncio.to_thread(kill)
        await asyncio.gather(*streams)
        streams_ended_s = time.monotonic() - killed_at
        health = (await client.get(base.removesuffix("/v1") + "/health")).status_code
        after, slowest = await _after_death(client, model)
    return {
        "running streams ended as": endings,
        "seconds until all ended": round(streams_ended_s, 2),
        "/health": health,
        "new requests answered": after,
        "slowest new answer s": round(slowest, 3),
    }


async def _after_death(client: httpx.AsyncClient, model: str, n: int = 20) -> tuple[dict, float]:
    outcomes: dict[str, int] = {}
    slowest = 0.0
    for i in range(n):
        t = time.monotonic()
        try:
            r = await client.post("/chat/completions", json=_small(model, stream=i % 2 == 1), timeout=10)
            code = r.json().get("error", {}).get("code") if r.status_code != 200 else "ok"
            key = f"{r.status_code} {code}"
        except httpx.HTTPError as e:
            key = f"failed ({type(e).__name__})"
        slowest = max(slowest, time.monotonic() - t)
        outcomes[key] = outcomes.get(key, 0) + 1
    return outcomes, slowest


def transformers_server(model: str):
    """The transformers engine behind the real app, in this process (so its worker can be killed)."""
    import uvicorn

    from serve.app import create_app
    from serve.config import ServeConfig
    from serve.engine.transformers_engine import TransformersEngine

    engine = TransformersEngine(model, max_batch_size=16, max_model_len=1024, torch_threads=1)
    config = ServeConfig(model=model, served_model_name="bench", api_keys=[KEY], ui=False, max_model_len=1024)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(config, engine=engine), "127.0.0.1", port, log_level="error")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 600
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("server failed to start")
        time.sleep(0.1)

    def kill() -> None:
        def fatal(*_args, **_kwargs):
            raise SystemExit("bench/faults.py: injected fatal error in the engine's worker thread")

        engine._step_row = fatal  # the next token the worker computes ends the thread

    def stop() -> None:
        server.should_exit = True
        thread.join(30)

    return f"http://127.0.0.1:{port}/v1", kill, stop


def vllm_server(model: str):
    """``crossling serve --engine vllm`` as a process; killing its engine-core child is the fault."""
    import psutil

    # vLLM starts in about a minute on a quiet machine and in many on a busy one
    proc, base = start_server("vllm", model, ["--max_model_len", "1024", "--kv_cache_gib", "1"], timeout=1500)

    def kill() -> None:
        children = psutil.Process(proc.pid).children(recursive=True)
        cores = [c for c in children if "EngineCore" in c.name() or "EngineCore" in " ".join(c.cmdline())]
        target = cores or children
        if not target:
            raise RuntimeError("no engine-core process found under the server")
        for c in target:
            c.kill()  # SIGKILL

    return base, kill, lambda: stop_server(proc)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--engine", choices=["transformers", "vllm"], default="transformers")
    p.add_argument("--model", default="gemma3-270m")
    p.add_argument("--scenario", choices=["all", "disconnects", "engine-death"], default="all")
    p.add_argument("--storm", type=bounded(1, 2000), default=200, help="streams dropped in the storm")
    p.add_argument("--concurrency", type=bounded(1, 64), default=16)
    p.add_argument("--in_flight", type=bounded(1, 64), default=8, help="streams running when the engine dies")
    args = p.parse_args(argv)
    from crossling.models import resolve_model

    model = str(resolve_model(args.model))
    print(f"starting the {args.engine} engine on {args.model} (127.0.0.1) ...", flush=True)
    base, kill, stop = (transformers_server if args.engine == "transformers" else vllm_server)(model)
    try:
        if args.scenario in ("all", "disconnects"):
            print(
                "disconnect storm:",
                json.dumps(asyncio.run(storm(base, "bench", args.storm, args.concurrency))),
            )
        if args.scenario in ("all", "engine-death"):
            print("engine death:", json.dumps(asyncio.run(engine_death(base, "bench", args.in_flight, kill))))
    finally:
        stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
