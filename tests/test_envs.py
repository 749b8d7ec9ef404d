"""Tests for the memory environments in ``envs``."""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.envs.classic_control.cartpole import CartPoleEnv
from gymnasium.envs.toy_text.cliffwalking import CliffWalkingEnv
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env
from stable_baselines3.common.env_util import make_vec_env

from envs import ENV_INFO, LADDER_FAMILIES, MEMORY_ENV_IDS, MaskVelocityWrapper, MemoryLength, RepeatPrevious, TMaze
from envs.t_maze import DOWN, LEFT, RIGHT, UP

NO_VEL_IDS = {"CartPoleNoVel-v1": ("CartPole-v1", (1, 3)), "PendulumNoVel-v1": ("Pendulum-v1", (2,))}
MEMORY_TASK_IDS = tuple(env_id for env_id in MEMORY_ENV_IDS if env_id not in NO_VEL_IDS)
# The ladder's rungs reach 1000 steps: their oracles and memoryless policies run in test_ladder_envs.py,
# with balanced cues, so that few episodes decide.
SCORED_TASK_IDS = tuple(env_id for env_id in MEMORY_TASK_IDS if env_id.split("-")[0] not in LADDER_FAMILIES)

# The NoVel tasks inherit these from gymnasium's own CartPole/Pendulum (unbounded velocities, a [-2, 2]
# torque); they are kept so that results stay comparable with rl-baselines3-zoo.
UPSTREAM_WARNINGS = {
    "CartPoleNoVel-v1": (r"A Box observation space (minimum|maximum) value is -?infinity",),
    "PendulumNoVel-v1": (r"symmetric and normalized",),
}

Policy = Callable[[np.ndarray], int]


def unexpected_warnings(env_id: str, caught: list[warnings.WarningMessage]) -> list[str]:
    allowed = UPSTREAM_WARNINGS.get(env_id, ())
    messages = [str(w.message) for w in caught]
    return [m for m in messages if not any(re.search(pattern, m) for pattern in allowed)]


def run_episode(env: gym.Env, policy: Policy, seed: int) -> float:
    obs, _ = env.reset(seed=seed)
    total = 0.0
    terminated = truncated = False
    while not (terminated or truncated):
        obs, reward, terminated, truncated, _ = env.step(policy(obs))
        total += float(reward)
    return total


def mean_return(env_id: str, make_policy: Callable[[gym.Env], Policy], episodes: int) -> float:
    env = gym.make(env_id)
    returns = [run_episode(env, make_policy(env), seed) for seed in range(episodes)]
    env.close()
    return float(np.mean(returns))


# Oracles remember what they saw; a fresh one is built for every episode.


def repeat_previous_oracle(env: gym.Env) -> Policy:
    k, num_symbols = env.unwrapped.k, env.unwrapped.num_symbols
    seen: list[int] = []

    def policy(obs: np.ndarray) -> int:
        seen.append(int(np.argmax(obs[:num_symbols])))
        return seen[-1 - k] if len(seen) > k else 0

    return policy


def t_maze_oracle(env: gym.Env) -> Policy:
    cue: list[int] = []

    def policy(obs: np.ndarray) -> int:
        if not cue:
            cue.append(UP if obs[0] > 0 else DOWN)
        return cue[0] if obs[2] > 0 else RIGHT

    return policy


def memory_length_oracle(env: gym.Env) -> Policy:
    num_bits = env.unwrapped.num_bits
    context: list[np.ndarray] = []

    def policy(obs: np.ndarray) -> int:
        if not context:
            context.append(obs[1 : 1 + num_bits] > 0)
        query = obs[1 + num_bits :]
        return int(context[0][np.argmax(query)]) if query.any() else 0

    return policy


ORACLES = {
    "RepeatPrevious": repeat_previous_oracle,
    "TMaze": t_maze_oracle,
    "MemoryLength": memory_length_oracle,
}


def family(env_id: str) -> str:
    return env_id.split("-")[0]


# Memoryless policies: each action depends on the current observation only.


def answer_current_symbol(env: gym.Env) -> Policy:
    num_symbols = env.unwrapped.num_symbols
    return lambda obs: int(np.argmax(obs[:num_symbols]))


def right_then_turn(turn: int) -> Callable[[gym.Env], Policy]:
    return lambda env: lambda obs: turn if obs[2] > 0 else RIGHT


def constant(action: int) -> Callable[[gym.Env], Policy]:
    return lambda env: lambda obs: action


# (policy factory, episodes, tolerance): tolerances are about 3.5 standard errors of the mean.
MEMORYLESS_POLICIES = {
    "RepeatPrevious": [(answer_current_symbol, 300, 0.04), (constant(0), 300, 0.04)],
    "TMaze": [(right_then_turn(UP), 600, 0.07), (right_then_turn(DOWN), 600, 0.07)],
    "MemoryLength": [(constant(0), 1000, 0.11), (constant(1), 1000, 0.11)],
}


def test_registry_is_consistent() -> None:
    assert len(set(MEMORY_ENV_IDS)) == len(MEMORY_ENV_IDS)
    assert set(ENV_INFO) == set(MEMORY_ENV_IDS)
    for env_id in MEMORY_ENV_IDS:
        assert env_id in gym.registry
        spec = gym.spec(env_id)
        info = ENV_INFO[env_id]
        assert spec.max_episode_steps is not None, env_id
        assert spec.reward_threshold == info.threshold, env_id
        assert info.threshold <= info.max_return, env_id
        if not math.isnan(info.memoryless_bound):
            assert info.memoryless_bound < info.threshold, env_id


@pytest.mark.parametrize("env_id", MEMORY_TASK_IDS)
def test_render_modes(env_id: str) -> None:
    """rgb_array draws the state (SB3's make_vec_env asks for it first); ansi describes it in a line."""
    env = gym.make(env_id, render_mode="rgb_array")
    env.reset(seed=0)
    before = env.render()
    assert before.dtype == np.uint8 and before.ndim == 3 and before.shape[2] == 3
    env.step(0)  # every task moves on with action 0 (the T-maze's agent steps right)
    assert not np.array_equal(before, env.render()), "the picture shows the state"
    text = gym.make(env_id, render_mode="ansi")
    text.reset(seed=0)
    assert isinstance(text.render(), str) and text.render()
    vec = make_vec_env(env_id, n_envs=2, seed=0)
    assert vec.render_mode == "rgb_array" and vec.reset().shape[0] == 2


@pytest.mark.parametrize("env_id", MEMORY_ENV_IDS)
def test_gymnasium_env_checker(env_id: str) -> None:
    env = gym.make(env_id)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # Rendering of the NoVel tasks is gymnasium's pygame code, which is not a dependency here.
        gym_check_env(env.unwrapped, skip_render_check=env_id in NO_VEL_IDS)
    assert unexpected_warnings(env_id, caught) == []


@pytest.mark.parametrize("env_id", MEMORY_ENV_IDS)
def test_sb3_env_checker(env_id: str) -> None:
    env = gym.make(env_id)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sb3_check_env(env, warn=True)
    assert unexpected_warnings(env_id, caught) == []


def rollout(env_id: str, seed: int, actions: list) -> list[tuple]:
    env = gym.make(env_id)
    obs, _ = env.reset(seed=seed)
    steps: list[tuple] = [(obs,)]
    for action in actions:
        obs, reward, terminated, truncated, _ = env.step(action)
        steps.append((obs, reward, terminated, truncated))
        if terminated or truncated:
            break
    return steps


@pytest.mark.parametrize("env_id", MEMORY_ENV_IDS)
def test_same_seed_and_actions_give_same_rollout(env_id: str) -> None:
    action_space = gym.make(env_id).action_space
    action_space.seed(7)
    actions = [action_space.sample() for _ in range(60)]

    first, second = rollout(env_id, 123, actions), rollout(env_id, 123, actions)

    assert len(first) == len(second) > 1
    for step_a, step_b in zip(first, second, strict=True):
        np.testing.assert_array_equal(step_a[0], step_b[0])
        assert step_a[1:] == step_b[1:]


@pytest.mark.parametrize("env_id", MEMORY_ENV_IDS)
def test_seed_changes_the_episode(env_id: str) -> None:
    env = gym.make(env_id)
    first_observations = {env.reset(seed=seed)[0].tobytes() for seed in range(20)}
    if family(env_id) == "RepeatPrevious":
        # The first symbol alone rarely differs with two symbols; the whole sequence does.
        episodes = [rollout(env_id, seed, [0] * 30) for seed in range(20)]
        first_observations = {tuple(step[0].tobytes() for step in episode) for episode in episodes}
    assert len(first_observations) > 1


@pytest.mark.parametrize("env_id", SCORED_TASK_IDS)
def test_oracle_reaches_max_return(env_id: str) -> None:
    env = gym.make(env_id)
    make_oracle = ORACLES[family(env_id)]
    returns = [run_episode(env, make_oracle(env), seed) for seed in range(30)]
    assert returns == pytest.approx([ENV_INFO[env_id].max_return] * len(returns), abs=1e-9)


@pytest.mark.parametrize("env_id", SCORED_TASK_IDS)
def test_memoryless_policies_match_bound(env_id: str) -> None:
    bound = ENV_INFO[env_id].memoryless_bound
    for make_policy, episodes, tolerance in MEMORYLESS_POLICIES[family(env_id)]:
        assert mean_return(env_id, make_policy, episodes) == pytest.approx(bound, abs=tolerance)


@pytest.mark.parametrize("env_id", sorted(NO_VEL_IDS))
def test_no_vel_masks_velocities_only(env_id: str) -> None:
    base_id, masked = NO_VEL_IDS[env_id]
    env, base = gym.make(env_id), gym.make(base_id)
    assert env.observation_space == base.observation_space
    kept = [i for i in range(base.observation_space.shape[0]) if i not in masked]
    env.action_space.seed(3)

    obs, _ = env.reset(seed=5)
    base_obs, _ = base.reset(seed=5)
    for _ in range(40):
        assert np.all(obs[list(masked)] == 0)
        np.testing.assert_array_equal(obs[kept], base_obs[kept])
        action = env.action_space.sample()
        obs, reward, terminated, truncated, _ = env.step(action)
        base_obs, base_reward, base_terminated, base_truncated, _ = base.step(action)
        assert (reward, terminated, truncated) == (base_reward, base_terminated, base_truncated)
        if terminated or truncated:
            break


@pytest.mark.parametrize("env_id", sorted(NO_VEL_IDS))
def test_no_vel_can_be_remade_from_its_spec(env_id: str) -> None:
    env = gym.make(env_id)
    remade = gym.make(env.spec)
    wrappers = [type(layer) for layer in _layers(remade)]
    assert wrappers.count(MaskVelocityWrapper) == 1
    assert remade.observation_space == env.observation_space


def _layers(env: gym.Env) -> list[gym.Env]:
    layers = [env]
    while isinstance(layers[-1], gym.Wrapper):
        layers.append(layers[-1].env)
    return layers


@pytest.mark.parametrize(
    "make_env, message",
    [
        (lambda: RepeatPrevious(k=0), "k must be >= 1"),
        (lambda: RepeatPrevious(num_symbols=1), "num_symbols must be >= 2"),
        (lambda: RepeatPrevious(k=4, episode_length=4), "episode_length must be > k"),
        (lambda: TMaze(corridor_length=0), "corridor_length must be >= 1"),
        (lambda: MemoryLength(memory_length=0), "memory_length must be >= 1"),
        (lambda: MemoryLength(num_bits=0), "num_bits must be >= 1"),
        (lambda: TMaze(render_mode="human"), "render_mode='human': expected None or one of 'ansi', 'rgb_array'"),
        (lambda: MaskVelocityWrapper(CartPoleEnv(), (1, 4)), r"indices must lie in \[0, 4\)"),
        (lambda: MaskVelocityWrapper(CartPoleEnv(), (-1,)), r"indices must lie in \[0, 4\)"),
        (lambda: MaskVelocityWrapper(CliffWalkingEnv(), (0,)), "one-dimensional Box"),
    ],
)
def test_invalid_parameters_raise(make_env: Callable[[], gym.Env], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_env()


def test_mask_rejects_indices_whose_bounds_exclude_zero() -> None:
    env = RepeatPrevious()
    env.observation_space = gym.spaces.Box(0.5, 1.0, shape=(5,), dtype=np.float32)
    with pytest.raises(ValueError, match="0 must lie within the bounds"):
        MaskVelocityWrapper(env, (0,))


@pytest.mark.parametrize("env_id", MEMORY_TASK_IDS)
def test_invalid_actions_raise(env_id: str) -> None:
    env = gym.make(env_id).unwrapped
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action must be in"):
        env.step(env.action_space.n)


def test_wandering_in_the_t_maze_is_truncated() -> None:
    env = gym.make("TMaze-v0")
    env.reset(seed=0)
    steps, terminated, truncated = 0, False, False
    while not (terminated or truncated):
        _, reward, terminated, truncated, _ = env.step(LEFT)
        steps += 1
        assert reward == 0.0
    assert truncated and not terminated
    assert steps == env.spec.max_episode_steps


def test_repeat_previous_default_length_scores_sixteen_answers() -> None:
    env = RepeatPrevious(k=3)
    assert env.episode_length == 3 + 16
