"""Evaluation of float, simulated and exported edge models: one `evaluate(model, task)` for all."""

from .harness import harness_model
from .perplexity import PerplexityResult, perplexity
from .tasks import EvaluationResult, TaskDataError, TaskError, available_tasks, evaluate, format_results

__all__ = [
    "EvaluationResult",
    "PerplexityResult",
    "TaskDataError",
    "TaskError",
    "available_tasks",
    "evaluate",
    "format_results",
    "harness_model",
    "perplexity",
]
