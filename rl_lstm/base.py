"""The layer every cell shares: argument checks, the time loop, episode resets and dropout masks.

Subclasses rewrite only the one-step math (:meth:`RecurrentLayer._step`) and, where it pays, the
whole-sequence run (:meth:`RecurrentLayer._run`).
"""

from __future__ import annotations

import math
from typing import ClassVar, TypeVar

import torch
from torch import Tensor, nn

from rl_lstm.masks import MaskSpec, check_method, sample_masks
from rl_lstm.segments import step_loop

Hidden = tuple[Tensor, Tensor]
SelfLayer = TypeVar("SelfLayer", bound="RecurrentLayer")


def check_size(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name}={value!r}: expected a positive integer")
    return value


def _describe(t: Tensor) -> str:
    return f"shape {tuple(t.shape)}, dtype {t.dtype}, device {t.device}"


class RecurrentLayer(nn.Module):
    """One LSTM layer with the ``nn.LSTM`` calling convention, episode resets and dropout masks.

    ``forward(x, hidden=None, episode_starts=None, masks=None) -> (output, (h, c))``

    Args of forward:
        x: ``(seq_len, batch, input_size)``, any ``seq_len >= 1``.
        hidden: ``(h, c)``, each ``(1, batch, hidden_size)``; None means zeros (and new masks).
        episode_starts: ``(seq_len, batch)``, 1 (or True) on the first step of an episode: that
            row's state is zeroed before the step and its per-episode masks are resampled.
        masks: ``(seq_len, batch, mask_width)`` masks to use instead of sampling, e.g. the
            :attr:`last_masks` of an earlier call, to re-run the same steps exactly.
        need_state: when False the final state is not wanted: forward returns ``(output, None)``
            and may take a faster path (as ``need_weights`` in ``nn.MultiheadAttention``).

    Returns ``output`` ``(seq_len, batch, hidden_size)`` and the final ``(h, c)``.

    Masks act in training mode, or in eval mode when :attr:`masks_in_eval` is True (RL
    collection runs in eval mode but must act with the masks it will replay). Otherwise the
    layer uses the expectation: no dropout, and zoneout's mixing weight ``p``. After each call
    :attr:`last_masks` holds the masks it used (None when none acted).
    """

    num_layers = 1  # nn.LSTM compatibility: sb3-contrib reads lstm.num_layers
    #: The dropout method a class applies when none is named (a key of ``rl_lstm.masks.METHODS``):
    #: a class fact, so that callers learn it through the registry without building a cell.
    method: ClassVar[str] = "pytorch"
    #: The parts of the recurrent state a call takes and returns: ``("h", "c")`` for the LSTM
    #: family (``hidden=(h, c)``), ``("h",)`` for memories that carry h only (``hidden=h``, as
    #: ``nn.GRU``).
    state_names: ClassVar[tuple[str, ...]] = ("h", "c")
    torch_equivalent = True  # whether to_torch() can express this cell as an nn.LSTM
    #: Whether the class's calls run on the compiled chunk kernel (:mod:`rl_lstm.kernel`) where it can
    #: run: a class fact, read through the registry (``cell_class(name).compiled``).
    compiled: ClassVar[bool] = False

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        dropout: float = 0.0,
        dropout_method: str | None = None,
    ) -> None:
        super().__init__()
        dropout_method = self.method if dropout_method is None else dropout_method
        self.input_size = check_size("input_size", input_size)
        self.hidden_size = check_size("hidden_size", hidden_size)
        self.mask_spec: MaskSpec = check_method(dropout, dropout_method)
        self.bias = bool(bias)
        self.dropout = float(dropout)
        self.dropout_method = dropout_method
        self.masks_in_eval = False
        self.last_masks: Tensor | None = None
        # (batch, mask_width): the mask each row holds for its current episode (per-episode methods).
        self.register_buffer("episode_masks", None, persistent=False)

    # ------------------------------------------------------------------ parameters
    def _param(self) -> Tensor:
        return self.weight_ih

    @property
    def mask_width(self) -> int:
        """Columns of a step's mask: ``hidden_size``, or ``2 * hidden_size`` for zoneout."""
        return self.mask_spec.width * self.hidden_size

    @property
    def masks_active(self) -> bool:
        return self.dropout > 0.0 and (self.training or self.masks_in_eval)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if not self.bias:
            s += ", bias=False"
        if self.dropout > 0:
            s += f", dropout={self.dropout}, dropout_method={self.dropout_method!r}"
        return s

    # ------------------------------------------------------------------ masks
    def sample_mask(self) -> None:
        """Resample every row's per-episode masks now (per-step masks are drawn at each step)."""
        if self.episode_masks is not None:
            self.episode_masks = self._sample(tuple(self.episode_masks.shape))

    def _sample(self, shape: tuple[int, ...]) -> Tensor:
        w = self._param()
        return sample_masks(self.mask_spec, self.dropout, shape, w.dtype, w.device)

    def _draw_masks(self, seq_len: int, batch: int, starts: Tensor | None, fresh: bool) -> Tensor:
        if not self.mask_spec.per_episode:
            return self._sample((seq_len, batch, self.mask_width))
        shape = (batch, self.mask_width)
        current = self.episode_masks
        w = self._param()
        if fresh or current is None or current.shape != shape or current.dtype != w.dtype:
            current = self._sample(shape)
        if starts is None:
            masks = current.expand(seq_len, *shape)
        else:
            steps = []
            for starts_t in starts.unbind(0):
                if bool(starts_t.any()):
                    current = torch.where(starts_t.unsqueeze(-1), self._sample(shape), current)
                steps.append(current)
            masks = torch.stack(steps)
        self.episode_masks = current
        return masks

    # ------------------------------------------------------------------ checks
    def _check_tensor(self, name: str, t: object, shape: tuple[int, ...], what: str) -> Tensor:
        w = self._param()
        if not isinstance(t, Tensor):
            raise ValueError(f"{name}: expected a tensor of shape {what}, got {type(t).__name__}")
        if t.shape != shape:
            raise ValueError(f"{name}: expected shape {what} = {shape}, got {_describe(t)}")
        if t.dtype != w.dtype or t.device != w.device:
            raise ValueError(
                f"{name}: expected dtype {w.dtype} on {w.device} (the cell's parameters), got "
                f"{_describe(t)}; move the cell with .to(...) or convert the tensor"
            )
        return t

    def _check_input(self, x: object) -> tuple[int, int]:
        if not isinstance(x, Tensor) or x.dim() != 3 or x.shape[2] != self.input_size or 0 in x.shape[:2]:
            got = _describe(x) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(
                f"x: expected a tensor of shape (seq_len >= 1, batch >= 1, input_size={self.input_size}), "
                f"got {got}"
            )
        self._check_tensor("x", x, x.shape, "(seq_len, batch, input_size)")
        return x.shape[0], x.shape[1]

    def _check_hidden(self, hidden: object, batch: int, x: Tensor) -> Hidden:
        if hidden is None:
            zeros = x.new_zeros(batch, self.hidden_size)
            return zeros, zeros
        if not isinstance(hidden, (tuple, list)) or len(hidden) != 2:
            raise ValueError(f"hidden: expected a tuple (h, c), got {type(hidden).__name__}")
        shape = (1, batch, self.hidden_size)
        h = self._check_tensor("hidden[0] (h)", hidden[0], shape, "(1, batch, hidden_size)")
        c = self._check_tensor("hidden[1] (c)", hidden[1], shape, "(1, batch, hidden_size)")
        return h[0], c[0]

    def _check_starts(self, episode_starts: object, seq_len: int, batch: int) -> Tensor | None:
        """Return a bool ``(seq_len, batch)`` tensor, or None when no row starts an episode."""
        if episode_starts is None:
            return None
        w = self._param()
        t = episode_starts
        if not isinstance(t, Tensor) or tuple(t.shape) != (seq_len, batch):
            got = _describe(t) if isinstance(t, Tensor) else type(t).__name__
            raise ValueError(f"episode_starts: expected shape (seq_len, batch) = {(seq_len, batch)}, got {got}")
        if t.is_complex() or t.device != w.device:
            raise ValueError(
                f"episode_starts: expected a bool, integer or real tensor on {w.device}, got {_describe(t)}"
            )
        starts = t if t.dtype == torch.bool else t != 0
        return starts if bool(starts.any()) else None

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        x: Tensor,
        hidden: Hidden | None = None,
        episode_starts: Tensor | None = None,
        masks: Tensor | None = None,
        *,
        need_state: bool = True,
    ) -> tuple[Tensor, Hidden | None]:
        seq_len, batch = self._check_input(x)
        h, c = self._check_hidden(hidden, batch, x)
        starts = self._check_starts(episode_starts, seq_len, batch)
        if masks is not None:
            if self.dropout == 0.0:
                raise ValueError("masks: this cell has dropout=0 and takes no masks; pass masks=None")
            self._check_tensor("masks", masks, (seq_len, batch, self.mask_width), "(seq_len, batch, mask_width)")
        elif self.masks_active:
            masks = self._draw_masks(seq_len, batch, starts, fresh=hidden is None)
        self.last_masks = masks
        output, h, c = self._run(x, h, c, starts, masks, need_state)
        return output, ((h.unsqueeze(0), c.unsqueeze(0)) if need_state else None)

    def _run(
        self, x: Tensor, h: Tensor, c: Tensor, starts: Tensor | None, masks: Tensor | None, need_state: bool = True
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """The time loop: ``x`` (T, B, I), ``h``/``c`` (B, H) -> output (T, B, H), h, c. A
        subclass may return None for h and c when ``need_state`` is False."""
        # The input projection for all steps at once: (T, B, 4H).
        return step_loop(self._step, self._project_input(x), h, c, starts, masks)

    def _project_input(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def _step(self, xw: Tensor, h: Tensor, c: Tensor, m: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """One step from the projected input ``xw`` (B, 4H): returns the new h, c and the output."""
        raise NotImplementedError

    # ------------------------------------------------------------------ nn.LSTM weights
    @classmethod
    def from_torch(cls: type[SelfLayer], lstm: nn.LSTM, **kwargs) -> SelfLayer:
        """A cell of this class holding a copy of a one-layer ``nn.LSTM``'s weights."""
        if not isinstance(lstm, nn.LSTM):
            raise ValueError(f"lstm: expected a torch.nn.LSTM, got {type(lstm).__name__}")
        if lstm.num_layers != 1 or lstm.bidirectional or lstm.batch_first or lstm.proj_size:
            raise ValueError(
                "lstm: expected one layer, unidirectional, batch_first=False, proj_size=0; got "
                f"num_layers={lstm.num_layers}, bidirectional={lstm.bidirectional}, "
                f"batch_first={lstm.batch_first}, proj_size={lstm.proj_size}"
            )
        w = lstm.weight_ih_l0
        cell = cls(lstm.input_size, lstm.hidden_size, bias=lstm.bias, **kwargs).to(w.device, w.dtype)
        with torch.no_grad():
            for ours, theirs in zip(cell.lstm_parameters(), _torch_parameters(lstm), strict=True):
                ours.copy_(theirs)
        return cell

    def to_torch(self) -> nn.LSTM:
        """An ``nn.LSTM`` with a copy of this cell's weights (cells whose math is nn.LSTM's only)."""
        if not self.torch_equivalent:
            raise TypeError(f"{type(self).__name__} computes more than nn.LSTM does; it has no nn.LSTM equivalent")
        w = self._param()
        lstm = nn.LSTM(self.input_size, self.hidden_size, bias=self.bias).to(w.device, w.dtype)
        with torch.no_grad():
            for theirs, ours in zip(_torch_parameters(lstm), self.lstm_parameters(), strict=True):
                theirs.copy_(ours)
        return lstm

    def lstm_parameters(self) -> list[Tensor]:
        """``[weight_ih, weight_hh, bias_ih, bias_hh]`` (no biases when ``bias=False``)."""
        params = [self.weight_ih, self.weight_hh]
        return [*params, self.bias_ih, self.bias_hh] if self.bias else params


def _torch_parameters(lstm: nn.LSTM) -> list[Tensor]:
    names = ["weight_ih_l0", "weight_hh_l0"] + (["bias_ih_l0", "bias_hh_l0"] if lstm.bias else [])
    return [getattr(lstm, n) for n in names]


class LSTMParameters(RecurrentLayer):
    """A layer holding ``nn.LSTM``-shaped parameters: ``weight_ih`` (4H, I), ``weight_hh`` (4H, H),
    ``bias_ih`` and ``bias_hh`` (4H), gate order i, f, g, o."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        dropout: float = 0.0,
        dropout_method: str | None = None,
    ) -> None:
        super().__init__(input_size, hidden_size, bias, dropout, dropout_method)
        h4 = 4 * self.hidden_size
        self.weight_ih = nn.Parameter(torch.empty(h4, self.input_size))
        self.weight_hh = nn.Parameter(torch.empty(h4, self.hidden_size))
        if self.bias:
            self.bias_ih = nn.Parameter(torch.empty(h4))
            self.bias_hh = nn.Parameter(torch.empty(h4))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """As ``nn.LSTM``: every weight and bias uniform in +-1/sqrt(hidden_size)."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.lstm_parameters():
            nn.init.uniform_(p, -bound, bound)

    def _bias(self) -> Tensor | None:
        return self.bias_ih + self.bias_hh if self.bias else None
