"""The LSTM and its dropout variants (Gal, Moon, Semeniuta, zoneout)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from rl_lstm.parameters import LSTMParameters
from rl_lstm.paths import KERNEL, STEPS, TORCH_CELLS, TORCH_KERNELS, Stage


class LSTM(LSTMParameters):
    """An LSTM layer with a choice of dropout method (Hochreiter & Schmidhuber 1997).

    ``LSTM(input_size, hidden_size, bias=True, dropout=0.0, dropout_method='pytorch')``, where
    ``dropout_method`` is one of ``'pytorch'`` (a fresh mask on the output at every step, the
    carried state untouched), ``'gal'``, ``'moon'``, ``'semeniuta'`` or ``'zoneout'``; see the
    classes named after them. At ``dropout=0`` it computes exactly what ``nn.LSTM`` does.

    Calls run on the compiled chunk kernel (:mod:`rl_lstm.kernel`) where it can run. Otherwise,
    where the math allows, on PyTorch's fused kernels: ``torch.lstm_cell`` one step at a time, and
    the ``nn.LSTM`` sequence kernel between episode starts when the masks leave the carried state
    alone; else on the step loop.
    """

    paths = (KERNEL, TORCH_KERNELS, TORCH_CELLS, STEPS)
    #: Semeniuta's mask (on g) and Moon's (on c, before tanh) act inside the step; Gal's (on h) and
    #: zoneout on the state a finished step carries; the 'pytorch' mask on the output only.
    mask_stages: ClassVar[Mapping[str, Stage]] = {
        "candidate": "step", "cell": "step", "hidden": "after_step", "zoneout": "after_step", "output": "output",
    }  # fmt: skip

    def _project_input(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight_ih, self._bias())

    def _project_hidden(self, h: Tensor) -> Tensor:
        return F.linear(h, self.weight_hh)

    def _gates(self, xw: Tensor, h: Tensor) -> Tensor:
        return torch.addmm(xw, h, self.weight_hh.t())

    def _normalize_cell(self, c: Tensor) -> Tensor:
        return c

    def _step(self, xw: Tensor, h: Tensor, c: Tensor, m: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        site = self.mask_spec.site
        gates = self._gates(xw, h)  # (B, 4H), gate order i, f, g, o
        # One sigmoid over all gates and one tanh for g: fewer ops per step than four activations.
        act = gates.sigmoid()
        i, f, _, o = act.chunk(4, 1)
        g = gates[:, 2 * self.hidden_size : 3 * self.hidden_size].tanh()
        if m is not None and site == "candidate":
            g = g * m
        c_new = torch.addcmul(f * c, i, g)
        if m is not None and site == "cell":
            c_new = c_new * m
        h_new = o * torch.tanh(self._normalize_cell(c_new))
        return self._after_step(h, c, h_new, c_new, m)

    def _after_step(self, h: Tensor, c: Tensor, h_new: Tensor, c_new: Tensor, m: Tensor | None):
        """The masks that act on a finished step: zoneout, Gal's on h, and the output mask."""
        site = self.mask_spec.site
        if site == "zoneout" and self.dropout > 0.0:
            # Without masks: the expectation, each unit p of the way back to its previous value.
            d_c, d_h = (self.dropout, self.dropout) if m is None else m.chunk(2, 1)
            h_new = torch.lerp(h_new, h, d_h)
            return h_new, torch.lerp(c_new, c, d_c), h_new
        if m is None:
            return h_new, c_new, h_new
        if site == "hidden":
            h_new = h_new * m
            return h_new, c_new, h_new
        if site == "output":
            return h_new, c_new, h_new * m
        return h_new, c_new, h_new

    def _cell(self, x: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        return torch.lstm_cell(x, (h, c), self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)

    def _kernel(self, x: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        out, h, c = torch._VF.lstm(
            x, (h.unsqueeze(0), c.unsqueeze(0)), self.torch_parameters(),
            self.bias, 1, 0.0, self.training, False, False,
        )  # fmt: skip
        return out, h[0], c[0]

    def kernel_norms(self) -> tuple[list[Tensor | None], float, float]:
        """The layer norms as the compiled kernel (:func:`rl_lstm.kernel.run`) takes them: the gains and
        biases of the input, hidden and cell norms (None where there is none), and the pre-activation and
        cell epsilons."""
        return [None] * 6, 0.0, 0.0


class GalLSTM(LSTM):
    """LSTM with variational dropout (Gal & Ghahramani 2016, *A Theoretically Grounded
    Application of Dropout in Recurrent Neural Networks*): one mask per episode on h_t, applied
    to the output and to the state carried to the next step."""

    method = "gal"


class MoonLSTM(LSTM):
    """LSTM with RNNDrop (Moon et al. 2015, *RNNDrop: A Novel Dropout for RNNs in ASR*): one
    0/1 mask per episode on the cell state c_t.

    The mask is not scaled by 1/(1-p): it multiplies the carried c at every step, so scaling
    would compound as (f/(1-p))^t. Eval mode runs the un-dropped cell, which is therefore not
    the expectation of training (kept units are not rescaled); at large p the two differ.
    """

    method = "moon"


class SemeniutaLSTM(LSTM):
    """LSTM with recurrent dropout without memory loss (Semeniuta et al. 2016): a fresh mask at
    every step on the candidate update g_t, so stored memory is never erased."""

    method = "semeniuta"


class ZoneoutLSTM(LSTM):
    """LSTM with zoneout (Krueger et al. 2016, *Zoneout: Regularizing RNNs by Randomly
    Preserving Hidden Activations*): at every step each unit of c_t and h_t keeps its previous
    value with probability ``dropout``; at evaluation each moves ``1 - dropout`` of the way."""

    method = "zoneout"
