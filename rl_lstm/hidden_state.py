"""The layer shared by the memories that carry h only (the GRU and the tanh RNN): where their masks act
and the masks that act on a finished step."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import torch
from torch import Tensor

from rl_lstm.parameters import TorchParameters
from rl_lstm.paths import STEPS, TORCH_CELLS, TORCH_KERNELS, Stage


class HiddenStateLayer(TorchParameters):
    """A layer whose whole state is ``h`` (``nn.GRU``'s convention): ``forward(x, hidden=None,
    episode_starts=None, masks=None) -> (output, h)`` with ``hidden`` and ``h`` each
    ``(1, batch, hidden_size)``.

    Subclasses give the one-step math (:meth:`_project_input`, :meth:`_step`) and torch's fused
    kernels for it (:meth:`_cell`, one step; :meth:`_kernel`, a whole sequence).

    The dropout sites, for a memory whose output is its state h:

    - ``'pytorch'``: a fresh mask at every step on the output; the carried h is untouched.
    - ``'gal'``: one mask per episode on h where it leaves the step: on the output and on the
      recurrent input of the next step (``W_hh (h * m)``); the carried h itself (the GRU's
      ``z * h``) is not dropped, so kept units are not rescaled again at every step.
    - ``'semeniuta'``: a fresh mask at every step on the candidate (a subclass's :meth:`_step`).
    - ``'zoneout'``: each unit of h keeps its previous value with probability ``dropout``.
    """

    state_names: ClassVar[tuple[str, ...]] = ("h",)
    paths = (TORCH_KERNELS, TORCH_CELLS, STEPS)
    #: Gal's mask enters the step (``W_hh (h * m)``) as Semeniuta's does (on the candidate); zoneout acts
    #: on the h a finished step carries; the 'pytorch' mask on the output only.
    mask_stages: ClassVar[Mapping[str, Stage]] = {
        "hidden": "step", "candidate": "step", "zoneout": "after_step", "output": "output",
    }  # fmt: skip

    def _recurrent_input(self, h: Tensor, m: Tensor | None) -> Tensor:
        """h as the step's recurrent weights see it: Gal's mask drops it there."""
        return h * m if m is not None and self.mask_spec.site == "hidden" else h

    def _after_step(
        self, h: Tensor, c: None, h_new: Tensor, c_new: None, m: Tensor | None
    ) -> tuple[Tensor, None, Tensor]:
        """The masks that act on a finished step: zoneout, and Gal's or the output mask on the output."""
        site = self.mask_spec.site
        if site == "zoneout" and self.dropout > 0.0:
            # Without masks: the expectation, each unit p of the way back to its previous value.
            h_new = torch.lerp(h_new, h, self.dropout if m is None else m)
            return h_new, None, h_new
        if m is not None and site in ("hidden", "output"):
            return h_new, None, h_new * m
        return h_new, None, h_new
