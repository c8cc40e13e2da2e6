"""Affine integer grids in AIMET's convention, shared by every engine.

A value is stored as an unsigned integer `q` in `[0, 2**bw - 1]` and means `scale * (q + offset)`.
Symmetric grids use `offset = -2**(bw - 1)`; asymmetric ones `offset = round(min / scale)`.
Scales are per output channel, or per (output channel, block of input channels).
"""

from __future__ import annotations

import torch

from .encodings import TensorEncoding
from .recipe import Granularity, WeightScheme


def weight_grid(weight: torch.Tensor, scheme: WeightScheme, block: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Min-max `(scale, offset)` of `weight` (out, in, …), shaped `(out, n_blocks)` (n_blocks = 1 per channel)."""
    matrix = weight.detach().reshape(weight.shape[0], -1).float()
    if scheme.granularity is Granularity.PER_TENSOR:
        grouped = matrix.reshape(1, 1, -1)
    elif block is None:
        grouped = matrix.unsqueeze(1)
    else:
        grouped = matrix.reshape(matrix.shape[0], -1, block)
    levels = 2**scheme.bits - 1
    if scheme.symmetric:
        absmax = grouped.abs().amax(dim=-1)
        scale = (absmax / (2 ** (scheme.bits - 1) - 1)).clamp_min(torch.finfo(torch.float32).tiny)
        offset = torch.full_like(scale, -(2 ** (scheme.bits - 1)))
    else:
        low = grouped.amin(dim=-1).clamp_max(0.0)
        high = grouped.amax(dim=-1).clamp_min(0.0)
        scale = ((high - low) / levels).clamp_min(torch.finfo(torch.float32).tiny)
        offset = torch.round(low / scale)
    return scale, offset


def quantize(weight: torch.Tensor, scale: torch.Tensor, offset: torch.Tensor, bits: int) -> torch.Tensor:
    """Integer codes `q` of `weight` on the grid `(scale, offset)` of shape `(out, n_blocks)`."""
    grouped = weight.detach().reshape(weight.shape[0], scale.shape[1], -1).float()
    codes = torch.round(grouped / scale.unsqueeze(-1)) - offset.unsqueeze(-1)
    return codes.clamp(0, 2**bits - 1).reshape(weight.shape)


def dequantize(codes: torch.Tensor, scale: torch.Tensor, offset: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
    grouped = codes.reshape(codes.shape[0], scale.shape[1], -1).float()
    return ((grouped + offset.unsqueeze(-1)) * scale.unsqueeze(-1)).reshape(codes.shape).to(dtype)


def fake_quantize(weight: torch.Tensor, scheme: WeightScheme, block: int | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Round-to-nearest on a min-max grid: the dequantized weight and its `(scale, offset)`."""
    scale, offset = weight_grid(weight, scheme, block)
    return dequantize(quantize(weight, scale, offset, scheme.bits), scale, offset, weight.dtype), scale, offset


def param_encoding(name: str, scheme: WeightScheme, block: int | None, scale: torch.Tensor, offset: torch.Tensor) -> TensorEncoding:
    """The 1.0.0 encoding of a weight quantized on `(scale, offset)`."""
    if scheme.granularity is Granularity.PER_TENSOR:
        enc_type = "PER_TENSOR"
    elif block is None:
        enc_type = "PER_CHANNEL"
    else:
        enc_type = "PER_BLOCK"
    return TensorEncoding(
        name=name,
        enc_type=enc_type,
        bw=scheme.bits,
        is_sym=scheme.symmetric,
        scale=scale.flatten().tolist(),
        offset=[int(o) for o in offset.flatten().tolist()],
        block_size=block,
    )


def grid_from_encoding(encoding: TensorEncoding, out_channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`(scale, offset)` of shape `(out, n_blocks)` back from an encoding."""
    scale = torch.tensor(encoding.scale, dtype=torch.float32)
    offset = torch.tensor(encoding.offset, dtype=torch.float32)
    rows = 1 if encoding.enc_type == "PER_TENSOR" else out_channels
    return scale.reshape(rows, -1), offset.reshape(rows, -1)
