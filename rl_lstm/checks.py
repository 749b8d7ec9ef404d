"""The argument checks of every cell's call (:class:`rl_lstm.base.RecurrentLayer`): each names the value it got
and what was expected. A caller that has checked once (the agents' memory, collection) switches them off with
``layer.check_args = False``.
"""

from __future__ import annotations

import numbers

import torch
from torch import Tensor, nn


def check_size(name: str, value: int) -> int:
    """``value`` as an int (any integer type, e.g. numpy's int64); a ValueError unless it is positive."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise ValueError(f"{name}={value!r}: expected a positive integer")
    return int(value)


def describe(t: Tensor) -> str:
    """A tensor's shape, dtype and device, for an error message."""
    return f"shape {tuple(t.shape)}, dtype {t.dtype}, device {t.device}"


def check_tensor(layer: nn.Module, name: str, t: object, shape: tuple[int, ...], what: str) -> Tensor:
    """``t`` if it is a tensor of ``shape`` with the dtype and device of the layer's parameters; ``what`` names the
    shape in the message (``"(1, batch, hidden_size)"``)."""
    w = layer._param()
    if not isinstance(t, Tensor):
        raise ValueError(f"{name}: expected a tensor of shape {what}, got {type(t).__name__}")
    if t.shape != shape:
        raise ValueError(f"{name}: expected shape {what} = {shape}, got {describe(t)}")
    if t.dtype != w.dtype or t.device != w.device:
        raise ValueError(
            f"{name}: expected dtype {w.dtype} on {w.device} (the cell's parameters), got "
            f"{describe(t)}; move the cell with .to(...) or convert the tensor"
        )
    return t


def check_input(layer: nn.Module, x: object) -> tuple[int, int]:
    """``(seq_len, batch)`` of a time-major input ``x`` of the layer's ``input_size``."""
    if not isinstance(x, Tensor) or x.dim() != 3 or x.shape[2] != layer.input_size or 0 in x.shape[:2]:
        if isinstance(x, Tensor) and layer.batch_first and x.dim() == 3:
            x = x.transpose(0, 1)  # as the caller gave it
        got = describe(x) if isinstance(x, Tensor) else type(x).__name__
        layout = "batch >= 1, seq_len >= 1" if layer.batch_first else "seq_len >= 1, batch >= 1"
        raise ValueError(
            f"x: expected a tensor of shape ({layout}, input_size={layer.input_size}) or, unbatched, "
            f"(seq_len >= 1, input_size={layer.input_size}); got {got}"
        )
    check_tensor(layer, "x", x, x.shape, "(seq_len, batch, input_size)")
    return x.shape[0], x.shape[1]


def check_hidden(layer: nn.Module, hidden: object, batch: int, x: Tensor) -> tuple[Tensor, Tensor | None]:
    """``(h, c)`` each (B, H) from ``hidden``; c is None for an h-only memory."""
    carries_c = layer.state_names == ("h", "c")
    if hidden is None:
        zeros = x.new_zeros(batch, layer.hidden_size)
        return zeros, (zeros if carries_c else None)
    shape = (1, batch, layer.hidden_size)
    if not carries_c:
        if not isinstance(hidden, Tensor):
            raise ValueError(
                f"hidden: expected the tensor h of shape (1, batch, hidden_size) (this memory carries h "
                f"only), got {type(hidden).__name__}"
            )
        return check_tensor(layer, "hidden (h)", hidden, shape, "(1, batch, hidden_size)")[0], None
    if not isinstance(hidden, (tuple, list)) or len(hidden) != 2:
        raise ValueError(f"hidden: expected a tuple (h, c), got {type(hidden).__name__}")
    h = check_tensor(layer, "hidden[0] (h)", hidden[0], shape, "(1, batch, hidden_size)")
    c = check_tensor(layer, "hidden[1] (c)", hidden[1], shape, "(1, batch, hidden_size)")
    return h[0], c[0]


def check_traceable(layer: nn.Module, episode_starts: object, masks: object) -> None:
    """Refuse what ``torch.jit.trace`` would record wrongly: where rows start episodes and which masks
    act are decided in Python, so a trace would replay the traced ones on every later input."""
    if episode_starts is not None:
        raise ValueError(
            "episode_starts: torch.jit.trace would freeze the traced pattern of episode starts; trace "
            "without them and zero the state of starting rows before the call (torch.where(start, 0, h)), "
            "as the step of agents.export does"
        )
    if masks is not None or layer.masks_active:
        raise ValueError(
            "torch.jit.trace of a cell with dropout masks acting would freeze them: trace it in eval mode "
            "(cell.eval()), where no mask acts"
        )


def check_starts(layer: nn.Module, episode_starts: object, seq_len: int, batch: int) -> Tensor | None:
    """Return a bool ``(seq_len, batch)`` tensor, or None when no row starts an episode."""
    if episode_starts is None:
        return None
    w = layer._param()
    t = episode_starts
    if not isinstance(t, Tensor) or tuple(t.shape) != (seq_len, batch):
        got = describe(t) if isinstance(t, Tensor) else type(t).__name__
        raise ValueError(f"episode_starts: expected shape (seq_len, batch) = {(seq_len, batch)}, got {got}")
    if t.is_complex() or t.device != w.device:
        raise ValueError(f"episode_starts: expected a bool, integer or real tensor on {w.device}, got {describe(t)}")
    starts = t if t.dtype == torch.bool else t != 0
    return starts if bool(starts.any()) else None
