"""The algorithm table: every algorithm the command line, the memory sweep and the training-speed
benchmark know, each with its class, policy, label, kind of memory and relative cost. Their
hyperparameters per environment are in ``agents/training/hyperparams/<name>.yml``."""

from __future__ import annotations

from dataclasses import dataclass

from sb3_contrib import RecurrentPPO as SB3RecurrentPPO
from stable_baselines3 import DQN, PPO, SAC
from stable_baselines3.common.base_class import BaseAlgorithm

from agents.a2c import RecurrentA2C
from agents.off_policy import RecurrentDQN, RecurrentSAC
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
    frame_stack: int = 0
    """Observations of this many last steps stacked (SB3's VecFrameStack): memory without a memory."""
    hyperparams: str = ""
    """The hyperparameter file (``hyperparams/<name>.yml``) it reads; empty: its own name."""
    relative_cost: float = 1.0
    """Rough time per environment step relative to ``ppo`` with the ``lstm`` cell; it only orders a
    sweep's queue (longest runs first), so a wrong guess costs time, never results."""


ALGOS: dict[str, AlgoSpec] = {
    "ppo": AlgoSpec(RecurrentPPO, "CellLstmPolicy", "recurrent PPO", memory="cell"),
    "a2c": AlgoSpec(RecurrentA2C, "CellLstmPolicy", "recurrent A2C", memory="cell", relative_cost=0.7),
    # Off-policy agents with memory: sequence replay from stored states, burn-in (agents.off_policy).
    "dqn": AlgoSpec(RecurrentDQN, "CellLstmPolicy", "recurrent DQN", memory="cell", relative_cost=2.0),
    "sac": AlgoSpec(RecurrentSAC, "CellLstmPolicy", "recurrent SAC", memory="cell", relative_cost=4.0),
    # The baselines the benchmarks run beside ours.
    "dqn-mlp": AlgoSpec(DQN, "MlpPolicy", "DQN, no memory (MLP)", memory="none", relative_cost=0.3),
    "sac-mlp": AlgoSpec(SAC, "MlpPolicy", "SAC, no memory (MLP)", memory="none", relative_cost=1.0),
    "ppo-mlp": AlgoSpec(PPO, "MlpPolicy", "no memory (MLP)", memory="none", relative_cost=0.3),
    # SB3's maintainers' usual advice: frame stacking is often competitive with an LSTM.
    "ppo-mlp-fs4": AlgoSpec(PPO, "MlpPolicy", "MLP, 4 stacked frames", memory="none", frame_stack=4,
                            hyperparams="ppo-mlp", relative_cost=0.35),
    "ppo-mlp-fs16": AlgoSpec(PPO, "MlpPolicy", "MLP, 16 stacked frames", memory="none", frame_stack=16,
                             hyperparams="ppo-mlp", relative_cost=0.4),
    "sb3-ppo-lstm": AlgoSpec(SB3RecurrentPPO, "MlpLstmPolicy", "sb3-contrib nn.LSTM", memory="lstm", relative_cost=3.0),
}

#: The algorithms whose memory is a registry cell.
RECURRENT_ALGOS = tuple(name for name, spec in ALGOS.items() if spec.memory == "cell")
