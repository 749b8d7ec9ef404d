"""A real learning run, in CI: memory is needed and it is learned.

On CartPoleNoVel-v1 (CartPole-v1 with the velocities zeroed) the policy sees only the cart
position and the pole angle, so it must infer velocities from the past. Budget: 100k steps,
8 envs, hyperparameters of rl-baselines3-zoo's ppo_lstm for this task. Measured on a 2-core
CPU (seed 0): recurrent PPO with the `lstm` cell 495.1 +- 13.6 (20 episodes, about 2 minutes);
PPO with an MLP 45.3 +- 8.9 (about 20 s) -- a memoryless policy gets about 50.
"""

from __future__ import annotations

import pytest

from agents.training import TrainConfig, train

NOVEL = dict(gamma=0.999, gae_lambda=0.98)


@pytest.mark.learning
def test_memory_is_learned_where_a_memoryless_policy_fails(tmp_path):
    common = dict(env="CartPoleNoVel-v1", total_timesteps=100_000, seed=0, eval_episodes=20, tensorboard=False)
    recurrent = train(TrainConfig(cell="lstm", hyperparams=NOVEL, **common), tmp_path / "lstm", log=lambda s: None)
    mlp = train(TrainConfig(algo="ppo-mlp", hyperparams=NOVEL, **common), tmp_path / "mlp", log=lambda s: None)
    assert mlp["mean_return"] < 150, mlp
    assert recurrent["mean_return"] >= 400, recurrent


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cli_default_solves_cartpole_with_gal(seed, tmp_path):
    """The Quick start's run (`--env CartPole-v1 --cell gal`, 100k steps, dropout 0.1) reaches 450."""
    record = train(TrainConfig(cell="gal", dropout=0.1, seed=seed, tensorboard=False), tmp_path, log=lambda s: None)
    assert record["mean_return"] >= 450, record


@pytest.mark.slow
def test_a2c_learns_the_t_maze(tmp_path):
    """TMaze-Easy-v0 (corridor 4): the cue must be remembered to the junction; a memoryless
    policy expects 0.5."""
    config = TrainConfig(env="TMaze-Easy-v0", algo="a2c", cell="lstm", total_timesteps=60_000, eval_episodes=50,
                         hyperparams=dict(ent_coef=0.01), tensorboard=False)  # fmt: skip
    record = train(config, tmp_path, log=lambda s: None)
    assert record["mean_return"] >= 0.95, record
