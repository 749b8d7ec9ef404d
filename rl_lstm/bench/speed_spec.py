"""What the speed benchmark measures: its modes, references, settings, the seed's published
figures and the targets each measurement is checked against."""

from __future__ import annotations

from dataclasses import dataclass, field

from rl_lstm import CELLS, LSTM, LayerNormLSTM, TorchLSTM
from rl_lstm.registry import has_dropout_method

REF_NN = "nn_lstm"  # nn.LSTM called with seq_len 1 (step mode) or once over the sequence (sequence mode)


REF_LC = "lstm_cell"  # torch.lstm_cell, one step per call


REF_LABELS = {REF_NN: "nn.LSTM (seq_len 1)", REF_LC: "torch.lstm_cell"}


SEQ_REF_LABELS = {REF_NN: "nn.LSTM (fused)", REF_LC: "torch.lstm_cell loop"}


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
        Mode("eval", False, False, "eval mode, no grad: inference as in the seed's table (no masks act)"),
        Mode("train-nograd", True, False, "training mode, masks on, no grad: acting with masks"),
        Mode("train", True, True, "training mode, masks on, autograd records the graph (no backward)"),
    )
}


# The seed's published table (lstms.pth README): seconds for one sequence of 1000 steps, batch 1,
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
TARGET_BATCHES = (1, 16)  # per-step targets against torch.lstm_cell apply at these batches, in training modes


TARGET_LC = {"lstm": 1.1, "dropout": 1.3, "layer-norm": 1.5}


TARGET_SEQ_LSTM = 1.3  # sequence mode: the plain LSTM against nn.LSTM's fused call


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
    """The target family of a registered cell, read from its class: None for the references."""
    cls = CELLS[name]
    if issubclass(cls, LayerNormLSTM):
        return "layer-norm"
    if issubclass(cls, LSTM):
        return "dropout" if has_dropout_method(name) else "lstm"
    return None  # TorchLSTM is nn.LSTM itself; SlowLSTM is pedagogic and has no target


def step_targets(name: str, mode: Mode, batch: int, ratio_lc: float, speedup_nn: float) -> list[dict]:
    """The targets that apply to one step-mode row, each with its value and pass/fail."""
    targets = []
    fam = family(name)
    if fam is not None and mode.train and batch in TARGET_BATCHES:
        bound = TARGET_LC[fam]
        targets.append({"target": f"<= {bound:.1f}x lstm_cell", "value": ratio_lc, "pass": ratio_lc <= bound})
    if CELLS[name] is not TorchLSTM:  # nn.LSTM behind the cells' interface is the yardstick itself
        targets.append({"target": "faster than nn.LSTM", "value": speedup_nn, "pass": speedup_nn > 1.0})
    return targets


def sequence_targets(name: str, ratio_nn: float) -> list[dict]:
    if family(name) == "lstm":
        return [
            {
                "target": f"<= {TARGET_SEQ_LSTM:.1f}x nn.LSTM fused",
                "value": ratio_nn,
                "pass": ratio_nn <= TARGET_SEQ_LSTM,
            }
        ]
    return []
