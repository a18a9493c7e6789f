"""crossling: multilingual LLM fine-tuning and serving.

This package is the bottom layer: what several areas share, written once — configs and command-line
parsing (``config``), the language table and language ID (``languages``, ``langid``), the default
model and model loading (``models``), devices and dtypes (``device``), PEFT adapter folders
(``adapters``), the user's record files and the shipped corpora (``loaders``, ``corpora``),
decontamination against every eval set (``decontamination``), and batch generation on transformers,
vLLM or an endpoint (``generation``, ``vllm``). Each stage of the flow is a top-level package above
it: ``safety`` → ``data_recipes`` → ``sft`` → ``align`` → ``evaluation`` → ``serve`` (imports point
down only; ``tests/test_layers.py`` enforces it).
"""

from crossling.adapters import fingerprint, is_adapter, require_adapter
from crossling.config import load_config, parse_cli
from crossling.errors import ConfigError, CrosslingError, DataError, ModelNotFoundError
from crossling.generation import generate
from crossling.langid import detect, in_language, is_language
from crossling.languages import LANGUAGES
from crossling.models import load_causal_lm, load_tokenizer, prepare, resolve_model

__version__ = "0.1.0"
__all__ = [
    "LANGUAGES",
    "ConfigError",
    "CrosslingError",
    "DataError",
    "ModelNotFoundError",
    "detect",
    "fingerprint",
    "generate",
    "in_language",
    "is_adapter",
    "is_language",
    "load_causal_lm",
    "load_config",
    "load_tokenizer",
    "parse_cli",
    "prepare",
    "require_adapter",
    "resolve_model",
]
