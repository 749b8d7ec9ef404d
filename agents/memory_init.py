"""How the agents initialise their memories' keep gates and decays, so that a cue can be carried far.

At PyTorch's initial gate biases (about 0) an LSTM unit keeps half its cell per step: the trace of a cue, and
the gradient that would teach the memory to keep it, fade as ``0.5^t``. Measured on the memory ladder
(docs/memory/memory_init.md): recurrent PPO at PyTorch's initialisation stays at chance on Recall at 20, 50
and 100 steps; with memory times spread over the task's horizon it solves all three, and keeps the short
memories that a task like CartPoleNoVel needs.

``memory_init`` (a keyword of every recurrent policy, on-policy and off-policy alike):

- None (the default): ``"spread"`` for every memory that has a keep gate or a decay
  (:attr:`rl_lstm.RecurrentLayer.keep_gate`), and the cell's own initialisation for one that has none
  (the plain RNN).
- ``"spread"``: memory times drawn log-uniformly in ``[2, horizon]`` steps, unit by unit: as many units
  remember 2-4 steps as 25-50 or 250-500, so short dependencies keep their units while the longest
  reaches the horizon. The input gates stay as PyTorch starts them.
- ``"chrono"``: memory times drawn uniformly in ``[2, horizon]`` steps (Tallec & Ollivier 2018's forget
  bias ``log U(1, horizon - 1)``), the input gates as PyTorch starts them (chrono initialisation's closed
  input gates, ``-log U(...)``, kept the cue out: Recall-L100 at chance). Over a long horizon nearly every
  unit is slow: CartPoleNoVel-v1 (500 steps) fell from 500 to 120-450 at 50k steps.
- ``"torch"``: the cells' own initialisation (``nn.LSTM``'s for the LSTM family), as before.
- a number ``b``: every unit's keep gate at bias ``b`` (memory time ``1 + e^b`` steps).

``memory_horizon``: the longest dependency expected, in steps (an int >= 2), for ``"spread"`` and ``"chrono"``.
None: the algorithm's :func:`default_horizon` (the environment's episode limit where it has one, else the longest
stretch the update backpropagates through), or :data:`FALLBACK_HORIZON` where the policy is built alone.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch as th
from torch import nn

from rl_lstm import CELLS, cell_class

#: What ``memory_init=None`` means.
DEFAULT = "spread"
#: The named choices; what draws memory times (all but ``"torch"``).
NAMED = ("spread", "chrono", "torch")
#: The horizon of ``"spread"`` and ``"chrono"`` when neither the user nor the algorithm gives one (sb3-contrib's
#: n_steps).
FALLBACK_HORIZON = 128


def keep_cells() -> list[str]:
    """The registry names of the cells that have a keep gate or a decay."""
    return [name for name, cls in CELLS.items() if cls.keep_gate is not None]


def check_memory_init(value: Any, cell: str) -> str | float | None:
    """``value`` for a memory of ``cell``, checked: None, ``"spread"``, ``"chrono"``, ``"torch"`` or a finite number; a
    choice that sets a keep gate on a cell without one is a ValueError naming the cells it applies to."""
    if value is None or value == "torch":
        return value
    number = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    if number or (isinstance(value, str) and value in NAMED):
        if cell_class(cell).keep_gate is None:
            raise ValueError(
                f"memory_init={value!r}: cell {cell!r} has no keep gate or decay to initialise; it applies to "
                f"{', '.join(keep_cells())} (for {cell!r}: memory_init=None or 'torch')"
            )
        return value if isinstance(value, str) else float(value)
    raise ValueError(
        f"memory_init={value!r}: expected None (the default: 'spread' where the memory has a keep gate), 'spread', "
        "'chrono', 'torch' (the cells' own initialisation) or a number (the keep gate's bias)"
    )


def check_horizon(value: Any) -> int | None:
    """None or an int >= 2 (steps); else a ValueError naming it."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 2:
        raise ValueError(f"memory_horizon={value!r}: expected an int >= 2 (the longest dependency, in steps), or None")
    return int(value)


def default_horizon(env: Any, backprop_steps: int | None) -> int:
    """The ``memory_horizon`` an algorithm gives its policy: the episode limit of ``env`` (a VecEnv, its
    first environment's ``spec.max_episode_steps``) where it has one, else ``backprop_steps`` (the longest
    stretch its update backpropagates through), else :data:`FALLBACK_HORIZON`."""
    limit = None
    try:
        spec = env.get_attr("spec", [0])[0]
        limit = getattr(spec, "max_episode_steps", None)
    except (AttributeError, IndexError, TypeError):  # no VecEnv (a model loaded without one), or no spec
        pass
    for steps in (limit, backprop_steps):
        if isinstance(steps, int) and steps >= 2:
            return steps
    return FALLBACK_HORIZON


def with_horizon(policy_kwargs: dict[str, Any], env: Any, backprop_steps: int | None) -> dict[str, Any]:
    """An algorithm's ``policy_kwargs`` with ``memory_horizon`` filled in by :func:`default_horizon` where the
    user left it out (or None)."""
    if policy_kwargs.get("memory_horizon") is not None:
        return dict(policy_kwargs)
    return {**policy_kwargs, "memory_horizon": default_horizon(env, backprop_steps)}


def memory_times(memory_init: str | float, units: int, horizon: int) -> th.Tensor:
    """``units`` memory times for ``memory_init`` (``"spread"``, ``"chrono"`` or a bias); draws from torch's
    global generator (seeded by the algorithm)."""
    top = float(max(horizon, 2)) + 1e-9
    if memory_init == "spread":
        return th.empty(units, dtype=th.float64).uniform_(math.log(2.0), math.log(top)).exp()
    if memory_init == "chrono":
        return th.empty(units, dtype=th.float64).uniform_(2.0, top)
    return th.full((units,), 1.0 + math.exp(float(memory_init)), dtype=th.float64)


def init_memories_(memories: Iterable[nn.Module], memory_init: str | float | None, horizon: int | None) -> None:
    """Set the memory times of every layer of ``memories`` (:class:`agents.memory.MemoryStack`) as
    ``memory_init`` says (see the module); layers without a keep gate keep theirs under the default."""
    choice = DEFAULT if memory_init is None else memory_init
    if choice == "torch":
        return
    horizon = FALLBACK_HORIZON if horizon is None else horizon
    for memory in memories:
        for layer in memory.layers:
            if layer.memory_units == 0:  # no keep gate, or one without a bias (bias=False)
                if memory_init is not None:
                    raise ValueError(
                        f"memory_init={memory_init!r}: the {type(layer).__name__} layer has no keep gate or decay "
                        "with a parameter to set (a gated cell needs bias=True); use memory_init=None or 'torch'"
                    )
                continue
            layer.init_memory_times_(memory_times(choice, layer.memory_units, horizon))
