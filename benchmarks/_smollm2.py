"""The default model cut to its first layers, and held-apart prose, as the agreement benchmarks use them."""

from __future__ import annotations

import torch

from edge_llama import EdgeLlamaForCausalLM, load_tokenizer
from edge_llama.data import load_corpus


def first_layers(layers: int, context_length: int = 256, ar_length: int = 128) -> EdgeLlamaForCausalLM:
    """SmolLM2-135M with only its first `layers` decoder layers (compiling all 30 for HTP takes minutes)."""
    model = EdgeLlamaForCausalLM.from_pretrained("DEFAULT", context_length=context_length, ar_lengths=[ar_length])
    model.model.layers = model.model.layers[:layers]
    model.config.num_hidden_layers = layers
    return model


def held_apart_ids(tokens: int) -> torch.Tensor:
    """The first `tokens` tokens of the evaluation text (disjoint from calibration), shape (1, tokens)."""
    text = load_corpus(None, "evaluation").joined("\n\n")
    return load_tokenizer("DEFAULT")(text, return_tensors="pt", add_special_tokens=False).input_ids[:, :tokens]
