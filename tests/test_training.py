"""The training harness in-process: every registered environment, the hyperparameter files, and a periodic
evaluation that leaves the training memories as they were."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from fnmatch import fnmatch

import numpy as np
import pytest
from sb3_contrib import RecurrentPPO as SB3RecurrentPPO
from stable_baselines3 import A2C
from stable_baselines3.common.callbacks import BaseCallback, EvalCallback
from stable_baselines3.common.env_util import make_vec_env

from agents import RecurrentA2C, RecurrentPPO
from agents.training import ALGOS, TrainConfig, resolve, train
from agents.training.config import ConfigError, policy_kwargs_dict
from agents.training.zoo import entry_for, load_file
from envs import ENV_INFO, LADDER_FAMILIES, LADDER_RUNGS, ladder_id

TINY = dict(n_envs=2, hidden_size=8, eval_episodes=1, checkpoint_freq=10_000, tensorboard=False)
# The ladder's rungs share their code: its shortest rung stands for each family.
TRAINED_IDS = [e for e in ENV_INFO if e.split("-")[0] not in LADDER_FAMILIES]
TRAINED_IDS += [ladder_id(family, LADDER_RUNGS[0]) for family in LADDER_FAMILIES]
TINY_ALGO = {"ppo": dict(n_steps=16, batch_size=32, seq_len=16, n_epochs=1), "a2c": dict(n_steps=8)}


@pytest.mark.parametrize("env_id", TRAINED_IDS)
@pytest.mark.parametrize("algo, eval_freq", [("ppo", 32), ("a2c", 0)])
def test_every_registered_environment_trains(env_id, algo, eval_freq, tmp_path):
    """Each id through train(), with its own hyperparameter entry (tiny budget on top)."""
    config = TrainConfig(
        env=env_id, algo=algo, cell="gal", total_timesteps=64, eval_freq=eval_freq,
        hyperparams=TINY_ALGO[algo], **TINY,
    )  # fmt: skip
    record = train(config, tmp_path, log=lambda s: None)
    assert record["timesteps"] >= 64 and np.isfinite(record["mean_return"])
    assert (tmp_path / "best_model.zip").is_file() == bool(eval_freq)
    # The ladder's tasks report info["is_success"]: the evaluations count it, periodic ones included.
    ladder = env_id.split("-")[0] in LADDER_FAMILIES
    assert (record["success_rate"] is not None) == ladder
    assert ("success_evaluations" in record) == (ladder and bool(eval_freq))


DEFAULT_PPO = {"learning_rate": "lin_0.0003", "ent_coef": "lin_0.01", "target_kl": 0.01, "normalize_advantage": False}


def test_hyperparameter_entries():
    assert entry_for("ppo", "TMaze-Hard-v0")[0] == "TMaze-*"
    assert entry_for("ppo", "CartPoleNoVel-v1")[0] == "CartPoleNoVel-v1"
    assert entry_for("ppo", "Acrobot-v1") == ("default", DEFAULT_PPO)
    assert TrainConfig(env="CartPoleNoVel-v1").normalization == "obs-reward"
    assert TrainConfig(env="CartPoleNoVel-v1", normalize="none").normalization == "none"
    assert TrainConfig(env="CartPole-v1").normalization == "none"
    for algo, spec in ALGOS.items():  # every entry is the one chosen for its ids, and resolves
        for key, entry in load_file(spec.hyperparams or algo).items():
            env = "Acrobot-v1" if key == "default" else next((e for e in ENV_INFO if fnmatch(e, key)), key)
            config = TrainConfig(env=env, algo=algo)
            assert config.hyperparams_entry() == (key, entry)
            resolve(config).model_kwargs()


def test_the_entry_gives_the_budget_where_the_run_does_not(monkeypatch, capsys):
    """rl-baselines3-zoo's n_timesteps: CartPole-v1's entry asks for 200k steps (the Quick start's run), a task
    without an entry gets 100k, --total-timesteps wins; the help states the rule, not one task's number."""
    from agents.training import config as config_module
    from agents.training.cli import build_parser

    assert TrainConfig().total_timesteps == 200_000 == TrainConfig(env="CartPole-v1").total_timesteps
    assert TrainConfig(env="Recall-L20-v0").total_timesteps == config_module.DEFAULT_BUDGET == 100_000
    assert TrainConfig(total_timesteps=64).total_timesteps == 64
    assert "n_timesteps" not in TrainConfig().algo_kwargs()
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    assert "default: the environment's hyperparameter entry (n_timesteps), else 100000" in " ".join(
        capsys.readouterr().out.split()
    )
    for bad in (0, 1.5, "many", True):
        monkeypatch.setattr(config_module, "entry_for", lambda algo, env, bad=bad: ("Odd-v0", {"n_timesteps": bad}))
        with pytest.raises(ConfigError, match=rf"ppo.yml entry 'Odd-v0': n_timesteps={bad!r}: expected a positive"):
            TrainConfig(env="Odd-v0")


@pytest.mark.parametrize("ours, stock", [(RecurrentPPO, SB3RecurrentPPO), (RecurrentA2C, A2C)])
def test_default_entries_are_the_stock_defaults(ours, stock):
    """A new task starts from the algorithms' own defaults, which are sb3-contrib's and SB3's; PPO's entry
    changes the four settings that let memory tasks be solved and stay solved (ppo.yml)."""
    assert load_file("ppo")["default"] == DEFAULT_PPO
    assert load_file("a2c")["default"] == {}
    theirs = inspect.signature(stock.__init__).parameters
    for name, p in inspect.signature(ours.__init__).parameters.items():
        if name in theirs and p.default is not inspect.Parameter.empty and name != "policy_kwargs":
            assert p.default == theirs[name].default, name


def test_zoo_policy_kwargs_strings():
    parsed = policy_kwargs_dict("dict(ortho_init=False, activation_fn=nn.ReLU, net_arch=[dict(pi=[64], vf=[64])])")
    assert parsed == {"ortho_init": False, "activation_fn": "ReLU", "net_arch": [{"pi": [64], "vf": [64]}]}
    with pytest.raises(ConfigError, match="expected a mapping"):
        policy_kwargs_dict("[1, 2]")
    config = TrainConfig(hyperparams={"policy_kwargs": "dict(activation_fn=nn.Tanh, optimizer_class=th.optim.AdamW)"})
    _, resolved = resolve(config).model_kwargs()
    assert resolved["activation_fn"].__name__ == "Tanh" and resolved["optimizer_class"].__name__ == "AdamW"


class RecordMasks(BaseCallback):
    """The actor's recorded masks and episode starts of every rollout."""

    def __init__(self) -> None:
        super().__init__()
        self.rollouts: list[tuple[np.ndarray, np.ndarray]] = []

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        buffer = self.model.rollout_buffer
        self.rollouts.append((buffer.masks[0].copy(), buffer.episode_starts.astype(bool).copy()))


@pytest.mark.parametrize("algo", [RecurrentPPO, RecurrentA2C])
def test_periodic_evaluation_leaves_training_masks_alone(algo):
    """With an EvalCallback evaluating every few steps, each training row's per-episode mask changes only
    at that row's own episode starts, and the evaluation acts without masks."""
    env = make_vec_env("CartPole-v1", n_envs=3, seed=0)
    kwargs = dict(n_steps=16, batch_size=48, seq_len=16, n_epochs=1) if algo is RecurrentPPO else dict(n_steps=16)
    model = algo("CellLstmPolicy", env, seed=0, policy_kwargs=dict(cell="gal", dropout=0.5, lstm_hidden_size=8),
                 **kwargs)  # fmt: skip
    evaluations = make_vec_env("CartPole-v1", n_envs=1, seed=1)
    seen_masks_on = []
    predict = model.predict

    def spy(*args, **kw):
        seen_masks_on.append(model.policy.lstm_actor.masks_active)
        return predict(*args, **kw)

    model.predict = spy
    recorder = RecordMasks()
    model.learn(16 * 3 * 6, callback=[EvalCallback(evaluations, eval_freq=5, n_eval_episodes=1, verbose=0), recorder])
    assert seen_masks_on and not any(seen_masks_on), "the evaluation acts mask-free"
    masks = np.concatenate([m for m, _ in recorder.rollouts])  # (steps, n_envs, H)
    starts = np.concatenate([s for _, s in recorder.rollouts])
    changed = np.any(masks[1:] != masks[:-1], axis=-1)  # (steps - 1, n_envs)
    assert starts[1:].any(), "episodes start inside the run"
    assert not (changed & ~starts[1:]).any(), "a mask changed in the middle of an episode"
    assert changed[starts[1:]].all(), "each new episode draws a new mask"


KERNEL_AT_START = """
import sys
from pathlib import Path
from stable_baselines3.common.callbacks import BaseCallback
from agents.training import TrainConfig, train
from rl_lstm import kernel

class AtStart(BaseCallback):
    def _on_training_start(self):
        # The compiled extension is loaded (or its build has failed) before the first rollout.
        print("built before learn:", kernel._module is not None or kernel.build_error() is not None)

    def _on_step(self):
        return True

config = TrainConfig(total_timesteps=32, n_envs=2, hidden_size=8, eval_episodes=1, tensorboard=False,
                     hyperparams=dict(n_steps=16, batch_size=32, seq_len=16, n_epochs=1))
train(config, Path(sys.argv[1]), callbacks=[AtStart()], log=lambda s: None)
"""


def test_the_kernel_is_built_before_the_clock_starts(tmp_path):
    """eval.json's rate and the final line's seconds leave the kernel's one-time build out: train() builds it
    before starting the clock, not inside the first rollout (a fresh process, where nothing built it yet)."""
    env = {**os.environ, "RL_LSTM_KERNEL": "auto"}
    proc = subprocess.run([sys.executable, "-c", KERNEL_AT_START, str(tmp_path / "run")], capture_output=True,
                          text=True, timeout=900, env=env)  # fmt: skip  (a hang guard, not a speed bound)
    assert proc.returncode == 0, proc.stderr
    assert "built before learn: True" in proc.stdout
