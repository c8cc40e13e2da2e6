"""The edge model as an ExecuTorch LLM program: the KV cache lives inside, a whole prompt chunk per call.

CPU runtimes want the opposite of an NPU graph: no cache as I/O (copying it in and out per token
would cost more than the matmuls), one dynamic-length call per prompt chunk. `EdgeLlamaProgram`
wraps the same modules as the edge model (its embedding, its `Linear` projections — torchao-quantized
for `8da4w` — and its lm_head), with

```
forward(tokens (1, T), input_pos (1,)) -> logits (1, T, vocab)      T in 1 … max_seq_len
```

the signature ExecuTorch's LLM runner drives. The cache is a pair of `(1, CL, n_kv, head_dim)`
buffers per layer written by ExecuTorch's `llama::update_cache` and read by `llama::custom_sdpa`,
which attends causally over positions `0 … input_pos + T - 1` only (decode reads what is filled,
not all of CL). RoPE tables for positions `0 … CL - 1` are program constants.

Ops are chosen so XNNPACK takes whole layers: RMSNorm's mean and RoPE's rotate-half are `F.linear`
with constant matrices (XNNPACK takes no 3-D `mean.dim` and cuts the graph at slices), and views use
a literal -1 for the dynamic length.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..generation.rope import RopeTable


def load_custom_ops() -> None:
    """Registers ExecuTorch's LLM ops (`llama::update_cache`, `llama::custom_sdpa`) and quantized kernels.

    Needed to trace the program and again before a `.pte` that uses them is loaded.
    """
    import executorch.extension.llm.custom_ops.custom_ops  # noqa: F401
    import executorch.kernels.quantized  # noqa: F401


class ProgramRMSNorm(nn.Module):
    """RMSNorm over the last dim, its mean written as a matmul with a constant `1/dim` row."""

    def __init__(self, weight: torch.Tensor, eps: float):
        super().__init__()
        self.weight = nn.Parameter(weight.detach().float().clone(), requires_grad=False)
        self.eps = eps
        self.register_buffer("mean_row", torch.full((1, weight.shape[0]), 1.0 / weight.shape[0]), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        variance = F.linear(x * x, self.mean_row)
        return self.weight * (x * torch.rsqrt(variance + self.eps))


class ProgramAttention(nn.Module):
    """GQA attention with the cache inside: write the T new entries, attend over the filled prefix."""

    def __init__(self, attention: nn.Module, config, rotate_half: torch.Tensor):
        super().__init__()
        self.q_proj, self.k_proj, self.v_proj, self.o_proj = (
            attention.q_proj, attention.k_proj, attention.v_proj, attention.o_proj
        )
        self.num_heads, self.num_kv_heads = config.num_attention_heads, config.num_key_value_heads
        self.head_dim = config.head_dim
        self.scaling = attention.scaling
        cache_shape = (1, config.context_length, self.num_kv_heads, self.head_dim)
        self.register_buffer("k_cache", torch.zeros(cache_shape), persistent=False)
        self.register_buffer("v_cache", torch.zeros(cache_shape), persistent=False)
        self.register_buffer("rotate_half", rotate_half, persistent=False)

    def _rope(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        return x * cos + F.linear(x, self.rotate_half) * sin

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, start_pos) -> torch.Tensor:
        q = self._rope(self.q_proj(x).view(1, -1, self.num_heads, self.head_dim), cos, sin)
        k = self._rope(self.k_proj(x).view(1, -1, self.num_kv_heads, self.head_dim), cos, sin)
        v = self.v_proj(x).view(1, -1, self.num_kv_heads, self.head_dim)
        torch.ops.llama.update_cache(k, self.k_cache, start_pos)
        torch.ops.llama.update_cache(v, self.v_cache, start_pos)
        out = torch.ops.llama.custom_sdpa(q, self.k_cache, self.v_cache, start_pos, None, 0.0, True, self.scaling)
        return self.o_proj(out.view(1, -1, self.num_heads * self.head_dim))


class ProgramDecoderLayer(nn.Module):
    def __init__(self, layer: nn.Module, config, rotate_half: torch.Tensor):
        super().__init__()
        eps = config.rms_norm_eps
        self.input_layernorm = ProgramRMSNorm(layer.input_layernorm.weight, eps)
        self.post_attention_layernorm = ProgramRMSNorm(layer.post_attention_layernorm.weight, eps)
        self.self_attn = ProgramAttention(layer.self_attn, config, rotate_half)
        mlp = layer.mlp
        self.gate_proj, self.up_proj, self.down_proj, self.act_fn = mlp.gate_proj, mlp.up_proj, mlp.down_proj, mlp.act_fn

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, start_pos) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, start_pos)
        h = self.post_attention_layernorm(x)
        return x + self.down_proj(self.act_fn(self.gate_proj(h)) * self.up_proj(h))


class EdgeLlamaProgram(nn.Module):
    """`forward(tokens (1, T), input_pos (1,)) -> logits (1, T, vocab)` over an internal cache of CL positions.

    `model` must use the Linear layout with fused heads (`use_conv_projections=False`,
    `use_split_head_attention=False`); `export.executorch` converts other float layouts first. Its
    modules are shared, not copied.
    """

    def __init__(self, model: nn.Module, max_seq_len: int):
        super().__init__()
        config = model.config
        if config.use_conv_projections or config.use_split_head_attention:
            raise ValueError("EdgeLlamaProgram takes the Linear layout with fused heads; convert the model first.")
        self.config = config
        self.context_length = config.context_length
        self.max_seq_len = max_seq_len
        head_dim, half = config.head_dim, config.head_dim // 2
        # rotate_half(x) = cat(-x[half:], x[:half]) as a constant matrix: x @ R.T
        rotate_half = torch.zeros(head_dim, head_dim)
        rotate_half[torch.arange(half), torch.arange(half) + half] = -1.0
        rotate_half[torch.arange(half) + half, torch.arange(half)] = 1.0
        self.register_buffer("rotate_half", rotate_half, persistent=False)
        cos, sin = RopeTable(config)(torch.arange(config.context_length))
        self.register_buffer("rope_cos", torch.cat((cos, cos), dim=-1)[0, 0].contiguous(), persistent=False)
        self.register_buffer("rope_sin", torch.cat((sin, sin), dim=-1)[0, 0].contiguous(), persistent=False)
        self.embed_tokens = model.model.embed_tokens
        self.layers = nn.ModuleList(ProgramDecoderLayer(layer, config, self.rotate_half) for layer in model.model.layers)
        self.norm = ProgramRMSNorm(model.model.norm.weight, config.rms_norm_eps)
        self.lm_head = model.lm_head

    def forward(self, tokens: torch.LongTensor, input_pos: torch.LongTensor) -> torch.Tensor:
        seq_len = tokens.shape[1]
        start_pos = input_pos[0].item()
        torch._check(start_pos >= 0)
        torch._check(start_pos + seq_len <= self.context_length)
        cos = self.rope_cos.narrow(0, start_pos, seq_len).view(1, -1, 1, self.config.head_dim)
        sin = self.rope_sin.narrow(0, start_pos, seq_len).view(1, -1, 1, self.config.head_dim)
        x = self.embed_tokens(tokens)
        for layer in self.layers:
            x = layer(x, cos, sin, start_pos)
        return self.lm_head(self.norm(x))

    def reset(self) -> None:
        """Zeroes the caches (eager use; a program needs no reset: position 0 overwrites what it reads)."""
        for layer in self.layers:
            layer.self_attn.k_cache.zero_()
            layer.self_attn.v_cache.zero_()
