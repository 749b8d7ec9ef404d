"""The GRU (nn.GRU's math) and its dropout variants (Gal, Semeniuta, zoneout)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rl_lstm.hidden_state import HiddenStateLayer
from rl_lstm.memory_times import check_times, gate_bias_units, keep_logit, set_gate_bias_
from rl_lstm.paths import KERNEL


class GRU(HiddenStateLayer):
    """A GRU layer with a choice of dropout method (Cho et al. 2014, in ``nn.GRU``'s form).

    ``r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)``, ``z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)``,
    ``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))``, ``h' = (1 - z) * n + z * h``.

    ``GRU(input_size, hidden_size, bias=True, dropout=0.0, dropout_method='pytorch')``, where
    ``dropout_method`` is one of ``'pytorch'`` (a fresh mask on the output at every step, the
    carried state untouched), ``'gal'``, ``'semeniuta'`` or ``'zoneout'``; see the classes named
    after them. Parameters are named and laid out like ``nn.GRU``'s (``weight_ih`` (3H, I),
    ``weight_hh`` (3H, H), ``bias_ih``, ``bias_hh``, gate order r, z, n); at ``dropout=0`` it
    computes exactly what ``nn.GRU`` does. The state is ``h`` alone, ``(1, batch, hidden_size)``.

    Calls run on the compiled chunk kernel (:mod:`rl_lstm.kernel`) where it can run. Otherwise, where the
    math allows, on PyTorch's fused kernels: ``torch.gru_cell`` one step at a time, and the ``nn.GRU``
    sequence kernel between episode starts when the masks leave the carried state alone; else on the step
    loop.
    """

    paths = (KERNEL, *HiddenStateLayer.paths)
    gates = 3
    torch_module = nn.GRU
    dropout_methods = ("pytorch", "gal", "semeniuta", "zoneout")
    keep_gate = "update gate z"
    memory_units = gate_bias_units

    def init_memory_times_(self, times: Tensor) -> None:
        set_gate_bias_(self, 1, keep_logit(check_times(self, times, self.memory_units)))  # h' = (1 - z) n + z h

    def _project_input(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight_ih, self.bias_ih)  # (..., 3H): W_i{r,z,n} x + b_i{r,z,n}

    def _project_hidden(self, h: Tensor) -> Tensor:
        return F.linear(h, self.weight_hh, self.bias_hh)  # (B, 3H): W_h{r,z,n} h + b_h{r,z,n}

    def _step(self, xw: Tensor, h: Tensor, c: None, m: Tensor | None) -> tuple[Tensor, None, Tensor]:
        hw = self._project_hidden(self._recurrent_input(h, m))
        two = 2 * self.hidden_size
        # One sigmoid over r and z together: fewer ops per step than two.
        r, z = (xw[:, :two] + hw[:, :two]).sigmoid().chunk(2, 1)
        n = torch.addcmul(xw[:, two:], r, hw[:, two:]).tanh()
        if m is not None and self.mask_spec.site == "candidate":
            n = n * m
        return self._after_step(h, None, torch.lerp(n, h, z), None, m)  # (1 - z) * n + z * h

    def kernel_norms(self) -> tuple[list[Tensor | None], float, float]:
        """The layer norms as the compiled kernel (:func:`rl_lstm.kernel.run`) takes them: the gains and
        biases of the input and recurrent norms (None where there is none), their epsilon, and 0 (no cell)."""
        return [None] * 4, 0.0, 0.0

    def _cell(self, x: Tensor, h: Tensor, c: None = None) -> tuple[Tensor, None]:
        return torch.gru_cell(x, h, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh), None

    def _kernel(self, x: Tensor, h: Tensor, c: None = None) -> tuple[Tensor, Tensor, None]:
        out, h = torch._VF.gru(
            x, h.unsqueeze(0), self.torch_parameters(), self.bias, 1, 0.0, self.training, False, False
        )
        return out, h[0], None


class GalGRU(GRU):
    """GRU with variational dropout (Gal & Ghahramani 2016, *A Theoretically Grounded Application
    of Dropout in Recurrent Neural Networks*, sec. 4): one mask per episode on h_{t-1} where it
    enters the recurrent weights (``W_hh (h * m)``), and on the output; the interpolation
    ``z * h`` carries the un-dropped h."""

    method = "gal"


class SemeniutaGRU(GRU):
    """GRU with recurrent dropout without memory loss (Semeniuta, Severyn & Barth 2016, sec. 3 for
    GRUs): a fresh mask at every step on the candidate, ``h' = (1 - z) * (n * m) + z * h``, so the
    stored memory ``z * h`` is never dropped."""

    method = "semeniuta"


class ZoneoutGRU(GRU):
    """GRU with zoneout (Krueger et al. 2016, *Zoneout: Regularizing RNNs by Randomly Preserving
    Hidden Activations*): at every step each unit of h keeps its previous value with probability
    ``dropout``; at evaluation each moves ``1 - dropout`` of the way."""

    method = "zoneout"
