"""Lazy public APIs: ``from sft import run`` works, while ``import sft`` stays cheap.

Some areas' APIs live in modules that import torch, transformers and TRL (seconds to load). Their
``__init__`` names each export's module here, and the module is imported on first access (PEP 562),
so ``crossling sft --help`` or importing a config dataclass never pays for the trainer.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, where: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``: ``where`` maps an exported name to ``"module"``
    (the same name there) or ``"module:attribute"``."""

    def __getattr__(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, _, attribute = where[name].partition(":")
        return getattr(importlib.import_module(module), attribute or name)

    def __dir__() -> list[str]:
        return sorted(where)

    return __getattr__, __dir__
