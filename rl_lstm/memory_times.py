"""Memory times: how many steps a unit of a memory keeps what it holds at initialisation.

A unit that keeps a fraction ``k`` of its content per step holds it for about ``tau = 1 / (1 - k)`` steps.
Gated memories set ``k`` through the bias of their keep gate (``k = sigmoid(b)``, so ``b = log(tau - 1)``:
the LSTM's forget gate, the GRU's update gate ``z``), linear recurrences through their decays. At
PyTorch's initial biases (about 0) every unit keeps half per step (``tau`` about 2), so a cue's trace and
its gradient fade as ``0.5^t``. :meth:`rl_lstm.RecurrentLayer.init_memory_times_` sets them; a cell built
without asking keeps its own initialisation (``nn.LSTM``'s for the LSTM family).
"""

from __future__ import annotations

import torch
from torch import Tensor


def check_times(layer: torch.nn.Module, times: Tensor, units: int) -> Tensor:
    """``times`` as a float tensor of ``units`` memory times, each > 1 step; else a ValueError naming them."""
    if units == 0:
        raise ValueError(
            f"{type(layer).__name__}: no keep gate or decay to set (a gated cell built with bias=False has no "
            "gate bias)"
        )
    times = torch.as_tensor(times, dtype=torch.float64)
    if times.shape != (units,):
        raise ValueError(
            f"times: expected {units} memory times for {type(layer).__name__}, got shape {tuple(times.shape)}"
        )
    if not bool(torch.isfinite(times).all()) or not bool((times > 1.0).all()):
        raise ValueError(f"times: expected finite memory times > 1 step, got min {float(times.min()):g}")
    return times


def keep_logit(times: Tensor) -> Tensor:
    """The pre-activation whose sigmoid keeps ``1 - 1 / times`` per step: ``log(times - 1)``."""
    return torch.log(times - 1.0)


#: ``memory_units`` of a layer whose keep gate is set through a bias: none where it has no biases.
gate_bias_units = property(lambda layer: layer.hidden_size if layer.bias else 0)


def set_gate_bias_(layer: torch.nn.Module, block: int, value: Tensor) -> None:
    """Gate ``block``'s bias (``nn.LSTM``/``nn.GRU`` layout: ``bias_ih`` and ``bias_hh``, blocks of
    ``hidden_size``) summed to ``value``: ``bias_hh`` takes it, ``bias_ih``'s share is zeroed."""
    bias_ih, bias_hh = layer.bias_ih, layer.bias_hh
    if bias_ih is None or bias_hh is None:
        raise ValueError(f"{type(layer).__name__} with bias=False: its keep gate has no bias to set")
    h = layer.hidden_size
    rows = slice(block * h, (block + 1) * h)
    with torch.no_grad():
        bias_ih[rows] = 0.0
        bias_hh[rows] = value.to(bias_hh)
