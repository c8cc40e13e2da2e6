"""Shared fixtures: tiny random Llamas (fast) and the embedded SmolLM2 (marked slow)."""

from __future__ import annotations

import os

# Tests never reach a model hub: every model is local or comes from a registry package.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM  # noqa: E402

from edge_llama import EdgeLlamaConfig, EdgeLlamaForCausalLM  # noqa: E402

TINY_LLAMA = dict(
    vocab_size=160,
    hidden_size=64,
    intermediate_size=112,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=64,
    max_position_embeddings=512,
    rms_norm_eps=1e-5,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=0,
)


def tiny_llama(seed: int = 0, **overrides) -> LlamaForCausalLM:
    """A random float32 LlamaForCausalLM; `overrides` change the config."""
    torch.manual_seed(seed)
    config = LlamaConfig(**{**TINY_LLAMA, **overrides})
    config._attn_implementation = "eager"
    model = LlamaForCausalLM(config).eval()
    # Random init gives tiny logits; scale the head so relative errors are measured on real-sized values.
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Linear):
                module.weight.normal_(0.0, module.in_features**-0.5)
        model.model.embed_tokens.weight.normal_(0.0, 1.0)
    return model


def edge_from(reference: LlamaForCausalLM, **edge_kwargs) -> EdgeLlamaForCausalLM:
    """The edge model holding the same weights as `reference`."""
    config = EdgeLlamaConfig.from_llama_config(reference.config, **edge_kwargs)
    model = EdgeLlamaForCausalLM(config)
    model.load_state_dict(reference.state_dict(), strict=True)
    return model.eval()


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return ((actual - expected).abs().max() / expected.abs().max()).item()


@pytest.fixture(scope="session")
def default_model_path() -> str:
    """The converted SmolLM2-135M-Instruct folder (converted once into the user cache)."""
    from edge_llama import resolve_checkpoint

    return resolve_checkpoint("DEFAULT")


@pytest.fixture(scope="session")
def default_reference(default_model_path) -> LlamaForCausalLM:
    model = LlamaForCausalLM.from_pretrained(default_model_path, dtype=torch.float32, attn_implementation="eager")
    return model.eval()


@pytest.fixture(scope="session")
def default_tokenizer(default_model_path):
    from edge_llama import load_tokenizer

    return load_tokenizer("DEFAULT")
