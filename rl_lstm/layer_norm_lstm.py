"""LayerNorm-LSTM (Ba et al. 2016) and its dropout mixes."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from rl_lstm.layer_norm import LayerNorm
from rl_lstm.lstm import LSTM
from rl_lstm.paths import KERNEL, STEPS


class LayerNormLSTM(LSTM):
    """LSTM with layer normalization (Ba, Kiros & Hinton 2016, supplementary eqs. 20-22).

    ``gates = LN(W_ih x) + LN(W_hh h) + b`` and ``h_t = o * tanh(LN(c_t))``; the carried
    ``c_t`` stays un-normalised. (lstms.pth normalised the carried cell state instead.) With
    ``ln_preact=False`` only the cell is normalised; ``learnable=False`` freezes gains at 1 and
    biases at 0. The ``dropout_method`` choices are the :class:`LSTM`'s.

    ``LayerNormLSTM(input_size, hidden_size, bias=True, dropout=0.0, dropout_method='pytorch',
    ln_preact=True, learnable=True)``
    """

    torch_equivalent = False
    # No PyTorch fused kernel computes this math: the compiled kernel, else the step loop.
    paths = (KERNEL, STEPS)

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        dropout: float | None = None,
        dropout_method: str = "pytorch",
        ln_preact: bool = True,
        learnable: bool = True,
        batch_first: bool = False,
    ) -> None:
        super().__init__(input_size, hidden_size, bias, dropout, dropout_method, batch_first)
        self.ln_preact = bool(ln_preact)
        self.learnable = bool(learnable)
        if self.ln_preact:
            self.ln_ih = LayerNorm(4 * self.hidden_size, learnable=learnable)
            self.ln_hh = LayerNorm(4 * self.hidden_size, learnable=learnable)
        self.ln_c = LayerNorm(self.hidden_size, learnable=learnable)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", ln_preact={self.ln_preact}, learnable={self.learnable}"

    def _project_input(self, x: Tensor) -> Tensor:
        if not self.ln_preact:
            return super()._project_input(x)
        xw = self.ln_ih(F.linear(x, self.weight_ih))
        return xw if not self.bias else xw + self._bias()

    def _project_hidden(self, h: Tensor) -> Tensor:
        hw = F.linear(h, self.weight_hh)
        return self.ln_hh(hw) if self.ln_preact else hw

    def _gates(self, xw: Tensor, h: Tensor) -> Tensor:
        return xw + self._project_hidden(h)

    def _normalize_cell(self, c: Tensor) -> Tensor:
        return self.ln_c(c)

    def kernel_norms(self) -> tuple[list[Tensor | None], float, float]:
        if not self.ln_preact:
            return [None] * 4 + [self.ln_c.weight, self.ln_c.bias], 0.0, self.ln_c.epsilon
        norms = [self.ln_ih.weight, self.ln_ih.bias, self.ln_hh.weight, self.ln_hh.bias]
        # ln_ih and ln_hh are built with the same (default) epsilon: the kernel takes one for both.
        return [*norms, self.ln_c.weight, self.ln_c.bias], self.ln_ih.epsilon, self.ln_c.epsilon


class LayerNormGalLSTM(LayerNormLSTM):
    """LayerNorm-LSTM with Gal & Ghahramani's per-episode mask on h_t (see :class:`GalLSTM`)."""

    method = "gal"


class LayerNormMoonLSTM(LayerNormLSTM):
    """LayerNorm-LSTM with Moon et al.'s per-episode 0/1 mask on c_t (see :class:`MoonLSTM`)."""

    method = "moon"


class LayerNormSemeniutaLSTM(LayerNormLSTM):
    """LayerNorm-LSTM with Semeniuta et al.'s per-step mask on g_t (see :class:`SemeniutaLSTM`)."""

    method = "semeniuta"


class LayerNormZoneoutLSTM(LayerNormLSTM):
    """LayerNorm-LSTM with Krueger et al.'s zoneout of c_t and h_t (see :class:`ZoneoutLSTM`)."""

    method = "zoneout"
