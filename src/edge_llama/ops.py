"""Stateless op modules, one instance per call site.

Quantization simulators (AIMET) place activation quantizers at module boundaries only. Routing each
matmul, add, multiply, concatenation and softmax of the graph through its own tiny module gives every
activation a place for its encoding, with the same numerics as the plain torch calls.
"""

from __future__ import annotations

import torch
from torch import nn


class EdgeOp(nn.Module):
    """A stateless op; `num_inputs` tensor inputs (how many input quantizer slots it needs)."""

    num_inputs = 1


class MatMul(EdgeOp):
    num_inputs = 2

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.matmul(a, b)


class Add(EdgeOp):
    num_inputs = 2

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a + b


class Sub(EdgeOp):
    num_inputs = 2

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a - b


class Mul(EdgeOp):
    num_inputs = 2

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a * b


class Scale(EdgeOp):
    """Multiplication by a constant (attention's 1/sqrt(head_dim))."""

    def __init__(self, value: float):
        super().__init__()
        self.value = value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.value


class Concat(EdgeOp):
    def __init__(self, dim: int, num_inputs: int = 2):
        super().__init__()
        self.dim = dim
        self.num_inputs = num_inputs

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        return torch.cat(tensors, dim=self.dim)


class Rotary(nn.Module):
    """Real-valued RoPE, rotate-half convention: `cat(x1·cos − x2·sin, x2·cos + x1·sin)`."""

    def __init__(self):
        super().__init__()
        self.mul_x1_cos, self.mul_x2_sin, self.mul_x2_cos, self.mul_x1_sin = Mul(), Mul(), Mul(), Mul()
        self.sub, self.add = Sub(), Add()
        self.cat = Concat(dim=-1)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        half = x.shape[-1] // 2
        x1, x2 = x[..., :half], x[..., half:]
        return self.cat(
            self.sub(self.mul_x1_cos(x1, cos), self.mul_x2_sin(x2, sin)),
            self.add(self.mul_x2_cos(x2, cos), self.mul_x1_sin(x1, sin)),
        )
