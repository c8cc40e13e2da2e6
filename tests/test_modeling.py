"""The edge model reproduces LlamaForCausalLM: every rewrite, every prompt length, past the context."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaForCausalLM

from edge_llama import EdgeLlamaConfig, EdgeLlamaForCausalLM
from edge_llama.generation import plan_chunks

from .conftest import edge_from, relative_error, tiny_llama
from .reference import reference_logits, visibility

CL, AR = 64, 16
TOLERANCE = 1e-4

CONFIGS = {
    "mha": dict(num_key_value_heads=4),
    "gqa": dict(num_key_value_heads=2),
    "gqa-4to1-untied": dict(num_key_value_heads=1, tie_word_embeddings=False),
    "tied": dict(tie_word_embeddings=True),
    "theta-500k": dict(rope_parameters={"rope_type": "default", "rope_theta": 500000.0}),
    "llama3-scaling": dict(
        rope_parameters={
            "rope_type": "llama3",
            "rope_theta": 500000.0,
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 32,
        }
    ),
    "head-dim-128": dict(head_dim=128, num_attention_heads=2, num_key_value_heads=1),
    "biases": dict(attention_bias=True, mlp_bias=True),
}

# (segments fed one after another): a prompt, decoding, a second turn, more decoding — 100 tokens > CL.
CONVERSATION = [30] + [1] * 10 + [40] + [1] * 20


def run_segments(model: EdgeLlamaForCausalLM, input_ids: torch.Tensor, segments: list[int]):
    """Feeds `input_ids` in `segments` through one window; returns logits and the calls made."""
    window, logits, calls, start = model.runner.new_window(), [], [], 0
    for length in segments:
        with torch.no_grad():
            out = model(input_ids[:, start : start + length], past_key_values=window)
        logits.append(out.logits[0])
        calls += plan_chunks(length, model.config.ar_lengths)
        start += length
    return torch.cat(logits), calls


def assert_matches_reference(reference, edge, segments, seed=1):
    torch.manual_seed(seed)
    input_ids = torch.randint(3, reference.config.vocab_size, (1, sum(segments)))
    logits, calls = run_segments(edge, input_ids, segments)
    expected = reference_logits(reference, input_ids, visibility(calls, edge.config.context_length))
    assert logits.shape == expected.shape
    assert relative_error(logits, expected) <= TOLERANCE


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("segments", [[5], [AR], [3 * AR + 5], CONVERSATION], ids=["short", "one-ar", "multi-ar", "slides-past-cl"])
def test_logits_match_llama(name, segments):
    reference = tiny_llama(**CONFIGS[name])
    edge = edge_from(reference, context_length=CL, ar_lengths=[AR, 1])
    assert_matches_reference(reference, edge, segments)


@pytest.mark.parametrize("split_heads", [True, False], ids=["sha", "fused"])
@pytest.mark.parametrize("conv", [True, False], ids=["conv", "linear"])
def test_each_rewrite_can_be_switched_off(split_heads, conv):
    reference = tiny_llama()
    edge = edge_from(
        reference, context_length=CL, ar_lengths=[AR, 1], use_split_head_attention=split_heads, use_conv_projections=conv
    )
    projection = edge.model.layers[0].self_attn.q_proj
    assert isinstance(projection, torch.nn.ModuleList) == split_heads
    first = projection[0] if split_heads else projection
    assert isinstance(first, torch.nn.Conv2d if conv else torch.nn.Linear)
    assert_matches_reference(reference, edge, CONVERSATION)


def test_an_unfilled_window_equals_plain_causal_attention():
    """Before the window fills, the window rule is ordinary causal attention (checks the rule itself)."""
    reference = tiny_llama()
    edge = edge_from(reference, context_length=CL, ar_lengths=[AR, 1])
    input_ids = torch.randint(3, 160, (1, 40))
    logits, _ = run_segments(edge, input_ids, [20, 1, 1, 18])
    with torch.no_grad():
        expected = reference(input_ids).logits[0]
    assert relative_error(logits, expected) <= TOLERANCE


def test_graph_call_shapes():
    edge = edge_from(tiny_llama(), context_length=CL, ar_lengths=[AR, 1])
    config = edge.config
    for ar in config.ar_lengths:
        args = edge.graph(ar).example_inputs()
        input_ids, mask, cos, sin, past_keys, past_values = args
        assert input_ids.shape == (1, ar) and mask.shape == (1, 1, ar, CL)
        assert cos.shape == sin.shape == (1, 1, ar, config.head_dim // 2)
        assert past_keys[0].shape == (config.num_key_value_heads, 1, config.head_dim, CL - ar)
        assert past_values[0].shape == (config.num_key_value_heads, 1, CL - ar, config.head_dim)
        with torch.no_grad():
            logits, keys_out, values_out = edge.graph_forward(*args)
        assert logits.shape == (1, ar, config.vocab_size)
        assert len(keys_out) == len(values_out) == config.num_hidden_layers
        assert keys_out[0].shape == (config.num_key_value_heads, 1, config.head_dim, ar)
        assert values_out[0].shape == (config.num_key_value_heads, 1, ar, config.head_dim)


def test_mask_is_clipped_not_infinite():
    edge = edge_from(tiny_llama(), context_length=CL, ar_lengths=[AR, 1])
    mask = edge.graph(AR).example_inputs()[1]
    assert torch.isfinite(mask).all()
    assert mask.min().item() == edge.config.attention_mask_value == -50.0


def test_state_dict_keeps_hf_names_and_shapes():
    reference = tiny_llama()
    edge = edge_from(reference, context_length=CL, ar_lengths=[AR, 1])
    expected = reference.state_dict()
    actual = edge.state_dict()
    assert sorted(actual) == sorted(expected)
    for key, tensor in expected.items():
        assert actual[key].shape == tensor.shape, key
        assert torch.equal(actual[key], tensor), key


def test_save_pretrained_round_trip(tmp_path):
    reference = tiny_llama()
    edge = edge_from(reference, context_length=CL, ar_lengths=[AR, 1], use_split_head_attention=True)
    edge.save_pretrained(tmp_path / "edge")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "staging folders left behind"
    again = EdgeLlamaForCausalLM.from_pretrained(tmp_path / "edge")
    assert again.config.model_type == "edge_llama"
    assert again.config.context_length == CL and again.config.ar_lengths == [AR, 1]
    auto = AutoModelForCausalLM.from_pretrained(tmp_path / "edge")
    assert type(auto) is EdgeLlamaForCausalLM
    input_ids = torch.randint(3, 160, (1, 37))
    with torch.no_grad():
        expected = edge(input_ids).logits
        assert torch.equal(again(input_ids).logits, expected)
        assert torch.equal(auto(input_ids).logits, expected)


def test_from_pretrained_converts_a_plain_llama_folder(tmp_path):
    reference = tiny_llama(tie_word_embeddings=True)
    reference.save_pretrained(tmp_path / "llama")
    edge = EdgeLlamaForCausalLM.from_pretrained(tmp_path / "llama", context_length=CL, ar_lengths=[AR, 1])
    assert edge.lm_head.weight is edge.model.embed_tokens.weight
    input_ids = torch.randint(3, 160, (1, 21))
    with torch.no_grad():
        assert relative_error(edge(input_ids).logits, reference(input_ids).logits) <= TOLERANCE


def test_edge_folder_also_loads_as_plain_llama(tmp_path):
    reference = tiny_llama()
    edge_from(reference, context_length=CL, ar_lengths=[AR, 1]).save_pretrained(tmp_path / "edge")
    plain = LlamaForCausalLM.from_pretrained(tmp_path / "edge")
    for key, tensor in reference.state_dict().items():
        assert torch.equal(plain.state_dict()[key], tensor), key


def test_config_switches_and_defaults():
    config = EdgeLlamaConfig()
    assert config.context_length == 4096 and config.ar_lengths == [128, 1]
    assert config.prompt_ar_length == 128 and config.token_ar_length == 1
    assert config.use_split_head_attention and config.use_conv_projections
