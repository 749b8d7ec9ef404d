"""What every recurrent policy shares, on-policy (:mod:`agents.policies`) and off-policy
(:mod:`agents.off_policy.policies`) alike: reading the memory's keywords, the optimizer, and the dropout masks
in eval mode.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch as th
from stable_baselines3.common.type_aliases import Schedule
from torch import nn

from agents.lean import FusedRMSprop
from agents.memory import MemoryStack
from agents.memory_init import check_horizon, check_memory_init
from rl_lstm import cell_class
from rl_lstm.registry import default_dropout

# Arguments of nn.LSTM that sb3-contrib passes through ``lstm_kwargs`` and that a stack of cells
# can only take at their defaults (its memories are unidirectional, time-major, unprojected, and
# follow the policy's device and dtype).
_TORCH_ONLY = {"batch_first": False, "bidirectional": False, "proj_size": 0, "device": None, "dtype": None}
# Cell arguments that are policy keywords of their own.
_POLICY_LEVEL = ("ln_preact", "learnable")


def split_lstm_kwargs(cell: str, lstm_kwargs: dict[str, Any] | None) -> tuple[float, dict[str, Any]]:
    """Read sb3-contrib's ``lstm_kwargs`` for a stack of ``cell``: returns the between-layer dropout
    (``nn.LSTM``'s ``dropout``) and the keywords for every cell (``bias``, ``dropout_method``...).

    A key is honoured, or rejected with a ValueError naming it: nn.LSTM's options the cells cannot
    express (``bidirectional=True``, ``proj_size > 0``...), and keys neither nn.LSTM nor the cell takes.
    """
    if lstm_kwargs is not None and not isinstance(lstm_kwargs, dict):
        raise ValueError(f"lstm_kwargs={lstm_kwargs!r}: expected a dict or None")
    kwargs = dict(lstm_kwargs or {})
    layer_dropout = kwargs.pop("dropout", 0.0)
    for key, default in _TORCH_ONLY.items():
        if key in kwargs and kwargs.pop(key) != default:
            raise ValueError(
                f"lstm_kwargs[{key!r}]={lstm_kwargs[key]!r}: the registry cells run unidirectional, time-major, "
                f"without projection, on the policy's device and dtype; expected {default!r} or no such key"
            )
    takes = set(inspect.signature(cell_class(cell).__init__).parameters) - {"self", "input_size", "hidden_size"}
    for key in kwargs:
        if key in _POLICY_LEVEL:
            raise ValueError(f"lstm_kwargs[{key!r}]: pass it as a policy keyword, policy_kwargs=dict({key}=...)")
        if key not in takes:
            raise ValueError(
                f"lstm_kwargs[{key!r}]: neither an nn.LSTM argument the memory honours (dropout, bias) nor an "
                f"argument of cell {cell!r} (it takes {', '.join(sorted(takes - {'dropout'}))})"
            )
    return layer_dropout, kwargs


def memory_settings(
    cell: str,
    hidden_size: int,
    dropout: float | None,
    ln_preact: bool,
    learnable: bool,
    n_lstm_layers: int,
    lstm_kwargs: dict[str, Any] | None,
    memory_init: Any = None,
    memory_horizon: Any = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The memory keywords every recurrent policy takes (on-policy and off-policy alike), read once:
    returns the cells' keywords (``dropout`` resolved: None is the cell's default,
    :func:`rl_lstm.registry.default_dropout`) and :class:`~agents.memory.MemoryStack`'s keywords. Bad values
    fail here, naming the value, before any network is built (``memory_init`` and ``memory_horizon`` too:
    :mod:`agents.memory_init`)."""
    check_memory_init(memory_init, cell)
    check_horizon(memory_horizon)
    layer_dropout, extra = split_lstm_kwargs(cell, lstm_kwargs)
    dropout = default_dropout(cell) if dropout is None else dropout
    cell_kwargs = dict(dropout=dropout, ln_preact=ln_preact, learnable=learnable, **extra)
    memory_kwargs = dict(n_layers=n_lstm_layers, layer_dropout=layer_dropout, **cell_kwargs)
    MemoryStack(cell, 1, hidden_size, **memory_kwargs)
    return cell_kwargs, memory_kwargs


def make_optimizer(
    optimizer_class: type[th.optim.Optimizer],
    optimizer_kwargs: dict[str, Any],
    params: Iterable[nn.Parameter],
    lr_schedule: Schedule,
) -> th.optim.Optimizer:
    """SB3's optimizer over ``params`` at the schedule's first rate (Adam with eps 1e-5 by default). Where the
    implementation was left unchosen: PyTorch's fused Adam (one kernel for all parameters); for A2C's RMSprop
    :class:`agents.lean.FusedRMSprop` (one compiled pass per parameter, falling back to the multi-tensor step);
    for another optimizer that has one its multi-tensor (``foreach``) implementation (the same numbers as the
    per-tensor loop PyTorch picks on the CPU, in fewer calls)."""
    kwargs = dict(optimizer_kwargs)
    if not {"fused", "foreach", "capturable"} & set(kwargs):
        if optimizer_class is th.optim.Adam:
            kwargs["fused"] = True
        elif "foreach" in inspect.signature(optimizer_class).parameters:
            kwargs["foreach"] = True
            if optimizer_class is th.optim.RMSprop:
                optimizer_class = FusedRMSprop
    return optimizer_class(list(params), lr=lr_schedule(1), **kwargs)


@contextmanager
def masks_in_eval(memories: Iterable[nn.Module], active: bool = True) -> Iterator[None]:
    """Within this block ``memories`` act with their dropout masks even in eval mode (``active``), as collection
    runs; their settings are restored after."""
    memories = list(memories)
    before = [m.masks_in_eval for m in memories]
    for m in memories:
        m.masks_in_eval = active
    try:
        yield
    finally:
        for m, b in zip(memories, before, strict=True):
            m.masks_in_eval = b


def check_replayable(memory: nn.Module, cell: str) -> None:
    """A ValueError naming ``cell`` unless ``memory`` reports the dropout masks it acts with (its
    ``last_masks``) when it has dropout: a replay (the off-policy agents' windows) needs them to recompute what
    was collected."""
    if getattr(memory, "mask_width", 0) == 0:
        return
    with th.no_grad(), masks_in_eval([memory]):
        memory(th.zeros(1, 1, memory.input_size), None, th.ones(1, 1))
    masks = memory.last_masks
    if masks is None or tuple(masks.shape) != (1, 1, memory.mask_width):
        raise ValueError(
            f"cell={cell!r}: its memory acts with dropout masks but does not report them (last_masks), so a replayed "
            "window could not use the masks it was collected with; expected a cell that records its masks, or dropout=0"
        )
