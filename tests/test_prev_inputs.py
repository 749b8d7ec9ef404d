"""The previous action and reward as memory inputs (envs.PrevActionReward, --prev-inputs)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from agents.training import ConfigError, TrainConfig, resolve, train
from envs import PrevActionReward


def test_discrete_action_one_hot_then_reward():
    env = PrevActionReward(gym.make("Recall-L10-v0"))  # obs 5 wide, 4 actions
    obs, _ = env.reset(seed=0, options={"cue": 1})
    assert obs.shape == env.observation_space.shape == (5 + 4 + 1,)
    np.testing.assert_array_equal(obs[5:], np.zeros(5))
    obs, *_ = env.step(2)
    np.testing.assert_array_equal(obs[5:], [0, 0, 1, 0, 0])
    for _ in range(11):  # 12 steps: the cue, 10 blank, the query
        obs, reward, terminated, *_ = env.step(1)
    assert terminated and reward == 1.0
    np.testing.assert_array_equal(obs[5:], [0, 1, 0, 0, 1])
    assert env.reset(seed=1)[0][5:].sum() == 0, "zeros after a reset"


@pytest.mark.parametrize("env_id", ["Recall-L10-v0", "Pendulum-v1", "PassiveTMaze-L10-v0"])
@pytest.mark.parametrize("action, reward", [(True, True), (True, False), (False, True)])
def test_both_env_checkers_pass(env_id, action, reward):
    gym_check_env(PrevActionReward(gym.make(env_id).unwrapped, action, reward), skip_render_check=True)
    sb3_check_env(PrevActionReward(gym.make(env_id), action, reward))


def test_multi_discrete_and_box_actions():
    env = PrevActionReward(gym.make("Pendulum-v1"), reward=False)
    env.reset(seed=0)
    assert env.step(np.array([1.5], np.float32))[0][-1] == pytest.approx(1.5)
    inner = gym.make("Recall-L10-v0").unwrapped
    inner.action_space = spaces.MultiDiscrete([2, 3])
    wrapped = PrevActionReward(inner, reward=False)
    assert wrapped._encode(np.array([1, 2])).tolist() == [0, 1, 0, 0, 1]


class DictActions(gym.Env):
    observation_space = spaces.Box(0, 1, (2,), np.float32)
    action_space = spaces.Dict(a=spaces.Discrete(2))


def test_unencodable_spaces_are_named():
    with pytest.raises(ValueError, match=r"action space Dict\('a': Discrete\(2\)\): cannot encode it"):
        PrevActionReward(DictActions())
    PrevActionReward(DictActions(), action=False)  # the reward alone fits any action space
    with pytest.raises(ValueError, match="expected at least one"):
        PrevActionReward(gym.make("Recall-L10-v0"), action=False, reward=False)
    with pytest.raises(ValueError, match="appends to a Box observation"):
        PrevActionReward(gym.make("FrozenLake-v1"))
    with pytest.raises(ConfigError, match="prev_inputs='action' on FrozenLake-v1: observation space Discrete"):
        resolve(TrainConfig(env="FrozenLake-v1", prev_inputs="action"))
    with pytest.raises(ConfigError, match="prev_inputs='last': expected one of none, action, reward"):
        resolve(TrainConfig(env="CartPole-v1", prev_inputs="last"))


def test_a_run_trains_and_evaluates_with_them(tmp_path):
    config = TrainConfig(env="Recall-L10-v0", prev_inputs="action-reward", n_envs=2, hidden_size=8,
                         total_timesteps=64, eval_episodes=4, eval_freq=32, tensorboard=False,
                         hyperparams={"n_steps": 16, "batch_size": 32, "n_epochs": 1})  # fmt: skip
    record = train(config, tmp_path, log=lambda s: None)
    assert record["success_rate"] is not None and record["timesteps"] >= 64
    # The previous action and reward reach the policy: the saved model reads 5 + 4 + 1 inputs, the run's
    # environments (training and evaluation) show them, and the policy's output depends on those columns.
    from agents import RecurrentPPO
    from agents.training.environments import make_envs, make_eval_env

    model = RecurrentPPO.load(tmp_path / "model.zip", device="cpu")
    assert model.observation_space.shape == (10,)
    for env in (make_envs(config, 1, 0), make_eval_env(resolve(config), 0)):
        env.reset()
        obs, reward, *_ = env.step(np.array([2]))
        np.testing.assert_array_equal(obs[0][5:], [0, 0, 1, 0, reward[0]])
        env.close()
    memory_in = model.policy.lstm_actor.layers[0].weight_ih
    assert memory_in.shape[1] == 10 and memory_in[:, 5:].abs().sum() > 0
    base = np.zeros((1, 10), np.float32)
    moved = base.copy()
    moved[0, 5:] = [0, 0, 1, 0, 1]
    starts = np.ones(1, bool)
    _, (h0, _) = model.predict(base, state=None, episode_start=starts, deterministic=True)
    _, (h1, _) = model.predict(moved, state=None, episode_start=starts, deterministic=True)
    assert not np.allclose(h0, h1), "the memory does not read the previous action and reward"
