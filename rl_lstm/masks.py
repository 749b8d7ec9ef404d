"""Dropout methods: where each one puts its mask and how often it is sampled.

A call of a cell uses masks of shape ``(seq_len, batch, width)``. Per-episode methods hold one
mask per row for the whole episode, so their ``(seq_len, batch, width)`` tensor repeats a row's
mask until that row's next episode start. Masks are stored as ready-to-multiply values in the
parameters' dtype:

- dropout methods: ``0`` for a dropped unit, else ``1 / (1 - p)`` (inverted scaling), except
  Moon's, which is ``0`` or ``1`` (see :data:`METHODS`);
- zoneout: ``1`` where a unit keeps its previous value, else ``0``; the first ``hidden_size``
  columns act on ``c``, the last ``hidden_size`` on ``h``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class MaskSpec:
    """Where a dropout method acts and how its masks are drawn.

    site: ``"output"`` (the layer output, not the carried state), ``"hidden"`` (h_t as output
        and as carried state), ``"cell"`` (c_t), ``"candidate"`` (the update g_t) or
        ``"zoneout"`` (c_t and h_t keep their previous values).
    per_episode: True when one mask is held for a row's whole episode.
    inverted: True when kept units are scaled by ``1 / (1 - p)`` so that the expectation is the
        un-dropped activation.
    width: mask columns per hidden unit (zoneout masks both c and h).
    """

    site: str
    per_episode: bool
    inverted: bool = True
    width: int = 1


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
    # Krueger et al. 2016: each unit of c and h keeps its previous value with probability p.
    "zoneout": MaskSpec(site="zoneout", per_episode=False, inverted=False, width=2),
}


def check_method(dropout: float, dropout_method: str) -> MaskSpec:
    """Validate ``dropout`` and ``dropout_method``; return the method's spec."""
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout={dropout!r}: expected a number in [0, 1)")
    if dropout_method not in METHODS:
        raise ValueError(
            f"dropout_method={dropout_method!r}: expected one of {', '.join(repr(m) for m in METHODS)}"
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
