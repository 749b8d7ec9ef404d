"""Partially observable tasks that need memory; importing the package registers them with Gymnasium."""

from __future__ import annotations

import math
from dataclasses import dataclass

import gymnasium

from envs.cues import BalancedCues, has_cues
from envs.mask_velocity import MaskVelocityWrapper, cartpole_no_vel, pendulum_no_vel
from envs.masked_recall import MaskedRecall
from envs.memory_length import MemoryLength
from envs.passive_t_maze import PassiveTMaze
from envs.prev_action_reward import PrevActionReward
from envs.recall import Recall
from envs.repeat_first import RepeatFirst
from envs.repeat_previous import RepeatPrevious
from envs.t_maze import TMaze

__all__ = [
    "BalancedCues",
    "ENV_INFO",
    "MEMORY_ENV_IDS",
    "EnvInfo",
    "LADDER_FAMILIES",
    "LADDER_RUNGS",
    "MaskVelocityWrapper",
    "MaskedRecall",
    "MemoryLength",
    "PassiveTMaze",
    "PrevActionReward",
    "Recall",
    "RepeatFirst",
    "RepeatPrevious",
    "TMaze",
    "cartpole_no_vel",
    "has_cues",
    "ladder_id",
    "pendulum_no_vel",
]


LADDER_RUNGS: tuple[int, ...] = (10, 20, 50, 100, 250, 500, 1000)
"""Lengths of the memory ladder: ``<family>-L<n>-v0`` is registered for each family and each rung."""

LADDER_FAMILIES: tuple[str, ...] = ("PassiveTMaze", "Recall", "RepeatFirst")
"""Tasks of the memory ladder: a fixed horizon, a known memoryless bound, nothing to explore but the answer
(the T-maze's walk is paid for step by step), and ``info["is_success"]`` at the last step that says whether the
memory-dependent answer was right."""


def ladder_id(family: str, length: int) -> str:
    """The registered id of a rung, e.g. ``ladder_id("Recall", 100) == "Recall-L100-v0"``."""
    return f"{family}-L{length}-v0"


@dataclass(frozen=True)
class EnvInfo:
    """Reference returns of one registered task.

    :ivar max_return: return of an oracle that remembers everything it needs (an upper bound where no oracle
        return is known).
    :ivar memoryless_bound: best expected return of a policy that sees only the current observation; NaN where
        no meaningful figure is known.
    :ivar threshold: return at which the task counts as solved ("steps to reach threshold" in benchmarks).
    """

    max_return: float
    memoryless_bound: float
    threshold: float


ENV_INFO: dict[str, EnvInfo] = {
    # The memoryless figure is empirical, not a proven bound: the best policies of cart position and pole
    # angle alone that a search over deterministic and logistic policies of quadratic features found
    # balance for about 45-55 steps on average.
    "CartPoleNoVel-v1": EnvInfo(max_return=500.0, memoryless_bound=50.0, threshold=475.0),
    # Rewards are never positive, so 0 only bounds the oracle. Without velocity the direction of the swing
    # is ambiguous, but no reliable figure for the best memoryless policy is known.
    "PendulumNoVel-v1": EnvInfo(max_return=0.0, memoryless_bound=math.nan, threshold=-200.0),
    "RepeatPrevious-Easy-v0": EnvInfo(max_return=1.0, memoryless_bound=1 / 2, threshold=0.9),
    "RepeatPrevious-v0": EnvInfo(max_return=1.0, memoryless_bound=1 / 4, threshold=0.9),
    "RepeatPrevious-Hard-v0": EnvInfo(max_return=1.0, memoryless_bound=1 / 4, threshold=0.9),
    "TMaze-Easy-v0": EnvInfo(max_return=1.0, memoryless_bound=0.5, threshold=0.95),
    "TMaze-v0": EnvInfo(max_return=1.0, memoryless_bound=0.5, threshold=0.95),
    "TMaze-Hard-v0": EnvInfo(max_return=1.0, memoryless_bound=0.5, threshold=0.95),
    # The corridor-length ladder of the memory benchmark (with TMaze-v0 at 10): how far a memory reaches.
    **{f"TMaze-L{n}-v0": EnvInfo(max_return=1.0, memoryless_bound=0.5, threshold=0.95) for n in (5, 20, 40, 80)},
    "MemoryLength-Easy-v0": EnvInfo(max_return=1.0, memoryless_bound=0.0, threshold=0.9),
    "MemoryLength-v0": EnvInfo(max_return=1.0, memoryless_bound=0.0, threshold=0.9),
    "MemoryLength-Hard-v0": EnvInfo(max_return=1.0, memoryless_bound=0.0, threshold=0.9),
    # The memory ladder. Success is judged on info["is_success"] (the final answer right in 95% of episodes);
    # these returns are for the tables. A memoryless walker of the passive T-maze turns right half the time.
    **{
        ladder_id(family, n): EnvInfo(max_return=1.0, memoryless_bound=bound, threshold=0.9)
        for family, bound in (("PassiveTMaze", 1 / 2), ("Recall", 1 / 4), ("RepeatFirst", 1 / 4))
        for n in LADDER_RUNGS
    },
}

MEMORY_ENV_IDS: tuple[str, ...] = tuple(ENV_INFO)


def _register(env_id: str, entry_point: str, max_episode_steps: int, **kwargs: int) -> None:
    gymnasium.register(
        id=env_id,
        entry_point=entry_point,
        kwargs=kwargs,
        max_episode_steps=max_episode_steps,
        reward_threshold=ENV_INFO[env_id].threshold,
    )


_REPEAT_PREVIOUS = "envs.repeat_previous:RepeatPrevious"
_T_MAZE = "envs.t_maze:TMaze"
_MEMORY_LENGTH = "envs.memory_length:MemoryLength"

_register("CartPoleNoVel-v1", "envs.mask_velocity:cartpole_no_vel", 500)
_register("PendulumNoVel-v1", "envs.mask_velocity:pendulum_no_vel", 200)
# Fixed-length tasks: max_episode_steps equals the episode length, so it only backs up termination.
# episode_length = k + 16 keeps 16 scored answers at every level.
_register("RepeatPrevious-Easy-v0", _REPEAT_PREVIOUS, 18, k=2, num_symbols=2, episode_length=18)
_register("RepeatPrevious-v0", _REPEAT_PREVIOUS, 20, k=4, num_symbols=4, episode_length=20)
_register("RepeatPrevious-Hard-v0", _REPEAT_PREVIOUS, 24, k=8, num_symbols=4, episode_length=24)
# 4 L + 10 steps leave room for some dithering before a wandering agent is cut off.
_register("TMaze-Easy-v0", _T_MAZE, 4 * 4 + 10, corridor_length=4)
_register("TMaze-v0", _T_MAZE, 4 * 10 + 10, corridor_length=10)
_register("TMaze-Hard-v0", _T_MAZE, 4 * 30 + 10, corridor_length=30)
for _n in (5, 20, 40, 80):
    _register(f"TMaze-L{_n}-v0", _T_MAZE, 4 * _n + 10, corridor_length=_n)
# The query comes memory_length steps after the context, so an episode is memory_length + 1 steps.
_register("MemoryLength-Easy-v0", _MEMORY_LENGTH, 5 + 1, memory_length=5, num_bits=1)
_register("MemoryLength-v0", _MEMORY_LENGTH, 10 + 1, memory_length=10, num_bits=1)
_register("MemoryLength-Hard-v0", _MEMORY_LENGTH, 30 + 1, memory_length=30, num_bits=3)
# The memory ladder: fixed horizons (max_episode_steps only backs up termination); 4 cues or symbols.
for _n in LADDER_RUNGS:
    _register(ladder_id("PassiveTMaze", _n), "envs.passive_t_maze:PassiveTMaze", _n + 1, corridor_length=_n)
    _register(ladder_id("Recall", _n), "envs.recall:Recall", _n + 2, delay=_n, num_cues=4)
    _register(ladder_id("RepeatFirst", _n), "envs.repeat_first:RepeatFirst", _n + 1, length=_n, num_symbols=4)
# Invalid-action masking (agents.MaskableRecurrentPPO): not in ENV_INFO, whose tasks the memory benchmark
# runs without masks; here a policy that cannot see the masks fails for want of them, not of memory.
gymnasium.register(id="MaskedRecall-v0", entry_point="envs.masked_recall:MaskedRecall", max_episode_steps=4 + 1,
                   kwargs=dict(num_cues=4, delay=4, allowed=2), reward_threshold=0.9)  # fmt: skip
