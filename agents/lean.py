"""The update's lean pieces: discrete log-probabilities and entropies from ``log_softmax`` (no
distribution object, no argument validation per minibatch; ``CellLstmPolicy.evaluate_sequences`` takes them
for a Categorical policy without invalid-action masks), and the global-norm gradient clip on foreach kernels.

Same numbers as the distribution path: ``Categorical(logits=l).log_prob(a)`` is ``log_softmax(l)[a]``
and its entropy ``-sum(p * log_softmax(l))`` for finite logits (invalid-action masks, which make
logits infinite, keep the distribution path).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch as th


def log_prob_entropy(logits: th.Tensor, actions: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
    """Log-probability of ``actions`` (integer, one per row of ``logits``) and entropy, per row."""
    log_p = logits.log_softmax(-1)
    log_prob = log_p.gather(-1, actions.long().reshape(-1, 1)).squeeze(-1)
    return log_prob, -(log_p.exp() * log_p).sum(-1)


def clip_grad_norm(parameters: Iterable[th.Tensor], max_norm: float) -> None:
    """``clip_grad_norm_`` (one global norm over all gradients) on the foreach kernels, without a sync."""
    th.nn.utils.clip_grad_norm_(parameters, max_norm, foreach=True)
