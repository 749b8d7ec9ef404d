"""SB3 recurrent actor-critic policies and algorithms whose memory is a stack of ``rl_lstm`` cells."""

from agents.a2c import RecurrentA2C
from agents.buffers import SequenceDictRolloutBuffer, SequenceRolloutBuffer, chunk_lengths
from agents.maskable import MaskableRecurrentA2C, MaskableRecurrentPPO
from agents.memory import MemoryStack
from agents.on_policy import RecurrentOnPolicyAlgorithm
from agents.policies import CellLstmPolicy, CnnCellLstmPolicy, MultiInputCellLstmPolicy
from agents.ppo import RecurrentPPO
from agents.type_aliases import RNNMasks, RNNStates, SequenceSamples

# sb3-contrib's names for the same policies, so that ``from agents import MlpLstmPolicy`` works too.
MlpLstmPolicy = CellLstmPolicy
CnnLstmPolicy = CnnCellLstmPolicy
MultiInputLstmPolicy = MultiInputCellLstmPolicy

__all__ = [
    "CellLstmPolicy",
    "CnnCellLstmPolicy",
    "CnnLstmPolicy",
    "MaskableRecurrentA2C",
    "MaskableRecurrentPPO",
    "MemoryStack",
    "MlpLstmPolicy",
    "MultiInputCellLstmPolicy",
    "MultiInputLstmPolicy",
    "RNNMasks",
    "RNNStates",
    "RecurrentA2C",
    "RecurrentOnPolicyAlgorithm",
    "RecurrentPPO",
    "SequenceDictRolloutBuffer",
    "SequenceRolloutBuffer",
    "SequenceSamples",
    "chunk_lengths",
]
