"""Keeps Hugging Face weight names and shapes at the state-dict boundary.

Inside the edge model a projection may be split per head (`q_proj.0.weight`, `q_proj.1.weight`, …)
and stored as a 1x1 convolution (`(out, in, 1, 1)`). Outside — `state_dict()`, `load_state_dict()`,
`save_pretrained()` and everything built on them — the weights look exactly like a
`LlamaForCausalLM` checkpoint: `q_proj.weight` of shape `(out, in)`. Splitting on load uses views,
so converting a loaded Llama model costs no extra memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

_PARAM_KINDS = ("weight", "bias")


@dataclass(frozen=True)
class ProjectionLayout:
    """How one HF projection named `name` is stored in the edge module."""

    name: str
    num_heads: int | None  # None: one fused projection; n: split into n per-head projections
    conv: bool  # stored as a 1x1 Conv2d weight (out, in, 1, 1)

    def edge_keys(self, prefix: str, kind: str) -> list[str]:
        if self.num_heads is None:
            return [f"{prefix}{self.name}.{kind}"]
        return [f"{prefix}{self.name}.{head}.{kind}" for head in range(self.num_heads)]

    def to_hf(self, state_dict: dict[str, torch.Tensor], prefix: str) -> None:
        for kind in _PARAM_KINDS:
            keys = self.edge_keys(prefix, kind)
            if not all(key in state_dict for key in keys):
                continue
            parts = [state_dict.pop(key) for key in keys]
            if kind == "weight" and self.conv:
                parts = [part.reshape(part.shape[0], part.shape[1]) for part in parts]
            state_dict[f"{prefix}{self.name}.{kind}"] = parts[0] if len(parts) == 1 else torch.cat(parts, dim=0)

    def from_hf(self, state_dict: dict[str, torch.Tensor], prefix: str) -> None:
        for kind in _PARAM_KINDS:
            hf_key = f"{prefix}{self.name}.{kind}"
            tensor = state_dict.get(hf_key)
            if tensor is None:
                continue
            if kind == "weight" and tensor.dim() != 2:
                continue  # already in edge layout
            del state_dict[hf_key]
            parts = [tensor] if self.num_heads is None else list(torch.chunk(tensor, self.num_heads, dim=0))
            if kind == "weight" and self.conv:
                parts = [part.reshape(*part.shape, 1, 1) for part in parts]
            for key, part in zip(self.edge_keys(prefix, kind), parts):
                state_dict[key] = part


def keep_hf_layout(module: nn.Module, layouts: list[ProjectionLayout]) -> None:
    """Registers hooks so `module`'s state dict uses HF names and shapes for `layouts`."""

    def to_hf(_module, state_dict, prefix, _local_metadata):
        for layout in layouts:
            layout.to_hf(state_dict, prefix)

    def from_hf(_module, state_dict, prefix, *_args):
        for layout in layouts:
            layout.from_hf(state_dict, prefix)

    module.register_state_dict_post_hook(to_hf)
    module.register_load_state_dict_pre_hook(from_hf)
