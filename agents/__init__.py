"""SB3 recurrent algorithms whose memory is a stack of ``rl_lstm`` cells: on-policy (RecurrentPPO, RecurrentA2C
and their maskable forms) and off-policy (RecurrentDQN, RecurrentSAC, from :mod:`agents.off_policy`)."""

from agents.a2c import RecurrentA2C
from agents.buffers import SequenceDictRolloutBuffer, SequenceRolloutBuffer, chunk_lengths
from agents.maskable import MaskableRecurrentA2C, MaskableRecurrentPPO
from agents.memory import MemoryStack
from agents.off_policy import RecurrentDQN, RecurrentSAC
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
    "RecurrentDQN",
    "RecurrentOnPolicyAlgorithm",
    "RecurrentPPO",
    "RecurrentSAC",
    "SequenceDictRolloutBuffer",
    "SequenceRolloutBuffer",
    "SequenceSamples",
    "chunk_lengths",
]
