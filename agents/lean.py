"""The update's lean pieces: discrete log-probabilities and entropies from ``log_softmax`` (no
distribution object, no argument validation per minibatch), and the global-norm gradient clip on
foreach kernels.

Same numbers as the distribution path: ``Categorical(logits=l).log_prob(a)`` is ``log_softmax(l)[a]``
and its entropy ``-sum(p * log_softmax(l))`` for finite logits (invalid-action masks, which make
logits infinite, keep the distribution path).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch as th
from stable_baselines3.common.distributions import CategoricalDistribution

from agents.policies import CellLstmPolicy, flatten_steps
from agents.type_aliases import SequenceSamples


def takes_lean_path(policy: CellLstmPolicy, data: SequenceSamples) -> bool:
    """Whether a minibatch can be evaluated by :func:`evaluate_discrete`: a Categorical action
    distribution (Discrete actions) and no invalid-action masks."""
    return type(policy.action_dist) is CategoricalDistribution and data.action_masks is None


def log_prob_entropy(logits: th.Tensor, actions: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
    """Log-probability of ``actions`` (integer, one per row of ``logits``) and entropy, per row."""
    log_p = logits.log_softmax(-1)
    log_prob = log_p.gather(-1, actions.long().reshape(-1, 1)).squeeze(-1)
    return log_prob, -(log_p.exp() * log_p).sum(-1)


def evaluate_discrete(policy: CellLstmPolicy, data: SequenceSamples) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
    """``policy.evaluate_sequences`` for a Categorical policy without action masks: values,
    log-probabilities and entropies, ``(seq_len * n_seq,)`` each."""
    features = policy.extract_features(flatten_steps(data.observations))
    latent_pi, latent_vf = policy._memory_sequences(features, data.lstm_states, data.episode_starts, data.masks)
    logits = policy.action_net(policy.mlp_extractor.forward_actor(latent_pi))
    values = policy.value_net(policy.mlp_extractor.forward_critic(latent_vf)).flatten()
    return values, *log_prob_entropy(logits, data.actions)


def clip_grad_norm(parameters: Iterable[th.Tensor], max_norm: float) -> None:
    """``clip_grad_norm_`` (one global norm over all gradients) on the foreach kernels, without a sync."""
    th.nn.utils.clip_grad_norm_(parameters, max_norm, foreach=True)
