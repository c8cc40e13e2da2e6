"""lm-evaluation-harness on edge models: the numbers of transformers' Llama, and quantized models run too."""

from __future__ import annotations

import json
import math

import lm_eval
import pytest
import yaml
from lm_eval.models.huggingface import HFLM
from lm_eval.tasks import TaskManager

from edge_llama.errors import EdgeLlamaError
from edge_llama.evaluation.harness import harness_model

from ..conftest import edge_from, tiny_llama

CONTEXT_LENGTH = 64
# Longer than the context window: lm-eval must truncate it to the window, not let the KV window slide.
LONG_QUESTION = "Count the apples: " + " ".join(f"apple number {i}," for i in range(30)) + " so the total is"
CHOICE_DOCS = [
    {"question": "The capital of France is", "choices": [" Paris", " London", " a small green frog"], "answer": 0},
    {"question": "Two plus two equals", "choices": [" four", " five"], "answer": 0},
    {"question": "The opposite of hot is", "choices": [" warm", " cold", " the sun"], "answer": 1},
    {"question": LONG_QUESTION, "choices": [" thirty", " seven apples and a pear"], "answer": 0},
]
GENERATE_DOCS = [
    {"question": "Once upon a time", "target": " there"},
    {"question": "The quick brown fox", "target": " jumps"},
]


@pytest.fixture(scope="module")
def task_manager(tmp_path_factory):
    """Two local tasks, a multiple-choice and a generate_until one, read from jsonl files offline."""
    folder = tmp_path_factory.mktemp("lm_eval_tasks")
    tasks = {
        "edge_tiny_choice": (
            CHOICE_DOCS,
            dict(
                output_type="multiple_choice",
                doc_to_choice="{{choices}}",
                doc_to_target="{{answer}}",
                metric_list=[{"metric": "acc"}, {"metric": "acc_norm"}],
            ),
        ),
        "edge_tiny_generate": (
            GENERATE_DOCS,
            dict(
                output_type="generate_until",
                doc_to_target="{{target}}",
                generation_kwargs={"until": ["\n"], "max_gen_toks": 8, "do_sample": False},
                metric_list=[{"metric": "exact_match"}],
            ),
        ),
    }
    for name, (docs, spec) in tasks.items():
        data = folder / f"{name}.jsonl"
        data.write_text("".join(json.dumps(doc) + "\n" for doc in docs))
        dataset_kwargs = {"data_files": {"test": str(data)}, "cache_dir": str(folder / "datasets")}
        task = dict(task=name, dataset_path="json", dataset_kwargs=dataset_kwargs, test_split="test")
        (folder / f"{name}.yaml").write_text(yaml.safe_dump({**task, "doc_to_text": "{{question}}", **spec}))
    return TaskManager(include_path=str(folder), include_defaults=False)  # skip indexing ~10k built-in tasks


def evaluate(lm, task_manager) -> dict:
    return lm_eval.simple_evaluate(
        model=lm, tasks=["edge_tiny_choice", "edge_tiny_generate"], task_manager=task_manager, bootstrap_iters=0
    )


def loglikelihoods(results) -> dict[int, list[float]]:
    return {s["doc_id"]: [ll for ll, _ in s["filtered_resps"]] for s in results["samples"]["edge_tiny_choice"]}


def generations(results) -> dict[int, str]:
    return {s["doc_id"]: s["filtered_resps"][0] for s in results["samples"]["edge_tiny_generate"]}


@pytest.fixture(scope="module")
def reference():
    return tiny_llama(vocab_size=49152, tie_word_embeddings=True)


@pytest.fixture(scope="module")
def edge_model(reference):
    return edge_from(reference, context_length=CONTEXT_LENGTH, ar_lengths=[16, 1])


@pytest.fixture(scope="module")
def reference_results(reference, default_tokenizer, task_manager):
    # transformers' own Llama through plain HFLM, batched and padded, cut to the same window.
    lm = HFLM(pretrained=reference, tokenizer=default_tokenizer, batch_size=4, max_length=CONTEXT_LENGTH)
    return evaluate(lm, task_manager)


@pytest.fixture(scope="module")
def edge_results(edge_model, default_tokenizer, task_manager):
    return evaluate(harness_model(edge_model, default_tokenizer), task_manager)


def test_the_long_question_does_not_fit_the_window(default_tokenizer):
    assert len(default_tokenizer(LONG_QUESTION).input_ids) > CONTEXT_LENGTH


def test_loglikelihoods_match_transformers(edge_results, reference_results):
    expected = loglikelihoods(reference_results)
    assert loglikelihoods(edge_results) == {doc: pytest.approx(ll, rel=1e-5, abs=1e-4) for doc, ll in expected.items()}
    edge_scores, reference_scores = (r["results"]["edge_tiny_choice"] for r in (edge_results, reference_results))
    assert (edge_scores["acc,none"], edge_scores["acc_norm,none"]) == (
        reference_scores["acc,none"],
        reference_scores["acc_norm,none"],
    )


def test_greedy_generations_match_transformers(edge_results, reference_results):
    expected = generations(reference_results)
    assert any(text.strip() for text in expected.values())  # something was generated to compare
    assert generations(edge_results) == expected


@pytest.mark.parametrize("recipe", ["w4-rtn", "8da4w"])
def test_quantized_model_runs(recipe, edge_model, default_tokenizer, task_manager, edge_results):
    quantized = edge_model.quantize(
        recipe, tokenizer=default_tokenizer, num_samples=2, sequence_length=32, progress=False
    )
    results = evaluate(harness_model(quantized, default_tokenizer), task_manager)
    float_lls, quantized_lls = loglikelihoods(edge_results), loglikelihoods(results)
    assert quantized_lls.keys() == float_lls.keys()
    assert all(math.isfinite(ll) for lls in quantized_lls.values() for ll in lls)
    assert quantized_lls != float_lls  # the quantized weights were evaluated, not the float ones
    assert 0.0 <= results["results"]["edge_tiny_choice"]["acc,none"] <= 1.0
    assert len(generations(results)) == len(GENERATE_DOCS)


def test_a_model_without_checkpoint_needs_a_tokenizer(edge_model):
    with pytest.raises(EdgeLlamaError, match="pass one"):
        harness_model(edge_model)
