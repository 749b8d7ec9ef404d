"""The layer shared by the memories that carry h only (the GRU and the tanh RNN): the masks that
act on a finished step and the choice between fused kernels and the step loop."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from rl_lstm.base import TorchParameters
from rl_lstm.segments import run_fused, step_loop


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
    #: Use PyTorch's fused kernels where the math allows (False: the step-by-step loop, the reference).
    fused = True

    def _cell(self, x: Tensor, h: Tensor, c: None = None) -> tuple[Tensor, None]:
        """One step of torch's fused cell from the raw input ``x`` (B, I): the new h and None."""
        raise NotImplementedError

    def _kernel(self, x: Tensor, h: Tensor, c: None = None) -> tuple[Tensor, Tensor, None]:
        """torch's fused sequence kernel over ``x`` (T, B, I) from ``h`` (B, H): output, h, None."""
        raise NotImplementedError

    def _recurrent_input(self, h: Tensor, m: Tensor | None) -> Tensor:
        """h as the step's recurrent weights see it: Gal's mask drops it there."""
        return h * m if m is not None and self.mask_spec.site == "hidden" else h

    def _after_step(self, h: Tensor, h_new: Tensor, m: Tensor | None) -> tuple[Tensor, None, Tensor]:
        """The masks that act on a finished step: zoneout, and Gal's or the output mask on the output."""
        site = self.mask_spec.site
        if site == "zoneout" and self.dropout > 0.0:
            # Without masks: the expectation, each unit p of the way back to its previous value.
            h_new = torch.lerp(h_new, h, self.dropout if m is None else m)
            return h_new, None, h_new
        if m is not None and site in ("hidden", "output"):
            return h_new, None, h_new * m
        return h_new, None, h_new

    def _cell_step(self, x: Tensor, h: Tensor, c: None, m: Tensor | None) -> tuple[Tensor, None, Tensor]:
        h_new, _ = self._cell(x, h)
        return self._after_step(h, h_new, m)

    def _run(self, x: Tensor, h: Tensor, c: None, starts: Tensor | None, masks: Tensor | None, need_state=True):
        site = self.mask_spec.site
        if not self.fused or masks is not None and site in ("hidden", "candidate"):
            return super()._run(x, h, c, starts, masks)  # the mask sits inside the step's math
        if site == "zoneout" and self.dropout > 0.0:
            return step_loop(self._cell_step, x, h, c, starts, masks)  # the fused cell, then zoneout
        # The carried state is the torch module's: fused kernels, then the output mask.
        out, h, c = run_fused(self._cell, self._kernel, x, h, c, starts, need_state)
        return (out if masks is None else out * masks), h, c
