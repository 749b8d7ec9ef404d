"""SlowLSTM: the LSTM equations written out gate by gate, for reading rather than speed."""

from __future__ import annotations

import torch
from torch import Tensor

from rl_lstm.parameters import LSTMParameters


class SlowLSTM(LSTMParameters):
    """A pedagogic LSTM: each gate computed on its own from its slice of the ``nn.LSTM``-shaped
    weights, one step at a time. Same results as :class:`LSTM`, only slower.

    ``SlowLSTM(input_size, hidden_size, bias=True, dropout=0.0)``: dropout acts on the output only
    (the ``'pytorch'`` method), the carried h untouched. (lstms.pth's ``F.dropout(h_t)`` also dropped
    the h it carried to the next step; that is Gal's tied mask without its per-sequence sampling.)
    """


    def __init__(
        self, input_size: int, hidden_size: int, bias: bool = True, dropout: float = 0.0, batch_first: bool = False
    ) -> None:
        super().__init__(input_size, hidden_size, bias, dropout, "pytorch", batch_first)

    def _project_input(self, x: Tensor) -> Tensor:
        return x  # each gate projects its own input in _step

    def _gate(self, k: int, x: Tensor, h: Tensor) -> Tensor:
        """Pre-activation of gate k (0: input, 1: forget, 2: candidate, 3: output)."""
        rows = slice(k * self.hidden_size, (k + 1) * self.hidden_size)
        pre = x @ self.weight_ih[rows].t() + h @ self.weight_hh[rows].t()
        return pre + self.bias_ih[rows] + self.bias_hh[rows] if self.bias else pre

    def _step(self, x: Tensor, h: Tensor, c: Tensor, m: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        i = torch.sigmoid(self._gate(0, x, h))  # how much of the candidate to write
        f = torch.sigmoid(self._gate(1, x, h))  # how much of the old memory to keep
        g = torch.tanh(self._gate(2, x, h))  # the candidate memory
        o = torch.sigmoid(self._gate(3, x, h))  # how much of the memory to show
        c = f * c + i * g
        h = o * torch.tanh(c)
        return h, c, h if m is None else h * m
