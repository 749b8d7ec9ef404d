"""The plain tanh RNN (nn.RNN's math)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rl_lstm.hidden_state import HiddenStateLayer
from rl_lstm.paths import KERNEL


class RNN(HiddenStateLayer):
    """A tanh RNN layer (Elman 1990, in ``nn.RNN``'s form): ``h' = tanh(W_ih x + b_ih + W_hh h + b_hh)``.

    ``RNN(input_size, hidden_size, bias=True, dropout=0.0, dropout_method='pytorch')``, where
    ``dropout_method`` is one of ``'pytorch'`` (a fresh mask on the output at every step),
    ``'gal'`` (Gal & Ghahramani 2016: one mask per episode on h, as output and as the next step's
    recurrent input) or ``'zoneout'`` (Krueger et al. 2016: each unit of h keeps its previous
    value with probability ``dropout``). It has no candidate apart from its state, so Semeniuta's
    method does not apply. Parameters are named and shaped like ``nn.RNN``'s (``weight_ih``
    (H, I), ``weight_hh`` (H, H), ``bias_ih``, ``bias_hh``); at ``dropout=0`` it computes exactly
    what ``nn.RNN(nonlinearity='tanh')`` does. Calls run on the compiled chunk kernel where it can run, else on
    ``torch.rnn_tanh_cell`` and the ``nn.RNN`` sequence kernel where the masks leave the carried state alone.
    """

    paths = (KERNEL, *HiddenStateLayer.paths)
    gates = 1
    torch_module = nn.RNN
    dropout_methods = ("pytorch", "gal", "zoneout")

    def _project_input(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight_ih, self.bias_ih)  # (..., H)

    def _step(self, xw: Tensor, h: Tensor, c: None, m: Tensor | None) -> tuple[Tensor, None, Tensor]:
        h_new = torch.addmm(xw, self._recurrent_input(h, m), self.weight_hh.t())
        if self.bias:
            h_new = h_new + self.bias_hh
        return self._after_step(h, None, h_new.tanh(), None, m)

    def kernel_norms(self) -> tuple[list[Tensor | None], float, float]:
        """No layer norm (see :meth:`rl_lstm.gru.GRU.kernel_norms`)."""
        return [], 0.0, 0.0

    def _cell(self, x: Tensor, h: Tensor, c: None = None) -> tuple[Tensor, None]:
        return torch.rnn_tanh_cell(x, h, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh), None

    def _kernel(self, x: Tensor, h: Tensor, c: None = None) -> tuple[Tensor, Tensor, None]:
        out, h = torch._VF.rnn_tanh(
            x, h.unsqueeze(0), self.torch_parameters(), self.bias, 1, 0.0, self.training, False, False
        )
        return out, h[0], None
