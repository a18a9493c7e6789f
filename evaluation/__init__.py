"""crossling evaluation: language fidelity, NTREX chrF/BLEU, MGSM, MultiJail safety, reward transfer.

``run_eval(EvalConfig(...))`` compares models, adapters or endpoints and writes ``results/<name>/``
(``crossling eval run CONFIG``); ``write_report`` re-renders report.md and charts from results.json.
Tasks are registered once in ``evaluation.tasks.TASKS``. Generation itself is
``crossling.generation.generate``, shared with align's sampling.
"""

from evaluation.config import EvalConfig, ModelSpec
from evaluation.report import main_table, write_report
from evaluation.runner import run_eval
from evaluation.tasks import TASKS

__all__ = ["TASKS", "EvalConfig", "ModelSpec", "main_table", "run_eval", "write_report"]
