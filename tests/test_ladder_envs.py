"""The memory ladder's tasks: oracles reach the maximum on every rung, memoryless policies stay at their
bound, success is reported at the last step only, and cues can be balanced."""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym
import numpy as np
import pytest

from envs import (
    ENV_INFO,
    LADDER_FAMILIES,
    LADDER_RUNGS,
    BalancedCues,
    PassiveTMaze,
    Recall,
    RepeatFirst,
    TMaze,
    ladder_id,
)
from envs.passive_t_maze import DOWN, LEFT, RIGHT, UP

LADDER_IDS = [ladder_id(family, n) for family in LADDER_FAMILIES for n in LADDER_RUNGS]

Policy = Callable[[np.ndarray], int]


def num_cues(env: gym.Env) -> int:
    return 2 if isinstance(env.unwrapped, PassiveTMaze) else env.action_space.n


def play(env: gym.Env, policy: Policy, cue: int, seed: int) -> tuple[float, bool, int]:
    """One episode with the cue chosen: (return, info["is_success"] at the end, steps)."""
    obs, info = env.reset(seed=seed, options={"cue": cue})
    assert "is_success" not in info
    total, steps, terminated, truncated = 0.0, 0, False, False
    while not (terminated or truncated):
        obs, reward, terminated, truncated, info = env.step(policy(obs))
        total, steps = total + float(reward), steps + 1
        assert ("is_success" in info) == terminated, "success is reported at the last step only"
    assert terminated, "a fixed horizon ends by termination (the time limit only backs it up)"
    return total, bool(info["is_success"]), steps


def oracle(env: gym.Env) -> Policy:
    """Remembers the first observation's cue; walks the T-maze's corridor on schedule."""
    seen: list[np.ndarray] = []
    tmaze = isinstance(env.unwrapped, PassiveTMaze)

    def policy(obs: np.ndarray) -> int:
        seen.append(obs)
        if tmaze:
            return (UP if seen[0][0] > 0 else DOWN) if obs[2] > 0 else RIGHT
        return int(np.argmax(seen[0][:-1]))

    return policy


@pytest.mark.parametrize("env_id", LADDER_IDS)
def test_oracle_reaches_the_maximum(env_id: str) -> None:
    env = gym.make(env_id)
    for cue in range(num_cues(env)):
        total, success, steps = play(env, oracle(env), cue, seed=cue)
        assert success and total == pytest.approx(ENV_INFO[env_id].max_return)
        assert steps == env.unwrapped.horizon == env.spec.max_episode_steps


def memoryless_policies(env: gym.Env) -> list[Policy]:
    """Deterministic policies of the current observation alone; for the T-maze, walkers that turn one way
    and a dawdler that encodes the cue in its position (it falls behind, so it never turns in time)."""
    if isinstance(env.unwrapped, PassiveTMaze):
        return [
            lambda obs: UP if obs[2] > 0 else RIGHT,
            lambda obs: DOWN if obs[2] > 0 else RIGHT,
            lambda obs: LEFT if obs[0] > 0 else (UP if obs[2] > 0 else RIGHT),
        ]
    n = env.action_space.n
    return [lambda obs: 0, lambda obs: n - 1, lambda obs: int(np.argmax(obs[:n]))]


@pytest.mark.parametrize("env_id", LADDER_IDS)
def test_memoryless_policies_cannot_beat_the_bound(env_id: str) -> None:
    """With balanced cues the T-maze's and the recall's final observation is the same for every cue, so a
    memoryless policy is right for exactly one cue: the bound holds exactly. RepeatFirst's distractors are
    random: about 20000 steps per policy, within 3.5 standard errors of the bound."""
    env = gym.make(env_id).unwrapped  # the wrappers' checks would cost most of the time on the long rungs
    cues = num_cues(env)
    bound = ENV_INFO[env_id].memoryless_bound
    for policy in memoryless_policies(env):
        if isinstance(env.unwrapped, RepeatFirst):
            count = max(20, 20_000 // env.length)
            episodes = [play(env, policy, i % cues, seed=i) for i in range(count)]
            tolerance = 3.5 * np.sqrt(bound * (1 - bound) / count)
            assert np.mean([ok for _, ok, _ in episodes]) == pytest.approx(bound, abs=tolerance)
            assert np.mean([total for total, _, _ in episodes]) == pytest.approx(bound, abs=tolerance)
        else:
            episodes = [play(env, policy, cue, seed=cue) for cue in range(cues)]
            assert np.mean([ok for _, ok, _ in episodes]) <= bound
            assert np.mean([total for total, _, _ in episodes]) <= bound


@pytest.mark.parametrize("family", [f for f in LADDER_FAMILIES if f != "RepeatFirst"])
@pytest.mark.parametrize("n", [10, 100])
def test_after_the_first_step_nothing_shows_the_cue(family: str, n: int) -> None:
    """What the bound rests on: under the same actions every observation after the first, every reward
    before the last and every info are the same whatever the cue, so no memoryless policy, hand-picked or
    not, can tell the cues apart. Checked for random action sequences (and for the walk along the T-maze's
    corridor, the only way to reach its junction in time)."""
    env = gym.make(ladder_id(family, n)).unwrapped
    cues, actions = num_cues(env), env.action_space.n
    rng = np.random.default_rng(0)
    sequences = [rng.integers(actions, size=n + 2) for _ in range(20)]
    if family == "PassiveTMaze":
        sequences += [np.array([RIGHT] * n + [turn]) for turn in (UP, DOWN)]
    for seq in sequences:
        seen = []
        for cue in range(cues):
            first, _ = env.reset(seed=cue, options={"cue": cue})
            trace, done, t = [], False, 0
            while not done:
                obs, reward, terminated, truncated, info = env.step(int(seq[t]))
                done, t = terminated or truncated, t + 1
                trace.append((obs.tobytes(), None if done else reward, None if done else info))
            seen.append(trace)
        assert all(trace == seen[0] for trace in seen), "a step after the first shows the cue"


def test_passive_t_maze_pays_for_falling_behind() -> None:
    env = PassiveTMaze(corridor_length=4)
    env.reset(seed=0, options={"cue": 0})
    rewards = [env.step(action)[1] for action in (RIGHT, LEFT, RIGHT, RIGHT)]
    assert rewards == [0.0, -0.25, -0.25, -0.25]
    _, reward, terminated, _, info = env.step(UP)
    assert (reward, terminated, info) == (0.0, True, {"is_success": False}), "behind schedule: no junction to turn at"


def test_repeat_first_scores_every_answer() -> None:
    env = RepeatFirst(length=4, num_symbols=3)
    env.reset(seed=0, options={"cue": 2})
    rewards = [env.step(action)[1] for action in (0, 2, 1, 2, 2)]
    assert rewards == [0.0, 0.25, 0.0, 0.25, 0.25]


def test_recall_ignores_answers_before_the_query() -> None:
    env = Recall(delay=3, num_cues=4)
    env.reset(seed=0, options={"cue": 1})
    assert [env.step(1)[1] for _ in range(5)] == [0.0, 0.0, 0.0, 0.0, 1.0]


@pytest.mark.parametrize("cue", [-1, 2, 1.0, True, "up"])
def test_bad_cue_option_raises(cue: object) -> None:
    with pytest.raises(ValueError, match=r"options\['cue'\]=.*expected an int in \[0, 2\)"):
        PassiveTMaze().reset(seed=0, options={"cue": cue})


@pytest.mark.parametrize(
    "make_env, message",
    [
        (lambda: PassiveTMaze(corridor_length=0), "corridor_length must be >= 1, got 0"),
        (lambda: Recall(delay=0), "delay must be >= 1, got 0"),
        (lambda: Recall(num_cues=1), "num_cues must be >= 2, got 1"),
        (lambda: RepeatFirst(length=0), "length must be >= 1, got 0"),
        (lambda: RepeatFirst(num_symbols=1), "num_symbols must be >= 2, got 1"),
    ],
)
def test_invalid_parameters_raise(make_env: Callable[[], gym.Env], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_env()


def test_balanced_cues_take_turns() -> None:
    env = BalancedCues(gym.make("Recall-L10-v0"))
    cues = [int(np.argmax(env.reset(seed=i)[0][:4])) for i in range(8)]
    assert cues == [0, 1, 2, 3, 0, 1, 2, 3]
    assert int(np.argmax(env.reset(options={"cue": 2})[0][:4])) == 2, "a chosen cue is kept"
    with pytest.raises(ValueError, match="has no num_cues"):
        BalancedCues(TMaze())
