"""Batch generation for evaluation and for align's sampling: chat prompts in, n completions out.

``generate(model, prompts, ...)`` is the one call every area uses to generate in batches (evaluation,
align's sampling and win rates, the benchmarks). It runs on one of three backends:

- ``transformers``: batched ``model.generate`` with left padding, fp32 on CPU, a PEFT adapter merged in;
- ``vllm``: the offline ``vllm.LLM`` engine (``enforce_eager``, fp32 on CPU), adapters as LoRARequests,
  one engine kept per process so base + several adapters share one start-up;
- ``endpoint``: any OpenAI-compatible server (ours, vLLM's, a hosted one) with concurrent requests.

Every completion is cached on disk (SQLite) under a hash of (model fingerprint, adapter fingerprint,
messages, sampling), so a rerun only generates what is new. Fingerprints hash the content of local
weight and config files (``crossling.adapters.fingerprint``): retraining an adapter into the same
folder invalidates its cache entries, copying a model elsewhere keeps them.

Not here: scoring (``evaluation.metrics``), prompt building (``evaluation.tasks``), serving.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

from crossling.adapters import adapter_modules_to_save, fingerprint, require_adapter
from crossling.device import has_cuda
from crossling.errors import ConfigError, CrosslingError
from crossling.models import (
    TURN_OPENERS,
    cache_dir,
    load_causal_lm,
    load_tokenizer,
    resolve_model,
    turn_end_ids,
)
from crossling.sqlite_cache import open_wal_db
from crossling.vllm import DEFAULT_KV_CACHE_GIB, engine_args, vllm_available

logger = logging.getLogger(__name__)

Backend = Literal["auto", "vllm", "transformers", "endpoint", "llamacpp"]
Messages = list[dict[str, str]]

# Measured on 2 CPU cores with the default model (docs/evaluation.md, "Backends"): vLLM's start-up
# (~85 s) only pays off for large batches on CPU; on CUDA it wins from the first prompt.
VLLM_MIN_PROMPTS_CPU = 100_000
TRANSFORMERS_BATCH_SIZE = 32
CACHE_CHUNK = 256  # prompts per backend call, each written to the cache as soon as it is done
# Part of every cache key: bump when a change here changes what the same request returns.
CACHE_VERSION = 3  # 3: fingerprints hash file content (were name + size + mtime)


class GenerationError(CrosslingError):
    """A backend could not produce completions (bad adapter, endpoint down, ...)."""


# --- disk cache ----------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """``$CROSSLING_GENERATION_CACHE``, else ``<crossling cache>/generations`` (``crossling demo`` points
    it into its run folder, so a clean clone never reuses another clone's generations)."""
    env = os.environ.get("CROSSLING_GENERATION_CACHE")
    return Path(env) if env else cache_dir() / "generations"


def cache_key(identity: dict[str, Any], messages: Messages) -> str:
    blob = json.dumps({"id": identity, "messages": messages}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class GenerationCache:
    """key → list of completions, in one SQLite file (safe for several processes at once)."""

    def __init__(self, folder: str | Path):
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / "generations.sqlite"
        self._db = open_wal_db(
            self.path, "CREATE TABLE IF NOT EXISTS gen (key TEXT PRIMARY KEY, value TEXT, created REAL)"
        )

    def get_many(self, keys: Sequence[str]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        unique = list(dict.fromkeys(keys))
        for i in range(0, len(unique), 500):
            chunk = unique[i : i + 500]
            rows = self._db.execute(
                f"SELECT key, value FROM gen WHERE key IN ({','.join('?' * len(chunk))})", chunk
            ).fetchall()
            out.update({k: json.loads(v) for k, v in rows})
        return out

    def put_many(self, items: dict[str, list[str]]) -> None:
        now = time.time()
        self._db.executemany(
            "INSERT OR REPLACE INTO gen (key, value, created) VALUES (?, ?, ?)",
            [(k, json.dumps(v, ensure_ascii=False), now) for k, v in items.items()],
        )
        self._db.commit()

    def close(self) -> None:
        self._db.close()


# --- the public call -----------------------------------------------------------------------------


def generate(
    model: str,
    prompts: list[Messages],
    *,
    adapter: str | None = None,
    n: int = 1,
    temperature: float = 0.0,
    top_p: float = 1.0,
    max_new_tokens: int = 128,
    seed: int = 0,
    backend: Backend = "auto",
    base_url: str | None = None,
    api_key: str | None = None,
    cache_dir: str | None = None,
    concurrency: int = 8,
    batch_size: int = TRANSFORMERS_BATCH_SIZE,
    progress: bool = True,
    desc: str = "generate",
    until: str | None = None,
) -> list[list[str]]:
    """``n`` completions for each chat prompt (a list of ``{"role", "content"}`` messages).

    ``model`` is a model name/path (local backends) or the served model name (endpoint); ``adapter``
    a PEFT adapter folder (local) or the served adapter name (endpoint: it is sent as ``model``).
    ``cache_dir``: ``None`` → :func:`default_cache_dir`; ``"off"`` → no cache.
    Greedy decoding (``temperature == 0``) returns ``n`` copies of the one greedy completion.
    Sampled completions are cached like greedy ones: pass another ``seed`` for fresh samples.
    ``until``: the name of a rule in :data:`STOP_RULES` (``"first_line"``) that ends a completion as
    soon as what its reader takes from it is complete; the llama.cpp and transformers backends stop
    there, vLLM and endpoints run to ``max_new_tokens`` (the reader takes the same text either way).
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if until is not None and until not in STOP_RULES:
        raise GenerationError(f"unknown stop rule {until!r}; known: {', '.join(STOP_RULES)}")
    for i, p in enumerate(prompts):
        if not isinstance(p, list) or not all(
            isinstance(m, dict) and "role" in m and "content" in m for m in p
        ):
            raise GenerationError(f"prompt {i} is not a list of {{'role', 'content'}} messages: {p!r:.200}")
    chosen = choose_backend(backend, base_url=base_url, n_prompts=len(prompts))
    identity = {
        "version": CACHE_VERSION,
        "model": model if chosen == "endpoint" else fingerprint(_resolve_local(model)),
        "adapter": adapter if chosen == "endpoint" else fingerprint(adapter),
        "endpoint": base_url if chosen == "endpoint" else None,
        "n": n,
        "temperature": temperature,
        "top_p": top_p,
        "max_new_tokens": max_new_tokens,
        "seed": seed,
    }
    if until:  # only then: the keys of every other request stay as they were
        identity["until"] = until
    keys = [cache_key(identity, p) for p in prompts]
    cache = None if cache_dir in ("off", "none", "") else GenerationCache(cache_dir or default_cache_dir())
    cached = cache.get_many(keys) if cache else {}
    todo: dict[str, Messages] = {}
    for key, p in zip(keys, prompts, strict=True):
        if key not in cached and key not in todo:
            todo[key] = p
    if todo:
        logger.info("%s: %d of %d prompts not cached, backend %s", desc, len(todo), len(prompts), chosen)
        sampling = dict(
            n=n, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, seed=seed, until=until
        )
        todo_keys = list(todo)
        chunks = range(0, len(todo_keys), CACHE_CHUNK)
        for c, start in enumerate(chunks):
            # Chunks are written to the cache as they finish: a run killed at 90 % keeps its 90 %.
            chunk_keys = todo_keys[start : start + CACHE_CHUNK]
            fresh = _BACKENDS[chosen](
                model,
                [todo[k] for k in chunk_keys],
                adapter=adapter,
                sampling=sampling,
                base_url=base_url,
                api_key=api_key,
                concurrency=concurrency,
                batch_size=batch_size,
                progress=progress,
                desc=desc if len(chunks) == 1 else f"{desc} ({c + 1}/{len(chunks)})",
            )
            new = dict(zip(chunk_keys, fresh, strict=True))
            if cache:
                cache.put_many(new)
            cached.update(new)
    if cache:
        cache.close()
    return [list(cached[k]) for k in keys]


def choose_backend(backend: Backend, base_url: str | None = None, n_prompts: int = 0) -> str:
    """``auto``: an endpoint when a URL is given; vLLM on CUDA (or huge CPU batches); else transformers."""
    if backend == "endpoint" or (backend == "auto" and base_url):
        if not base_url:
            raise GenerationError("backend 'endpoint' needs base_url (e.g. http://localhost:8000/v1)")
        return "endpoint"
    if backend == "vllm":
        if not vllm_available():
            raise GenerationError("backend 'vllm' asked for, but vLLM is not installed (`make install`)")
        return "vllm"
    if backend == "transformers":
        return "transformers"
    if backend == "llamacpp":
        return "llamacpp"  # built on first use (crossling.llamacpp.build), like the default model
    if backend != "auto":
        raise GenerationError(
            f"unknown backend {backend!r}; use auto, vllm, transformers, llamacpp or endpoint"
        )

    if vllm_available() and (has_cuda() or n_prompts >= VLLM_MIN_PROMPTS_CPU):
        return "vllm"
    return "transformers"


def _resolve_local(model: str) -> str:

    return resolve_model(model)


def _require_adapter(adapter: str) -> None:
    """A GenerationError, the error generate() reports, when ``adapter`` is no PEFT adapter folder."""
    try:
        require_adapter(adapter, "adapter")
    except ConfigError as e:
        raise GenerationError(str(e)) from e


# --- transformers backend ------------------------------------------------------------------------

_HF_LOADED: dict[str, Any] = {}  # the last (model, adapter) loaded, kept for the next call


def _load_hf(model: str, adapter: str | None):
    key = f"{_resolve_local(model)}::{fingerprint(adapter)}"
    if _HF_LOADED.get("key") == key:
        return _HF_LOADED["model"], _HF_LOADED["tokenizer"]
    _HF_LOADED.clear()  # one model in memory at a time: an eval of 3 models must not hold 3

    tokenizer = load_tokenizer(model, padding_side="left")
    lm = load_causal_lm(model)
    if adapter:
        _require_adapter(adapter)
        from peft import PeftModel

        # Merged, the adapter costs nothing per token.
        lm = PeftModel.from_pretrained(lm, adapter).merge_and_unload()
    lm.eval()
    _HF_LOADED.update(key=key, model=lm, tokenizer=tokenizer)
    return lm, tokenizer


def _render(tokenizer, messages: Messages) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def _run_transformers(
    model: str, prompts: list[Messages], *, adapter, sampling, batch_size, progress, desc, **_
):
    import torch
    from tqdm.auto import tqdm

    lm, tokenizer = _load_hf(model, adapter)
    texts = [_render(tokenizer, p) for p in prompts]
    stop_ids = turn_end_ids(tokenizer, lm.generation_config.eos_token_id)
    # Longest first, so similar lengths share a batch (less padding) and memory peaks early.
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    greedy = sampling["temperature"] <= 0
    n_seq = 1 if greedy else sampling["n"]
    out: list[list[str]] = [[] for _ in texts]
    bar = tqdm(total=len(texts), desc=f"{desc} [transformers]", unit="prompt", disable=not progress)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        enc = tokenizer([texts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False)
        enc = enc.to(lm.device)
        kwargs: dict[str, Any] = dict(
            max_new_tokens=sampling["max_new_tokens"],
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=stop_ids,
        )
        if sampling.get("until"):
            kwargs["stopping_criteria"] = [_TextRule(tokenizer, enc["input_ids"].shape[1], sampling["until"])]
        if greedy:
            kwargs.update(do_sample=False, top_p=None, top_k=None, temperature=None)
        else:
            torch.manual_seed(sampling["seed"] + start)
            kwargs.update(
                do_sample=True,
                temperature=sampling["temperature"],
                top_p=sampling["top_p"],
                top_k=None,
                num_return_sequences=n_seq,
            )
        with torch.inference_mode():
            gen = lm.generate(**enc, **kwargs)
        new = gen[:, enc["input_ids"].shape[1] :]
        decoded = tokenizer.batch_decode(new, skip_special_tokens=True)
        for j, i in enumerate(idx):
            outs = [t.strip() for t in decoded[j * n_seq : (j + 1) * n_seq]]
            out[i] = outs * sampling["n"] if greedy else outs
        bar.update(len(idx))
    bar.close()
    return out


class _TextRule:
    """A transformers stopping criterion: a sequence is done once its new text satisfies a stop rule."""

    def __init__(self, tokenizer, prompt_len: int, rule: str):
        self.tokenizer, self.prompt_len, self.done = tokenizer, prompt_len, STOP_RULES[rule]

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        texts = self.tokenizer.batch_decode(input_ids[:, self.prompt_len :], skip_special_tokens=True)
        return torch.tensor([self.done(t) for t in texts], dtype=torch.bool, device=input_ids.device)


# --- vLLM backend --------------------------------------------------------------------------------

_VLLM: dict[str, Any] = {}  # one engine per process; adapters are LoRARequests on it


def _vllm_engine(model: str, adapter: str | None):
    """The process's offline engine for ``model``, restarted only for another model or a larger rank.

    Its arguments are ``crossling.vllm.engine_args``'s; LoRA stays on for any later adapter
    (``max_loras=4``, rank floor 64) and ``seed=0`` fixes the engine's own sampling seed.
    """
    from vllm import LLM

    path = _resolve_local(model)
    if adapter:
        _require_adapter(adapter)
        if extra := adapter_modules_to_save(adapter):
            raise GenerationError(
                f"adapter {adapter} also trains {extra} (modules_to_save), which vLLM's LoRA cannot load; "
                "use backend: transformers"
            )
    config = (
        json.loads((Path(path) / "config.json").read_text()) if Path(path, "config.json").is_file() else {}
    )
    # eval prompts are short; the model's own limit when it is shorter (tiny test models)
    max_model_len = min(4096, int(config.get("max_position_embeddings", 4096)))
    args = engine_args(
        path,
        max_model_len=max_model_len,
        adapters=[adapter] if adapter else [],
        max_loras=4,
        kv_cache_gib=float(os.environ.get("CROSSLING_VLLM_KV_GIB", DEFAULT_KV_CACHE_GIB)),
    )
    engine = _VLLM.get("engine")
    if engine is not None and _VLLM["path"] == path and _VLLM["max_rank"] >= args["max_lora_rank"]:
        return engine
    _VLLM.clear()
    # In-process engine core: spawning one would re-import the caller's __main__ (scripts without a
    # main guard, notebooks) and buys nothing for offline batches.
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    engine = LLM(**args, seed=0)
    _VLLM.update(engine=engine, path=path, max_rank=args["max_lora_rank"], lora_ids={})
    return engine


def _run_vllm(model: str, prompts: list[Messages], *, adapter, sampling, progress, **_):
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt
    from vllm.lora.request import LoRARequest

    engine = _vllm_engine(model, adapter)
    # Our tokenizer, not the engine's: it carries crossling's chat template for base models.
    tokenizer = load_tokenizer(model)
    lora = None
    if adapter:
        ids = _VLLM["lora_ids"]
        ids.setdefault(fingerprint(adapter), len(ids) + 1)
        lora = LoRARequest(Path(adapter).name, ids[fingerprint(adapter)], str(Path(adapter).resolve()))
    greedy = sampling["temperature"] <= 0
    params = SamplingParams(
        stop_token_ids=turn_end_ids(tokenizer),
        n=1 if greedy else sampling["n"],
        temperature=max(sampling["temperature"], 0.0),
        top_p=sampling["top_p"],
        max_tokens=sampling["max_new_tokens"],
        seed=sampling["seed"],
    )
    inputs = [
        TokensPrompt(prompt_token_ids=tokenizer(_render(tokenizer, p), add_special_tokens=False)["input_ids"])
        for p in prompts
    ]
    results = engine.generate(inputs, params, use_tqdm=progress, lora_request=lora)
    out = []
    for r in results:
        texts = [o.text.strip() for o in r.outputs]
        out.append(texts * sampling["n"] if greedy else texts)
    return out


# --- OpenAI-compatible endpoint ------------------------------------------------------------------


def _run_endpoint(
    model: str,
    prompts: list[Messages],
    *,
    adapter,
    sampling,
    base_url,
    api_key,
    concurrency,
    progress,
    desc,
    **_,
):
    import openai
    from tqdm.auto import tqdm

    client = openai.OpenAI(
        base_url=base_url,
        api_key=api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY",
        max_retries=3,
        timeout=600,
    )
    served = adapter or model
    greedy = sampling["temperature"] <= 0

    def one(messages: Messages) -> list[str]:
        want = 1 if greedy else sampling["n"]
        texts: list[str] = []
        try:
            while len(texts) < want:  # servers that ignore n give one choice per call
                resp = client.chat.completions.create(
                    model=served,
                    messages=messages,
                    n=want - len(texts),
                    temperature=sampling["temperature"],
                    top_p=sampling["top_p"],
                    max_tokens=sampling["max_new_tokens"],
                    seed=sampling["seed"] + len(texts),
                )
                texts += [(c.message.content or "").strip() for c in resp.choices]
        except openai.APIError as e:
            raise GenerationError(f"endpoint {base_url} (model {served!r}) failed: {e}") from e
        return texts * sampling["n"] if greedy else texts[:want]

    bar = tqdm(total=len(prompts), desc=f"{desc} [endpoint]", unit="prompt", disable=not progress)
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        futures = [pool.submit(one, p) for p in prompts]
        for f in futures:
            f.add_done_callback(lambda _f: bar.update())
        out = [f.result() for f in futures]
    bar.close()
    return out


# --- llama.cpp backend ---------------------------------------------------------------------------

_LLAMA: dict[str, Any] = {}  # one llama-server per process, kept while model and adapter stay the same
LLAMACPP_SLOTS = 8  # parallel sequences: the aggregate rate levels off around 8 on 2 cores


def _llama_server(model: str, adapter: str | None):
    """The process's llama-server for ``model`` (GGUF at the engine's default type) + ``adapter``
    (a GGUF LoRA, turned on per request), restarted only when either changes."""
    from crossling.gguf_convert import DEFAULT_GGUF_TYPE, lora_gguf, model_gguf
    from crossling.llamacpp import LlamaServer, build

    build()
    path = _resolve_local(model)
    if adapter:
        _require_adapter(adapter)
    gguf = model_gguf(path, DEFAULT_GGUF_TYPE)
    loras = [lora_gguf(adapter, path)] if adapter else []
    key = f"{gguf}::{loras}"
    server = _LLAMA.get("server")
    if server is not None and _LLAMA["key"] == key and server.alive():
        return server
    if server is not None:
        server.stop()
    _LLAMA.clear()
    config = json.loads((Path(path) / "config.json").read_text())
    ctx = min(4096, int(config.get("max_position_embeddings", 4096)))
    server = LlamaServer(gguf, loras, slots=LLAMACPP_SLOTS, ctx_per_slot=ctx).start()
    _LLAMA.update(key=key, server=server)
    return server


def _run_llamacpp(model: str, prompts: list[Messages], *, adapter, sampling, progress, desc, **_):
    """Chat prompts → llama-server's /completion (token-id prompts, one request per sample, as many
    in flight as it has slots). A model that opens a new turn has finished its answer: the template's
    turn openers (``crossling.models.TURN_OPENERS``, the ones in the vocabulary) are kept as text
    (``preserved_tokens``) so they can be stop strings."""
    import httpx
    from tqdm.auto import tqdm

    server = _llama_server(model, adapter)
    tokenizer = load_tokenizer(model)
    greedy = sampling["temperature"] <= 0
    n_seq = 1 if greedy else sampling["n"]
    vocab = tokenizer.get_vocab()
    openers = [t for t in TURN_OPENERS if t in vocab]
    base = {
        "n_predict": sampling["max_new_tokens"],
        "temperature": max(sampling["temperature"], 0.0),
        "top_p": sampling["top_p"],
        "top_k": 0,
        "min_p": 0.0,
        "samplers": ["temperature", "top_p"],
        "stop": openers,
        "preserved_tokens": openers,
        "cache_prompt": True,
        "lora": [{"id": 0, "scale": 1.0}] if adapter else [],
    }
    ids = [tokenizer(_render(tokenizer, p), add_special_tokens=False)["input_ids"] for p in prompts]
    bar = tqdm(total=len(prompts) * n_seq, desc=f"{desc} [llamacpp]", unit="sample", disable=not progress)

    done = STOP_RULES[sampling["until"]] if sampling.get("until") else None

    def one(client: httpx.Client, i: int, j: int) -> str:
        payload = {**base, "prompt": ids[i], "seed": (sampling["seed"] + j) % (2**32)}
        text = _stream_until(client, payload, done) if done else _complete(client, payload)
        bar.update()
        return text.strip()

    with (
        httpx.Client(base_url=server.base_url, timeout=None) as client,
        ThreadPoolExecutor(max_workers=LLAMACPP_SLOTS) as pool,
    ):
        # longest prompts first, so the slots stay evenly busy to the end
        jobs = sorted(
            ((i, j) for i in range(len(prompts)) for j in range(n_seq)), key=lambda t: -len(ids[t[0]])
        )
        futures = {job: pool.submit(one, client, *job) for job in jobs}
        texts = {job: f.result() for job, f in futures.items()}
    bar.close()
    out = [[texts[(i, j)] for j in range(n_seq)] for i in range(len(prompts))]
    return [o * sampling["n"] if greedy else o for o in out]


def _complete(client, payload: dict) -> str:
    resp = client.post("/completion", json=payload)
    if resp.status_code != 200:
        raise GenerationError(f"llama-server answered {resp.status_code}: {resp.text[:300]}")
    return resp.json()["content"]


def _stream_until(client, payload: dict, done: Callable[[str], bool]) -> str:
    """Stream one completion and hang up once ``done(text)``: llama-server cancels a request whose
    client has gone, so its slot takes the next prompt instead of finishing the budget."""
    from crossling.llamacpp import stream_chunk

    text = ""
    with client.stream("POST", "/completion", json={**payload, "stream": True}) as resp:
        if resp.status_code != 200:
            raise GenerationError(f"llama-server answered {resp.status_code}: {resp.read()[:300]!r}")
        for line in resp.iter_lines():
            chunk = stream_chunk(line, GenerationError)
            if chunk is None:
                continue
            text += chunk.get("content", "")
            if chunk.get("stop") or done(text):
                break
    return text


_BACKENDS: dict[str, Callable[..., list[list[str]]]] = {
    "transformers": _run_transformers,
    "vllm": _run_vllm,
    "endpoint": _run_endpoint,
    "llamacpp": _run_llamacpp,
}


def release() -> None:
    """Drop the models this process holds (between evaluations of different models)."""
    _HF_LOADED.clear()
    _VLLM.clear()
    if _LLAMA.get("server") is not None:
        _LLAMA["server"].stop()
    _LLAMA.clear()


# --- reading answers -----------------------------------------------------------------------------


LABEL_ENDS = (":", "：")  # a first line ending so is a label ("German translation:"), not the translation


def first_line_done(text: str) -> bool:
    """True once :func:`clean_translation` of ``text`` can no longer change: its first non-empty line
    is complete (a line break follows it) and is not a label line, or the line after a label is."""
    # the lines clean_translation splits on (str.splitlines), those a line break already ends
    complete = [
        ln.strip() for ln in text.splitlines(keepends=True) if ln.strip() and ln.splitlines()[0] != ln
    ]
    if not complete:
        return False
    return len(complete) > 1 or not complete[0].endswith(LABEL_ENDS)


STOP_RULES: dict[str, Callable[[str], bool]] = {"first_line": first_line_done}
"""Named early stops for :func:`generate` (``until=``), each paired with the reader of the answer."""


def clean_translation(text: str) -> str:
    """The translation out of a chatty response: its first non-empty line, after a label line such as
    "German translation:". Quotes are kept: news sentences often start or end with one."""
    lines = [ln.strip() for ln in (text or "").strip().splitlines() if ln.strip()]
    if len(lines) > 1 and lines[0].endswith(LABEL_ENDS):
        lines = lines[1:]
    return lines[0] if lines else ""
