"""Sequential MSE's weight-grid search, batched through the input Gram matrix.

aimet's Sequential MSE picks, per output channel, the clipping of the weight grid (candidate `i` of `n`
scales the min-max range by `(i + 1) / n`) that minimizes the squared error of the projection's output
on the calibration inputs `X`: `||X w_j - X q_i(w_j)||²`. It recomputes the projection over all of `X`
for every candidate. The same loss is `d^T (X^T X) d` with `d = w_j - q_i(w_j)`, so one Gram matrix per
input (accumulated in float64 while the calibration data streams through) scores every candidate of
every projection that reads that input, at a cost independent of the number of calibration tokens.

Candidate grids, the final choice and freezing go through aimet's own `SequentialMse` helpers, so a
chosen candidate gives the same encoding aimet would set for it.
"""

from __future__ import annotations

import torch
from torch import nn

MAX_BITS = 4  # aimet's Sequential MSE leaves wider weights (the 8-bit lm_head) on min-max


class StopForward(Exception):
    """Ends a forward pass once the activations it was run for have been seen."""


class GramAccumulator:
    """`X^T X` (float64) of the inputs a projection sees, as a forward pre-hook that then stops the pass."""

    def __init__(self, module: nn.Module, device: torch.device):
        self.channels_first = isinstance(module, nn.Conv2d)
        width = module.weight.shape[1]
        self.matrix = torch.zeros(width, width, dtype=torch.float64, device=device)

    def hook(self, module, inputs):
        x = inputs[0]
        rows = x.movedim(1, -1).reshape(-1, x.shape[1]) if self.channels_first else x.reshape(-1, x.shape[-1])
        rows = rows.double()
        self.matrix.addmm_(rows.T, rows)
        raise StopForward


def candidate_losses(module: nn.Module, gram: torch.Tensor, num_candidates: int) -> torch.Tensor:
    """`(num_candidates, out_channels)` output squared errors of every candidate grid (float64)."""
    from aimet_torch.seq_mse import SequentialMse

    quantizer = module.param_quantizers["weight"]
    low, high = SequentialMse.get_min_and_max_for_candidate_selection(module)
    weight = module.weight.detach().reshape(module.weight.shape[0], -1).double()
    losses = []
    for index in range(num_candidates):
        SequentialMse.compute_param_encodings(quantizer, *SequentialMse._get_candidate(index, num_candidates, low, high))
        error = weight - SequentialMse._get_quantized_weight(module).detach().reshape(weight.shape).double()
        losses.append(((error @ gram) * error).sum(dim=1))
    SequentialMse.compute_param_encodings(quantizer, low, high)  # back where it started
    return torch.stack(losses)


@torch.no_grad()
def search_weight_grid(module: nn.Module, gram: torch.Tensor, num_candidates: int = 20) -> torch.Tensor:
    """Sets and freezes `module`'s per-channel weight grid to the best candidate; returns the choice per channel.

    The quantizer must hold its min-max encoding (the search scales that range). Per-channel grids only:
    a block-wise quantizer's loss is not one quadratic form per channel.
    """
    from aimet_torch.seq_mse import SequentialMse

    from ..errors import EdgeLlamaError

    quantizer = module.param_quantizers["weight"]
    if quantizer.block_size is not None:
        raise EdgeLlamaError(
            "the batched Sequential MSE searches per-channel weight grids; block-wise (LPBQ) weights need "
            "aimet's own search: quantize with layerwise=False"
        )
    low, high = SequentialMse.get_min_and_max_for_candidate_selection(module)
    best = candidate_losses(module, gram, num_candidates).argmin(dim=0)
    index = best.reshape(-1, *([1] * (high.dim() - 1)))
    SequentialMse.compute_param_encodings(quantizer, *SequentialMse._get_candidate(index, num_candidates, low, high))
    SequentialMse._freeze_quantizer_encoding(quantizer)
    return best
