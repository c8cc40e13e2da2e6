"""How close two runs' logits are, and how close a quantized model is to itself: its noise floor.

A quantized simulation is only defined up to float rounding: another runtime multiplies in another
order, by a reciprocal instead of dividing, with a different accumulator. On a quantized model each
activation quantizer turns such a 1e-7 difference into a whole step now and then, and the steps
compound through the layers. `noise_floor` measures how far that alone moves the logits: the same
model run again with every projection's input multiplied by `1 + eps·N(0, 1)` (eps = 1e-7 is the
size of fp32 rounding). A runtime that agrees with the host about as well as the host agrees with
its perturbed self differs from it by rounding, not by a bug.

```python
from edge_llama.evaluation.agreement import agreement, noise_floor

floor = noise_floor(qmodel, ids)                                   # {"top1_agreement": 0.906, ...} on 8da4w SmolLM2
pte = agreement(qmodel(ids).logits, exported(ids).logits)          # the artifact, measured the same way
```
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

ROUNDING_EPS = 1e-7  # relative size of fp32 rounding (2^-23 ≈ 1.2e-7)


def agreement(expected: torch.Tensor, actual: torch.Tensor) -> dict:
    """Top-1 agreement, logits SQNR (dB, `inf` when equal) and max relative error of `actual` against
    `expected`, both logits of shape (…, vocab)."""
    if expected.shape != actual.shape:
        raise ValueError(f"logits of different shapes: expected {tuple(expected.shape)}, got {tuple(actual.shape)}")
    expected, actual = expected.detach().double(), actual.detach().double()
    return {
        "top1_agreement": (actual.argmax(-1) == expected.argmax(-1)).double().mean().item(),
        "logits_sqnr_db": round(sqnr_db(expected, actual), 1),
        "max_relative_error": ((actual - expected).abs().max() / expected.abs().max()).item(),
    }


def sqnr_db(expected, actual) -> float:
    """Signal-to-noise ratio of `actual` against `expected` (tensors or arrays), in dB; `inf` when equal."""
    expected, actual = torch.as_tensor(expected).double(), torch.as_tensor(actual).double()
    noise = (actual - expected).pow(2).mean()
    return float("inf") if noise == 0 else 10 * torch.log10(expected.pow(2).mean() / noise).item()


def _projections(model: nn.Module):
    """Every module that multiplies its input with weights (plain or quantized Linear/Conv2d)."""
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            yield module


@contextlib.contextmanager
def rounding_noise(model: nn.Module, eps: float = ROUNDING_EPS, seed: int = 0):
    """Within the block, every projection of `model` sees its input times `1 + eps·N(0, 1)`."""
    generator = torch.Generator().manual_seed(seed)

    def perturb(module, args):
        x = args[0]
        noise = torch.randn(x.shape, generator=generator).to(x.device, x.dtype)
        return (x * (1 + eps * noise), *args[1:])

    handles = [module.register_forward_pre_hook(perturb) for module in _projections(model)]
    if not handles:
        raise ValueError(f"{type(model).__name__} has no Linear or Conv2d module to perturb")
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@torch.no_grad()
def noise_floor(model: nn.Module, ids: torch.Tensor, eps: float = ROUNDING_EPS, expected: torch.Tensor | None = None) -> dict:
    """`agreement` of `model(ids)` with itself under `rounding_noise(eps)` (pass `expected` if already run)."""
    if expected is None:
        expected = model(ids).logits
    with rounding_noise(model, eps):
        actual = model(ids).logits
    return {"eps": eps, **agreement(expected, actual)}
