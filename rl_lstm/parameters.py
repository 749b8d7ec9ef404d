"""Parameters named and shaped as PyTorch's recurrent modules': the base of the LSTM, GRU and RNN cells."""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor, nn

from rl_lstm.base import RecurrentLayer
from rl_lstm.memory_times import check_times, gate_bias_units, keep_logit, set_gate_bias_


class TorchParameters(RecurrentLayer):
    """A layer holding parameters named and shaped as its :attr:`torch_module`'s: ``weight_ih``
    (G*H, I), ``weight_hh`` (G*H, H), ``bias_ih`` and ``bias_hh`` (G*H), with G = :attr:`gates`."""

    #: Gate blocks in the weights: 4 for the LSTM (i, f, g, o), 3 for the GRU (r, z, n), 1 for the RNN.
    gates: ClassVar[int]

    def _build(self) -> None:
        rows = self.gates * self.hidden_size
        self.weight_ih = nn.Parameter(torch.empty(rows, self.input_size))
        self.weight_hh = nn.Parameter(torch.empty(rows, self.hidden_size))
        if self.bias:
            self.bias_ih = nn.Parameter(torch.empty(rows))
            self.bias_hh = nn.Parameter(torch.empty(rows))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """As ``nn.LSTM`` / ``nn.GRU`` / ``nn.RNN``: every weight and bias uniform in +-1/sqrt(hidden_size)."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.torch_parameters():
            nn.init.uniform_(p, -bound, bound)


class LSTMParameters(TorchParameters):
    """``nn.LSTM``-shaped parameters: ``weight_ih`` (4H, I), ``weight_hh`` (4H, H), ``bias_ih``
    and ``bias_hh`` (4H), gate order i, f, g, o."""

    gates = 4
    keep_gate = "forget gate"
    memory_units = gate_bias_units

    def init_memory_times_(self, times: Tensor) -> None:
        set_gate_bias_(self, 1, keep_logit(check_times(self, times, self.memory_units)))  # gate order i, f, g, o

    def _bias(self) -> Tensor | None:
        return self.bias_ih + self.bias_hh if self.bias else None
