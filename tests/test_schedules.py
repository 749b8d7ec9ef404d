"""Entropy-coefficient schedules of the recurrent algorithms (as SB3 schedules lr and clip range)."""

from __future__ import annotations

import pytest
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import configure
from stable_baselines3.common.utils import LinearSchedule

from agents import RecurrentA2C, RecurrentPPO
from agents.training import TrainConfig, resolve

SMALL = dict(lstm_hidden_size=8, net_arch=[8])
ARGS = {RecurrentPPO: dict(n_steps=8, batch_size=16, n_epochs=1), RecurrentA2C: dict(n_steps=8)}


class Seen(BaseCallback):
    """The entropy coefficient the last update used, read at the start of each later rollout."""

    def __init__(self) -> None:
        super().__init__()
        self.values: list[float] = []

    def _on_rollout_start(self) -> None:
        if "train/ent_coef" in self.logger.name_to_value:
            self.values.append(self.logger.name_to_value["train/ent_coef"])

    def _on_step(self) -> bool:
        return True


@pytest.mark.parametrize("algo", [RecurrentPPO, RecurrentA2C])
def test_entropy_coefficient_follows_its_schedule(algo):
    env = make_vec_env("CartPole-v1", n_envs=2, seed=0)
    model = algo("MlpLstmPolicy", env, ent_coef=LinearSchedule(0.01, 0.0, 1.0), seed=0, policy_kwargs=SMALL,
                 **ARGS[algo])  # fmt: skip
    model.set_logger(configure(None, []))
    seen = Seen()
    model.learn(64, callback=seen)  # 4 rollouts of 16 steps: updates at progress 3/4, 1/2, 1/4, 0
    assert seen.values == pytest.approx([0.0075, 0.005, 0.0025]), "the update before each later rollout"
    constant = algo("MlpLstmPolicy", env, ent_coef=0.02, seed=0, policy_kwargs=SMALL, **ARGS[algo])
    constant.set_logger(configure(None, []))
    constant.learn(16)
    assert constant.logger.name_to_value["train/ent_coef"] == pytest.approx(0.02)


@pytest.mark.parametrize("value", ["0.01", True, None])
def test_bad_entropy_coefficient_is_named(value):
    with pytest.raises(ValueError, match=f"ent_coef={value!r}: expected a number >= 0 or a schedule"):
        RecurrentPPO("MlpLstmPolicy", make_vec_env("CartPole-v1", n_envs=1), ent_coef=value, policy_kwargs=SMALL)


def test_hyperparameter_spelling_is_a_linear_schedule():
    kwargs, _ = resolve(TrainConfig(env="CartPole-v1", hyperparams={"ent_coef": "lin_0.01"})).model_kwargs()
    assert isinstance(kwargs["ent_coef"], LinearSchedule) and kwargs["ent_coef"](1.0) == pytest.approx(0.01)


def test_a_negative_entropy_schedule_is_refused():
    with pytest.raises(ValueError, match="ent_coef=.*expected a number >= 0"):
        RecurrentPPO("MlpLstmPolicy", make_vec_env("CartPole-v1", n_envs=1), ent_coef=LinearSchedule(0.01, -0.01, 1.0),
                     policy_kwargs=SMALL)  # fmt: skip
