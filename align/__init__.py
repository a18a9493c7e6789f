"""align: reward models trained in one language and reused in others, DPO and KTO on their scores.

Entry point: ``crossling align <verb> CONFIG`` (``align.cli``). Recipes: ``align.reward`` (reward model +
transfer report), ``align.preference_optimization`` (DPO / KTO), ``align.win_rate`` (aligned vs SFT on
held-out prompts, judged independently). The trainer-side exports load torch/TRL on first use.
"""

from align.config import DPORunConfig, KTORunConfig, PreferenceDataConfig, RewardRunConfig, WinRateConfig
from crossling.exports import lazy_exports

__all__ = [
    "DPORunConfig",
    "KTORunConfig",
    "PreferenceDataConfig",
    "RewardRunConfig",
    "RewardScorer",
    "WinRateConfig",
    "build_preference_pairs",
    "train_preference",
    "train_reward_model",
    "win_rate",
]
_where = {
    "RewardScorer": "align.reward",
    "train_reward_model": "align.reward:run",
    "train_preference": "align.preference_optimization:run",
    "build_preference_pairs": "align.preference_data:build",
    "win_rate": "align.win_rate:run",
}
__getattr__, __dir__ = lazy_exports(__name__, _where)
