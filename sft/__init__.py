"""QLoRA supervised fine-tuning: ``crossling sft train | merge | average`` (see docs/sft.md).

``sft.modeling`` (model loading) and ``sft.runs`` (run-folder helpers) are shared with ``align``.
"""
