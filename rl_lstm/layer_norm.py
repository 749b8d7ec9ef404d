"""Layer normalization (Ba et al. 2016) on ``torch.nn.functional.layer_norm``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rl_lstm.checks import check_size


class LayerNorm(nn.Module):
    """Layer Normalization (Ba, Kiros & Hinton 2016, *Layer Normalization*) over the last dim.

    ``LayerNorm(input_size, learnable=True, epsilon=1e-6)``; ``forward(x)`` with ``x`` of shape
    ``(..., input_size)``. The gain starts at 1 and the bias at 0; with ``learnable=False`` they
    stay there (buffers, not parameters).
    """

    def __init__(self, input_size: int, learnable: bool = True, epsilon: float = 1e-6) -> None:
        super().__init__()
        self.input_size = check_size("input_size", input_size)
        if not epsilon > 0:
            raise ValueError(f"epsilon={epsilon!r}: expected a positive number")
        self.learnable = bool(learnable)
        self.epsilon = float(epsilon)
        if self.learnable:
            self.weight = nn.Parameter(torch.ones(input_size))
            self.bias = nn.Parameter(torch.zeros(input_size))
        else:
            self.register_buffer("weight", torch.ones(input_size))
            self.register_buffer("bias", torch.zeros(input_size))

    def forward(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor) or x.dim() == 0 or x.shape[-1] != self.input_size:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"x: expected a tensor of shape (..., {self.input_size}), got {got}")
        return F.layer_norm(x, (self.input_size,), self.weight, self.bias, self.epsilon)

    def extra_repr(self) -> str:
        return f"{self.input_size}, learnable={self.learnable}, epsilon={self.epsilon}"
