"""LayerNorm-GRU (Ba et al. 2016) and its dropout mixes."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from rl_lstm.gru import GRU
from rl_lstm.layer_norm import LayerNorm
from rl_lstm.paths import KERNEL, STEPS


class LayerNormGRU(GRU):
    """GRU with layer normalization (Ba, Kiros & Hinton 2016, *Layer Normalization*, sec. 3.1:
    normalise the summed inputs of the recurrent units at every step).

    As for the LSTM (their supplementary eqs. 20-22), the input and the recurrent pre-activations
    are normalised separately, each over its 3H gate columns, before the biases:
    ``a = LN(W_ih x) + b_ih``, ``b = LN(W_hh h) + b_hh``, ``r = sigmoid(a_r + b_r)``,
    ``z = sigmoid(a_z + b_z)``, ``n = tanh(a_n + r * b_n)``, ``h' = (1 - z) * n + z * h``. The
    carried h is not normalised (it is the output and the interpolation's memory).
    ``learnable=False`` freezes gains at 1 and biases at 0. The ``dropout_method`` choices are the
    :class:`GRU`'s.

    ``LayerNormGRU(input_size, hidden_size, bias=True, dropout=0.0, dropout_method='pytorch',
    learnable=True)``
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
        learnable: bool = True,
        batch_first: bool = False,
    ) -> None:
        super().__init__(input_size, hidden_size, bias, dropout, dropout_method, batch_first)
        self.learnable = bool(learnable)
        self.ln_ih = LayerNorm(3 * self.hidden_size, learnable=learnable)
        self.ln_hh = LayerNorm(3 * self.hidden_size, learnable=learnable)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", learnable={self.learnable}"

    def kernel_norms(self) -> tuple[list[Tensor | None], float, float]:
        # ln_ih and ln_hh are built with the same (default) epsilon: the kernel takes one for both.
        return [self.ln_ih.weight, self.ln_ih.bias, self.ln_hh.weight, self.ln_hh.bias], self.ln_ih.epsilon, 0.0

    def _project_input(self, x: Tensor) -> Tensor:
        xw = self.ln_ih(F.linear(x, self.weight_ih))
        return xw if not self.bias else xw + self.bias_ih

    def _project_hidden(self, h: Tensor) -> Tensor:
        hw = self.ln_hh(F.linear(h, self.weight_hh))
        return hw if not self.bias else hw + self.bias_hh


class LayerNormGalGRU(LayerNormGRU):
    """LayerNorm-GRU with Gal & Ghahramani's per-episode mask on h as output and recurrent input
    (see :class:`GalGRU`)."""

    method = "gal"


class LayerNormSemeniutaGRU(LayerNormGRU):
    """LayerNorm-GRU with Semeniuta et al.'s per-step mask on the candidate n (see :class:`SemeniutaGRU`)."""

    method = "semeniuta"


class LayerNormZoneoutGRU(LayerNormGRU):
    """LayerNorm-GRU with Krueger et al.'s zoneout of h (see :class:`ZoneoutGRU`)."""

    method = "zoneout"
