"""What the speed benchmark measures: its modes, references, settings, lstms.pth's published
figures and the targets each measurement is checked against."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from rl_lstm import CELLS, GRU, LSTM, RNN, LayerNormGRU, LayerNormLSTM
from rl_lstm.base import RecurrentLayer
from rl_lstm.parameters import TorchParameters
from rl_lstm.registry import has_dropout_method, make_cell
from rl_lstm.scan import LinearRecurrence
from rl_lstm.torch_adapter import TorchModuleLayer

# A torch module's recurrent state: (h, c) for nn.LSTM, h for nn.GRU and nn.RNN.
State = tuple[Tensor, Tensor] | Tensor


@dataclass(frozen=True)
class References:
    """The torch yardsticks of the cells that share one ``torch_module``: the module called with
    seq_len 1 (step mode) or once over the sequence (sequence mode), and its one-step kernel
    (``torch.lstm_cell``, ``torch.gru_cell``, ``torch.rnn_tanh_cell``) called once per step."""

    module: type[nn.RNNBase]
    kernel: Callable[..., State]

    @property
    def module_name(self) -> str:
        return f"nn.{self.module.__name__}"  # "nn.LSTM"

    @property
    def kernel_name(self) -> str:
        return f"torch.{self.kernel.__name__}"  # "torch.lstm_cell"

    @property
    def nn_key(self) -> str:
        return f"nn_{self.module.__name__.lower()}"  # "nn_lstm": its key in speed.json

    @property
    def kernel_key(self) -> str:
        return self.kernel.__name__  # "lstm_cell"

    def labels(self, sequence: bool) -> dict[str, str]:
        """Report labels of the two references, keyed as in speed.json."""
        if sequence:
            return {self.nn_key: f"{self.module_name} (fused)", self.kernel_key: f"{self.kernel_name} loop"}
        return {self.nn_key: f"{self.module_name} (seq_len 1)", self.kernel_key: self.kernel_name}

    def zero_state(self, h: Tensor) -> State:
        """The kernel's zero state for a zero ``h`` (B, H)."""
        return (h, h) if self.module is nn.LSTM else h

    def step(self, x: Tensor, state: State, params: list[Tensor]) -> tuple[Tensor, State]:
        """One step of the kernel from ``x`` (B, I): the output h (B, H) and the new state."""
        if self.module is nn.LSTM:
            h, c = self.kernel(x, state, *params)
            return h, (h, c)
        h = self.kernel(x, state, *params)
        return h, h


REFERENCES = {
    r.module: r
    for r in (
        References(nn.LSTM, torch.lstm_cell),
        References(nn.GRU, torch.gru_cell),
        References(nn.RNN, torch.rnn_tanh_cell),
    )
}


#: The torch module that a cell whose class has none of its own (a linear recurrence) is measured beside
#: and starts from, by class (a subclass takes its nearest listed base's): ``nn.GRU``, whose
#: ``torch.gru_cell`` is the fastest of torch's fused steps.
YARDSTICKS: dict[type, type[nn.RNNBase]] = {LinearRecurrence: nn.GRU}


def yardstick(name: str) -> type[nn.RNNBase]:
    """The torch module the registered cell ``name`` is measured beside: its class's ``torch_module``, else
    its entry in :data:`YARDSTICKS`."""
    cls = CELLS[name]
    return cls.torch_module or next(YARDSTICKS[c] for c in cls.__mro__ if c in YARDSTICKS)


def references(name: str) -> References:
    """The references of a registered cell: those of its :func:`yardstick`."""
    return REFERENCES[yardstick(name)]


def families(names: list[str]) -> list[References]:
    """The references the named cells need, in the order their first cell appears."""
    return list(dict.fromkeys(references(n) for n in names))


@dataclass(frozen=True)
class Mode:
    """How a step-mode measurement runs the cells."""

    name: str
    train: bool  # cell.train(): masks act
    grad: bool  # autograd records the graph (no backward in step mode)
    doc: str


MODES = {
    m.name: m
    for m in (
        Mode("eval", False, False, "eval mode, no grad: inference as in lstms.pth's table (no masks act)"),
        Mode("train-nograd", True, False, "training mode, masks on, no grad: acting with masks"),
        Mode("train", True, True, "training mode, masks on, autograd records the graph (no backward)"),
    )
}


# lstms.pth's published table (lstms.pth README): seconds for one sequence of 1000 steps, batch 1,
# dropout 0.5, at each of SEED_SIZES, as (nn.LSTM row, cell row). Copied as data for the "seed" columns.
SEED_SIZES = (128, 256, 512, 1024, 2048)


SEED_SPEED: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "slow": ((0.757, 0.583, 0.872, 3.658, 10.077), (0.745, 0.800, 1.099, 3.969, 11.628)),
    "lstm": ((0.725, 0.615, 0.835, 3.485, 11.066), (0.379, 0.511, 0.610, 3.547, 7.762)),
    "gal": ((0.669, 0.579, 0.966, 3.630, 9.598), (0.696, 0.652, 0.885, 3.441, 9.509)),
    "moon": ((0.656, 0.652, 0.949, 3.646, 10.202), (0.551, 0.589, 0.614, 3.020, 8.539)),
    "semeniuta": ((0.580, 0.718, 0.859, 4.041, 9.587), (0.375, 0.843, 0.574, 3.372, 8.668)),
}


SEED_STEPS = 1000


# Targets (reported as pass/fail, never asserted).
TARGET_BATCHES = (1, 16)  # per-step targets against the step kernel apply at these batches, in training modes


#: Per step, a cell over its family's step kernel (torch.lstm_cell, torch.gru_cell, torch.rnn_tanh_cell), by
#: target family (see :func:`family`).
TARGET_KERNEL = {"plain": 1.1, "dropout": 1.3, "layer-norm": 1.5}


TARGET_SEQ = 1.3  # sequence mode: the plain cells (lstm, gru, rnn) against their torch module's fused call


@dataclass
class Settings:
    """Everything that decides what is measured; saved in speed.json."""

    sizes: list[int] = field(default_factory=lambda: [128, 256, 512, 1024, 2048])
    batches: list[int] = field(default_factory=lambda: [1, 16, 64])
    cells: list[str] = field(default_factory=lambda: list(CELLS))
    modes: list[str] = field(default_factory=lambda: list(MODES))
    dropout: float = 0.5
    repeats: int = 9
    threads: int = 1
    device: str = "cpu"
    round_seconds: float = 2.0  # step counts are chosen so one round of all timers takes about this long
    min_steps: int = 5
    max_steps: int = 1000
    steps: int | None = None  # a fixed step count instead of the calibrated one
    warmup_steps: int = 5
    seq_len: int = 128
    seq_batch: int = 16
    seq_hidden: int = 256
    seq_start_prob: float = 1 / 32  # per row and step, for the "with episode starts" sequence setting
    seq_max_calls: int = 20
    seed: int = 0
    quick: bool = False  # a smoke run at toy sizes: the targets are not judged


def family(name: str) -> str | None:
    """The target family of a registered cell, read from its class: ``"layer-norm"`` for the
    LayerNorm cells, ``"dropout"`` for the cells named for a dropout method, ``"plain"`` for the
    plain LSTM, GRU and tanh RNN; None for the cells without targets."""
    cls = CELLS[name]
    if issubclass(cls, (LayerNormLSTM, LayerNormGRU)):
        return "layer-norm"
    if issubclass(cls, (LSTM, GRU, RNN)):
        return "dropout" if has_dropout_method(name) else "plain"
    return None  # the nn adapters are the yardsticks themselves; SlowLSTM is pedagogic


def is_adapter(name: str) -> bool:
    """Whether the cell calls its torch module itself (``nn``, ``nn-gru``) rather than computing with
    parameters of its own: it is its own yardstick and gets no target."""
    return issubclass(CELLS[name], TorchModuleLayer)


def bench_cell(name: str, module: nn.RNNBase, dropout: float) -> RecurrentLayer:
    """The cell ``name`` for a benchmark beside ``module`` (its :func:`yardstick`): a copy of the
    module's weights where the cell shares its parameter layout, else (the linear recurrences, whose
    parameters are their own) a cell of the same sizes drawn from the current random state."""
    cls = CELLS[name]
    if issubclass(cls, (TorchParameters, TorchModuleLayer)):
        return cls.from_torch(module, dropout=dropout)
    w = module.weight_ih_l0
    return make_cell(name, module.input_size, module.hidden_size, dropout=dropout).to(w.device, w.dtype)


def step_targets(name: str, mode: Mode, batch: int, ratio_kernel: float, speedup_nn: float) -> list[dict]:
    """The targets that apply to one step-mode row, each with its value and pass/fail."""
    targets = []
    fam, refs = family(name), references(name)
    if fam is not None and mode.train and batch in TARGET_BATCHES:
        bound = TARGET_KERNEL[fam]
        targets.append(
            {"target": f"<= {bound:.1f}x {refs.kernel_name}", "value": ratio_kernel, "pass": ratio_kernel <= bound}
        )
    if not is_adapter(name):
        targets.append({"target": f"faster than {refs.module_name}", "value": speedup_nn, "pass": speedup_nn > 1.0})
    return targets


def sequence_targets(name: str, ratio_nn: float) -> list[dict]:
    if family(name) == "plain":
        return [
            {
                "target": f"<= {TARGET_SEQ:.1f}x {references(name).module_name} fused",
                "value": ratio_nn,
                "pass": ratio_nn <= TARGET_SEQ,
            }
        ]
    return []
