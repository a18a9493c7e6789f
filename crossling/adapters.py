"""PEFT adapter folders as every area reads them: is it one, its rank, its base, its fingerprint.

One reader for what sft writes and align, evaluation and serve load: an adapter folder is one that
holds ``adapter_config.json`` (what ``PeftModel.from_pretrained`` needs). ``fingerprint`` names a
model or adapter folder by content, for the caches that must not outlive a retrained model
(``crossling.generation``'s completions, align's scored samples).

Not here: loading, training or merging adapters (``sft.modeling``, ``sft.runs``), nor which
adapters vLLM can serve (``crossling.vllm``).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from crossling.errors import ConfigError

ADAPTER_CONFIG = "adapter_config.json"
# peft.LoraConfig's default ``r``: what PEFT itself builds when a config leaves the rank out.
PEFT_DEFAULT_RANK = 8
# Files whose bytes decide what a model answers: weights, the configs read when it loads and
# generates, and the tokenizer with its chat template.
WEIGHT_SUFFIXES = (".safetensors", ".bin")
IDENTITY_FILES = frozenset(
    {
        ADAPTER_CONFIG,
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "chat_template.jinja",
        "tokenizer.model",
    }
)


def is_adapter(path: str | Path) -> bool:
    """True when ``path`` is a PEFT adapter folder (it holds ``adapter_config.json``)."""
    return (Path(path).expanduser() / ADAPTER_CONFIG).is_file()


def require_adapter(path: str | Path, what: str, hint: str = "") -> Path:
    """``path`` as a Path when it is an adapter folder; else a ConfigError naming ``what`` and ``path``."""
    folder = Path(path).expanduser()
    if not is_adapter(folder):
        message = f"{what}: {path} is not a PEFT adapter folder (no {ADAPTER_CONFIG})"
        raise ConfigError(f"{message}. {hint}" if hint else message)
    return folder


def adapter_config(path: str | Path) -> dict[str, Any]:
    """The adapter's ``adapter_config.json`` (ConfigError when ``path`` is no adapter folder)."""
    folder = require_adapter(path, "adapter")
    return json.loads((folder / ADAPTER_CONFIG).read_text(encoding="utf-8"))


def adapter_rank(path: str | Path) -> int:
    """The largest LoRA rank in the adapter: ``r`` (PEFT's default 8 when missing) or any per-module
    ``rank_pattern`` rank above it — the number vLLM checks against ``max_lora_rank``."""
    config = adapter_config(path)
    ranks = [int(config.get("r") or PEFT_DEFAULT_RANK)]
    ranks += [int(r) for r in (config.get("rank_pattern") or {}).values()]
    return max(ranks)


def adapter_base_model(path: str | Path) -> str | None:
    """The base model the adapter was trained on (``base_model_name_or_path``), None when not recorded."""
    return adapter_config(path).get("base_model_name_or_path") or None


def adapter_modules_to_save(path: str | Path) -> list[str]:
    """Modules the adapter trains in full besides its LoRA weights (``modules_to_save``)."""
    return list(adapter_config(path).get("modules_to_save") or [])


# --- fingerprints --------------------------------------------------------------------------------

_FILE_HASHES: dict[tuple[str, int, int], str] = {}  # (resolved path, size, mtime_ns) → sha256


def fingerprint(name_or_path: str | Path | None) -> str | None:
    """A model's or adapter's identity by content: a hash over its weight files and the configs and
    tokenizer files that change its outputs (``checkpoint-*`` folders left out); a file is hashed
    alone. A hub id (no such local path), ``""`` and None come back as they are.

    Two copies of one model share a fingerprint; a model retrained into the same folder gets a new
    one. Each file's hash is kept per process while its size and mtime stay the same, so a cache
    that asks on every call re-reads nothing.
    """
    if not name_or_path:  # None or "" (a Path is never falsy)
        return None if name_or_path is None else ""
    root = Path(name_or_path).expanduser()
    if not root.exists():
        return str(name_or_path)
    files = [(root.name, root)] if root.is_file() else _identity_files(root)
    h = hashlib.sha256()
    for name, path in files:
        h.update(f"{name}\0{sha256_file(path)}\n".encode())
    return h.hexdigest()[:16]


def _identity_files(root: Path) -> list[tuple[str, Path]]:
    """(relative name, path) of every file of ``root`` that decides outputs, sorted by name."""
    found = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith("checkpoint-")]  # snapshots, not the model
        for name in names:
            if name.endswith(WEIGHT_SUFFIXES) or name in IDENTITY_FILES:
                path = Path(folder, name)
                found.append((path.relative_to(root).as_posix(), path))
    return sorted(found)


def sha256_file(path: str | Path, cached: bool = True) -> str:
    """The sha256 of a file, streamed. ``cached``: kept per process while the file's size and mtime
    stay the same (integrity checks pass ``cached=False`` and re-read the bytes)."""
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if not cached or key not in _FILE_HASHES:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while block := f.read(1 << 22):
                h.update(block)
        _FILE_HASHES[key] = h.hexdigest()
    return _FILE_HASHES[key]
