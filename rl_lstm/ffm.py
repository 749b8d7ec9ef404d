"""Fast and Forgetful Memory (Morad et al. 2023, *Reinforcement Learning with Fast and Forgetful
Memory*): a complex decaying, oscillating trace of the gated input, read through a layer norm."""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rl_lstm.checks import check_size
from rl_lstm.memory_times import check_times
from rl_lstm.scan import LinearRecurrence, Parts


class FFM(LinearRecurrence):
    """FFM (Morad et al. 2023, sec. 4): the aggregator keeps a complex trace ``S`` of ``m x c`` units,
    ``S_t = gamma * S_{t-1} + x~_t 1_c^T`` with ``gamma_jk = exp(alpha_j + i omega_k)``
    (``alpha_j <= -1e-6``: every unit forgets) and the gated input ``x~_t = W_1 x_t * sigmoid(W_2 x_t)``
    (m); the cell reads it out as ``z_t = W_mix [Re S_t; Im S_t]`` and
    ``y_t = LN(z_t * sigmoid(W_4 x_t)) + W_5 x_t * (1 - sigmoid(W_4 x_t))``, the layer norm
    without gain or bias as in the authors' code.

    ``FFM(input_size, hidden_size, bias=True, dropout=None, dropout_method='pytorch', context_size=None,
    min_period=1, max_period=1024)``: ``context_size`` (c, default 4, or the largest divisor of
    ``hidden_size`` below 4) frequencies, ``memory_size m = hidden_size / c`` decay rates,
    starting evenly from ``-e`` (the JAX reference's fastest) to ``log(0.01) / max_period`` (the
    PyTorch reference's slowest: 1% of an input left after ``max_period`` steps), and the
    frequencies ``2 pi / period``, periods evenly in ``[min_period, max_period]``.

    Parameters: ``weight_ih`` (2m + 2H, I) and ``bias_ih`` = [W_1; W_2; W_4; W_5] and their biases;
    ``alpha`` (m); ``omega`` (c); ``weight_mix`` (H, 2H), ``bias_mix`` (H).

    State: ``(h, c)`` = (Re S, Im S), each ``(1, batch, hidden_size)`` with S flattened row-major
    from ``(m, c)``; the one-step path (collection, export) computes in real arithmetic. Dropout:
    ``'pytorch'`` (output), ``'moon'`` (per episode, on both halves of S), ``'semeniuta'`` (every
    step, on the added trace ``x~ 1^T``); see :class:`~rl_lstm.scan.LinearRecurrence`.
    """

    state_names: ClassVar[tuple[str, ...]] = ("h", "c")
    dropout_methods: ClassVar[tuple[str, ...]] = ("pytorch", "moon", "semeniuta")

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        dropout: float | None = None,
        dropout_method: str = "pytorch",
        context_size: int | None = None,
        min_period: float = 1.0,
        max_period: float = 1024.0,
        batch_first: bool = False,
    ) -> None:
        super().__init__(input_size, hidden_size, bias, dropout, dropout_method, batch_first)
        if context_size is None:  # the authors' 4 where it divides hidden_size, else the largest divisor below
            context_size = next(k for k in (4, 3, 2, 1) if self.hidden_size % k == 0)
        self.context_size = check_size("context_size", context_size)
        if self.hidden_size % self.context_size:
            raise ValueError(
                f"context_size={context_size!r}: expected a divisor of hidden_size={self.hidden_size} "
                "(the trace holds memory_size x context_size = hidden_size units)"
            )
        numbers = isinstance(min_period, (int, float)) and isinstance(max_period, (int, float))
        if not (numbers and 0 < min_period <= max_period):
            raise ValueError(
                f"min_period={min_period!r}, max_period={max_period!r}: expected 0 < min_period <= max_period"
            )
        self.memory_size = self.hidden_size // self.context_size
        self.min_period, self.max_period = float(min_period), float(max_period)
        m, h = self.memory_size, self.hidden_size
        self.weight_ih = nn.Parameter(torch.empty(2 * m + 2 * h, self.input_size))
        self.bias_ih = nn.Parameter(torch.empty(2 * m + 2 * h)) if self.bias else None
        self.alpha = nn.Parameter(torch.empty(m))
        self.omega = nn.Parameter(torch.empty(self.context_size))
        self.weight_mix = nn.Parameter(torch.empty(h, 2 * h))
        self.bias_mix = nn.Parameter(torch.empty(h)) if self.bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            for w, b in ((self.weight_ih, self.bias_ih), (self.weight_mix, self.bias_mix)):
                bound = 1.0 / math.sqrt(w.shape[1])  # nn.Linear's
                nn.init.uniform_(w, -bound, bound)
                if b is not None:
                    nn.init.uniform_(b, -bound, bound)
            # From forgetting 1 - e^-e per step to keeping 1% of an input after max_period steps.
            slowest = min(-1e-6, math.log(0.01) / self.max_period)
            self.alpha.copy_(torch.linspace(-math.e, slowest, self.memory_size))
            periods = torch.linspace(self.min_period, self.max_period, self.context_size)
            self.omega.copy_(2 * math.pi / periods)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", memory_size={self.memory_size}, context_size={self.context_size}"

    keep_gate = "decay exp(alpha) (one per trace row)"

    @property
    def memory_units(self) -> int:
        return self.memory_size

    def init_memory_times_(self, times: Tensor) -> None:
        """Row k of the trace keeps ``exp(alpha_k) = 1 - 1 / times[k]`` per step (its frequencies kept)."""
        with torch.no_grad():
            self.alpha.copy_(torch.log(1.0 - 1.0 / check_times(self, times, self.memory_units)))

    def decay(self) -> Parts:
        """``gamma`` as ``(Re, Im)``, each (m * c,), flattened row-major from (m, c)."""
        modulus = torch.exp(self.alpha.clamp(max=-1e-6)).unsqueeze(1)  # (m, 1)
        re, im = modulus * torch.cos(self.omega), modulus * torch.sin(self.omega)  # (m, c)
        return re.reshape(-1), im.reshape(-1)

    def _coefficients(self, x: Tensor, masks: Tensor | None) -> tuple[Parts, Parts, Tensor]:
        m = self.memory_size
        pre, gate_in, gates_out = F.linear(x, self.weight_ih, self.bias_ih).split([m, m, 2 * self.hidden_size], -1)
        trace_in = pre * gate_in.sigmoid()  # (T, B, m)
        # (T, B, m * c): x~ 1_c^T, real (expand, not repeat_interleave, whose ONNX form loses the rank)
        b_re = trace_in.unsqueeze(-1).expand(*trace_in.shape, self.context_size).flatten(-2)
        return self.decay(), (b_re, torch.zeros_like(b_re)), gates_out

    def _readout(self, s: Parts, gates_out: Tensor, masks: Tensor | None) -> Tensor:
        z = F.linear(torch.cat(s, -1), self.weight_mix, self.bias_mix)  # (T, B, H)
        gate, skip = gates_out.chunk(2, -1)
        gate = gate.sigmoid()
        out = F.layer_norm(z * gate, (self.hidden_size,)) + skip * (1 - gate)
        return self._output_mask(out, masks)
