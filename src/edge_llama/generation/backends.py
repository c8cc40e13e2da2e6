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
    valid_past: int | None = None  # how many leading past slots hold entries (the rest are masked out)

    @property
    def ar_length(self) -> int:
        return self.input_ids.shape[-1]

    def trimmed(self) -> GraphCall:
        """The same call over the filled part of the past only: what eager PyTorch can run.

        The static graph attends over all CL slots and masks the empty ones; dropping them leaves
        out only terms of weight `exp(mask value)` (the mask is clipped at −50 for quantization, so
        about 2e-22 each) and saves the copy and the attention over the empty window.
        """
        past_length = self.past_keys[0].shape[-1] if self.past_keys else 0
        keep = self.valid_past
        if keep is None or keep >= past_length:
            return self
        mask = torch.cat((self.attention_mask[..., :keep], self.attention_mask[..., past_length:]), dim=-1)
        return GraphCall(
            self.input_ids, mask, self.position_cos, self.position_sin,
            [k[..., :keep] for k in self.past_keys], [v[..., :keep, :] for v in self.past_values], keep,
        )

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
    """Runs the edge model's `graph_forward` in PyTorch (float or quantization simulation).

    By default over the filled part of the KV window only (`GraphCall.trimmed`): at CL 4096 a short
    chat decodes several times faster. `full_window=True` runs the static shapes the device sees,
    empty slots included; calibration uses it so encodings see what the device will.
    """

    def __init__(self, model: EdgeLlamaForCausalLM, full_window: bool = False):
        self.model = model
        self.full_window = full_window

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
        if not self.full_window:
            call = call.trimmed()
        return GraphResult(*self.model.graph_forward(*call.as_args()))
