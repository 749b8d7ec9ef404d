"""The registry of cells: short name -> class. The CLI, the policy, the tests and the
benchmarks all read it, so a new entry here is covered everywhere."""

from __future__ import annotations

import inspect

from rl_lstm.base import RecurrentLayer
from rl_lstm.ffm import FFM
from rl_lstm.gru import GRU, GalGRU, SemeniutaGRU, ZoneoutGRU
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
from rl_lstm.min_rnn import MinGRU, MinLSTM
from rl_lstm.rnn import RNN
from rl_lstm.slow_lstm import SlowLSTM
from rl_lstm.torch_adapter import TorchGRU, TorchLSTM

CELLS: dict[str, type[RecurrentLayer]] = {
    "nn": TorchLSTM,
    "slow": SlowLSTM,
    "lstm": LSTM,
    "gal": GalLSTM,
    "moon": MoonLSTM,
    "semeniuta": SemeniutaLSTM,
    "zoneout": ZoneoutLSTM,
    "ln": LayerNormLSTM,
    "ln-gal": LayerNormGalLSTM,
    "ln-moon": LayerNormMoonLSTM,
    "ln-semeniuta": LayerNormSemeniutaLSTM,
    "ln-zoneout": LayerNormZoneoutLSTM,
    "nn-gru": TorchGRU,
    "gru": GRU,
    "gru-gal": GalGRU,
    "gru-semeniuta": SemeniutaGRU,
    "gru-zoneout": ZoneoutGRU,
    "ln-gru": LayerNormGRU,
    "ln-gru-gal": LayerNormGalGRU,
    "ln-gru-semeniuta": LayerNormSemeniutaGRU,
    "ln-gru-zoneout": LayerNormZoneoutGRU,
    "rnn": RNN,
    "mingru": MinGRU,
    "minlstm": MinLSTM,
    "lru": LRU,
    "ffm": FFM,
}

# Keyword arguments that only the LayerNorm family takes (each cell takes those its constructor names).
LAYER_NORM_KWARGS = ("ln_preact", "learnable")


def cell_class(name: str) -> type[RecurrentLayer]:
    """The class registered under ``name``; a ValueError listing the names if there is none."""
    try:
        return CELLS[name]
    except (KeyError, TypeError):
        raise ValueError(f"cell={name!r}: expected one of {', '.join(CELLS)}") from None


def has_dropout_method(name: str) -> bool:
    """Whether the cell ``name`` is named for a dropout method of its own (not the plain output
    dropout every cell takes)."""
    return cell_class(name).method != "pytorch"


def default_dropout(name: str) -> float:
    """The dropout cell ``name`` gets when none is given (``dropout=None``), in make_cell, the policies,
    the CLI, the sweeps and the benchmarks alike: the class's :meth:`RecurrentLayer.default_dropout`."""
    return cell_class(name).default_dropout()


def make_cell(name: str, input_size: int, hidden_size: int, **kwargs) -> RecurrentLayer:
    """Build the cell registered under ``name`` (``dropout`` left out or None: :func:`default_dropout`).
    LayerNorm flags given to a cell that does not take them are ignored when they keep their defaults
    (True) and rejected otherwise; any other argument the cell does not take is a ValueError."""
    cls = cell_class(name)
    for key in LAYER_NORM_KWARGS:
        if key in kwargs and not _takes(cls, key) and kwargs.pop(key) is not True:
            takers = ", ".join(n for n, c in CELLS.items() if _takes(c, key))
            raise ValueError(f"{key}: only the cells {takers} take it, not cell={name!r}")
    unknown = [key for key in kwargs if not _takes(cls, key)]
    if unknown:
        takes = [p for p in inspect.signature(cls).parameters if p not in ("input_size", "hidden_size")]
        raise ValueError(f"{', '.join(unknown)}: cell={name!r} takes no such argument (it takes {', '.join(takes)})")
    return cls(input_size, hidden_size, **kwargs)


def _takes(cls: type[RecurrentLayer], key: str) -> bool:
    return key in inspect.signature(cls).parameters
