"""The evaluation tasks and their registry, :data:`TASKS`: the one list of tasks an eval can run.

A generation task (:class:`Task`) has ``items()`` (prompts + what scoring needs) and
``score(items, outputs)``; the runner generates in between, per model. A report task
(:class:`ReportTask`, align's reward transfer) reads numbers another stage measured, once per run.
Tasks never load models. Each task module declares its :class:`TaskSpec` (``SPEC``: how to build it
from the config, and its report columns) next to the task.

Adding a task: write its module with a ``SPEC``, add it below, and give ``EvalConfig`` the fields its
builder reads. ``evaluation.config.TASK_NAMES``, the runner and the report follow from here.
"""

from evaluation.tasks import held_out, language_fidelity, math_reasoning, reward_transfer, safety, translation
from evaluation.tasks.base import Item, ReportTask, SubtaskScores, Task, TaskSpec

# name as configs write it in `tasks:` -> spec; tasks run, and the report lists them, in this order
TASKS: dict[str, TaskSpec] = {
    "language_fidelity": language_fidelity.SPEC,
    "translation": translation.SPEC,
    "mgsm": math_reasoning.SPEC,
    "safety": safety.SPEC,
    "held_out": held_out.SPEC,  # dev rows of a built dataset: for choosing, not for reporting
    "reward": reward_transfer.SPEC,
}

__all__ = ["TASKS", "Item", "ReportTask", "SubtaskScores", "Task", "TaskSpec"]
