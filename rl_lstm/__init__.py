"""LSTM variants of lstms.pth, correct on today's PyTorch, batched, for sequences of any length,
with per-episode, per-row dropout masks that can be read back and replayed."""

from rl_lstm.base import RecurrentLayer
from rl_lstm.layer_norm import LayerNorm
from rl_lstm.layer_norm_lstm import (
    LayerNormGalLSTM,
    LayerNormLSTM,
    LayerNormMoonLSTM,
    LayerNormSemeniutaLSTM,
    LayerNormZoneoutLSTM,
)
from rl_lstm.lstm import LSTM, GalLSTM, MoonLSTM, SemeniutaLSTM, ZoneoutLSTM
from rl_lstm.masks import METHODS
from rl_lstm.registry import CELLS, cell_class, make_cell
from rl_lstm.slow_lstm import SlowLSTM
from rl_lstm.torch_lstm import TorchLSTM

__all__ = [
    "CELLS",
    "LSTM",
    "METHODS",
    "GalLSTM",
    "LayerNorm",
    "LayerNormGalLSTM",
    "LayerNormLSTM",
    "LayerNormMoonLSTM",
    "LayerNormSemeniutaLSTM",
    "LayerNormZoneoutLSTM",
    "MoonLSTM",
    "RecurrentLayer",
    "SemeniutaLSTM",
    "SlowLSTM",
    "TorchLSTM",
    "ZoneoutLSTM",
    "cell_class",
    "make_cell",
]
