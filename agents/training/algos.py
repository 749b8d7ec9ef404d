"""The algorithm table: every algorithm the command line, the memory sweep and the training-speed
benchmark know, each with its class, policy, label, relative cost and default hyperparameters."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sb3_contrib import RecurrentPPO as SB3RecurrentPPO
from stable_baselines3 import PPO
from stable_baselines3.common.base_class import BaseAlgorithm

from agents.a2c import RecurrentA2C
from agents.ppo import RecurrentPPO


@dataclass(frozen=True)
class AlgoSpec:
    """One algorithm as the harness runs it."""

    cls: type[BaseAlgorithm]
    policy: str
    """The policy name passed to the class."""
    label: str
    """How tables and plots name it."""
    memory: str
    """``"cell"``: a cell of the ``rl_lstm`` registry (the policy takes cell, dropout and hidden size);
    ``"lstm"``: sb3-contrib's ``nn.LSTM`` (hidden size only); ``"none"``: no memory."""
    relative_cost: float = 1.0
    """Rough time per environment step relative to ``ppo`` with the ``lstm`` cell; it only orders a
    sweep's queue (longest runs first), so a wrong guess costs time, never results."""
    defaults: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of the class when nothing else is given (``lin_X``: linear schedule from X to
    0; ``activation_fn`` by name)."""


# Defaults after rl-baselines3-zoo's PPO settings for CartPole-v1 (gamma 0.98, lambda 0.8) with its
# ppo_lstm policy for the velocity-masked CartPole.
_RECURRENT_POLICY = dict(ortho_init=False, activation_fn="relu", net_arch=dict(pi=[64], vf=[64]))

ALGOS: dict[str, AlgoSpec] = {
    "ppo": AlgoSpec(
        RecurrentPPO, "CellLstmPolicy", "recurrent PPO", memory="cell",
        defaults=dict(
            n_steps=32, batch_size=256, seq_len=32, n_epochs=20, learning_rate="lin_0.001", clip_range="lin_0.2",
            gamma=0.98, gae_lambda=0.8, ent_coef=0.0, policy_kwargs=_RECURRENT_POLICY,
        ),
    ),
    "a2c": AlgoSpec(
        RecurrentA2C, "CellLstmPolicy", "recurrent A2C", memory="cell", relative_cost=0.7,
        defaults=dict(n_steps=16, learning_rate="lin_0.001", gamma=0.99, ent_coef=0.0, policy_kwargs=_RECURRENT_POLICY),
    ),
    # The baselines the benchmarks run beside ours.
    "ppo-mlp": AlgoSpec(
        PPO, "MlpPolicy", "no memory (MLP)", memory="none", relative_cost=0.3,
        defaults=dict(
            n_steps=32, batch_size=256, n_epochs=20, learning_rate="lin_0.001", clip_range="lin_0.2",
            gamma=0.999, gae_lambda=0.98, ent_coef=0.0,
            policy_kwargs=dict(ortho_init=False, activation_fn="relu", net_arch=dict(pi=[64, 64], vf=[64, 64])),
        ),
    ),
    "sb3-ppo-lstm": AlgoSpec(
        SB3RecurrentPPO, "MlpLstmPolicy", "sb3-contrib nn.LSTM", memory="lstm", relative_cost=3.0,
        defaults=dict(
            n_steps=32, batch_size=256, n_epochs=20, learning_rate="lin_0.001", clip_range="lin_0.2",
            gamma=0.999, gae_lambda=0.98, ent_coef=0.0, policy_kwargs=_RECURRENT_POLICY,
        ),
    ),
}  # fmt: skip

#: The algorithms whose memory is a registry cell.
RECURRENT_ALGOS = tuple(name for name, spec in ALGOS.items() if spec.memory == "cell")
