"""align: reward models trained in one language and reused in others, DPO and KTO on their scores.

Entry point: ``crossling align <verb> CONFIG`` (``align.cli``). Recipes: ``align.reward`` (reward model +
transfer report), ``align.preference_optimization`` (DPO / KTO), ``align.win_rate`` (evaluation).
"""
