"""The Linear Recurrent Unit (Orvieto et al. 2023, *Resurrecting Recurrent Neural Networks for Long
Sequences*): a diagonal complex linear recurrence with a stable exponential parameterisation."""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rl_lstm.memory_times import check_times
from rl_lstm.scan import LinearRecurrence, Parts


class LRU(LinearRecurrence):
    """LRU (Orvieto et al. 2023, sec. 3): ``s_t = lambda * s_{t-1} + gamma * (B x_t)`` with a diagonal
    complex ``lambda = exp(-exp(nu) + i exp(theta))`` (so ``|lambda| < 1`` whatever nu is), the
    normalisation ``gamma = sqrt(1 - |lambda|^2)`` (kept as ``gamma_log``, learned, as in the
    paper), and the read-out ``y_t = Re(C s_t) + D x_t (+ bias)``.

    ``LRU(input_size, hidden_size, bias=True, dropout=None, dropout_method='pytorch', r_min=0.0,
    r_max=1.0, max_phase=2 pi)``: the state has ``hidden_size`` complex units, ``|lambda|`` starts
    uniform on the ring ``[r_min, r_max]`` and the phase in ``[0, max_phase]`` (the paper's sec.
    3.3 initialisation).

    Parameters: ``nu_log``, ``theta_log``, ``gamma_log`` (N); ``weight_ih`` (2N, I) = [Re B; Im B];
    ``weight_out`` (H, 2N) = [Re C, -Im C] (so ``Re(C s) = weight_out [Re s; Im s]``);
    ``weight_skip`` (H, I) = D; ``bias`` (H) when ``bias``.

    State: ``(h, c)`` = (Re s, Im s), each ``(1, batch, hidden_size)``: the agents' ``(h, c)``
    layout, buffer and export carry the complex state as these two real halves, and the
    one-step path (collection, export) computes in real arithmetic. Dropout: ``'pytorch'``
    (output), ``'moon'`` (per episode, on both halves of s), ``'semeniuta'`` (every step, on the
    input term); see :class:`~rl_lstm.scan.LinearRecurrence`. The paper normalises before the
    layer inside its residual block, so there is no layer-norm variant of the cell.
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
        r_min: float = 0.0,
        r_max: float = 1.0,
        max_phase: float = 2 * math.pi,
        batch_first: bool = False,
    ) -> None:
        super().__init__(input_size, hidden_size, bias, dropout, dropout_method, batch_first)
        if not (isinstance(r_min, (int, float)) and isinstance(r_max, (int, float)) and 0 <= r_min < r_max <= 1):
            raise ValueError(f"r_min={r_min!r}, r_max={r_max!r}: expected 0 <= r_min < r_max <= 1")
        if not (isinstance(max_phase, (int, float)) and max_phase > 0):
            raise ValueError(f"max_phase={max_phase!r}: expected a positive number")
        self.r_min, self.r_max, self.max_phase = float(r_min), float(r_max), float(max_phase)
        n, i = self.hidden_size, self.input_size
        self.nu_log = nn.Parameter(torch.empty(n))
        self.theta_log = nn.Parameter(torch.empty(n))
        self.gamma_log = nn.Parameter(torch.empty(n))
        self.weight_ih = nn.Parameter(torch.empty(2 * n, i))
        self.weight_out = nn.Parameter(torch.empty(self.hidden_size, 2 * n))
        self.weight_skip = nn.Parameter(torch.empty(self.hidden_size, i))
        self.bias_out = nn.Parameter(torch.empty(self.hidden_size)) if self.bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The paper's initialisation (sec. 3.3 and its appendix A code)."""
        n, i = self.hidden_size, self.input_size
        with torch.no_grad():
            u1, u2 = torch.rand(n), torch.rand(n)
            # |lambda|^2 uniform on [r_min^2, r_max^2]; clamped off 0 so that log stays finite at r_max = 1.
            r2 = (u1 * (self.r_max**2 - self.r_min**2) + self.r_min**2).clamp(1e-8, 1 - 1e-8)
            self.nu_log.copy_(torch.log(-0.5 * torch.log(r2)))
            self.theta_log.copy_(torch.log((self.max_phase * u2).clamp_min(1e-8)))
            self.gamma_log.copy_(0.5 * torch.log(1 - r2))
            self.weight_ih.normal_(0.0, 1.0 / math.sqrt(2 * i))  # B: (randn + i randn) / sqrt(2 I)
            self.weight_out.normal_(0.0, 1.0 / math.sqrt(n))  # C: (randn + i randn) / sqrt(N)
            self.weight_skip.normal_(0.0, 1.0 / math.sqrt(i))
            if self.bias_out is not None:
                self.bias_out.zero_()

    def extra_repr(self) -> str:
        return super().extra_repr() + f", r_min={self.r_min}, r_max={self.r_max}"

    keep_gate = "decay |lambda|"

    def init_memory_times_(self, times: Tensor) -> None:
        """``|lambda_k| = 1 - 1 / times[k]`` (phases kept), and the input normalisation ``gamma`` that goes
        with it (``sqrt(1 - |lambda|^2)``, as :meth:`reset_parameters` sets it)."""
        r2 = (1.0 - 1.0 / check_times(self, times, self.memory_units)) ** 2
        with torch.no_grad():
            self.nu_log.copy_(torch.log(-0.5 * torch.log(r2)))
            self.gamma_log.copy_(0.5 * torch.log(1 - r2))

    def decay(self) -> Parts:
        """``lambda`` as ``(Re, Im)``, each (N,)."""
        modulus = torch.exp(-torch.exp(self.nu_log))
        phase = torch.exp(self.theta_log)
        return modulus * torch.cos(phase), modulus * torch.sin(phase)

    def _coefficients(self, x: Tensor, masks: Tensor | None) -> tuple[Parts, Parts, Tensor]:
        gamma = torch.exp(self.gamma_log)
        bx = F.linear(x, self.weight_ih)  # (T, B, 2N): [Re B x, Im B x]
        b_re, b_im = (bx * torch.cat([gamma, gamma])).chunk(2, -1)
        return self.decay(), (b_re, b_im), x

    def _readout(self, s: Parts, x: Tensor, masks: Tensor | None) -> Tensor:
        out = F.linear(torch.cat(s, -1), self.weight_out, self.bias_out)  # Re(C s): (T, B, H)
        out = out + F.linear(x, self.weight_skip)  # + D x
        return self._output_mask(out, masks)
