"""The cue of an episode, drawn or chosen: the ladder tasks accept ``reset(options={"cue": k})`` so that an
evaluation can show every cue equally often."""

from __future__ import annotations

from typing import Any

import numpy as np


def cue_option(options: dict[str, Any] | None, num_cues: int, rng: np.random.Generator) -> int:
    """The cue of an episode: ``options["cue"]`` where given (balanced evaluations), else drawn from ``rng``."""
    if options is None or options.get("cue") is None:
        return int(rng.integers(num_cues))
    cue = options["cue"]
    if isinstance(cue, bool) or not isinstance(cue, (int, np.integer)) or not 0 <= cue < num_cues:
        raise ValueError(f"options['cue']={cue!r}: expected an int in [0, {num_cues})")
    return int(cue)
