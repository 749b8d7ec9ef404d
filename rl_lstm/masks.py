"""Dropout methods: where each one puts its mask and how often it is sampled.

A call of a cell uses masks of shape ``(seq_len, batch, width)``. Per-episode methods hold one
mask per row for the whole episode, so their ``(seq_len, batch, width)`` tensor repeats a row's
mask until that row's next episode start. Masks are stored as ready-to-multiply values in the
parameters' dtype:

- dropout methods: ``0`` for a dropped unit, else ``1 / (1 - p)`` (inverted scaling), except
  Moon's, which is ``0`` or ``1`` (see :data:`METHODS`);
- zoneout: ``1`` where a unit keeps its previous value, else ``0``; one block of ``hidden_size``
  columns per carried state part: for the LSTM family the first block acts on ``c``, the second
  on ``h``; for the memories that carry h only (GRU, RNN) the one block acts on ``h``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class MaskSpec:
    """Where a dropout method acts and how its masks are drawn.

    site: ``"output"`` (the layer output, not the carried state), ``"hidden"`` (h_t as output
        and as the next step's recurrent input: the LSTM's carried h; a GRU's interpolation
        ``z * h`` keeps the un-dropped h), ``"cell"`` (c_t), ``"candidate"`` (the update: the
        LSTM's g_t, the GRU's n_t) or ``"zoneout"`` (each carried state part keeps its previous
        values).
    per_episode: True when one mask is held for a row's whole episode.
    inverted: True when kept units are scaled by ``1 / (1 - p)`` so that the expectation is the
        un-dropped activation.
    per_state: True when the mask has one block of columns per carried state part (zoneout
        masks c and h of an LSTM, h of a GRU); else one block.
    """

    site: str
    per_episode: bool
    inverted: bool = True
    per_state: bool = False

    def width(self, state_names: tuple[str, ...]) -> int:
        """Mask columns per hidden unit for a memory carrying ``state_names``."""
        return len(state_names) if self.per_state else 1


METHODS: dict[str, MaskSpec] = {
    # Zaremba et al. 2014 / nn.LSTM between layers: a fresh mask on the output at every step.
    "pytorch": MaskSpec(site="output", per_episode=False),
    # Gal & Ghahramani 2016: one mask per sequence on h_t, which is both output and recurrent input.
    "gal": MaskSpec(site="hidden", per_episode=True),
    # Moon et al. 2015 (RNNDrop): one mask per sequence on the cell state. The mask multiplies
    # the carried c at every step, so inverted scaling would compound as (f / (1 - p))^t and
    # blow c up; the mask is therefore plain 0/1.
    "moon": MaskSpec(site="cell", per_episode=True, inverted=False),
    # Semeniuta et al. 2016: a fresh mask on the candidate g_t, so no memory is ever erased.
    "semeniuta": MaskSpec(site="candidate", per_episode=False),
    # Krueger et al. 2016: each unit of the carried state (c and h; a GRU's h) keeps its previous
    # value with probability p.
    "zoneout": MaskSpec(site="zoneout", per_episode=False, inverted=False, per_state=True),
}


def check_method(dropout: float, dropout_method: str, allowed: tuple[str, ...] = tuple(METHODS)) -> MaskSpec:
    """Validate ``dropout`` and ``dropout_method`` (one of ``allowed``, the methods a cell class
    takes); return the method's spec."""
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout={dropout!r}: expected a number in [0, 1)")
    if dropout_method not in allowed:
        raise ValueError(
            f"dropout_method={dropout_method!r}: expected one of {', '.join(repr(m) for m in allowed)}"
        )
    return METHODS[dropout_method]


def sample_masks(
    spec: MaskSpec, p: float, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """Draw masks of ``shape`` (last dim = width * hidden_size) with the global torch generator."""
    # Uniform draws compared in place: several times faster than bernoulli_ on CPU.
    u = torch.rand(shape, dtype=dtype, device=device)
    if spec.site == "zoneout":
        return u.lt_(p)  # 1 where the unit keeps its previous value
    keep = u.ge_(p)
    return keep.div_(1.0 - p) if spec.inverted else keep
