"""`model.split(parts=N)`: runnable parts whose chain is exactly the whole graph, float and quantized."""

from __future__ import annotations

import pytest
import torch

from edge_llama import EdgeLlamaConfigError
from edge_llama.split import layer_ranges

from .conftest import edge_from, tiny_llama


@pytest.fixture(scope="module")
def edge():
    return edge_from(tiny_llama(num_hidden_layers=5), context_length=64, ar_lengths=[16, 1])


def filled_inputs(model, ar_length, seed=0):
    """A call with a random past in the window, so every input matters."""
    input_ids, mask, cos, sin, keys, values = model.graph(ar_length).example_inputs()
    torch.manual_seed(seed)
    input_ids = torch.randint(3, model.config.vocab_size, input_ids.shape)
    return input_ids, torch.zeros_like(mask), cos, sin, [torch.randn_like(k) for k in keys], [torch.randn_like(v) for v in values]


def test_layer_ranges_are_contiguous_and_even():
    assert layer_ranges(30, 4) == [range(0, 10), range(10, 20), range(20, 30)]
    assert layer_ranges(5, 3) == [range(0, 3), range(3, 5)]
    assert layer_ranges(2, 3) == [range(0, 1), range(1, 2)]


@pytest.mark.parametrize("parts", [1, 7, 0, 2.5])
def test_impossible_part_counts_are_refused(edge, parts):
    with pytest.raises(EdgeLlamaConfigError, match="parts must be an integer from 2"):
        edge.split(parts=parts)


@pytest.mark.parametrize("parts", [2, 3, 6])
@pytest.mark.parametrize("ar_length", [16, 1])
def test_chained_parts_equal_the_whole_graph(edge, parts, ar_length):
    inputs = filled_inputs(edge, ar_length)
    split = edge.split(parts=parts)
    assert len(split) == parts
    with torch.no_grad():
        expected = edge.graph_forward(*inputs)
        actual = split(*inputs)
    assert torch.equal(actual[0], expected[0])
    for got, want in zip(actual[1] + actual[2], expected[1] + expected[2]):
        assert torch.equal(got, want)


def test_parts_have_explicit_io(edge):
    split = edge.split(parts=3)
    first, middle, last = split
    assert first.input_names == ["input_ids"] and first.output_names == ["hidden_states_0"]
    assert middle.input_names[:4] == ["hidden_states_0", "attention_mask", "position_cos", "position_sin"]
    assert middle.input_names[4:] == [f"past_key_{l}_in" for l in range(3)] + [f"past_value_{l}_in" for l in range(3)]
    assert middle.output_names[0] == "hidden_states_3" and last.input_names[0] == "hidden_states_3"
    assert last.output_names[0] == "logits" and last.output_names[1:] == ["past_key_3_out", "past_key_4_out", "past_value_3_out", "past_value_4_out"]
    assert [part.name for part in split] == ["part_1_of_3", "part_2_of_3", "part_3_of_3"]


def test_each_part_runs_alone_and_exports(edge):
    split = edge.split(parts=3)
    for part, inputs, outputs in split.part_inputs(*filled_inputs(edge, 16)):
        assert len(inputs) == len(part.input_names) and len(outputs) == len(part.output_names)
        exported = torch.export.export(part, inputs, strict=False)
        again = exported.module()(*inputs)
        assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(again, outputs))


def test_default_part_count_comes_from_the_config(edge):
    assert len(edge.split()) == edge.config.default_num_parts() == 2
    configured = edge_from(tiny_llama(num_hidden_layers=5), context_length=64, ar_lengths=[16, 1], num_parts=4)
    assert len(configured.split()) == 4


def test_quantized_parts_chain_to_the_quantized_graph(default_tokenizer):
    reference = tiny_llama(vocab_size=49152, hidden_size=128, intermediate_size=256, num_hidden_layers=3)
    model = edge_from(reference, context_length=64, ar_lengths=[16, 1])
    quantized = model.quantize("w4a16", tokenizer=default_tokenizer, num_samples=1, sequence_length=16, progress=False)
    inputs = filled_inputs(quantized, 16)
    with torch.no_grad():
        expected = quantized.graph_forward(*inputs)
        actual = quantized.split(parts=3)(*inputs)
        floating = model.graph_forward(*inputs)
    assert torch.equal(actual[0], expected[0])
    assert not torch.equal(actual[0], floating[0])  # the parts ran the simulation, not float
