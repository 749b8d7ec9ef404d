"""The update's lean pieces: discrete log-probabilities and entropies from ``log_softmax`` (no
distribution object, no argument validation per minibatch; ``CellLstmPolicy.evaluate_sequences`` takes them
for a Categorical policy without invalid-action masks), the global-norm gradient clip on foreach kernels, and
RMSprop (A2C's optimizer) in one compiled pass per parameter.

Same numbers as the distribution path: ``Categorical(logits=l).log_prob(a)`` is ``log_softmax(l)[a]``
and its entropy ``-sum(p * log_softmax(l))`` for finite logits (invalid-action masks, which make
logits infinite, keep the distribution path).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import cache

import torch as th
from torch.optim.rmsprop import rmsprop

from rl_lstm import kernel


def log_prob_entropy(logits: th.Tensor, actions: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
    """Log-probability of ``actions`` (integer, one per row of ``logits``) and entropy, per row."""
    log_p = logits.log_softmax(-1)
    log_prob = log_p.gather(-1, actions.long().reshape(-1, 1)).squeeze(-1)
    return log_prob, -(log_p.exp() * log_p).sum(-1)


def clip_grad_norm(parameters: Iterable[th.Tensor], max_norm: float) -> None:
    """``clip_grad_norm_`` (one global norm over all gradients) on the foreach kernels, without a sync."""
    th.nn.utils.clip_grad_norm_(parameters, max_norm, foreach=True)


@cache
def _fma_matches(dtype: th.dtype) -> bool:
    """Whether torch's ``addcmul_`` rounds as one fma on this CPU for ``dtype`` (the extension's RMSprop step
    rounds so): tried once on 4096 random entries."""
    module = kernel.load()
    generator = th.Generator().manual_seed(0)
    s, a, b = (th.randn(4096, dtype=dtype, generator=generator) for _ in range(3))
    return module is not None and module.rmsprop_fma_matches(s, a, b, 0.01)


class FusedRMSprop(th.optim.RMSprop):
    """``torch.optim.RMSprop`` whose step, in its plain configuration (no momentum, centering, weight decay or
    maximize; a float learning rate; dense contiguous CPU float32/float64 tensors), is one compiled pass per
    parameter (``rl_lstm/csrc/rmsprop.inc``) instead of five multi-tensor operations. Same state, state dict
    and arguments; each element is torch's arithmetic in torch's order, with the IEEE square root: torch's
    square root goes through MKL's vector math, which on AMD EPYC CPUs is off by one unit in the last place
    in about a fifth of the entries and several times slower than a division. Any other configuration, and a
    machine where the extension cannot be built, ``RL_LSTM_KERNEL=0`` or torch's ``addcmul`` does not round as
    one fma, takes torch's own step.
    """

    def _fused(self) -> object | None:
        """The extension where this step can run on it, else None."""
        if kernel.mode() == "0":
            return None
        for group in self.param_groups:
            if group["momentum"] or group["centered"] or group["weight_decay"] or group["maximize"]:
                return None
            if group["capturable"] or group["differentiable"] or isinstance(group["lr"], th.Tensor):
                return None
        return kernel.load()

    def _torch_step(self, closure: Callable[[], float] | None) -> float | None:
        """torch's RMSprop step, without this optimizer's step hooks a second time: torch wraps each optimizer
        class's ``step`` once with the hook runner, so ``RMSprop.step`` runs them too once an RMSprop exists."""
        step = th.optim.RMSprop.step
        return (step.__wrapped__ if getattr(step, "hooked", False) else step)(self, closure)

    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        module = self._fused()
        if module is None:
            return self._torch_step(closure)
        loss = None
        if closure is not None:
            with th.enable_grad():
                loss = closure()
        with th.no_grad():
            for group in self.param_groups:
                self._fused_group(module, group)
        return loss

    def _fused_group(self, module: object, group: dict) -> None:
        scalar_dtype = th.float64 if th.get_default_dtype() == th.float64 else th.float32  # torch's step dtype
        params, grads, square_avgs, steps = [], [], [], []
        for p in group["params"]:
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise RuntimeError("RMSprop does not support sparse gradients")
            state = self.state[p]
            if len(state) == 0:  # as torch.optim.RMSprop initialises it
                state["step"] = th.zeros((), dtype=scalar_dtype)
                state["square_avg"] = th.zeros_like(p, memory_format=th.preserve_format)
            params.append(p)
            grads.append(p.grad)
            square_avgs.append(state["square_avg"])
            steps.append(state["step"])
        if not params:
            return
        rounds_as_torch = all(d in (th.float32, th.float64) and _fma_matches(d) for d in {p.dtype for p in params})
        # One pass per tensor equals torch's whole-group operations only where no two parameters share memory.
        apart = len({p.untyped_storage().data_ptr() for p in params}) == len(params)
        lr, alpha, eps = group["lr"], group["alpha"], group["eps"]
        if rounds_as_torch and apart and module.rmsprop_step(params, grads, square_avgs, steps, lr, alpha, eps):
            return
        # A tensor the pass does not take (complex, another device, not contiguous, shared): torch's step.
        rmsprop(
            params, grads, square_avgs, [], [], steps, foreach=group["foreach"], maximize=False, differentiable=False,
            capturable=False, has_complex=any(th.is_complex(p) for p in params), lr=lr, alpha=alpha, eps=eps,
            weight_decay=0, momentum=0, centered=False,
        )  # fmt: skip
