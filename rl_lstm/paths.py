"""The ways a layer's call can run, each an object that says whether it can run a call and runs it.

A class lists the paths it can take in order of preference (:attr:`rl_lstm.base.RecurrentLayer.paths`); a
call takes the first that can run it, and the last one listed, the reference, runs every call (it alone
runs where ``fused`` is False on the instance). Each path names the layer's methods it calls
(:attr:`ExecutionPath.needs`), so that a class listing it is known to give them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal, Protocol

from torch import Tensor

from rl_lstm import kernel
from rl_lstm.masks import MaskSpec
from rl_lstm.segments import run_fused, step_loop

#: Where a dropout site's masks act (:attr:`~rl_lstm.base.RecurrentLayer.mask_stages`): inside a step's
#: math (only the step loop computes it), on the carried state after a step (``_after_step``), or on the
#: output only.
Stage = Literal["step", "after_step", "output"]
#: What a path returns: the output (T, B, H) and the final h and c (c None for an h-only memory; h and c
#: None where the final state is not wanted).
Result = tuple[Tensor, Tensor | None, Tensor | None]


class RecurrentLayer(Protocol):
    """What a path reads of the layer (:class:`rl_lstm.base.RecurrentLayer`); the methods it calls are
    its :attr:`ExecutionPath.needs`."""

    mask_spec: MaskSpec
    dropout: float
    mask_stages: Mapping[str, Stage]
    paths: tuple[ExecutionPath, ...]

    def __getattr__(self, name: str) -> Any: ...


def acting_stage(layer: RecurrentLayer, masks: Tensor | None) -> Stage | None:
    """Where the call's masks act; None where none acts (zoneout's expectation acts without masks)."""
    site = layer.mask_spec.site
    if masks is None and not (site == "zoneout" and layer.dropout > 0.0):
        return None
    return layer.mask_stages.get(site, "step")


class ExecutionPath:
    """One way to run a call on ``x`` (T, B, I) from ``h``/``c`` (B, H) with ``masks`` (or None)."""

    #: The path's name, as :meth:`~rl_lstm.base.RecurrentLayer.execution_path` reports it.
    name: ClassVar[str]
    #: The layer's methods the path calls: a class that lists the path defines them.
    needs: ClassVar[tuple[str, ...]] = ()
    #: Whether the path runs on the compiled extension (:mod:`rl_lstm.kernel`) where it builds.
    uses_extension: ClassVar[bool] = False

    def can_run(self, layer: RecurrentLayer, x: Tensor, masks: Tensor | None) -> bool:
        return True

    def run(
        self, layer: RecurrentLayer, x: Tensor, h: Tensor, c: Tensor | None, starts: Tensor | None,
        masks: Tensor | None, need_state: bool,
    ) -> Result:  # fmt: skip
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<execution path {self.name!r}>"


class CompiledKernel(ExecutionPath):
    """The compiled chunk kernel (:mod:`rl_lstm.kernel`), masks and resets inside, where it can run
    (``RL_LSTM_KERNEL``, :func:`rl_lstm.kernel.use`); the layer gives its norms (``kernel_norms``)."""

    name = "kernel"
    needs = ("kernel_norms",)
    uses_extension = True

    def can_run(self, layer: RecurrentLayer, x: Tensor, masks: Tensor | None) -> bool:
        return kernel.use(x)

    def run(self, layer, x, h, c, starts, masks, need_state):  # noqa: ANN001, ANN201 - ExecutionPath.run's
        return kernel.run(layer, x, h, c, starts, masks)


class ParallelScan(ExecutionPath):
    """The scan of a linear recurrence over a chunk (``_run_scan``), for more than one step: one pass over the
    steps on the compiled extension where it runs, else the blocked parallel scan in torch operations
    (:func:`rl_lstm.scan.linear_scan`)."""

    name = "scan"
    needs = ("_run_scan",)
    uses_extension = True

    def can_run(self, layer: RecurrentLayer, x: Tensor, masks: Tensor | None) -> bool:
        return x.shape[0] > 1

    def run(self, layer, x, h, c, starts, masks, need_state):  # noqa: ANN001, ANN201 - ExecutionPath.run's
        return layer._run_scan(x, h, c, starts, masks, need_state)


class TorchKernels(ExecutionPath):
    """torch's fused sequence kernel over whole stretches between episode starts (``_kernel``), and its
    fused one-step cell where the class also lists :data:`TORCH_CELLS`, then the output masks: where no
    mask acts, or the masks act on the output only."""

    name = "fused"
    needs = ("_kernel",)

    def can_run(self, layer: RecurrentLayer, x: Tensor, masks: Tensor | None) -> bool:
        return acting_stage(layer, masks) in (None, "output")

    def run(self, layer, x, h, c, starts, masks, need_state):  # noqa: ANN001, ANN201 - ExecutionPath.run's
        cell = layer._cell if TORCH_CELLS in layer.paths else None
        out, h, c = run_fused(cell, layer._kernel, x, h, c, starts, need_state)
        return (out if masks is None else out * masks), h, c


class TorchCells(ExecutionPath):
    """torch's fused cell step by step (``_cell``), then the masks that act on the carried state after a
    step (``_after_step``)."""

    name = "cells"
    needs = ("_cell", "_after_step")

    def can_run(self, layer: RecurrentLayer, x: Tensor, masks: Tensor | None) -> bool:
        return acting_stage(layer, masks) == "after_step"

    def run(self, layer, x, h, c, starts, masks, need_state):  # noqa: ANN001, ANN201 - ExecutionPath.run's
        def step(x_t: Tensor, h: Tensor, c: Tensor | None, m: Tensor | None) -> tuple[Tensor, Tensor | None, Tensor]:
            h_new, c_new = layer._cell(x_t, h, c)
            return layer._after_step(h, c, h_new, c_new, m)

        return step_loop(step, x, h, c, starts, masks)


class StepLoop(ExecutionPath):
    """The step loop, the reference: the input projected for all steps at once (``_project_input``), then
    the class's one-step math (``_step``) with every mask where it acts."""

    name = "steps"
    needs = ("_project_input", "_step")

    def run(self, layer, x, h, c, starts, masks, need_state):  # noqa: ANN001, ANN201 - ExecutionPath.run's
        return step_loop(layer._step, layer._project_input(x), h, c, starts, masks)


class RecurrenceLoop(ExecutionPath):
    """A linear recurrence one step at a time (``_run_steps``), the reference of the parallel scan."""

    name = "steps"
    needs = ("_run_steps",)

    def run(self, layer, x, h, c, starts, masks, need_state):  # noqa: ANN001, ANN201 - ExecutionPath.run's
        return layer._run_steps(x, h, c, starts, masks, need_state)


KERNEL = CompiledKernel()
SCAN = ParallelScan()
TORCH_KERNELS = TorchKernels()
TORCH_CELLS = TorchCells()
STEPS = StepLoop()
RECURRENCE_LOOP = RecurrenceLoop()
