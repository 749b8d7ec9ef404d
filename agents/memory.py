"""A stack of registry cells with ``nn.LSTM``'s multi-layer conventions: the memory of the policies."""

from __future__ import annotations

import re
from typing import Any

import torch as th
from torch import Tensor, nn

from rl_lstm import make_cell
from rl_lstm.base import PlainAttributes
from rl_lstm.masks import check_method, sample_masks

Hidden = tuple[Tensor, Tensor]

# nn.LSTM's parameter names, e.g. "weight_ih_l1": (name in a single cell, layer).
_TORCH_NAME = re.compile(r"^(weight_ih|weight_hh|bias_ih|bias_hh)_l(\d+)$")


class MemoryStack(PlainAttributes, nn.Module):
    """``n_layers`` cells from the ``rl_lstm`` registry stacked as ``nn.LSTM(num_layers=n_layers)``
    stacks its layers: layer k's output is layer k+1's input, and with ``layer_dropout`` > 0 a fresh
    dropout mask acts at every step on the output of every layer but the last (``nn.LSTM``'s
    ``dropout``, inverted scaling).

    ``forward(x, hidden=None, episode_starts=None, masks=None, *, need_state=True) -> (output, (h, c))``

    - ``x``: ``(seq_len, batch, input_size)``; ``output``: ``(seq_len, batch, hidden_size)``.
    - ``hidden``: ``(h, c)``, each ``(n_layers, batch, hidden_size)`` as ``nn.LSTM``'s; None means
      zeros. A layer whose cell carries h only (``state_names == ("h",)``) reads its h and
      returns zeros as its c, so callers keep one ``(h, c)`` layout for every cell.
    - ``episode_starts``: ``(seq_len, batch)``, 1 on the first step of an episode (every layer
      resets that row, and resamples its per-episode masks).
    - ``masks``: ``(seq_len, batch, mask_width)``, the :attr:`last_masks` of an earlier call, to
      re-run the same steps with the same masks. The columns are, layer by layer, that cell's
      masks (when its dropout is on) then the between-layer mask (when ``layer_dropout`` is on
      and the layer is not the last); :attr:`mask_width` is their total, 0 when no mask acts.

    Masks act in training mode, or in eval mode when :attr:`masks_in_eval` is True (RL collection
    runs in eval mode but must act with the masks it will replay), as in the cells.

    State dicts of ``nn.LSTM`` (``weight_ih_l0``...) load into a stack of cells laid out like it
    (``lstm`` and its dropout variants), and so do those of a single cell saved before stacking
    (``weight_ih``...): a stock sb3-contrib memory becomes a stack of ``lstm`` cells.

    :param cell: registry name of the cells (``rl_lstm.CELLS``).
    :param input_size: features of the first layer's input.
    :param hidden_size: hidden units of every layer.
    :param n_layers: number of layers.
    :param layer_dropout: probability of the between-layer dropout (``nn.LSTM``'s ``dropout``).
    :param cell_kwargs: passed to every cell (``dropout``, ``dropout_method``, ``bias``, ...).
    """

    plain_attributes = frozenset({"masks_in_eval", "_masks_in_eval", "check_args", "_check_args", "last_masks"})

    def __init__(
        self,
        cell: str,
        input_size: int,
        hidden_size: int,
        n_layers: int = 1,
        layer_dropout: float = 0.0,
        **cell_kwargs: Any,
    ) -> None:
        super().__init__()
        if isinstance(n_layers, bool) or not isinstance(n_layers, int) or n_layers < 1:
            raise ValueError(f"n_lstm_layers={n_layers!r}: expected a positive integer")
        try:
            self._between = check_method(layer_dropout, "pytorch")
        except ValueError:
            raise ValueError(f"lstm_kwargs['dropout']={layer_dropout!r}: expected a number in [0, 1)") from None
        self.cell_name = cell
        self.layers = nn.ModuleList(
            make_cell(cell, input_size if k == 0 else hidden_size, hidden_size, **cell_kwargs) for k in range(n_layers)
        )
        self.input_size = self.layers[0].input_size
        self.hidden_size = self.layers[0].hidden_size
        self.num_layers = n_layers  # nn.LSTM's name: sb3-contrib reads it
        self.layer_dropout = float(layer_dropout)
        self.last_masks: Tensor | None = None
        self._masks_in_eval = False
        self._check_args = True
        # Columns of each layer's own masks and of the mask after it, in the order of `masks`.
        self._widths: list[tuple[int, int]] = [
            (
                layer.mask_width if layer.dropout > 0 else 0,
                self.hidden_size if self.layer_dropout > 0 and k < n_layers - 1 else 0,
            )
            for k, layer in enumerate(self.layers)
        ]
        self.register_load_state_dict_pre_hook(_rename_legacy_keys)

    @property
    def mask_width(self) -> int:
        """Columns of a step's masks (0 when no mask ever acts)."""
        return sum(a + b for a, b in self._widths)

    @property
    def masks_in_eval(self) -> bool:
        return self._masks_in_eval

    @masks_in_eval.setter
    def masks_in_eval(self, value: bool) -> None:
        self._masks_in_eval = bool(value)
        for layer in self.layers:
            layer.masks_in_eval = bool(value)

    @property
    def check_args(self) -> bool:
        """Whether calls check their arguments (see :attr:`rl_lstm.RecurrentLayer.check_args`)."""
        return self._check_args

    @check_args.setter
    def check_args(self, value: bool) -> None:
        self._check_args = bool(value)
        for layer in self.layers:
            layer.check_args = bool(value)

    @property
    def masks_active(self) -> bool:
        """Whether a call acts with masks now: training mode, or eval mode with :attr:`masks_in_eval`."""
        between = self.layer_dropout > 0 and (self.training or self._masks_in_eval)
        return between or any(layer.masks_active for layer in self.layers)

    def sample_mask(self) -> None:
        """Resample every layer's per-episode masks (the between-layer mask is drawn at each step)."""
        for layer in self.layers:
            layer.sample_mask()

    def extra_repr(self) -> str:
        return f"n_layers={self.num_layers}, layer_dropout={self.layer_dropout}" if self.layer_dropout else ""

    def _check_hidden(self, hidden: object, batch: int) -> Hidden | None:
        if hidden is None:
            return None
        shape = (self.num_layers, batch, self.hidden_size)
        pair = isinstance(hidden, (tuple, list)) and len(hidden) == 2
        if not pair or not all(isinstance(t, Tensor) and tuple(t.shape) == shape for t in hidden):
            got = [_describe(t) for t in hidden] if pair else type(hidden).__name__
            raise ValueError(f"hidden: expected (h, c), each (n_layers, batch, hidden_size) = {shape}; got {got}")
        return hidden[0], hidden[1]

    def forward(
        self,
        x: Tensor,
        hidden: Hidden | None = None,
        episode_starts: Tensor | None = None,
        masks: Tensor | None = None,
        *,
        need_state: bool = True,
    ) -> tuple[Tensor, Hidden | None]:
        if self._check_args and (not isinstance(x, Tensor) or x.dim() != 3):
            raise ValueError(
                f"x: expected a tensor of shape (seq_len, batch, input_size={self.input_size}), got {_describe(x)}"
            )
        seq_len, batch = x.shape[0], x.shape[1]
        # A single LSTM-family layer checks (h, c) itself: the stack adds nothing to a collection step.
        lone = self.num_layers == 1 and "c" in self.layers[0].state_names
        state = hidden if lone or not self._check_args else self._check_hidden(hidden, batch)
        parts: list[Tensor | None] = [None] * (2 * self.num_layers)
        if masks is not None:
            if self.mask_width == 0:
                raise ValueError("masks: this memory has no dropout and takes no masks; pass masks=None")
            expected = (seq_len, batch, self.mask_width)
            if not isinstance(masks, Tensor) or tuple(masks.shape) != expected:
                raise ValueError(
                    f"masks: expected shape (seq_len, batch, mask_width) = {expected}, got {_describe(masks)}"
                )
            splits = [w for pair in self._widths for w in pair]
            parts = [m if w else None for m, w in zip(masks.split(splits, -1), splits, strict=True)]
        draw_between = masks is None and self.layer_dropout > 0 and (self.training or self._masks_in_eval)

        hs, cs, used = [], [], []
        y = x
        for k, layer in enumerate(self.layers):
            own, between = parts[2 * k], parts[2 * k + 1]
            carries_c = "c" in layer.state_names
            if state is None or lone:
                layer_state = state
            else:
                layer_state = (state[0][k : k + 1], state[1][k : k + 1]) if carries_c else state[0][k : k + 1]
            y, new_state = layer(y, layer_state, episode_starts, own, need_state=need_state)
            if layer.last_masks is not None:
                used.append(layer.last_masks)
            if need_state:
                h_k, c_k = new_state if carries_c else (new_state, th.zeros_like(new_state))
                hs.append(h_k)
                cs.append(c_k)
            if self._widths[k][1]:
                if draw_between:
                    between = sample_masks(self._between, self.layer_dropout, tuple(y.shape), y.dtype, y.device)
                if between is not None:
                    y = y * between
                    used.append(between)
        if not used:
            self.last_masks = None
        else:
            self.last_masks = used[0] if len(used) == 1 else th.cat(used, -1)
        if not need_state:
            return y, None
        if self.num_layers == 1:
            return y, (hs[0], cs[0])
        return y, (th.cat(hs), th.cat(cs))


def _describe(t: object) -> str:
    return str(tuple(t.shape)) if isinstance(t, Tensor) else type(t).__name__


def _rename_legacy_keys(module: MemoryStack, state_dict: dict, prefix: str, *args: Any) -> None:
    """Rename ``nn.LSTM`` keys (``weight_ih_l1``) and a lone cell's keys (``weight_ih``, from before
    memories were stacks) to the stack's (``layers.1.weight_ih``), in place. Keys that match
    neither are left for the load to report."""
    lone_cell = set(module.layers[0].state_dict()) if module.num_layers == 1 else set()
    for key in [k for k in state_dict if k.startswith(prefix)]:
        name = key[len(prefix) :]
        match = _TORCH_NAME.match(name)
        if match is not None and int(match.group(2)) < module.num_layers:
            k = int(match.group(2))
            layer = module.layers[k]
            target = getattr(layer, match.group(1), None)
            # The parameter's own name inside the cell (TorchLSTM keeps it in an nn.LSTM).
            name = next((n for n, p in layer.named_parameters() if p is target), match.group(1))
        elif name in lone_cell:
            k = 0
        else:
            continue
        state_dict[f"{prefix}layers.{k}.{name}"] = state_dict.pop(key)
