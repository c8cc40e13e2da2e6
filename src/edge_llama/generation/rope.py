"""RoPE tables computed on the host and fed to the graph as `position_cos` / `position_sin`."""

from __future__ import annotations

import torch
from transformers import LlamaConfig
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding


class RopeTable:
    """cos/sin of every position over half the head dim, with the model's own rope scaling.

    The frequencies and the attention scaling come from transformers' `LlamaRotaryEmbedding`, so
    `default`, `llama3`, `linear`, `yarn`… scaling match the reference model exactly. Positions are
    absolute: a window that slides past the context length keeps rotating by the true position.
    """

    def __init__(self, config: LlamaConfig):
        self._rotary = LlamaRotaryEmbedding(config)
        self.half_dim = self._rotary.inv_freq.shape[0]

    def __call__(self, positions: torch.LongTensor, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns `(cos, sin)` of shape `(1, 1, len(positions), head_dim / 2)`."""
        anchor = torch.empty(0, dtype=dtype)
        cos, sin = self._rotary(anchor, positions.view(1, -1))
        return cos[..., : self.half_dim].unsqueeze(1), sin[..., : self.half_dim].unsqueeze(1)
