"""LSTM variants of lstms.pth, correct on today's PyTorch, batched, for sequences of any length,
with per-episode, per-row dropout masks that can be read back and replayed; and the GRU family and
a tanh RNN with the same interface."""

from rl_lstm.base import RecurrentLayer
from rl_lstm.ffm import FFM
from rl_lstm.gru import GRU, GalGRU, SemeniutaGRU, ZoneoutGRU
from rl_lstm.layer_norm import LayerNorm
from rl_lstm.layer_norm_gru import LayerNormGalGRU, LayerNormGRU, LayerNormSemeniutaGRU, LayerNormZoneoutGRU
from rl_lstm.layer_norm_lstm import (
    LayerNormGalLSTM,
    LayerNormLSTM,
    LayerNormMoonLSTM,
    LayerNormSemeniutaLSTM,
    LayerNormZoneoutLSTM,
)
from rl_lstm.lru import LRU
from rl_lstm.lstm import LSTM, GalLSTM, MoonLSTM, SemeniutaLSTM, ZoneoutLSTM
from rl_lstm.masks import METHODS
from rl_lstm.min_rnn import MinGRU, MinLSTM
from rl_lstm.registry import CELLS, cell_class, make_cell
from rl_lstm.rnn import RNN
from rl_lstm.slow_lstm import SlowLSTM
from rl_lstm.torch_adapter import TorchGRU, TorchLSTM

__all__ = [
    "CELLS",
    "FFM",
    "GRU",
    "LRU",
    "LSTM",
    "METHODS",
    "RNN",
    "GalGRU",
    "GalLSTM",
    "LayerNorm",
    "LayerNormGRU",
    "LayerNormGalGRU",
    "LayerNormGalLSTM",
    "LayerNormLSTM",
    "LayerNormMoonLSTM",
    "LayerNormSemeniutaGRU",
    "LayerNormSemeniutaLSTM",
    "LayerNormZoneoutGRU",
    "LayerNormZoneoutLSTM",
    "MinGRU",
    "MinLSTM",
    "MoonLSTM",
    "RecurrentLayer",
    "SemeniutaGRU",
    "SemeniutaLSTM",
    "SlowLSTM",
    "TorchGRU",
    "TorchLSTM",
    "ZoneoutGRU",
    "ZoneoutLSTM",
    "cell_class",
    "make_cell",
]
