"""Translator: texts the corpus lacks, from an OpenAI-compatible endpoint or a local transformers model.

Backends:
- ``endpoint``: any OpenAI-compatible server (crossling's own ``crossling serve``, vLLM, a hosted
  API) through the official ``openai`` client: ``batch_size`` requests in flight at once, each retried
  ``max_retries`` times with back-off (the client's own), results cached as they arrive.
- ``transformers``: a local model — seq2seq MT models (Marian, NLLB, M2M) or a causal chat model
  (prompted with the same instruction as the endpoint), generated in batches.

Every result is written to an SQLite cache the moment it arrives, keyed by a hash of (backend, model,
source language, target language, text): the same input never costs a second call, and an
interrupted run resumes where it stopped. Not here: deciding *what* to translate (the recipes).
"""

from __future__ import annotations

import hashlib
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from crossling import languages
from crossling.errors import ConfigError, CrosslingError
from crossling.sqlite_cache import open_wal_db

PROMPT = (
    "Translate the following text from {src} to {tgt}. Output only the translation, nothing else.\n\n{text}"
)


@dataclass
class TranslatorConfig:
    backend: str = field(
        default="endpoint", metadata={"help": "'endpoint' (OpenAI-compatible) or 'transformers'."}
    )
    model: str = field(
        default="", metadata={"help": "Model name at the endpoint, or a local path / model id."}
    )
    base_url: str | None = field(
        default=None, metadata={"help": "Endpoint URL, e.g. http://localhost:8000/v1."}
    )
    api_key: str | None = field(default=None, metadata={"help": "Endpoint API key (or set OPENAI_API_KEY)."})
    cache_path: str = field(
        default=".cache/crossling/translations.sqlite", metadata={"help": "SQLite cache file."}
    )
    batch_size: int = field(
        default=8,
        metadata={"help": "Requests in flight at once (endpoint: its concurrency) or batch size (local)."},
    )
    max_retries: int = field(
        default=2,
        metadata={
            "help": "Endpoint: retries of a failed request (connection errors, 408/409/429/5xx), with "
            "the openai client's exponential back-off; then the build stops, keeping what is cached."
        },
    )
    max_new_tokens: int = field(default=512, metadata={"help": "Longest translation generated."})
    timeout_s: float = field(default=120.0, metadata={"help": "Per-request timeout for the endpoint."})

    def __post_init__(self) -> None:
        if self.backend not in ("endpoint", "transformers"):
            raise ValueError(f"translator backend must be 'endpoint' or 'transformers', got {self.backend!r}")
        if self.batch_size < 1 or self.max_retries < 0:
            raise ValueError(
                f"batch_size must be >= 1 and max_retries >= 0, got {self.batch_size}, {self.max_retries}"
            )


class TranslationCache:
    """A thread-safe SQLite key → translation store (one commit per result: resumable).

    WAL mode with a long busy timeout: several build processes on one machine may share the file (a
    writer waits for another's commit instead of failing with "database is locked"). Not on a network
    file system: SQLite's locks do not hold there; give each machine its own file.
    """

    def __init__(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.db = open_wal_db(path, "CREATE TABLE IF NOT EXISTS t (key TEXT PRIMARY KEY, text TEXT NOT NULL)")
        self.lock = threading.Lock()

    def get_many(self, keys: list[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        with self.lock:
            for i in range(0, len(keys), 500):
                chunk = keys[i : i + 500]
                marks = ",".join("?" * len(chunk))
                out.update(
                    self.db.execute(f"SELECT key, text FROM t WHERE key IN ({marks})", chunk).fetchall()
                )
        return out

    def put(self, key: str, text: str) -> None:
        with self.lock:
            self.db.execute("INSERT OR REPLACE INTO t VALUES (?, ?)", (key, text))
            self.db.commit()

    def close(self) -> None:
        self.db.close()


class Translator:
    """``translate(texts, src, tgt) -> list[str]``; cached, batched, resumable."""

    def __init__(self, cfg: TranslatorConfig) -> None:
        if not cfg.model:
            raise ConfigError("translator.model is required")
        if cfg.backend == "endpoint" and not cfg.base_url:
            raise ConfigError("translator.base_url is required for the endpoint backend")
        self.cfg = cfg
        self.cache = TranslationCache(cfg.cache_path)
        self.calls = 0  # texts actually sent to a backend (not served from cache)
        self._client = None
        self._local = None

    def key(self, text: str, src: str, tgt: str) -> str:
        raw = "\x1f".join((self.cfg.backend, self.cfg.model, src, tgt, text))
        return hashlib.sha256(raw.encode("utf-8")).hexdigest()

    def translate(self, texts: list[str], src: str, tgt: str, progress: bool = True) -> list[str]:
        src, tgt = languages.get(src).code, languages.get(tgt).code
        keys = [self.key(t, src, tgt) for t in texts]
        done = self.cache.get_many(list(dict.fromkeys(keys)))
        todo = list(dict.fromkeys(t for t, k in zip(texts, keys, strict=True) if k not in done))
        if todo:
            bar = tqdm(total=len(todo), desc=f"translating {src}→{tgt}", unit="text", disable=not progress)
            fn = self._endpoint if self.cfg.backend == "endpoint" else self._transformers
            for text, out in fn(todo, src, tgt):
                self.cache.put(self.key(text, src, tgt), out)
                done[self.key(text, src, tgt)] = out
                self.calls += 1
                bar.update(1)
            bar.close()
        return [done[k] for k in keys]

    # --- backends ------------------------------------------------------------------------------------

    def _endpoint(self, texts: list[str], src: str, tgt: str):
        import openai

        if self._client is None:
            self._client = openai.OpenAI(
                base_url=self.cfg.base_url,
                api_key=self.cfg.api_key or "none",
                timeout=self.cfg.timeout_s,
                max_retries=self.cfg.max_retries,
            )
        client = self._client

        def one(text: str) -> tuple[str, str]:
            prompt = PROMPT.format(src=languages.name(src), tgt=languages.name(tgt), text=text)
            try:
                resp = client.chat.completions.create(
                    model=self.cfg.model,
                    messages=[{"role": "user", "content": prompt}],
                    temperature=0.0,
                    max_tokens=self.cfg.max_new_tokens,
                )
            except openai.OpenAIError as e:
                raise CrosslingError(f"translator endpoint {self.cfg.base_url} failed: {e}") from e
            return text, (resp.choices[0].message.content or "").strip()

        # At most batch_size requests in flight; each result is yielded (and cached by translate) as
        # soon as it arrives, so a request that fails after its retries loses no finished one.
        with ThreadPoolExecutor(max_workers=self.cfg.batch_size) as pool:
            futures = [pool.submit(one, t) for t in texts]
            try:
                for future in as_completed(futures):
                    yield future.result()
            finally:
                for future in futures:
                    future.cancel()

    def _transformers(self, texts: list[str], src: str, tgt: str):
        import torch

        model, tok, seq2seq = self._load_local()
        for i in range(0, len(texts), self.cfg.batch_size):
            batch = texts[i : i + self.cfg.batch_size]
            if seq2seq:
                inputs = tok(batch, return_tensors="pt", padding=True, truncation=True)
            else:
                chats = [
                    [
                        {
                            "role": "user",
                            "content": PROMPT.format(
                                src=languages.name(src), tgt=languages.name(tgt), text=t
                            ),
                        }
                    ]
                    for t in batch
                ]
                prompts = [
                    tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in chats
                ]
                inputs = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
            with torch.inference_mode():
                out = model.generate(**inputs, max_new_tokens=self.cfg.max_new_tokens, do_sample=False)
            if not seq2seq:
                out = out[:, inputs["input_ids"].shape[1] :]
            yield from zip(
                batch, (s.strip() for s in tok.batch_decode(out, skip_special_tokens=True)), strict=True
            )

    def _load_local(self):
        if self._local is None:
            from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

            config = AutoConfig.from_pretrained(self.cfg.model)
            seq2seq = bool(getattr(config, "is_encoder_decoder", False))
            tok = AutoTokenizer.from_pretrained(self.cfg.model, padding_side="left")
            if tok.pad_token is None:
                tok.pad_token = tok.eos_token
            cls = AutoModelForSeq2SeqLM if seq2seq else AutoModelForCausalLM
            model = cls.from_pretrained(self.cfg.model).eval()
            self._local = (model, tok, seq2seq)
        return self._local


def translate_problems(
    translator: Translator, problems: list[dict], langs: list[str]
) -> dict[str, dict[str, dict]]:
    """English CoT problems → ``{id: {lang: {"question", "cot", "answer"}}}`` for the xcot recipe."""
    out: dict[str, dict[str, dict]] = {p["id"]: {"en": p} for p in problems}
    for lang in langs:
        if lang == "en":
            continue
        questions = translator.translate([p["question"] for p in problems], "en", lang)
        cots = translator.translate([p["cot"] for p in problems], "en", lang)
        for p, q, c in zip(problems, questions, cots, strict=True):
            out[p["id"]][lang] = {"id": p["id"], "lang": lang, "question": q, "cot": c, "answer": p["answer"]}
    return out
