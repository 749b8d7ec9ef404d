"""``torch.nn.LSTM`` and ``torch.nn.GRU`` behind the cells' interface: the references in tests and
benchmarks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from torch import Tensor, nn

from rl_lstm.base import RecurrentLayer
from rl_lstm.memory_times import check_times, gate_bias_units, keep_logit, set_gate_bias_
from rl_lstm.paths import TORCH_KERNELS, Stage


class TorchModuleLayer(RecurrentLayer):
    """A thin adapter over a one-layer torch recurrent module (the class's :attr:`torch_module`) with the
    cells' ``forward``.

    ``TorchLSTM(input_size, hidden_size, bias=True, dropout=0.0, dropout_method='pytorch')`` (and
    ``TorchGRU``): dropout acts on the output only. Episode starts split the sequence into stretches that
    the module runs in one call each. Its weights live in the module (:attr:`lstm` or :attr:`gru`) and
    are also readable as ``weight_ih``, ``weight_hh``, ``bias_ih`` and ``bias_hh``.
    """

    dropout_methods = ("pytorch",)
    # The module's sequence kernel runs every call (once per stretch), the mask on its output: no step loop.
    paths = (TORCH_KERNELS,)
    mask_stages: ClassVar[Mapping[str, Stage]] = {"output": "output"}
    #: The attribute holding the module (its parameters' names in a state dict follow it).
    module_name: ClassVar[str]

    def _build(self) -> None:
        setattr(self, self.module_name, self.torch_module(self.input_size, self.hidden_size, bias=self.bias))

    @property
    def module(self) -> nn.RNNBase:
        return getattr(self, self.module_name)

    weight_ih = property(lambda self: self.module.weight_ih_l0)
    weight_hh = property(lambda self: self.module.weight_hh_l0)
    bias_ih = property(lambda self: self.module.bias_ih_l0 if self.bias else None)
    bias_hh = property(lambda self: self.module.bias_hh_l0 if self.bias else None)

    def _kernel(self, x: Tensor, h: Tensor, c: Tensor | None) -> tuple[Tensor, Tensor, Tensor | None]:
        """The module over ``x`` (T, B, I) from ``h``/``c`` (B, H); ``c`` is None for h-only modules."""
        if c is None:
            out, h = self.module(x, h.unsqueeze(0))
            return out, h[0], None
        out, (h, c) = self.module(x, (h.unsqueeze(0), c.unsqueeze(0)))
        return out, h[0], c[0]


class TorchLSTM(TorchModuleLayer):
    """``torch.nn.LSTM`` behind the cells' interface: the reference of the LSTM family."""

    torch_module = nn.LSTM
    module_name = "lstm"
    keep_gate = "forget gate"
    memory_units = gate_bias_units

    def init_memory_times_(self, times: Tensor) -> None:
        set_gate_bias_(self, 1, keep_logit(check_times(self, times, self.memory_units)))


class TorchGRU(TorchModuleLayer):
    """``torch.nn.GRU`` behind the cells' interface, the state ``h`` alone: the reference of the GRU family."""

    state_names: ClassVar[tuple[str, ...]] = ("h",)
    torch_module = nn.GRU
    module_name = "gru"
    keep_gate = "update gate z"
    memory_units = gate_bias_units

    def init_memory_times_(self, times: Tensor) -> None:
        set_gate_bias_(self, 1, keep_logit(check_times(self, times, self.memory_units)))
