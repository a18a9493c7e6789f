"""crossling: multilingual LLM fine-tuning and serving.

Shared pieces live here (languages, configs, the default model, devices); each stage of the flow has
its own top-level package: ``data_recipes``, ``sft``, ``align``, ``serve``, ``evaluation``.
"""

__version__ = "0.1.0"
