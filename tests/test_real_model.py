"""The embedded SmolLM2-135M-Instruct: the edge model equals LlamaForCausalLM on real weights."""

from __future__ import annotations

import pytest
import torch

from edge_llama import EdgeLlamaForCausalLM
from edge_llama.generation.chat import encode_prompt

from .conftest import relative_error
from .reference import reference_logits, visibility
from .test_modeling import run_segments

pytestmark = pytest.mark.slow

# Our own words, repeated to any length: real-text attention patterns without third-party data.
TEXT = (
    "The lighthouse keeper wrote down the weather every morning: the wind, the height of the waves, "
    "the colour of the sky over the harbour, and how many boats went out before the bell rang at seven. "
    "On calm days the notes were short; on stormy ones they ran to several pages. "
)


def text_ids(tokenizer, length: int) -> torch.Tensor:
    ids = tokenizer(TEXT * (1 + length // 20), return_tensors="pt").input_ids[:, :length]
    assert ids.shape[1] == length
    return ids


@pytest.fixture(scope="module")
def edge_512(default_model_path):
    return EdgeLlamaForCausalLM.from_pretrained(default_model_path, context_length=512)


@pytest.fixture(scope="module")
def edge_256(default_model_path):
    return EdgeLlamaForCausalLM.from_pretrained(default_model_path, context_length=256)


@pytest.mark.parametrize("segments", [[21], [128], [2 * 128 + 7]], ids=["shorter-than-ar", "exactly-ar", "several-ars"])
def test_logits_match_llama(edge_512, default_reference, default_tokenizer, segments):
    input_ids = text_ids(default_tokenizer, sum(segments))
    logits, calls = run_segments(edge_512, input_ids, segments)
    expected = reference_logits(default_reference, input_ids, visibility(calls, 512))
    assert relative_error(logits, expected) <= 1e-4


def test_conversation_sliding_past_the_context(edge_256, default_reference, default_tokenizer):
    segments = [100] + [1] * 20 + [150] + [1] * 30  # 300 tokens through a 256-position window
    input_ids = text_ids(default_tokenizer, sum(segments))
    logits, calls = run_segments(edge_256, input_ids, segments)
    expected = reference_logits(default_reference, input_ids, visibility(calls, 256))
    assert relative_error(logits, expected) <= 1e-4


def test_greedy_generate_matches_llama(edge_512, default_reference, default_tokenizer):
    input_ids = encode_prompt(default_tokenizer, "Write a short poem about the sea.")
    options = dict(max_new_tokens=32, min_new_tokens=32, do_sample=False, attention_mask=torch.ones_like(input_ids))
    expected = default_reference.generate(input_ids, **options)
    actual = edge_512.generate(input_ids, **options)
    assert actual.shape[1] == input_ids.shape[1] + 32
    assert torch.equal(actual, expected)
