"""How one static graph call is executed. The runner is the same for every backend."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import torch

if TYPE_CHECKING:
    from ..configuration_edge_llama import EdgeLlamaConfig
    from ..modeling_edge_llama import EdgeLlamaForCausalLM


@dataclass
class GraphCall:
    """The inputs of one graph call (shapes: `edge_llama.modeling_edge_llama`)."""

    input_ids: torch.LongTensor
    attention_mask: torch.Tensor
    position_cos: torch.Tensor
    position_sin: torch.Tensor
    past_keys: list[torch.Tensor]
    past_values: list[torch.Tensor]

    @property
    def ar_length(self) -> int:
        return self.input_ids.shape[-1]

    def as_args(self) -> tuple:
        return (
            self.input_ids,
            self.attention_mask,
            self.position_cos,
            self.position_sin,
            self.past_keys,
            self.past_values,
        )


@dataclass
class GraphResult:
    """The outputs of one graph call: logits `(1, AR, vocab)` and the AR new KV entries per layer."""

    logits: torch.Tensor
    keys_out: list[torch.Tensor]
    values_out: list[torch.Tensor]


class GraphBackend(Protocol):
    """Executes one call of the static graph for one of `config.ar_lengths`.

    Implementations: the torch model itself (`TorchGraphBackend`); exported artifacts add theirs.
    """

    config: EdgeLlamaConfig
    dtype: torch.dtype

    def __call__(self, call: GraphCall) -> GraphResult: ...


class TorchGraphBackend:
    """Runs the edge model's `graph_forward` in PyTorch (float or quantization simulation)."""

    def __init__(self, model: EdgeLlamaForCausalLM):
        self.model = model

    @property
    def config(self) -> EdgeLlamaConfig:
        return self.model.config

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def description(self) -> str:
        """What runs the graphs, for people (the demo's header)."""
        recipe = self.model.quantization.recipe.name if getattr(self.model, "quantization", None) else None
        kind = f"{recipe} simulation" if recipe else str(self.model.dtype).removeprefix("torch.")
        return f"{kind} · host (PyTorch)"

    @torch.no_grad()
    def __call__(self, call: GraphCall) -> GraphResult:
        return GraphResult(*self.model.graph_forward(*call.as_args()))
