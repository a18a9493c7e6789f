"""The evaluation tasks: each turns shipped data into chat prompts and scores the completions.

A task has ``items()`` (prompts + what scoring needs) and ``score(items, outputs)``; the runner
generates in between. Tasks never load models. ``TASKS`` maps the names used in configs to builders.
"""

from evaluation.tasks.base import Item, SubtaskScores, Task

__all__ = ["Item", "SubtaskScores", "Task"]
