"""SB3 recurrent actor-critic policies and algorithms whose memory is an ``rl_lstm`` cell."""

from agents.a2c import RecurrentA2C
from agents.buffers import SequenceRolloutBuffer, SequenceSamples
from agents.on_policy import RecurrentOnPolicyAlgorithm
from agents.policies import CellLstmPolicy, RNNMasks
from agents.ppo import RecurrentPPO

__all__ = [
    "CellLstmPolicy",
    "RNNMasks",
    "RecurrentA2C",
    "RecurrentOnPolicyAlgorithm",
    "RecurrentPPO",
    "SequenceRolloutBuffer",
    "SequenceSamples",
]
