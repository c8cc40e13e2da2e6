"""Every export target starts from torch.export of one AR instantiation with static shapes."""

from __future__ import annotations

import pytest
import torch

from ..conftest import edge_from, tiny_llama


@pytest.fixture(scope="module")
def edge():
    return edge_from(tiny_llama(num_hidden_layers=2), context_length=256, ar_lengths=[128, 1])


@pytest.mark.parametrize("ar_length", [128, 1], ids=["prompt-ar128", "token-ar1"])
@pytest.mark.parametrize("strict", [True, False], ids=["strict", "non-strict"])
def test_torch_export_static_shapes(edge, ar_length, strict):
    graph = edge.graph(ar_length)
    args = graph.example_inputs()
    exported = torch.export.export(graph, args, strict=strict)

    placeholders = [node for node in exported.graph.nodes if node.op == "placeholder"]
    user_inputs = [node for node in placeholders if node.name not in exported.graph_signature.inputs_to_parameters]
    for node in user_inputs:
        shape = node.meta["val"].shape
        assert all(isinstance(dim, int) for dim in shape), f"{node.name} has a symbolic shape {shape}"

    # Run it on a non-trivial input: a filled window.
    input_ids, mask, cos, sin, past_keys, past_values = args
    torch.manual_seed(0)
    past_keys = [torch.randn_like(k) for k in past_keys]
    past_values = [torch.randn_like(v) for v in past_values]
    mask = torch.zeros_like(mask)
    inputs = (torch.randint(3, 160, input_ids.shape), mask, cos, sin, past_keys, past_values)
    with torch.no_grad():
        expected = graph(*inputs)
        actual = exported.module()(*inputs)
    assert torch.allclose(actual[0], expected[0], rtol=1e-5, atol=1e-5)
    for got, want in zip(actual[1] + actual[2], expected[1] + expected[2]):
        assert torch.allclose(got, want, rtol=1e-5, atol=1e-5)
