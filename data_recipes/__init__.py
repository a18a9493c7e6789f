"""data_recipes: crossling's multilingual training data — recipes (translation following, xCoT,
cross-lingual instructions, safety, preference prompts), quality gates, mixing and the
``crossling data build`` command. Not here: training or evaluation themselves.

``run(BuildConfig(...))`` builds a dataset in memory; ``card.write`` puts it on disk with its card and
drop report (``data/built/<name>/``), as ``crossling data build CONFIG`` does.
"""

from data_recipes import card
from data_recipes.build import BuildConfig, BuildResult, run
from data_recipes.gates import DropReport, GateConfig
from data_recipes.schema import sft_row, validate_row

__all__ = ["BuildConfig", "BuildResult", "DropReport", "GateConfig", "card", "run", "sft_row", "validate_row"]
