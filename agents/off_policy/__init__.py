"""Off-policy agents with memory: :class:`RecurrentDQN` (R2D2-style) and :class:`RecurrentSAC`, on the
cells of the ``rl_lstm`` registry, with a sequence replay buffer that stores each step's memory states
and dropout masks."""

from agents.off_policy.buffers import SequenceReplayBuffer, SequenceReplaySamples, bytes_per_step
from agents.off_policy.dqn import RecurrentDQN
from agents.off_policy.policies import RecurrentDQNPolicy, RecurrentSACPolicy
from agents.off_policy.sac import RecurrentSAC

__all__ = [
    "RecurrentDQN",
    "RecurrentDQNPolicy",
    "RecurrentSAC",
    "RecurrentSACPolicy",
    "SequenceReplayBuffer",
    "SequenceReplaySamples",
    "bytes_per_step",
]
