"""GPTQ rounding for per-channel symmetric weight grids (Frantar et al., 2022).

Round-to-nearest picks each weight's grid point alone. GPTQ rounds the input columns one after
another and spreads each column's rounding error over the columns not rounded yet, weighted by the
inverse of the layer's input Hessian `H = X^T X` (X: the calibration activations entering the
layer). The grid itself (bits, per-channel scale) is unchanged, so the result is the same format a
device runs — only better chosen points.

Here the Hessians come from one pass of the float model over the calibration text (every projection
sees float inputs), and each channel's scale is the clipping that minimizes its squared rounding
error (`mse_scales`). The engine rounds onto the exact scales its quantizers hold, so the rounded
weights pass through the quantizers unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


@torch.no_grad()
def collect_hessians(model, modules: dict[str, nn.Module], run_calibration: Callable[[], None]) -> dict[str, torch.Tensor]:
    """`H = 2/n · Σ x xᵀ` over every input row `x` each module sees while `run_calibration()` runs."""
    hessians: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}

    def hook(name):
        def accumulate(module, args):
            rows = _input_rows(module, args[0])
            hessian = hessians.get(name)
            if hessian is None:
                hessian = hessians[name] = torch.zeros(rows.shape[1], rows.shape[1], dtype=torch.float64)
                counts[name] = 0
            hessian.addmm_(rows.T, rows)
            counts[name] += rows.shape[0]

        return accumulate

    handles = [module.register_forward_pre_hook(hook(name)) for name, module in modules.items()]
    try:
        run_calibration()
    finally:
        for handle in handles:
            handle.remove()
    return {name: (2.0 / counts[name]) * hessian for name, hessian in hessians.items()}


def _input_rows(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The module's input as `(tokens, in_features)` float64 rows."""
    if isinstance(module, nn.Conv2d):  # (batch, channels, 1, seq): 1x1 conv over NCHW
        x = x.permute(0, 2, 3, 1)
    return x.reshape(-1, x.shape[-1]).double()


def mse_scales(weight: torch.Tensor, bits: int, candidates: int = 20) -> torch.Tensor:
    """Per output channel, the symmetric scale (a clipped absmax) with the least squared rounding error."""
    qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    absmax = weight.abs().amax(dim=1).clamp_min(1e-12)
    best_scale, best_error = absmax / qmax, torch.full_like(absmax, float("inf"))
    for step in range(candidates):
        scale = absmax * (1.0 - 0.5 * step / candidates) / qmax
        codes = torch.clamp(torch.round(weight / scale[:, None]), qmin, qmax)
        error = (codes * scale[:, None] - weight).pow(2).sum(dim=1)
        better = error < best_error
        best_error, best_scale = torch.where(better, error, best_error), torch.where(better, scale, best_scale)
    return best_scale


@torch.no_grad()
def gptq_round(
    weight: torch.Tensor, hessian: torch.Tensor, scale: torch.Tensor, bits: int, block_size: int = 128, damping: float = 0.01
) -> torch.Tensor:
    """`weight (out, in)` rounded onto the symmetric grid `scale (out,) · [-2^(b-1), 2^(b-1)-1]` by GPTQ."""
    qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    weight = weight.double().clone()
    hessian = hessian.double().clone()
    scale = scale.double()[:, None]
    dead = torch.diag(hessian) == 0  # inputs that were always zero: any value works, pick 0
    hessian[dead, dead] = 1.0
    weight[:, dead] = 0.0
    hessian += damping * torch.diag(hessian).mean() * torch.eye(hessian.shape[0], dtype=hessian.dtype)
    # Upper Cholesky factor of H^-1: row i holds how column i's error moves the columns after it.
    inverse = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(hessian)), upper=True)
    rounded = torch.zeros_like(weight)
    columns = weight.shape[1]
    for start in range(0, columns, block_size):
        end = min(start + block_size, columns)
        block = weight[:, start:end].clone()
        errors = torch.zeros_like(block)
        block_inverse = inverse[start:end, start:end]
        for i in range(end - start):
            column = block[:, i : i + 1]
            grid = torch.clamp(torch.round(column / scale), qmin, qmax) * scale
            rounded[:, start + i : start + i + 1] = grid
            error = (column - grid) / block_inverse[i, i]
            block[:, i:] -= error @ block_inverse[i : i + 1, i:]
            errors[:, i : i + 1] = error
        weight[:, end:] -= errors @ inverse[start:end, end:]
    return rounded
