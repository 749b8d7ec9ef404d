"""minGRU and minLSTM (Feng et al. 2024, *Were RNNs All We Needed?*): a GRU and an LSTM whose gates
read the input only, so the state is a linear recurrence that a chunk runs as a parallel scan."""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rl_lstm.memory_times import check_times, gate_bias_units, keep_logit
from rl_lstm.scan import LinearRecurrence, Parts


def _set_input_bias_(layer: _MinRNN, blocks: dict[int, Tensor]) -> None:
    """Blocks of ``bias_ih`` (of ``hidden_size`` rows each) set to the given values."""
    if layer.bias_ih is None:
        raise ValueError(f"{type(layer).__name__} with bias=False: its keep gate has no bias to set")
    h = layer.hidden_size
    with torch.no_grad():
        for block, value in blocks.items():
            layer.bias_ih[block * h : (block + 1) * h] = value.to(layer.bias_ih)


class _MinRNN(LinearRecurrence):
    """Parameters ``weight_ih`` (G*H, I) and ``bias_ih`` (G*H): the G input projections in one
    matrix; the state is h alone, ``(1, batch, hidden_size)``, and the output is h."""

    state_names: ClassVar[tuple[str, ...]] = ("h",)
    gates: ClassVar[int]

    def _build(self) -> None:
        rows = self.gates * self.hidden_size
        self.weight_ih = nn.Parameter(torch.empty(rows, self.input_size))
        self.bias_ih = nn.Parameter(torch.empty(rows)) if self.bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """As ``nn.Linear``: uniform in +-1/sqrt(input_size)."""
        bound = 1.0 / math.sqrt(self.input_size)
        for p in (self.weight_ih, self.bias_ih):
            if p is not None:
                nn.init.uniform_(p, -bound, bound)

    def _project(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight_ih, self.bias_ih)  # (T, B, G*H)

    def _readout(self, s: Parts, ctx: object, masks: Tensor | None) -> Tensor:
        return self._output_mask(s[0], masks)


class MinGRU(_MinRNN):
    """minGRU (Feng et al. 2024, sec. 3.1): ``z_t = sigmoid(W_z x_t + b_z)``,
    ``h~_t = W_h x_t + b_h``, ``h_t = (1 - z_t) * h_{t-1} + z_t * h~_t``; the output is h_t.

    ``weight_ih`` (2H, I) holds W_z then W_h. The gate reads x_t only, so a chunk's gates are one
    matrix product and the recurrence a parallel scan (:class:`rl_lstm.scan.LinearRecurrence`).
    Dropout: ``'pytorch'`` (output), ``'moon'`` (per episode, on h), ``'semeniuta'`` (every step,
    on the candidate ``z * h~``), ``'zoneout'``; see :class:`~rl_lstm.scan.LinearRecurrence`.
    The paper's own networks put normalisation around the layer, not inside it, so there is no
    layer-norm variant of the cell.
    """

    gates = 2
    keep_gate = "1 - z (z: the update gate)"
    memory_units = gate_bias_units

    def init_memory_times_(self, times: Tensor) -> None:
        _set_input_bias_(self, {0: -keep_logit(check_times(self, times, self.memory_units))})

    def _coefficients(self, x: Tensor, masks: Tensor | None) -> tuple[Parts, Parts, None]:
        z, cand = self._project(x).chunk(2, -1)  # (T, B, H) each
        z = z.sigmoid()
        return (1 - z,), (z * cand,), None


class MinLSTM(_MinRNN):
    """minLSTM (Feng et al. 2024, sec. 3.2, length-independent scaling): ``f_t = sigmoid(W_f x_t + b_f)``,
    ``i_t = sigmoid(W_i x_t + b_i)``, ``h~_t = W_h x_t + b_h``,
    ``h_t = f_t / (f_t + i_t) * h_{t-1} + i_t / (f_t + i_t) * h~_t``; the output is h_t.

    ``weight_ih`` (3H, I) holds W_f, W_i then W_h; there is no cell state apart from h (the state
    is h alone, as the GRU family's). Dropout as :class:`MinGRU`.
    """

    gates = 3
    keep_gate = "f / (f + i) (f, i: the forget and input gates)"
    memory_units = gate_bias_units

    def init_memory_times_(self, times: Tensor) -> None:
        # f = sigmoid(b), i = sigmoid(-b) = 1 - f: the normalised keep f / (f + i) is sigmoid(b).
        logit = keep_logit(check_times(self, times, self.memory_units))
        _set_input_bias_(self, {0: logit, 1: -logit})

    def _coefficients(self, x: Tensor, masks: Tensor | None) -> tuple[Parts, Parts, None]:
        f, i, cand = self._project(x).chunk(3, -1)  # (T, B, H) each
        # f / (f + i) = sigmoid(log sigmoid(f) - log sigmoid(i)): no division, stable for any pre-activation.
        diff = F.logsigmoid(f) - F.logsigmoid(i)
        return (diff.sigmoid(),), ((-diff).sigmoid() * cand,), None
