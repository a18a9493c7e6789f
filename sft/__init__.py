"""QLoRA supervised fine-tuning: ``crossling sft train | merge | average`` (see docs/sft.md).

``sft.modeling`` (model loading) and ``sft.runs`` (run-folder helpers) are shared with ``align``.
The trainer-side exports load torch/transformers/TRL on first use, not on ``import sft``.
"""

from crossling.exports import lazy_exports
from sft.config import AverageConfig, MergeConfig, SFTRunConfig

__all__ = [
    "AverageConfig",
    "MergeConfig",
    "SFTRunConfig",
    "average_adapters",
    "latest_checkpoint",
    "load_model_for_training",
    "merge_adapter",
    "run",
]
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "run": "sft.recipe",
        "load_model_for_training": "sft.modeling",
        "merge_adapter": "sft.runs",
        "average_adapters": "sft.runs",
        "latest_checkpoint": "sft.runs",
    },
)
