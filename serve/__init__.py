"""crossling's serving area: an OpenAI-compatible API (``serve.app.create_app``) over the vLLM or
transformers engine (``serve.engine``), with keys, limits, metrics, safety hooks and the UI."""
