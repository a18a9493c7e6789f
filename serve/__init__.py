"""crossling's serving area: an OpenAI-compatible API (``create_app``) over the vLLM or transformers
engine (``build_engine``), with keys, limits, metrics, the safety filter on input and streamed output,
and the Gradio UI at ``/ui``. ``crossling serve CONFIG`` runs it with uvicorn."""

from serve.app import create_app
from serve.config import LimitsConfig, ServeConfig
from serve.engine import Engine, SamplingSettings, build_engine

__all__ = ["Engine", "LimitsConfig", "SamplingSettings", "ServeConfig", "build_engine", "create_app"]
