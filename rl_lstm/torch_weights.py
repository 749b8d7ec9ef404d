"""A layer's weights in the layout of PyTorch's recurrent modules (``nn.LSTM``, ``nn.GRU``, ``nn.RNN``):
conversion both ways, for every cell whose parameters follow it (:class:`rl_lstm.base.RecurrentLayer` mixes it
in; :mod:`rl_lstm.parameters` holds the parameters themselves)."""

from __future__ import annotations

from typing import TypeVar

import torch
from torch import Tensor, nn

SelfWeights = TypeVar("SelfWeights", bound="TorchWeights")


class TorchWeights:
    """``from_torch`` / ``to_torch`` / ``torch_parameters`` of a layer whose class names its
    :attr:`torch_module` (the layer's own attributes: sizes, ``bias``, ``dropout``, ``mask_spec``,
    ``torch_equivalent`` and its parameters)."""

    @classmethod
    def from_torch(cls: type[SelfWeights], module: nn.RNNBase, **kwargs) -> SelfWeights:
        """A cell of this class holding a copy of the weights of a one-layer :attr:`torch_module`
        (``nn.LSTM``, ``nn.GRU`` or ``nn.RNN`` with tanh)."""
        kind = _module_of(cls).__name__
        if not isinstance(module, cls.torch_module):
            raise ValueError(f"module: expected a torch.nn.{kind}, got {type(module).__name__}")
        if module.num_layers != 1 or module.bidirectional or module.batch_first or module.proj_size:
            raise ValueError(
                "module: expected one layer, unidirectional, batch_first=False, proj_size=0; got "
                f"num_layers={module.num_layers}, bidirectional={module.bidirectional}, "
                f"batch_first={module.batch_first}, proj_size={module.proj_size}"
            )
        if getattr(module, "nonlinearity", "tanh") != "tanh":
            raise ValueError(f"module: expected nonlinearity='tanh', got {module.nonlinearity!r}")
        w = module.weight_ih_l0
        cell = cls(module.input_size, module.hidden_size, bias=module.bias, **kwargs).to(w.device, w.dtype)
        with torch.no_grad():
            for ours, theirs in zip(cell.torch_parameters(), _torch_parameters(module), strict=True):
                ours.copy_(theirs)
        return cell

    def to_torch(self) -> nn.RNNBase:
        """A :attr:`torch_module` with a copy of this cell's weights (cells whose math is that module's only)."""
        kind = _module_of(type(self)).__name__
        if not self.torch_equivalent:
            raise TypeError(f"{type(self).__name__} computes more than nn.{kind} does; it has no nn.{kind} equivalent")
        if self.mask_spec.site == "zoneout" and self.dropout > 0:
            raise TypeError(
                f"{type(self).__name__} with dropout={self.dropout}: zoneout's evaluation mixes each step with the "
                f"previous state, which nn.{kind} does not compute; it has no nn.{kind} equivalent"
            )
        w = self._param()
        module = self.torch_module(self.input_size, self.hidden_size, bias=self.bias).to(w.device, w.dtype)
        with torch.no_grad():
            for theirs, ours in zip(_torch_parameters(module), self.torch_parameters(), strict=True):
                theirs.copy_(ours)
        return module

    def torch_parameters(self) -> list[Tensor]:
        """``[weight_ih, weight_hh, bias_ih, bias_hh]`` (no biases when ``bias=False``), in the
        order of the torch module's flat weights."""
        params = [self.weight_ih, self.weight_hh]
        return [*params, self.bias_ih, self.bias_hh] if self.bias else params


def _torch_parameters(module: nn.RNNBase) -> list[Tensor]:
    """A one-layer torch module's flat weights, in order."""
    names = ["weight_ih_l0", "weight_hh_l0"] + (["bias_ih_l0", "bias_hh_l0"] if module.bias else [])
    return [getattr(module, n) for n in names]


def _module_of(cls: type) -> type[nn.RNNBase]:
    """The class's :attr:`torch_module`; a TypeError for a class that has none (a linear recurrence)."""
    if cls.torch_module is None:
        raise TypeError(f"{cls.__name__}: no torch module computes its math or shares its parameters")
    return cls.torch_module
