"""The layer every cell shares: episode resets, dropout masks, and the one dispatcher that chooses how a
call runs (the argument checks are :mod:`rl_lstm.checks`).

Subclasses state facts (class attributes: the :attr:`RecurrentLayer.paths` a call can take, in order, and
where each dropout site's masks act, :attr:`~RecurrentLayer.mask_stages`) and the math those paths call
(:mod:`rl_lstm.paths`: the one-step ``_step``, torch's fused ``_cell`` and ``_kernel``, ``_after_step``);
which path runs a call is decided once, in :meth:`RecurrentLayer.execution_path`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import torch
from torch import Tensor, nn

from rl_lstm.checks import (
    check_hidden,
    check_input,
    check_size,
    check_starts,
    check_tensor,
    check_traceable,
    describe,
)
from rl_lstm.masks import METHODS, MaskSpec, check_method, sample_masks
from rl_lstm.paths import KERNEL, STEPS, ExecutionPath, Result, Stage
from rl_lstm.torch_weights import TorchWeights

#: A memory's recurrent state as ``forward`` takes and returns it: ``(h, c)`` for the LSTM family,
#: the tensor ``h`` for memories that carry h only (as ``nn.GRU`` and ``nn.RNN``).
Hidden = tuple[Tensor, Tensor] | Tensor


#: The dropout of a class named for a dropout method (Gal, Moon, Semeniuta, zoneout and their mixes)
#: when none is given: choosing such a class chooses its method, so it acts. Other classes default to 0.
NAMED_METHOD_DROPOUT = 0.1


def _swap(t: object) -> object:
    """``(batch, seq_len, ...)`` <-> ``(seq_len, batch, ...)`` (``batch_first``); anything else as it is."""
    return t.transpose(0, 1) if isinstance(t, Tensor) and t.dim() >= 2 else t


class PlainAttributes:
    """A mixin for ``nn.Module`` classes whose flags (and last masks) are set on every call or collection
    step: the names in :attr:`plain_attributes` are set as on a plain object, without ``nn.Module``'s
    registration checks (about 2.4 us a set, and a collection step of recurrent PPO made 26 of them). They
    must never name a parameter, a buffer or a submodule, whose sets ``nn.Module`` has to see."""

    plain_attributes: ClassVar[frozenset[str]] = frozenset()

    def __setattr__(self, name: str, value: object) -> None:
        if name in self.plain_attributes:
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)


class RecurrentLayer(PlainAttributes, TorchWeights, nn.Module):
    """One recurrent layer with the ``nn.LSTM`` / ``nn.GRU`` calling convention, episode resets
    and dropout masks.

    ``forward(x, hidden=None, episode_starts=None, masks=None) -> (output, (h, c))`` for the LSTM
    family, ``-> (output, h)`` for memories that carry h only (:attr:`state_names` ``("h",)``).

    :param input_size: features of each step's input.
    :param hidden_size: units of the state (and of the output).
    :param bias: whether the layer has biases.
    :param dropout: the dropout (zoneout) probability; None: the class's :meth:`default_dropout`.
    :param dropout_method: ``'pytorch'``, the default, or another key of ``rl_lstm.masks.METHODS``; a class
        named for a method applies its own, and the argument may only repeat it.
    :param batch_first: as ``nn.LSTM``'s: ``x``, the output, ``episode_starts`` and ``masks`` take the batch
        first; the state keeps its layout.

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
    #: Check every argument of a call. A caller that has checked its arguments once for many calls of
    #: the same shapes (a rollout's collection steps) sets it False on the instance, and each call then
    #: skips the checks: a wrong argument then fails somewhere inside rather than with a clear message.
    check_args = True
    plain_attributes = frozenset({"check_args", "masks_in_eval", "last_masks"})
    #: The dropout methods the class takes (keys of ``rl_lstm.masks.METHODS``).
    dropout_methods: ClassVar[tuple[str, ...]] = tuple(METHODS)
    #: The one-layer torch module whose math and parameters this class shares (``from_torch`` / ``to_torch``);
    #: None where no torch module does (the linear recurrences).
    torch_module: ClassVar[type[nn.RNNBase] | None] = nn.LSTM
    torch_equivalent = True  # whether to_torch() can express this cell as its torch_module
    #: The ways the class's calls can run (:mod:`rl_lstm.paths`), in order of preference: a call takes the
    #: first that can run it. The last, the reference (the step loop where the class has one-step math),
    #: runs every call, and alone where :attr:`fused` is False on the instance.
    paths: ClassVar[tuple[ExecutionPath, ...]] = (STEPS,)
    #: Whether the class's calls run on the compiled chunk kernel (:mod:`rl_lstm.kernel`) where it can
    #: run, read through the registry (``cell_class(name).compiled``): whether :attr:`paths` lists it.
    compiled: ClassVar[bool] = False
    #: Whether some of :attr:`paths` run on the compiled extension (the chunk kernel, the linear scan), which
    #: is built at the first such call.
    uses_extension: ClassVar[bool] = False
    #: Where the masks of each dropout site (``MaskSpec.site``) act: ``'step'`` (inside the step's math),
    #: ``'after_step'`` (on the carried state after a step) or ``'output'`` (the output only). A site not
    #: named acts inside the step's math.
    mask_stages: ClassVar[Mapping[str, Stage]] = {}
    #: Take the first of :attr:`paths` that can run a call (False on an instance: the last, the reference).
    fused = True
    #: What sets the layer's memory times (:meth:`init_memory_times_`), e.g. ``"forget gate"``; None for a
    #: layer without a keep gate or decay (the plain RNN).
    keep_gate: ClassVar[str | None] = None

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        cls.compiled = KERNEL in cls.paths
        cls.uses_extension = any(path.uses_extension for path in cls.paths)

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        dropout: float | None = None,
        dropout_method: str = "pytorch",
        batch_first: bool = False,
    ) -> None:
        super().__init__()
        # 'pytorch' is every family's default: a class named for another method applies that one.
        if self.method != "pytorch" and dropout_method not in ("pytorch", self.method):
            raise ValueError(
                f"dropout_method={dropout_method!r}: {type(self).__name__} applies {self.method!r}; for another "
                "method use the registry name of that method, or the family's plain class with dropout_method"
            )
        dropout_method = self.method if self.method != "pytorch" else dropout_method
        dropout = self.default_dropout() if dropout is None else dropout
        self.input_size = check_size("input_size", input_size)
        self.hidden_size = check_size("hidden_size", hidden_size)
        self.mask_spec: MaskSpec = check_method(dropout, dropout_method, self.dropout_methods)
        self.bias = bool(bias)
        self.dropout = float(dropout)
        self.dropout_method = dropout_method
        if not isinstance(batch_first, bool):
            raise ValueError(f"batch_first={batch_first!r}: expected True or False")
        self.batch_first = batch_first
        self.masks_in_eval = False
        self.last_masks: Tensor | None = None
        # (batch, mask_width): the mask each row holds for its current episode (per-episode methods).
        self.register_buffer("episode_masks", None, persistent=False)
        self._build()

    def _build(self) -> None:
        """Make the layer's parameters (or the torch module holding them) once the sizes are set: the
        classes whose constructor takes nothing beyond the common arguments need no ``__init__`` of their own."""

    @classmethod
    def default_dropout(cls) -> float:
        """The dropout the class gets when none is given: :data:`NAMED_METHOD_DROPOUT` for a class
        named for a dropout method, else 0. Every caller (the registry, the policies, the CLI) reads it."""
        return NAMED_METHOD_DROPOUT if cls.method != "pytorch" else 0.0

    # ------------------------------------------------------------------ parameters
    def _param(self) -> Tensor:
        return self.weight_ih

    @property
    def memory_units(self) -> int:
        """How many memory times :meth:`init_memory_times_` takes: ``hidden_size``, unless a layer's decays
        are shared (FFM: one per trace row); 0 for a layer without a keep gate or decay."""
        return self.hidden_size if self.keep_gate is not None else 0

    def init_memory_times_(self, times: Tensor) -> None:
        """Set the :attr:`keep_gate` so that unit k starts keeping ``1 - 1 / times[k]`` of its content per
        step (it holds it for about ``times[k]`` steps; see :mod:`rl_lstm.memory_times`). A layer that is
        not asked keeps its own initialisation. ValueError for a layer without a keep gate or decay."""
        raise ValueError(f"{type(self).__name__}: no keep gate or decay whose memory time could be set")

    @property
    def mask_width(self) -> int:
        """Columns of a step's mask: ``hidden_size``, or for zoneout ``hidden_size`` per carried
        state part (``2 * hidden_size`` for the LSTM family's c and h)."""
        return self.mask_spec.width(self.state_names) * self.hidden_size

    @property
    def masks_active(self) -> bool:
        return self.dropout > 0.0 and (self.training or self.masks_in_eval)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if not self.bias:
            s += ", bias=False"
        if self.dropout > 0:
            s += f", dropout={self.dropout}, dropout_method={self.dropout_method!r}"
        if self.batch_first:
            s += ", batch_first=True"
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

    def _unpack_hidden(self, hidden: object, batch: int, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """:func:`rl_lstm.checks.check_hidden` without the checks."""
        if hidden is None:
            zeros = x.new_zeros(batch, self.hidden_size)
            return zeros, (zeros if "c" in self.state_names else None)
        if isinstance(hidden, Tensor):
            return hidden[0], None
        return hidden[0][0], hidden[1][0]

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
        """Run the steps of ``x`` from ``hidden``; returns the output ``(seq_len, batch, hidden_size)`` and
        the final ``(h, c)`` (or ``h``).

        :param x: ``(seq_len, batch, input_size)``, any ``seq_len >= 1`` (``(batch, seq_len, input_size)``
            with ``batch_first``), or ``(seq_len, input_size)`` unbatched, as ``nn.LSTM`` takes it: then the
            state parts are ``(1, hidden_size)``, ``episode_starts`` ``(seq_len,)``, ``masks``
            ``(seq_len, mask_width)`` and the output ``(seq_len, hidden_size)``.
        :param hidden: ``(h, c)``, each ``(1, batch, hidden_size)``, or ``h`` ``(1, batch, hidden_size)``
            for an h-only memory; None means zeros (and new masks).
        :param episode_starts: ``(seq_len, batch)``, 1 (or True) on the first step of an episode: that
            row's state is zeroed before the step and its per-episode masks are resampled.
        :param masks: ``(seq_len, batch, mask_width)`` masks to use instead of sampling, e.g. the
            :attr:`last_masks` of an earlier call, to re-run the same steps exactly.
        :param need_state: when False the final state is not wanted: forward returns ``(output, None)``
            and may take a faster path (as ``need_weights`` in ``nn.MultiheadAttention``).
        """
        if torch.jit.is_tracing():
            check_traceable(self, episode_starts, masks)
        if isinstance(x, Tensor) and x.dim() == 2:
            return self._forward_unbatched(x, hidden, episode_starts, masks, need_state)
        if not self.batch_first:
            return self._forward(x, hidden, episode_starts, masks, need_state)
        output, state = self._forward(_swap(x), hidden, _swap(episode_starts), _swap(masks), need_state)
        self.last_masks = _swap(self.last_masks)
        return _swap(output), state

    def __prepare_scriptable__(self) -> nn.Module:
        # torch.jit.script calls this first, on every submodule.
        raise TypeError(
            f"torch.jit.script cannot compile {type(self).__name__} (its forward takes Python-level arguments "
            "and dispatches in Python): use torch.jit.trace in eval mode at the seq_len you will run (a step: "
            "seq_len 1, as agents.export does), torch.export, or torch.compile"
        )

    def _forward_unbatched(
        self, x: Tensor, hidden: Hidden | None, episode_starts: Tensor | None, masks: Tensor | None, need_state: bool
    ) -> tuple[Tensor, Hidden | None]:
        """``x`` (seq_len, input_size) as a batch of one, as ``nn.LSTM`` takes it: state parts (1, H)."""
        parts = hidden if isinstance(hidden, (tuple, list)) else (hidden,)
        if hidden is not None and not all(isinstance(t, Tensor) and t.dim() == 2 for t in parts):
            got = [describe(t) if isinstance(t, Tensor) else type(t).__name__ for t in parts]
            raise ValueError(
                f"hidden: for unbatched input x (seq_len, input_size) expected each state part of shape "
                f"(1, hidden_size={self.hidden_size}), got {got}"
            )
        if hidden is not None:
            hidden = tuple(t.unsqueeze(1) for t in hidden) if isinstance(hidden, (tuple, list)) else hidden.unsqueeze(1)
        starts = episode_starts.unsqueeze(1) if isinstance(episode_starts, Tensor) else episode_starts
        masks = masks.unsqueeze(1) if isinstance(masks, Tensor) else masks
        output, state = self._forward(x.unsqueeze(1), hidden, starts, masks, need_state)
        if self.last_masks is not None:
            self.last_masks = self.last_masks[:, 0]
        if state is not None:
            state = tuple(t[:, 0] for t in state) if isinstance(state, tuple) else state[:, 0]
        return output[:, 0], state

    def _forward(
        self, x: Tensor, hidden: Hidden | None, episode_starts: Tensor | None, masks: Tensor | None, need_state: bool
    ) -> tuple[Tensor, Hidden | None]:
        """:meth:`forward` on the time-major batched layout."""
        if self.check_args:
            seq_len, batch = check_input(self, x)
            h, c = check_hidden(self, hidden, batch, x)
            starts = check_starts(self, episode_starts, seq_len, batch)
            if masks is not None:
                if self.dropout == 0.0:
                    raise ValueError("masks: this cell has dropout=0 and takes no masks; pass masks=None")
                check_tensor(self, "masks", masks, (seq_len, batch, self.mask_width), "(seq_len, batch, mask_width)")
        else:  # checked once by the caller: unpack only
            seq_len, batch = x.shape[0], x.shape[1]
            h, c = self._unpack_hidden(hidden, batch, x)
            starts = None if episode_starts is None else episode_starts.bool()
        if masks is None and self.masks_active:
            masks = self._draw_masks(seq_len, batch, starts, fresh=hidden is None)
        self.last_masks = masks
        output, h, c = self._run(x, h, c, starts, masks, need_state)
        if not need_state:
            return output, None
        return output, (h.unsqueeze(0) if c is None else (h.unsqueeze(0), c.unsqueeze(0)))

    def execution_path(self, x: Tensor, masks: Tensor | None) -> ExecutionPath:
        """The path that runs a call on ``x`` (T, B, I) with ``masks`` (or None): the first of :attr:`paths`
        that can run it, or the last (the reference) where :attr:`fused` is False."""
        if self.fused:
            for path in self.paths[:-1]:  # a plain loop: this runs on every call, collection steps included
                if path.can_run(self, x, masks):
                    return path
        return self.paths[-1]

    def _run(
        self,
        x: Tensor,
        h: Tensor,
        c: Tensor | None,
        starts: Tensor | None,
        masks: Tensor | None,
        need_state: bool = True,
    ) -> Result:
        """A call on the path :meth:`execution_path` chooses: ``x`` (T, B, I), ``h``/``c`` (B, H) -> output
        (T, B, H), h, c (c is None for an h-only memory; h and c may be None when ``need_state`` is False)."""
        return self.execution_path(x, masks).run(self, x, h, c, starts, masks, need_state)

    def _after_step(
        self, h: Tensor, c: Tensor | None, h_new: Tensor, c_new: Tensor | None, m: Tensor | None
    ) -> tuple[Tensor, Tensor | None, Tensor]:
        """The masks that act on a finished step (``'after_step'`` and ``'output'`` sites): the carried
        h, c and the step's output from the step's ``h_new``, ``c_new`` and the previous ``h``, ``c``."""
        return h_new, c_new, h_new
